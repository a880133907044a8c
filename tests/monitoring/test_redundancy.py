"""Bad data on every real meter channel: which channels a gross error can be found in (critical
measurements and pairs are named), and a placement that makes every channel detectable, checked by
seeded trials with a 15σ error in a random meter channel of the placement (the substation's
included).

Population of the seeded test: every channel of every real meter of the placement (voltages, P/Q
flows, P/Q of metered loads, the substation's voltage and feeder flows), drawn uniformly. Gross
errors are telemetry faults of real meters; pseudo-measurements (σ = 30 % of a forecast) are not in
the population, since a 15σ error there would be a 450 % forecast error, i.e. a forecast, not bad
data."""

from __future__ import annotations

import numpy as np
import pytest

from flexgrid.errors import InputError
from flexgrid.monitoring import (
    BAD_DATA_METER_TYPES,
    Meter,
    PseudoConfig,
    add_bad_data_redundancy,
    bad_data_redundancy,
    greedy_placement,
    run_trials,
    substation_meter,
)
from flexgrid.monitoring.measurements import meter_channels
from flexgrid.monitoring.network import NetworkModel


def _issue_meters(model: NetworkModel) -> list[Meter]:
    return [substation_meter(model)] + [Meter(bus=b) for b in (5, 12, 29)]


def test_critical_and_weak_channels_are_named(case33bw: NetworkModel) -> None:
    """The issue's accuracy metering: voltages are checked, the flows are not (no estimator can
    find a 15σ error there), and the report says so channel by channel."""
    report = bad_data_redundancy(case33bw, _issue_meters(case33bw))
    labels = meter_channels(case33bw, _issue_meters(case33bw)).labels
    assert [c.label for c in report.channels] == list(labels)
    by = {c.label: c for c in report.channels}
    for v in ("substation: V", "bus 5: V", "bus 12: V", "bus 29: V"):
        assert by[v].status == "detectable"
    assert by["bus 12: P line 11"].status == "undetectable"
    assert by["bus 12: P line 11"].redundancy < 0.2
    assert not report.all_detectable
    assert any("bus 12: P line 11 is too weakly checked" in m for m in report.messages())
    # a meter whose channel nothing else checks: one meter duplicating nothing, no pseudo-loads around
    # it can tell -> a critical measurement (redundancy 0)
    one_v = bad_data_redundancy(case33bw, [Meter(bus=int(case33bw.bus_ids[case33bw.slack]), flow=False)])
    assert one_v.channels[0].status == "critical"
    assert "is critical: a gross error there cannot be detected" in one_v.messages()[0]


def test_redundancy_predicts_what_the_estimator_finds(case33bw: NetworkModel) -> None:
    """Channels reported undetectable are indeed missed; detectable ones are found (seeded)."""
    meters = _issue_meters(case33bw)
    report = bad_data_redundancy(case33bw, meters)
    det = set(report.detectable_index().tolist())
    trials = run_trials(case33bw, meters, 60, seed=9, gross_error_sigma=15.0, detectable_only=False)
    sel = trials.gross_channel >= 0
    found_det = [f for f, c in zip(trials.gross_detected[sel], trials.gross_channel[sel], strict=True) if c in det]
    found_not = [f for f, c in zip(trials.gross_detected[sel], trials.gross_channel[sel], strict=True) if c not in det]
    assert len(found_det) >= 10 and len(found_not) >= 10
    assert np.mean(found_det) >= 0.95
    assert np.mean(found_not) < 0.5


@pytest.mark.parametrize("net_name", ["case33bw", "cigre_mv"])
def test_gross_error_in_any_meter_channel_of_a_detectable_placement_is_found(
    net_name: str, case33bw: NetworkModel, cigre_mv: NetworkModel
) -> None:
    """Issue figure on the full population: 100 seeded trials, a 15σ error (random sign) in a
    uniformly drawn channel of any real meter of the placement; ≥95 % found and removed, and the
    RMSE after removal ≤ 1.5x the clean RMSE."""
    model = case33bw if net_name == "case33bw" else cigre_mv
    placement = greedy_placement(model, pseudo=PseudoConfig(), meter_types=BAD_DATA_METER_TYPES,
                                 bad_data_detectable=True)
    assert placement.meets_target and placement.bad_data_detectable and placement.bad_data is not None
    assert placement.bad_data.messages() == []
    meters = [substation_meter(model), *placement.as_meters(BAD_DATA_METER_TYPES)]
    n_channels = meter_channels(model, meters).size
    assert len(placement.bad_data.channels) == n_channels
    trials = run_trials(model, meters, 100, seed=5, gross_error_sigma=15.0, detectable_only=False)
    assert np.all(trials.gross_channel >= 0) and np.all(trials.gross_channel < n_channels)
    assert len(set(trials.gross_channel.tolist())) >= min(n_channels, 10)  # the draw covers the channels
    stats = trials.summary()
    assert stats["gross_detected_share"] >= 0.95
    assert stats["gross_rmse_ratio"] <= 1.5


def test_bad_data_placement_extends_a_given_metering(case33bw: NetworkModel) -> None:
    meters, report = add_bad_data_redundancy(case33bw, [(5, "voltage+flow")], meter_types=BAD_DATA_METER_TYPES)
    assert meters[0] == (5, "voltage+flow") or (5, "voltage+flow+load") in meters
    assert report.all_detectable
    again = bad_data_redundancy(
        case33bw, [substation_meter(case33bw), *({t.name: t for t in BAD_DATA_METER_TYPES}[t].at(b) for b, t in meters)]
    )
    assert again.all_detectable


def test_bad_redundancy_inputs_get_typed_errors(case33bw: NetworkModel) -> None:
    with pytest.raises(InputError) as exc:
        bad_data_redundancy(case33bw, [])
    assert exc.value.field == "meters"
    with pytest.raises(InputError) as exc:
        bad_data_redundancy(case33bw, _issue_meters(case33bw), gross_error_sigma=0)
    assert exc.value.field == "gross_error_sigma"
    with pytest.raises(InputError) as exc:
        add_bad_data_redundancy(case33bw, [(5, "golden")])
    assert exc.value.field == "meters"
    from flexgrid.monitoring import estimate, pseudo_measurements

    ps = pseudo_measurements(case33bw, case33bw.load_p_pu, case33bw.load_q_pu)
    with pytest.raises(InputError) as exc:
        estimate(case33bw, ps, removal="random")  # type: ignore[arg-type]
    assert exc.value.field == "removal"


def test_milp_placement_can_be_made_bad_data_detectable(case33bw: NetworkModel) -> None:
    from flexgrid.monitoring import milp_placement

    plain = milp_placement(case33bw, pseudo=PseudoConfig(), tolerance_pu=0.005)
    placement = milp_placement(case33bw, pseudo=PseudoConfig(), tolerance_pu=0.005,
                               meter_types=BAD_DATA_METER_TYPES, bad_data_detectable=True)
    assert placement.meets_target and placement.error_bound_pu <= 0.005
    assert placement.bad_data_detectable and placement.cost_eur > plain.cost_eur
    assert not bad_data_redundancy(case33bw, [substation_meter(case33bw), *plain.as_meters()]).all_detectable
