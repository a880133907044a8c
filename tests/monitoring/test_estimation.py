"""State estimation: agreement with pandapower, the issue's accuracy, uncertainty and bad-data
figures on seeded trials, observability, and typed errors for bad input."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest
from pandapower.estimation import estimate as pp_estimate

from flexgrid.errors import InputError
from flexgrid.grid import load_net
from flexgrid.monitoring.estimation import check_observability, estimate
from flexgrid.monitoring.measurements import (
    Kind,
    MeasurementSet,
    Meter,
    Source,
    meter_channels,
    pseudo_measurements,
    readings,
    simulate_readings,
    substation_meter,
)
from flexgrid.monitoring.network import NetworkModel, build_model
from flexgrid.monitoring.powerflow import solve_batch
from flexgrid.monitoring.simulation import run_trials

CASE33_METER_BUSES = (5, 12, 29)  # along the main feeder and the longest lateral


def _case33_meters(model: NetworkModel) -> list[Meter]:
    return [substation_meter(model)] + [Meter(bus=b) for b in CASE33_METER_BUSES]


def _kerber_meters(model: NetworkModel) -> list[Meter]:
    net = load_net("kerber_dorfnetz")
    return [substation_meter(model)] + [Meter(bus=int(net.load.bus.iloc[i])) for i in (10, 30, 50)]


@pytest.mark.parametrize("name", ["case33bw", "kerber_dorfnetz", "cigre_mv"])
def test_batch_power_flow_matches_pandapower_runpp(name: str) -> None:
    net = load_net(name)
    # The model opens tie lines entirely; pandapower keeps the charging of a line behind an
    # open switch. Take the ties out of service so both describe the same grid.
    open_sw = net.switch[(net.switch.et == "l") & ~net.switch.closed.astype(bool)]
    for si, row in open_sw.iterrows():
        net.line.at[row.element, "in_service"] = False
        net.switch.at[si, "closed"] = True
    model = build_model(net, name)
    pp.runpp(net, numba=False)
    flow = solve_batch(model, model.s_injection_pu())
    assert flow.converged.all()
    vm_ref = net.res_bus.vm_pu.loc[model.bus_ids].to_numpy()
    assert np.max(np.abs(flow.vm_pu[:, 0] - vm_ref)) < 1e-6
    loading = model.loading_fraction(flow.v[:, 0]) * 100
    ref = np.array([
        net.res_line.loading_percent.at[e] if k == "line" else net.res_trafo.loading_percent.at[e]
        for k, e in zip(model.branch_kind, model.branch_element, strict=True)
    ])
    on = model.base_status
    assert np.max(np.abs(loading[on] - ref[on])) < 1e-3


@pytest.mark.parametrize("net_name", ["case33bw", "kerber_dorfnetz"])
def test_wls_matches_pandapower_estimate(net_name: str, case33bw: NetworkModel, kerber: NetworkModel) -> None:
    """Same measurements, same answer; on kerber_dorfnetz the estimator must also start from the
    transformer's phase shift (a flat start does not converge there)."""
    model = case33bw if net_name == "case33bw" else kerber
    net = load_net(net_name)
    truth = solve_batch(model, model.s_injection_pu(1.1)).v[:, 0]
    meters = _case33_meters(model) if net_name == "case33bw" else _kerber_meters(model)
    channels = meter_channels(model, meters)
    ms = MeasurementSet.concat([
        simulate_readings(model, channels, truth, np.random.default_rng(3)),
        pseudo_measurements(model, model.load_p_pu, model.load_q_pu),
    ])
    # pandapower's solver wants zero-injection measurements less extreme than our default
    ms = MeasurementSet(ms.kind, ms.element, ms.value, np.where(ms.source == Source.VIRTUAL, 1e-4, ms.sigma),
                        ms.source, ms.labels)
    ours = estimate(model, ms, bad_data=False)
    assert ours.converged
    base = model.base_mva
    for kind, el, val, sd in zip(ms.kind, ms.element, ms.value, ms.sigma, strict=True):
        if kind == Kind.V:
            pp.create_measurement(net, "v", "bus", val, sd, int(model.bus_ids[el]))
        elif kind in (Kind.P_INJ, Kind.Q_INJ):  # pandapower: bus power in the load convention
            meas = "p" if kind == Kind.P_INJ else "q"
            pp.create_measurement(net, meas, "bus", -val * base, sd * base, int(model.bus_ids[el]))
        else:
            meas = "p" if kind == Kind.P_FLOW else "q"
            etype = model.branch_kind[el]
            pp.create_measurement(net, meas, etype, val * base, sd * base, int(model.branch_element[el]),
                                  side="from" if etype == "line" else "hv")
    result = pp_estimate(net, init="flat", zero_injection=None)
    assert result["success"]
    theirs = net.res_bus_est.vm_pu.loc[model.bus_ids].to_numpy()
    assert np.max(np.abs(theirs - ours.vm_pu)) < 1e-6
    assert np.max(np.abs(ours.vm_pu - np.abs(truth))) < 0.01


