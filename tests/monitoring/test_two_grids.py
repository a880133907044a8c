"""Nets fed by several external grids (substations): each is a slack bus with its set voltage, the
first the angle reference, as in pandapower's power flow and state estimation. Checked on
mv_oberrhein (two HV/MV substations as pandapower ships it) and on cigre_mv split into two
substations (tests/netmodels.py)."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest
from pandapower.estimation import estimate as pp_estimate

from flexgrid.errors import InputError
from flexgrid.grid import load_net
from flexgrid.monitoring import (
    Kind,
    MeasurementSet,
    Meter,
    Source,
    bad_data_redundancy,
    build_model,
    estimate,
    meter_channels,
    pseudo_measurements,
    run_trials,
    simulate_readings,
    solve_batch,
    substation_meters,
)
from flexgrid.monitoring.network import NetworkModel
from tests.netmodels import cigre_mv_two_grids_net


def _ties_out_of_service(net: pp.pandapowerNet) -> pp.pandapowerNet:
    """pandapower keeps the charging of a line behind an open switch; the model opens it entirely."""
    open_sw = net.switch[(net.switch.et == "l") & ~net.switch.closed.astype(bool)]
    for si, row in open_sw.iterrows():
        net.line.at[row.element, "in_service"] = False
        net.switch.at[si, "closed"] = True
    return net


@pytest.mark.parametrize("name", ["mv_oberrhein", "cigre_mv_two_grids"])
def test_power_flow_with_two_external_grids_matches_runpp(name: str) -> None:
    net = _ties_out_of_service(load_net(name) if name == "mv_oberrhein" else cigre_mv_two_grids_net())
    model = build_model(net, name)
    assert model.slacks.size == 2 and model.slacks[0] == model.slack
    assert model.energised().all()
    pp.runpp(net, numba=False)
    flow = solve_batch(model, model.s_injection_pu())
    assert flow.converged.all()
    res = net.res_bus.loc[model.bus_ids]
    assert np.max(np.abs(flow.vm_pu[:, 0] - res.vm_pu.to_numpy())) < 1e-6
    assert np.max(np.abs(np.angle(flow.v[:, 0], deg=True) - res.va_degree.to_numpy())) < 1e-4


def test_estimate_with_two_external_grids_matches_pandapower() -> None:
    """Same measurements as pandapower's `estimate` (which holds every external grid's angle),
    same answer; both substations metered."""
    net = _ties_out_of_service(cigre_mv_two_grids_net())
    model = build_model(net, "cigre_mv_two_grids")
    meters = [*substation_meters(model), Meter(bus=5), Meter(bus=10)]
    assert [m.name for m in meters[:2]] == [f"substation@{int(model.bus_ids[b])}" for b in model.slacks]
    truth = solve_batch(model, model.s_injection_pu(0.9, 1.1)).v[:, 0]
    ms = MeasurementSet.concat([
        simulate_readings(model, meter_channels(model, meters), truth, np.random.default_rng(2)),
        pseudo_measurements(model, model.load_p_pu, model.load_q_pu, model.gen_p_pu, model.gen_q_pu),
    ])
    ms = MeasurementSet(ms.kind, ms.element, ms.value, np.where(ms.source == Source.VIRTUAL, 1e-4, ms.sigma),
                        ms.source, ms.labels)
    ours = estimate(model, ms, bad_data=False)
    assert ours.converged
    base = model.base_mva
    for kind, el, val, sd in zip(ms.kind, ms.element, ms.value, ms.sigma, strict=True):
        if kind == Kind.V:
            pp.create_measurement(net, "v", "bus", val, sd, int(model.bus_ids[el]))
        elif kind in (Kind.P_INJ, Kind.Q_INJ):
            pp.create_measurement(net, "p" if kind == Kind.P_INJ else "q", "bus", -val * base, sd * base,
                                  int(model.bus_ids[el]))
        else:
            etype = model.branch_kind[el]
            pp.create_measurement(net, "p" if kind == Kind.P_FLOW else "q", etype, val * base, sd * base,
                                  int(model.branch_element[el]), side="from" if etype == "line" else "hv")
    assert pp_estimate(net, init="flat", zero_injection=None)["success"]
    theirs = net.res_bus_est.vm_pu.loc[model.bus_ids].to_numpy()
    assert np.max(np.abs(theirs - ours.vm_pu)) < 1e-6
    assert np.max(np.abs(ours.vm_pu - np.abs(truth))) < 0.01


def test_seeded_trials_and_bad_data_with_two_substations(cigre_mv_two_grids: NetworkModel) -> None:
    model = cigre_mv_two_grids
    meters = [*substation_meters(model), Meter(bus=5), Meter(bus=10), Meter(bus=14, flow=False)]
    stats = run_trials(model, meters, 40, seed=3).summary()
    assert 0.85 <= stats["coverage_2sigma"] <= 1.0
    assert stats["rmse_pu"] < stats["forecast_rmse_pu"]
    report = bad_data_redundancy(model, meters)
    assert {c.label.split(":")[0] for c in report.channels} >= {f"substation@{int(model.bus_ids[b])}" for b in model.slacks}


def test_a_net_without_external_grid_gets_a_typed_error() -> None:
    net = load_net("cigre_mv")
    net.ext_grid.loc[:, "in_service"] = False
    with pytest.raises(InputError) as exc:
        build_model(net, "cigre_mv")
    assert exc.value.field == "net.ext_grid"
