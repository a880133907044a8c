"""Optimal power flow: the dispatch problem, its formulations (SOCP, LinDistFlow, DC, copper plate, and
the sensitivity-based successive LP against an AC power flow),
time-coupled devices, locational prices with their decomposition, and AC validation."""

from flexgrid.opf.conic import ConicModel, KKTReport, Solution, check_kkt
from flexgrid.opf.devices import Battery, CurtailablePV, Devices, EVCharger, ShiftableLoad
from flexgrid.opf.formulations import FORMULATIONS
from flexgrid.opf.problem import COMPONENTS, DispatchProblem, DispatchResult, Violation
from flexgrid.opf.sensitivity import SensitivityProblem
from flexgrid.opf.validate import ACReport, validate_ac

__all__ = [
    "COMPONENTS",
    "FORMULATIONS",
    "ACReport",
    "Battery",
    "ConicModel",
    "CurtailablePV",
    "Devices",
    "DispatchProblem",
    "DispatchResult",
    "EVCharger",
    "KKTReport",
    "SensitivityProblem",
    "ShiftableLoad",
    "Solution",
    "Violation",
    "check_kkt",
    "validate_ac",
]
