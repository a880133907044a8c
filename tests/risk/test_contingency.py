"""N-1 with tie-switch restoration: every outage of case33bw and cigre_mv, checked against
pandapower power flows of the same switching states."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest

from flexgrid.errors import InputError
from flexgrid.grid import load_net
from flexgrid.monitoring.network import NetworkModel
from flexgrid.risk.contingency import ReliabilityData, n_minus_1


def test_every_single_outage_of_case33bw_is_assessed(case33bw: NetworkModel) -> None:
    report = n_minus_1(case33bw)
    assert len(report.outages) == 32  # every in-service line; the five ties are open
    by_branch = {o.branch: o for o in report.outages}
    # The substation line cuts the whole feeder and no tie reaches the substation side.
    first = by_branch["line 0"]
    assert len(first.cut_buses) == 32 and first.restoration is None
    assert first.unserved_load_kw == pytest.approx(3715.0)
    # Every other outage can be picked up by one of the five ties.
    assert all(o.restoration is not None for o in report.outages if o.branch != "line 0")
    ties_used = {o.restoration for o in report.outages if o.restoration}
    assert ties_used <= {"line 32", "line 33", "line 34", "line 35", "line 36"}
    assert len(ties_used) >= 4


def test_restoration_agrees_with_pandapower(case33bw: NetworkModel) -> None:
    report = n_minus_1(case33bw)
    for outage in ("line 7", "line 28"):
        o = next(x for x in report.outages if x.branch == outage)
        assert o.restoration is not None
        net = load_net("case33bw")
        net.line.at[o.element, "in_service"] = False
        net.line.at[int(o.restoration.split()[1]), "in_service"] = True
        pp.runpp(net, numba=False)
        chosen = next(opt for opt in o.options if opt.tie == o.restoration)
        assert chosen.min_vm_pu == pytest.approx(net.res_bus.vm_pu.min(), abs=1e-6)
        low = net.res_bus.index[net.res_bus.vm_pu < 0.9 - 1e-9].tolist()
        assert chosen.feasible == (not low)
        assert len([v for v in chosen.violations if "undervoltage" in v]) == len(low)


def test_flex_needed_removes_the_restoration_violations(case33bw: NetworkModel) -> None:
    report = n_minus_1(case33bw)
    o = next(x for x in report.outages if x.branch == "line 28")
    assert o.violations and o.flex_needed_kw > 0
    net = load_net("case33bw")
    net.line.at[28, "in_service"] = False
    net.line.at[int(o.restoration.split()[1]), "in_service"] = True  # type: ignore[union-attr]
    area = net.load.bus.isin(o.flex_buses)
    area_kw = 1000 * net.load.p_mw[area].sum()
    factor = 1 - o.flex_needed_kw / area_kw
    net.load.loc[area, "scaling"] = factor
    pp.runpp(net, numba=False)
    assert net.res_bus.vm_pu.min() >= 0.9 - 1e-6
    # and a little less flexibility is not enough
    net.load.loc[area, "scaling"] = factor + 0.05
    pp.runpp(net, numba=False)
    assert net.res_bus.vm_pu.min() < 0.9


def test_eens_follows_failure_rates_and_times(case33bw: NetworkModel) -> None:
    rel = ReliabilityData(line_failure_rate_per_km_yr=0.2, line_repair_time_h=8.0, switching_time_h=0.5)
    report = n_minus_1(case33bw, reliability=rel)
    first = next(o for o in report.outages if o.branch == "line 0")
    assert first.eens_mwh_per_yr == pytest.approx(0.2 * 1.0 * 3715.0 * 8.0 / 1000)
    clean = next(o for o in report.outages if o.restoration and not o.violations)
    assert clean.eens_mwh_per_yr == pytest.approx(0.2 * clean.cut_load_kw * 0.5 / 1000)
    assert report.eens_mwh_per_yr == pytest.approx(sum(o.eens_mwh_per_yr for o in report.outages))
    assert report.eens_with_flex_mwh_per_yr < report.eens_mwh_per_yr
    assert report.expected_cost_eur_per_yr == pytest.approx(report.eens_mwh_per_yr * rel.voll_eur_per_mwh)


def test_cigre_mv_outages_use_its_three_tie_switches(cigre_mv: NetworkModel) -> None:
    report = n_minus_1(cigre_mv)
    assert len(report.outages) == 14  # 12 lines in operation and 2 transformers
    restored = [o for o in report.outages if o.restoration]
    assert {o.restoration for o in restored} == {"line 12", "line 13", "line 14"}
    # a transformer outage without a tie to the other transformer's side loses its load
    trafo1 = next(o for o in report.outages if o.branch == "trafo 1")
    assert trafo1.unserved_load_kw == trafo1.cut_load_kw > 0


def test_bad_reliability_data_is_a_typed_error() -> None:
    with pytest.raises(InputError) as exc:
        ReliabilityData(line_repair_time_h=float("nan"))
    assert exc.value.field == "reliability.line_repair_time_h"
    with pytest.raises(InputError) as exc:
        ReliabilityData(switching_time_h=10.0)
    assert exc.value.field == "reliability.switching_time_h"


def test_wrong_injection_vector_is_a_typed_error(case33bw: NetworkModel) -> None:
    with pytest.raises(InputError) as exc:
        n_minus_1(case33bw, s_pu=np.zeros(3, dtype=complex))
    assert exc.value.field == "s_pu"


def test_n1_with_two_substations_picks_up_feeder_2_from_the_first(cigre_mv_two_grids: NetworkModel) -> None:
    """At 30 % load, losing the second substation's transformer cuts feeder 2 (buses 12-14); the
    only tie, line 14, picks it up from the first substation, with undervoltage that flexibility
    would have to fix. pandapower agrees on that restored state. (At full load cigre_mv's feeders
    cannot carry each other at all: the restored flow does not converge, and is reported so.)"""
    from tests.netmodels import cigre_mv_two_grids_net

    model = cigre_mv_two_grids
    report = n_minus_1(model, s_pu=model.s_injection_pu(0.3, 1.0))
    o = next(x for x in report.outages if x.branch == "trafo 1")
    assert set(o.cut_buses) == {12, 13, 14}
    scaled = model.s_injection_pu(0.3, 1.0)
    cut = [model.bus_position(b) for b in o.cut_buses]
    assert o.cut_load_kw == pytest.approx(1000 * model.base_mva * float(np.clip(-scaled.real[cut], 0, None).sum()))
    assert o.restoration == "line 14" and o.unserved_load_kw == 0.0
    option = next(opt for opt in o.options if opt.tie == "line 14")
    assert not option.feasible and o.flex_needed_kw > 0
    assert any("undervoltage" in v for v in option.violations)
    net = cigre_mv_two_grids_net()
    net.load["scaling"] *= 0.3
    net.trafo.at[1, "in_service"] = False
    sw = net.switch[(net.switch.et == "l") & (net.switch.element == 14)].index
    net.switch.loc[sw, "closed"] = True
    open_sw = net.switch[(net.switch.et == "l") & ~net.switch.closed.astype(bool)]
    for si, row in open_sw.iterrows():
        net.line.at[row.element, "in_service"] = False
        net.switch.at[si, "closed"] = True
    pp.runpp(net, numba=False)
    assert option.min_vm_pu == pytest.approx(float(net.res_bus.vm_pu.drop(index=[0, 15]).min()), abs=1e-6)
    loading = max(float(net.res_line.loading_percent.max()), float(net.res_trafo.loading_percent.max()))
    assert option.max_loading_percent == pytest.approx(loading, rel=1e-4)
    # losing the first substation's transformer cuts feeder 1 only: the second substation stays up
    first = next(x for x in report.outages if x.branch == "trafo 0")
    assert 12 not in first.cut_buses and 1 in first.cut_buses