def test_case33bw_accuracy_with_substation_and_three_meters(case33bw: NetworkModel) -> None:
    """Issue figures: pseudo-loads at σ = 30 %, 100 seeded trials."""
    stats = run_trials(case33bw, _case33_meters(case33bw), 100, seed=2026).summary()
    assert stats["worst_error_p95_pu"] <= 0.0065
    assert stats["rmse_pu"] <= 0.0021
    assert stats["better_than_forecast_share"] >= 0.95


def test_cigre_mv_accuracy_with_substation_and_three_meters(cigre_mv: NetworkModel) -> None:
    """The issue's accuracy figures on a second net: cigre_mv (with its PV and wind, σ = 50 %), pseudo-
    loads at σ = 30 %, the substation meter and 3 voltage+flow meters (the exhaustive best three),
    100 seeded trials."""
    meters = [substation_meter(cigre_mv)] + [Meter(bus=b) for b in (4, 7, 13)]
    stats = run_trials(cigre_mv, meters, 100, seed=2026).summary()
    assert stats["worst_error_p95_pu"] <= 0.0065
    assert stats["rmse_pu"] <= 0.0021
    assert stats["better_than_forecast_share"] >= 0.95
    assert 0.90 <= stats["coverage_2sigma"] <= 0.98


@pytest.mark.parametrize("net_name", ["case33bw", "kerber_dorfnetz"])
def test_two_sigma_band_covers_the_truth_90_to_98_percent(
    net_name: str, case33bw: NetworkModel, kerber: NetworkModel
) -> None:
    model = case33bw if net_name == "case33bw" else kerber
    meters = _case33_meters(model) if net_name == "case33bw" else _kerber_meters(model)
    stats = run_trials(model, meters, 60, seed=11).summary()
    assert 0.90 <= stats["coverage_2sigma"] <= 0.98


@pytest.mark.parametrize("net_name", ["case33bw", "kerber_dorfnetz"])
def test_gross_error_of_15_sigma_is_found_and_removed(
    net_name: str, case33bw: NetworkModel, kerber: NetworkModel
) -> None:
    """Population: with the issue's accuracy metering (substation + 3 voltage+flow meters), only
    the channels that can be detected (minimal detectable error at 99 % power ≤ 15σ) and identified
    (residual correlation < 0.9 with every removable measurement): the flows of these meters are
    checked by nothing but 30 % pseudo-loads, so no estimator can see a 15σ error there (they are
    reported as such by `bad_data_redundancy`, see test_redundancy.py). A 15σ error in a random
    channel of that population is removed in ≥95 % of trials, and the estimate after removal stays
    within 1.5x the clean one. The full population (every real meter channel) is tested on a
    bad-data detectable placement in test_redundancy.py."""
    model = case33bw if net_name == "case33bw" else kerber
    meters = _case33_meters(model) if net_name == "case33bw" else _kerber_meters(model)
    stats = run_trials(model, meters, 100 if net_name == "case33bw" else 60, seed=5, gross_error_sigma=15.0).summary()
    assert stats["gross_detected_share"] >= 0.95
    assert stats["gross_rmse_ratio"] <= 1.5
    assert stats["detectable_channel_share"] > 0.15  # at least the voltage channels qualify


def test_without_bad_data_processing_a_gross_error_spoils_the_estimate(case33bw: NetworkModel) -> None:
    model = case33bw
    truth = solve_batch(model, model.s_injection_pu()).v[:, 0]
    channels = meter_channels(model, _case33_meters(model))
    rng = np.random.default_rng(8)
    ms = MeasurementSet.concat([
        simulate_readings(model, channels, truth, rng),
        pseudo_measurements(model, model.load_p_pu, model.load_q_pu),
    ])
    v_channel = channels.labels.index("bus 12: V")
    bad = ms.with_value(v_channel, ms.value[v_channel] + 15 * ms.sigma[v_channel])
    plain = estimate(model, bad, bad_data=False)
    cleaned = estimate(model, bad)
    robust = estimate(model, bad, robust=True)
    err = {k: float(np.max(np.abs(e.vm_pu - np.abs(truth)))) for k, e in
           (("plain", plain), ("cleaned", cleaned), ("robust", robust))}
    assert plain.bad_data_suspected
    assert cleaned.removed == ("bus 12: V",)
    assert err["cleaned"] < 0.5 * err["plain"]
    assert err["robust"] < 0.5 * err["plain"]


