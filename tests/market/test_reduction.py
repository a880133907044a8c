"""The exact network reduction (`flexgrid.grid.reduction`) in the clearing: reduced and unreduced
clearings give the same optimum, accepted set, voltages and DLMPs at every bus; an eliminated bus
whose voltage limit binds is re-included; the reduction is deterministic."""

from __future__ import annotations

import random
from functools import cache

import numpy as np
import pandapower as pp
import pytest

from flexgrid.grid import GridView, Profiles, build_view, synthetic_profiles
from flexgrid.grid.reduction import reduce_view
from flexgrid.market import clear_market, verify
from flexgrid.market.certificate import dlmp_from_duals
from flexgrid.market.clearing import ClearingOutcome, keep_nodes
from flexgrid.trading import Order, PricingRule, RoundConfig, SealMode
from tests.market.helpers import EVENING_S, grid, offer, request

LOADS_KW = {1: 10.0, 5: 60.0, 6: 60.0}


def _chain_net(v_min_bus3: float = 0.95) -> pp.pandapowerNet:
    """0.4 kV feeder: 0 (slack) - 1 (load) - 2 - 3 - 4 (junction) - {5, 6} (loads), with a dangling
    branch 2 - 7 - 8 and a dangling leaf 6 - 9; 2 and 3 are series buses, 7, 8, 9 dangling."""
    net = pp.create_empty_network(sn_mva=1.0)
    for b in range(10):
        # bus 9 (a cable end) has a looser limit, so its prices are unique when bus 6's limit binds
        v_min = {3: v_min_bus3, 9: 0.9}.get(b, 0.95)
        pp.create_bus(net, vn_kv=0.4, index=b, min_vm_pu=v_min, max_vm_pu=1.05)
    pp.create_ext_grid(net, 0, vm_pu=1.0)
    for f, t, km in ((0, 1, 0.1), (1, 2, 0.1), (2, 3, 0.12), (3, 4, 0.08), (4, 5, 0.05), (4, 6, 0.06), (2, 7, 0.05),
                     (7, 8, 0.05), (6, 9, 0.04)):
        pp.create_line_from_parameters(net, f, t, length_km=km, r_ohm_per_km=0.206, x_ohm_per_km=0.08,
                                       c_nf_per_km=0.0, max_i_ka=0.27)
    for b, kw in LOADS_KW.items():
        pp.create_load(net, b, p_mw=kw / 1e3, q_mvar=kw / 4e3)
    return net


@cache
def _chain_case() -> tuple[pp.pandapowerNet, GridView]:
    net = _chain_net()
    return net, build_view(net, "chain")


def _round(view: GridView, slots: int, name: str) -> RoundConfig:
    return RoundConfig(round_id=7, grid_id=name, grid_model_hash=view.model_hash(), slot_start_s=EVENING_S,
                       slot_seconds=3600, slot_count=slots, gate_closure_s=EVENING_S - 900,
                       pricing_rule=PricingRule.DLMP, seal_mode=SealMode.OPEN, dispute_window_s=600,
                       price_cap_eur_per_mwh=1000.0, tolerance_bps=500, penalty_bps=1000, bid_deposit_eur=10.0)


def _chain_profiles(view: GridView, scale: tuple[float, ...] = (1.0, 0.7)) -> Profiles:
    p = np.zeros((view.n_node, len(scale)))
    for b, kw in LOADS_KW.items():
        p[view.node(b)] = kw / 1e3 * np.asarray(scale)
    return Profiles(load_p_mw=p, load_q_mvar=p / 4, pv_p_mw=np.zeros_like(p))


def _both(net: pp.pandapowerNet, view: GridView, prof: Profiles, rc: RoundConfig, orders: list,
          **kw: object) -> tuple[ClearingOutcome, ClearingOutcome]:
    args = dict(wholesale_eur_per_mwh=60.0, view=view, ac_validation=False, **kw)
    return (clear_market(net, prof, rc, orders, reduce_network=True, **args),  # type: ignore[arg-type]
            clear_market(net, prof, rc, orders, reduce_network=False, **args))  # type: ignore[arg-type]


