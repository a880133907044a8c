"""The clearing oracle: watches the chain, clears closed rounds over the grid, commits and publishes.

`flexgrid.oracle.publication` defines the published result (file and tables).
"""
