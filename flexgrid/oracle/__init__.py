"""The clearing oracle: watches the chain, clears closed rounds over the grid, commits and publishes.

- `flexgrid.oracle.service`: `Oracle(w3, deployment, account, engine, OracleSettings(results_dir=...))`
  with `run_once(round_id=None)`, `run(poll_interval_s=, stop=)`, `process(round_id)`; the
  per-round checkpoint table `OracleCheckpoint`; `reindex_publications(w3, deployment, engine)`.
- `flexgrid.oracle.inputs`: reading a round's orders from the index and re-verifying them
  (accumulator, calldata signatures, ERC-1271, nonce order, grid screening).
- `flexgrid.oracle.risk_check`: no new or worse AC violation; voltage, thermal and load margins.
- `flexgrid.oracle.publication`: the published result (file format and tables).

This package imports nothing heavy itself: import the module you need (the service loads
pandapower and the solvers).
"""