def _assert_same(red: ClearingOutcome, full: ClearingOutcome, v_tol: float = 1e-6, price_tol: float = 1e-3) -> None:
    assert red.objective_eur == pytest.approx(full.objective_eur, rel=1e-6)
    acc_r = {(a.order_id, a.slot): a.mw for a in red.accepted}
    acc_f = {(a.order_id, a.slot): a.mw for a in full.accepted}
    assert acc_r.keys() == acc_f.keys()
    for key, mw in acc_f.items():
        assert acc_r[key] == pytest.approx(mw, abs=1e-5)
    assert red.dispatch is not None and full.dispatch is not None
    assert red.dispatch.v_pu is not None and full.dispatch.v_pu is not None
    # every bus, eliminated ones reconstructed from the DistFlow relations
    np.testing.assert_allclose(red.dispatch.v_pu, full.dispatch.v_pu, atol=v_tol)
    np.testing.assert_allclose(red.dlmp_eur_per_mwh, full.dlmp_eur_per_mwh, atol=price_tol)
    np.testing.assert_allclose(red.dispatch.withdrawal_p_mw, full.dispatch.withdrawal_p_mw, atol=1e-7)
    for comp in full.components:  # they add up to the DLMP at every bus
        assert red.components[comp].shape == full.components[comp].shape
    np.testing.assert_allclose(sum(red.components.values()), red.dlmp_eur_per_mwh, atol=price_tol)
    assert red.certificate is not None and verify(red.certificate).ok
    # the auditor's prices from the certificate's duals: the reduced clearing's, at every bus
    np.testing.assert_allclose(dlmp_from_duals(red.certificate), red.dlmp_eur_per_mwh, atol=2e-6)


def test_reduce_view_eliminates_series_and_dangling_buses() -> None:
    net = _chain_net()
    view = build_view(net, "chain")
    red = reduce_view(view, {view.node(b) for b in LOADS_KW})
    kept_buses = sorted(int(b) for b in red.reduced.bus_of_node)
    assert kept_buses == [0, 1, 4, 5, 6]  # 2, 3 in series; 7, 8, 9 dangling
    assert sorted(int(view.bus_of_node[n]) for n, _, _ in red.dangling) == [7, 8, 9]
    k = next(i for i, c in enumerate(red.chains) if c.inner)
    lines = [int(view.branch_element[b]) for b in red.chains[k].branches]
    assert lines == [1, 2, 3]
    assert red.reduced.r_pu[k] == pytest.approx(view.r_pu[list(red.chains[k].branches)].sum())
    assert red.reduced.x_pu[k] == pytest.approx(view.x_pu[list(red.chains[k].branches)].sum())
    assert red.reduced.n_branch == 4
    # flows of every original branch: the chain's segments carry P - (r of the segments before) l
    p, q, l_ = np.full((red.reduced.n_branch, 1), 0.5), np.full((red.reduced.n_branch, 1), 0.2), np.full(
        (red.reduced.n_branch, 1), 0.3)
    pf, qf, lf = red.expand_flows(p, q, l_)
    b1, b2, _ = red.chains[k].branches
    assert lf is not None and lf[b2, 0] == 0.3
    assert pf[b2, 0] == pytest.approx(0.5 - view.r_pu[b1] * 0.3) and qf[b2, 0] == pytest.approx(0.2 - view.x_pu[b1] * 0.3)
    assert all(pf[b, 0] == 0 for _, _, b in red.dangling)
    # an order at a series bus keeps it (and the rest of its chain merges around it)
    red2 = reduce_view(view, {view.node(b) for b in (*LOADS_KW, 3)})
    assert sorted(int(b) for b in red2.reduced.bus_of_node) == [0, 1, 3, 4, 5, 6]


