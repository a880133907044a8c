"""Grid monitoring: state estimation from few meters with pseudo-measurements, bad data,
uncertainty and observability; which meter channels a gross error can be found in (critical
measurements and pairs); meter placement at minimum cost, optionally bad-data detectable.

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
    substation_meters,
)
from flexgrid.monitoring.network import NetworkModel, build_model
from flexgrid.monitoring.placement import (
    BAD_DATA_METER_TYPES,
    DEFAULT_METER_TYPES,
    MeterType,
    Placement,
    add_bad_data_redundancy,
    best_k_meters,
    greedy_placement,
    milp_placement,
)
from flexgrid.monitoring.powerflow import BatchFlow, solve_batch
from flexgrid.monitoring.redundancy import ChannelCheck, RedundancyReport, bad_data_redundancy
from flexgrid.monitoring.simulation import TrialResult, run_trials, sample_injections

__all__ = [
    "BAD_DATA_METER_TYPES",
    "DEFAULT_METER_TYPES",
    "BatchFlow",
    "ChannelCheck",
    "EstimationError",
    "Kind",
    "MeasurementSet",
    "Meter",
    "MeterType",
    "NetworkModel",
    "ObservabilityReport",
    "Placement",
    "PseudoConfig",
    "RedundancyReport",
    "Source",
    "StateEstimate",
    "TrialResult",
    "add_bad_data_redundancy",
    "bad_data_redundancy",
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
    "substation_meters",
]
