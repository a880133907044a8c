"""Grid monitoring: state estimation from few meters with pseudo-measurements, bad data,
uncertainty and observability; meter placement at minimum cost.

Pure computation on pandapower nets (via `build_model`), no I/O.
"""

from flexgrid.monitoring.estimation import (
    EstimationError,
    ObservabilityReport,
    StateEstimate,
    check_observability,
    estimate,
    estimate_series,
)
from flexgrid.monitoring.measurements import (
    Kind,
    MeasurementSet,
    Meter,
    PseudoConfig,
    Source,
    meter_channels,
    pseudo_measurements,
    readings,
    simulate_readings,
    substation_meter,
)
from flexgrid.monitoring.network import NetworkModel, build_model
from flexgrid.monitoring.placement import (
    DEFAULT_METER_TYPES,
    MeterType,
    Placement,
    best_k_meters,
    greedy_placement,
    milp_placement,
)
from flexgrid.monitoring.powerflow import BatchFlow, solve_batch
from flexgrid.monitoring.simulation import TrialResult, run_trials, sample_injections

__all__ = [
    "DEFAULT_METER_TYPES",
    "BatchFlow",
    "EstimationError",
    "Kind",
    "MeasurementSet",
    "Meter",
    "MeterType",
    "NetworkModel",
    "ObservabilityReport",
    "Placement",
    "PseudoConfig",
    "Source",
    "StateEstimate",
    "TrialResult",
    "best_k_meters",
    "build_model",
    "check_observability",
    "estimate",
    "estimate_series",
    "greedy_placement",
    "meter_channels",
    "milp_placement",
    "pseudo_measurements",
    "readings",
    "run_trials",
    "sample_injections",
    "simulate_readings",
    "solve_batch",
    "substation_meter",
]
