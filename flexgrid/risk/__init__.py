"""Grid risk: N-1 with restoration and EENS, probabilistic (Monte Carlo) risk, and risk turned
into FlexRequests. Pure computation on `flexgrid.monitoring.NetworkModel`, no I/O.

The entry point for the oracle and the demo::

    from flexgrid.grid import load_net
    from flexgrid.monitoring import build_model
    from flexgrid.risk import risk_flex_requests, slot_scales

    model = build_model(load_net("case33bw"), "case33bw")
    load, pv = slot_scales(slot_start_s, slot_seconds, slot_count)
    plan = risk_flex_requests(model, round_id=..., load_scale=load, gen_scale=pv,
                              slot_seconds=slot_seconds, epsilon=0.05, dso=dso_address)
    requests = plan.flex_requests()   # list[flexgrid.trading.FlexRequest]
"""

from flexgrid.risk.contingency import N1Report, OutageResult, ReliabilityData, TieOption, n_minus_1
from flexgrid.risk.probabilistic import ProbabilisticReport, Uncertainty, probabilistic_risk, var_cvar
from flexgrid.risk.requests import (
    RiskFlexRequest,
    RiskPricing,
    RiskRequestPlan,
    SlotRisk,
    risk_flex_requests,
    slot_scales,
)

__all__ = [
    "N1Report",
    "OutageResult",
    "ProbabilisticReport",
    "ReliabilityData",
    "RiskFlexRequest",
    "RiskPricing",
    "RiskRequestPlan",
    "SlotRisk",
    "TieOption",
    "Uncertainty",
    "n_minus_1",
    "probabilistic_risk",
    "risk_flex_requests",
    "slot_scales",
    "var_cvar",
]
