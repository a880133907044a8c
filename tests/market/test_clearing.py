"""The clearing: pricing rules by hand, P2P network charges, proactive mode, soft limits, options."""

from __future__ import annotations

import numpy as np
import pytest

from flexgrid.market import clear_market
from flexgrid.trading import Order, PricingRule, Side
from tests.market.helpers import grid, offer, p2p, profiles, request, round_config


def _by_order(outcome):  # type: ignore[no-untyped-def]
    return {(outcome.leaf_order_ids[t.order_id], t.slot): t for t in outcome.trades}


# One slot of one hour on a copper plate at 50 EUR/MWh. The DSO asks for 100 kW UP at bus 5
# (cap 200); offers a (60 kW at 80) and b (60 kW at 120) sit at bus 5. Cheapest cover: all of a,
# 40 kW of b. b is marginal: the flexibility price is 120 - 50 (energy it saves) = 70.
HAND = {
    PricingRule.PAY_AS_BID: {"a": (60, 80.0, 4.8), "b": (40, 120.0, 4.8), "r": (100, 96.0, -9.6)},
    PricingRule.UNIFORM: {"a": (60, 120.0, 7.2), "b": (40, 120.0, 4.8), "r": (100, 120.0, -12.0)},
    PricingRule.DLMP: {"a": (60, 120.0, 7.2), "b": (40, 120.0, 4.8), "r": (100, 70.0, -7.0)},
    # VCG: without a, b covers 60 kW only: a is paid 80*0.06 + (-7.8 - -15.4) = 12.4 EUR; without
    # b, a covers 60 kW: b is paid 120*0.04 + (-10.2 - -15.4) = 10.0 EUR.
    PricingRule.VCG: {"a": (60, 12.4 / 0.06, 12.4), "b": (40, 250.0, 10.0), "r": (100, 70.0, -7.0)},
}


@pytest.mark.parametrize("rule", list(PricingRule))
def test_pricing_rules_on_a_case_checked_by_hand(rule: PricingRule) -> None:
    net, _ = grid()
    rc = round_config(slots=1, rule=rule)
    orders: list[Order] = [offer("a", 5, 80.0, 60.0), offer("b", 5, 120.0, 60.0), request("r", 5, 100.0, 200.0)]
    out = clear_market(net, profiles(rc), rc, orders, wholesale_eur_per_mwh=50.0, formulation="copperplate",
                       ac_validation=False)
    trades = _by_order(out)
    assert set(trades) == {("a", 0), ("b", 0), ("r", 0)}
    for oid, (kw, price, payment) in HAND[rule].items():
        t = trades[(oid, 0)]
        assert t.kw == pytest.approx(kw, abs=1e-3)
        assert t.price_eur_per_mwh == pytest.approx(price, abs=1e-3)
        assert t.payment_eur == pytest.approx(payment, abs=1e-3)
    if rule == PricingRule.VCG:
        assert out.timings_s["vcg_s"] > 0


def test_p2p_buyer_pays_the_seller_price_plus_the_dlmp_difference() -> None:
    net, view = grid()
    rc = round_config(slots=1)
    orders = [p2p("sell", 2, Side.SELL, 60.0, 20.0), p2p("buy", 17, Side.BUY, 40.0, 150.0)]
    out = clear_market(net, profiles(rc), rc, orders, wholesale_eur_per_mwh=60.0, ac_validation=False)
    t = _by_order(out)
    buy, sell = t[("buy", 0)], t[("sell", 0)]
    assert buy.kw == pytest.approx(40.0, abs=1e-3) and sell.kw == pytest.approx(40.0, abs=1e-3)
    charge = out.dlmp_eur_per_mwh[view.node(17), 0] - out.dlmp_eur_per_mwh[view.node(2), 0]
    assert charge > 0.5  # the end of the feeder is dearer
    assert buy.price_eur_per_mwh - sell.price_eur_per_mwh == pytest.approx(charge, abs=1e-4)
    assert sell.price_eur_per_mwh >= 20.0 - 1e-6 and buy.price_eur_per_mwh <= 150.0 + 1e-6
    assert buy.payment_eur < 0 < sell.payment_eur


def test_without_requests_or_congestion_no_flexibility_is_bought() -> None:
    net, _ = grid()
    rc = round_config()
    orders = [offer("a", 17, 100.0, 200.0, (0, 1, 2, 3)), offer("b", 30, 90.0, 200.0, (0, 1, 2, 3))]
    out = clear_market(net, profiles(rc, load=1.0), rc, orders, wholesale_eur_per_mwh=60.0, ac_validation=False)
    assert out.trades == ()
    assert out.violations == []