def test_a_96_slot_day_is_estimated(case33bw: NetworkModel) -> None:
    from flexgrid.grid import daily_shapes
    from flexgrid.monitoring.estimation import estimate_series

    model = case33bw
    load_shape, _ = daily_shapes()
    channels = meter_channels(model, _case33_meters(model))
    rng = np.random.default_rng(4)
    sets = []
    truths = solve_batch(model, (-(model.load_p_pu + 1j * model.load_q_pu)[:, None] * load_shape[None, :]).astype(np.complex128))
    for t in range(96):
        ps = pseudo_measurements(model, load_shape[t] * model.load_p_pu, load_shape[t] * model.load_q_pu)
        sets.append(MeasurementSet.concat([simulate_readings(model, channels, truths.v[:, t], rng), ps]))
    day = estimate_series(model, sets)
    assert len(day) == 96 and all(e.converged for e in day)
    worst = max(float(np.max(np.abs(e.vm_pu - truths.vm_pu[:, t]))) for t, e in enumerate(day))
    assert worst < 0.01


def test_observability_names_unobservable_buses_and_why(case33bw: NetworkModel) -> None:
    model = case33bw
    channels = meter_channels(model, _case33_meters(model))
    truth = solve_batch(model, model.s_injection_pu()).v[:, 0]
    meters_only = simulate_readings(model, channels, truth, np.random.default_rng(1))
    report = check_observability(model, meters_only)
    assert not report.observable
    assert 17 in report.unobservable_buses and 0 not in report.unobservable_buses
    assert "no injection measurement" in report.reasons[17]
    ps = pseudo_measurements(model, model.load_p_pu, model.load_q_pu)
    full = MeasurementSet.concat([meters_only, ps])
    assert check_observability(model, full).observable
    # Without the substation flows and without a forecast at bus 20, nothing closes its balance.
    drop = np.isin(np.arange(full.size), [1, 2]) | (
        np.isin(full.kind, [Kind.P_INJ, Kind.Q_INJ]) & (full.element == model.bus_position(20))
    )
    partial = check_observability(model, full.subset(~drop))
    assert not partial.observable
    assert 20 in partial.unobservable_buses
    assert "no injection measurement" in partial.reasons[20]


def test_observability_on_cigre_mv_names_the_buses_only_pseudo_measurements_reach(cigre_mv: NetworkModel) -> None:
    model = cigre_mv
    meters = meter_channels(model, [substation_meter(model), Meter(bus=7)])
    truth = solve_batch(model, model.s_injection_pu()).v[:, 0]
    meters_only = simulate_readings(model, meters, truth, np.random.default_rng(1))
    report = check_observability(model, meters_only)
    assert not report.observable and 10 in report.unobservable_buses
    assert 1 not in report.unobservable_buses and 12 not in report.unobservable_buses  # the substation's flows
    assert report.reasons[7].startswith("voltage angle undetermined")  # its magnitude is metered
    assert "no voltage meter" in report.reasons[10] and "no injection measurement" in report.reasons[10]
    ps = pseudo_measurements(model, model.load_p_pu, model.load_q_pu, model.gen_p_pu, model.gen_q_pu)
    assert check_observability(model, MeasurementSet.concat([meters_only, ps])).observable


def test_bad_inputs_get_typed_errors(case33bw: NetworkModel) -> None:
    model = case33bw
    with pytest.raises(InputError) as exc:
        meter_channels(model, [Meter(bus=999)])
    assert exc.value.field == "meter.bus"
    with pytest.raises(InputError) as exc:
        meter_channels(model, [Meter(bus=3, v_sigma_pu=-0.1)])
    assert exc.value.field == "meter.v_sigma_pu"
    channels = meter_channels(model, _case33_meters(model))
    values = np.ones(channels.size)
    values[2] = np.nan
    with pytest.raises(InputError) as exc:
        readings(model, channels, values)
    assert exc.value.field == "readings[2]"
    with pytest.raises(InputError) as exc:
        pseudo_measurements(model, model.load_p_pu[:5], model.load_q_pu)
    assert exc.value.field == "forecast.load_p"
