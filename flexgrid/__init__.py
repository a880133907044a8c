"""FlexGrid: an automated trading platform for electricity flexibility.

Pure computation (grid, OPF, clearing, risk) lives in `flexgrid.grid`, `flexgrid.opf`,
`flexgrid.market`, `flexgrid.monitoring` and `flexgrid.risk`; the trading language in
`flexgrid.trading`; chain, database and command line at the edges (`flexgrid.chain`,
`flexgrid.store`, `flexgrid.cli`).
"""

__version__ = "0.1.0"