def test_proactive_mode_buys_flexibility_where_the_grid_needs_it() -> None:
    net, view = grid()
    rc = round_config()
    prof = profiles(rc, load=1.6)
    alone = clear_market(net, prof, rc, [], wholesale_eur_per_mwh=60.0, ac_validation=False)
    assert alone.violations, "1.6x the evening load takes case33bw below 0.90 pu"
    orders = [offer("end", 17, 150.0, 300.0, (0, 1, 2, 3)), offer("head", 1, 100.0, 300.0, (0, 1, 2, 3))]
    out = clear_market(net, prof, rc, orders, wholesale_eur_per_mwh=60.0, ac_slots=[1, 2])
    kw = {(a.order_id, a.slot): a.mw * 1e3 for a in out.accepted}
    assert kw[("end", 1)] == pytest.approx(300.0, abs=0.1)  # the end of the feeder relieves the voltage most
    assert kw.get(("head", 1), 0.0) < kw[("end", 1)]
    assert out.dlmp_eur_per_mwh[view.node(17), 1] > out.dlmp_eur_per_mwh[view.node(1), 1] + 10.0
    assert sum(v.amount for v in out.violations) < sum(v.amount for v in alone.violations)
    assert out.ac is not None and out.ac.max_v_error_pu is not None and out.ac.max_v_error_pu < 1e-4


def test_an_overloaded_grid_still_clears_and_reports_its_violations() -> None:
    net, _ = grid()
    rc = round_config(slots=2)
    out = clear_market(net, profiles(rc, load=2.0), rc, [offer("a", 17, 100.0, 50.0)], wholesale_eur_per_mwh=60.0,
                       ac_slots=[0])
    assert out.violations
    assert any(x.kind == "thermal" for x in out.violations)  # the feeder head's 205 A bay overloads too
    v = max((x for x in out.violations if x.unit == "pu"), key=lambda x: x.amount)
    assert (v.kind, v.element, v.unit) == ("v_min", "bus 17", "pu") and v.amount > 0.01
    assert out.ac is not None and not out.ac.ok and any("below its limit" in f for f in out.ac.flags)


def test_exclusive_options_are_mutually_exclusive_and_the_gap_is_reported() -> None:
    net, _ = grid()
    rc = round_config(slots=1)
    group = "0x" + "ab" * 32
    asset = "0x" + "cd" * 32
    orders: list[Order] = [offer("opt1", 17, 100.0, 300.0, exclusive_group=group, asset_id=asset),
                           offer("opt2", 17, 110.0, 300.0, exclusive_group=group, asset_id=asset),
                           request("r", 17, 500.0, 400.0)]
    out = clear_market(net, profiles(rc), rc, orders, wholesale_eur_per_mwh=60.0, formulation="lindistflow",
                       ac_validation=False)
    accepted = {a.order_id for a in out.accepted if a.kind == "offer"}
    assert len(accepted) == 1
    assert out.mip_gap is not None and out.mip_gap <= 1e-4


def test_minimum_activation_accepts_all_or_nothing() -> None:
    net, _ = grid()
    rc = round_config(slots=1)
    need = request("r", 17, 100.0, 400.0)
    divisible = clear_market(net, profiles(rc), rc, [offer("o", 17, 100.0, 300.0), need],
                             wholesale_eur_per_mwh=60.0, formulation="lindistflow", ac_validation=False)
    assert _by_order(divisible)[("o", 0)].kw == pytest.approx(100.0, abs=1e-2)
    for formulation in ("lindistflow", "socp"):
        block = clear_market(net, profiles(rc), rc, [offer("o", 17, 100.0, 300.0, min_activation=1.0), need],
                             wholesale_eur_per_mwh=60.0, formulation=formulation, ac_validation=False)
        assert _by_order(block)[("o", 0)].kw == pytest.approx(300.0, abs=1e-2)
        assert block.mip_gap is not None
        assert (formulation == "socp") == bool(block.notes)


def test_accepted_offers_never_lose_money_under_dlmp_and_uniform() -> None:
    net, _ = grid()
    rc = round_config()
    offers = [offer(f"o{i}", bus, price, 120.0, (0, 1, 2, 3)) for i, (bus, price) in
              enumerate([(17, 90.0), (16, 120.0), (32, 140.0), (30, 95.0), (12, 200.0)])]
    orders: list[Order] = [*offers, request("r", 12, 150.0, 500.0, (1, 2))]
    for rule in (PricingRule.DLMP, PricingRule.UNIFORM):
        out = clear_market(net, profiles(rc, load=1.5), rc, orders, wholesale_eur_per_mwh=60.0, pricing=rule,
                           ac_validation=False)
        bids = {o.order_id: o.price_eur_per_mwh for o in offers}
        for t in out.trades:
            oid = out.leaf_order_ids[t.order_id]
            if oid in bids:
                assert t.price_eur_per_mwh >= bids[oid] - 1e-3, (rule, oid)
        assert np.all(np.isfinite(out.dlmp_eur_per_mwh))
