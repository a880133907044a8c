"""Grid risk: N-1 with restoration and EENS, probabilistic (Monte Carlo) risk, and risk turned
into FlexRequests. Pure computation on `flexgrid.monitoring.NetworkModel`, no I/O."""

from flexgrid.risk.contingency import N1Report, OutageResult, ReliabilityData, TieOption, n_minus_1

__all__ = ["N1Report", "OutageResult", "ReliabilityData", "TieOption", "n_minus_1"]