@pytest.mark.parametrize("formulation", ["socp", "lindistflow"])
def test_reduced_clearing_equals_the_unreduced_one_on_a_chain_with_a_dangling_branch(formulation: str) -> None:
    net, view = _chain_case()
    rc = _round(view, 2, "chain")
    prof = _chain_profiles(view)
    orders = [offer("a", 5, 150.0, 40.0, (0, 1)), offer("b", 6, 140.0, 40.0, (0, 1)), offer("c", 1, 40.0, 5.0, (0,))]
    red, full = _both(net, view, prof, rc, orders, formulation=formulation)
    assert red.reduced_nodes == 5 and full.reduced_nodes is None
    assert any("(1 solve)" in n for n in red.notes)
    assert any(a.order_id == "a" for a in full.accepted), "the voltage limit at the end binds: flexibility is bought"
    assert red.violations == full.violations == []
    _assert_same(red, full)
    # the DLMP of the series buses differs from both of their neighbours': it is not copied
    d = full.dlmp_eur_per_mwh
    n1, n2, n3, n4 = (view.node(b) for b in (1, 2, 3, 4))
    assert abs(d[n2, 0] - d[n1, 0]) > 0.1 and abs(d[n3, 0] - d[n4, 0]) > 0.1
    if formulation != "socp":
        return
    # the AC check of the reduced clearing runs on the full net, all buses
    ac = clear_market(net, prof, rc, orders, wholesale_eur_per_mwh=60.0, view=view).ac
    assert ac is not None and ac.max_v_error_pu is not None and ac.max_v_error_pu < 1e-4


def test_an_eliminated_bus_whose_voltage_limit_binds_is_re_included() -> None:
    net = _chain_net(v_min_bus3=0.975)  # tighter than its neighbours' 0.95
    view = build_view(net, "chain")
    rc = _round(view, 2, "chain")
    prof = _chain_profiles(view)
    orders = [offer("a", 5, 150.0, 60.0, (0, 1)), offer("b", 6, 140.0, 60.0, (0, 1))]
    red, full = _both(net, view, prof, rc, orders)
    assert any("2 solves" in n for n in red.notes)
    assert red.reduced_nodes == 6  # bus 3 came back
    assert full.dispatch is not None and full.dispatch.v_pu is not None
    assert full.dispatch.v_pu[view.node(3), 0] == pytest.approx(0.975, abs=1e-5)  # it binds in the full problem
    _assert_same(red, full)
    # without the re-inclusion the reduced problem would have broken the limit at bus 3
    one = reduce_view(view, keep_nodes(view, prof, orders, None))
    assert view.node(3) in np.flatnonzero(one.node_map < 0)


def test_ieee_european_lv_reduced_and_unreduced_clearings_agree() -> None:
    net, view = grid("ieee_european_lv")
    rc = _round(view, 3, "ieee_european_lv")
    prof = synthetic_profiles(net, view, slot_start_s=rc.slot_start_s, slot_seconds=rc.slot_seconds,
                              slot_count=rc.slot_count, load_scale=1.5)
    load_buses = sorted(int(b) for b in net.load.bus)
    rng = np.random.default_rng(4)
    orders = [offer(f"o{i}", int(rng.choice(load_buses)), round(float(rng.uniform(40, 80)), 2), round(float(rng.uniform(1, 6)), 3),
                    (0, 1, 2)) for i in range(12)]
    red, full = _both(net, view, prof, rc, orders)
    assert red.reduced_nodes is not None and red.reduced_nodes < view.n_node / 5
    assert red.accepted, "offers below the wholesale price are bought"
    _assert_same(red, full, v_tol=1e-6, price_tol=1e-3)


def test_the_reduction_does_not_depend_on_the_order_of_the_orders() -> None:
    net, view = _chain_case()
    rc = _round(view, 2, "chain")
    prof = _chain_profiles(view)
    orders = [offer("a", 5, 150.0, 40.0, (0, 1)), offer("b", 6, 140.0, 40.0, (0, 1)), offer("c", 1, 40.0, 5.0, (0,)),
              offer("d", 4, 145.0, 10.0, (0,))]
    first = clear_market(net, prof, rc, orders, wholesale_eur_per_mwh=60.0, view=view, ac_validation=False)
    assert first.certificate is not None and "price_nodes" in first.certificate.doc
    for seed in range(3):
        shuffled = orders[:]
        random.Random(seed).shuffle(shuffled)
        again = clear_market(net, prof, rc, shuffled, wholesale_eur_per_mwh=60.0, view=view, ac_validation=False)
        assert again.certificate_hash == first.certificate_hash
        assert again.merkle_root == first.merkle_root
    red_a = reduce_view(view, [view.node(b) for b in (5, 1, 6)])
    red_b = reduce_view(view, [view.node(b) for b in (6, 5, 1)])
    assert red_a.reduced.model_hash() == red_b.reduced.model_hash()


def test_the_auditor_checks_a_reduced_funded_clearing_from_its_certificate() -> None:
    from flexgrid.audit.verify import _check_certificate, _check_funded

    net, view = _chain_case()
    rc = _round(view, 2, "chain")
    prof = _chain_profiles(view)
    orders: list[Order] = [offer("a", 5, 150.0, 40.0, (0, 1)), offer("b", 6, 140.0, 40.0, (0, 1)),
                           request("r", 4, 50.0, 400.0, (0, 1))]
    out = clear_market(net, prof, rc, orders, wholesale_eur_per_mwh=60.0, view=view, ac_validation=False,
                       funded_only=True)
    assert out.reduced_nodes == 5 and out.trades
    assert out.certificate is not None and out.certificate_hash is not None
    doc = {"certificate": out.certificate.doc, "dlmp": {"eurPerMwh": out.dlmp_eur_per_mwh.tolist()},
           "clearing": {"wholesaleEurPerMwh": [60.0, 60.0], "formulation": "socp",
                        "pricingRule": int(PricingRule.DLMP), "fundedOnly": True}}
    assert _check_certificate(doc, {"certificateHash": out.certificate_hash}, rc, orders) == []
    assert _check_funded(doc, out.trades, orders, rc, view) == []
    # a price raised in the duals at an offer's bus is caught: the auditor's prices come from the duals
    pos = list(out.certificate.doc["price_nodes"]).index(view.node(5))  # bus 5's row among the solved nodes
    bad = {**out.certificate.doc, "z": {**out.certificate.doc["z"]}}
    bal = list(bad["z"]["balance_p"])
    bal[pos] *= 1.1  # slot 0 (rows are slot * nodes + node)
    bad["z"]["balance_p"] = bal
    assert _check_funded({**doc, "certificate": bad}, out.trades, orders, rc, view)


def test_vcg_prices_are_the_same_on_the_reduced_network() -> None:
    net, view = _chain_case()
    rc = _round(view, 2, "chain")
    prof = _chain_profiles(view)
    orders = [offer("a", 5, 150.0, 40.0, (0, 1)), offer("b", 6, 140.0, 40.0, (0, 1))]
    red, full = _both(net, view, prof, rc, orders, pricing=PricingRule.VCG)
    assert red.reduced_nodes == 5 and red.trades
    by_r = {(t.order_id, t.slot): t for t in red.trades}
    by_f = {(t.order_id, t.slot): t for t in full.trades}
    assert by_r.keys() == by_f.keys()
    for key, t in by_f.items():
        assert by_r[key].kw == pytest.approx(t.kw, abs=2e-3)
        assert by_r[key].price_eur_per_mwh == pytest.approx(t.price_eur_per_mwh, rel=1e-4)
