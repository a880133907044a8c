"""Chain-settled rounds (`funded_only=True`): every accepted offer is paid from a FlexRequest's
escrow, so the payer leaves cover the payee leaves to the micro-euro, under every pricing rule; no
offer is paid below its bid and no request charged above its cap. Without the flag the engine keeps
its proactive mode (the grid's limits and the energy price state the need)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexgrid.market import ClearingOutcome, clear_market, verify
from flexgrid.market.certificate import assignment_from_certificate
from flexgrid.market.clearing import FundedLeaves, funded_allocation_w, funded_leaves, price_to_micro
from flexgrid.trading import FlexOffer, FlexRequest, PricingRule, Trade
from flexgrid.trading.units import eur_to_micro, value_micro_down, value_micro_up
from tests.market.helpers import grid, offer, profiles, request, round_config


def _micro(trades: tuple[Trade, ...], payer: bool) -> int:
    return sum(abs(eur_to_micro(t.payment_eur, signed=True)) for t in trades if (t.payment_eur < 0) == payer)


def _leaves(out: ClearingOutcome) -> dict[tuple[str, int], Trade]:
    return {(out.leaf_order_ids[t.order_id], t.slot): t for t in out.trades}


def _assert_funded(out: ClearingOutcome, orders: list[FlexRequest | FlexOffer]) -> None:
    """Individually rational for every offer and request, and funded to the micro-euro."""
    by_id = {str(o.order_id): o for o in orders}
    for (oid, _), t in _leaves(out).items():
        o = by_id[oid]
        if isinstance(o, FlexOffer):
            assert t.price_micro_per_mwh >= o.price_micro_per_mwh, f"{oid} paid below its bid"
        else:
            assert t.price_micro_per_mwh <= o.price_cap_micro_per_mwh, f"{oid} charged above its cap"
    paid, charged = _micro(out.trades, payer=False), _micro(out.trades, payer=True)
    assert paid > 0
    assert charged >= paid
    assert charged - paid <= 10 * len(out.trades)  # rounding up by a few micro-euros, never more


def test_offer_cheaper_than_energy_is_bought_proactively_but_not_in_a_funded_round() -> None:
    rc = round_config(slots=2, rule=PricingRule.PAY_AS_BID)
    net, view = grid()
    orders = [offer("cheap", 17, 5.0, 100.0, slots=(0, 1))]
    proactive = clear_market(net, profiles(rc), rc, orders, view=view, ac_validation=False, certificate=False)
    assert any(t.payment_eur > 0 for t in proactive.trades)  # bought with nobody paying for it
    funded = clear_market(net, profiles(rc), rc, orders, view=view, ac_validation=False, certificate=False,
                          funded_only=True)
    assert funded.trades == ()
    assert funded.accepted == ()


@pytest.mark.parametrize("rule", [PricingRule.PAY_AS_BID, PricingRule.UNIFORM, PricingRule.DLMP, PricingRule.VCG])
def test_payer_leaves_cover_payee_leaves_under_every_pricing_rule(rule: PricingRule) -> None:
    rc = round_config(slots=2, rule=rule)
    net, view = grid()
    orders: list[FlexRequest | FlexOffer] = [
        request("r1", 14, 150.0, 400.0, slots=(0, 1)),
        request("r2", 6, 60.0, 100.0, slots=(0, 1)),  # a low cap: only "ev" bids below it
        offer("bat", 17, 110.0, 120.0, slots=(0, 1)),
        offer("ev", 16, 95.0, 60.0, slots=(0, 1)),
        offer("far", 5, 20.0, 200.0, slots=(0, 1)),  # cheap, but cannot relieve bus 14's or 6's subtree
    ]
    out = clear_market(net, profiles(rc), rc, orders, view=view, ac_validation=False, funded_only=True)
    _assert_funded(out, orders)
    leaves = _leaves(out)
    offered = {a.order_id for a in out.accepted if a.kind == "offer"}
    assert "far" not in offered  # no request behind it pays for it
    assert ("r2", 0) in leaves  # served, by "ev" alone
    # every W bought is a W some request asked for
    for slot in (0, 1):
        bought = sum(t.power_w for (oid, s), t in leaves.items() if s == slot and oid in ("bat", "ev"))
        served = sum(t.power_w for (oid, s), t in leaves.items() if s == slot and oid in ("r1", "r2"))
        assert bought == served
    assert out.certificate is not None
    check = verify(out.certificate)
    assert check.ok, check.reasons


def test_dlmp_in_a_funded_round_charges_no_request_above_its_cap() -> None:
    """A request that offers cannot fully serve sets the flexibility price to its cap (400); an UP
    offer's locational marginal value adds the energy it displaces (DLMP ~65 EUR/MWh at bus 17):
    ~465 EUR/MWh, which used to be passed on to the request. Funded, the offers get the DLMP
    as far as the cap allows: 400 each, and the request is charged what they are paid."""
    rc = round_config(slots=2, rule=PricingRule.DLMP)
    net, view = grid()
    orders: list[FlexRequest | FlexOffer] = [
        request("r1", 14, 300.0, 400.0, slots=(0, 1)),
        offer("bat", 17, 110.0, 120.0, slots=(0, 1)),
        offer("ev", 16, 95.0, 60.0, slots=(0, 1)),
    ]
    proactive = clear_market(net, profiles(rc), rc, orders, view=view, ac_validation=False, certificate=False)
    unfunded = _leaves(proactive)
    assert unfunded[("bat", 0)].price_eur_per_mwh > 440.0  # the marginal value: above what r1 can pay
    assert unfunded[("r1", 0)].price_eur_per_mwh == pytest.approx(400.0, abs=0.01)
    assert proactive.budget_balance_eur < 0  # the market would pay out more than it takes in

    out = clear_market(net, profiles(rc), rc, orders, view=view, ac_validation=False, funded_only=True)
    _assert_funded(out, orders)
    leaves = _leaves(out)
    for slot in (0, 1):
        assert leaves[("bat", slot)].price_eur_per_mwh == 400.0
        assert leaves[("ev", slot)].price_eur_per_mwh == 400.0
        r1 = leaves[("r1", slot)]
        assert r1.kw == 180.0  # both offers in full
        assert r1.payment_eur == -(leaves[("bat", slot)].payment_eur + leaves[("ev", slot)].payment_eur) == -72.0
        assert 399.99 < r1.price_eur_per_mwh <= 400.0  # the lowest micro-price worth those 72 EUR
    assert out.certificate is not None
    # the auditor's inputs: the certificate names every (offer, request) assignment
    pair_e, pair_q, mw = assignment_from_certificate(out.certificate)
    assert len(pair_e) == len(pair_q) == 4  # 2 offers x 1 request x 2 slots
    assert float(mw.sum()) == pytest.approx(0.36, abs=1e-6)


def test_dlmp_in_a_funded_round_pays_the_marginal_value_when_the_caps_allow_it() -> None:
    """A fully served request: the DLMP set by the marginal offer (its bid, ~110 EUR/MWh) is below
    the cap and paid to every offer serving it, the cheaper one included (not pay-as-bid)."""
    rc = round_config(slots=1, rule=PricingRule.DLMP)
    net, view = grid()
    orders: list[FlexRequest | FlexOffer] = [
        request("r1", 14, 150.0, 400.0),
        offer("bat", 17, 110.0, 120.0),
        offer("ev", 16, 95.0, 60.0),
    ]
    out = clear_market(net, profiles(rc), rc, orders, view=view, ac_validation=False, funded_only=True)
    _assert_funded(out, orders)
    leaves = _leaves(out)
    # the marginal offer ("bat", partly bought) sets the price at its bus: about its bid
    assert leaves[("bat", 0)].kw == 90.0
    assert leaves[("bat", 0)].price_eur_per_mwh == pytest.approx(110.0, abs=0.05)
    assert leaves[("ev", 0)].price_eur_per_mwh == pytest.approx(110.0, abs=0.05)  # not its bid: the DLMP


@pytest.mark.parametrize("rule", [PricingRule.PAY_AS_BID, PricingRule.DLMP])
def test_offer_bidding_above_every_cap_is_not_accepted_in_a_funded_round(rule: PricingRule) -> None:
    """At 430 EUR/MWh the offer costs less than the 400 EUR/MWh request is worth once the energy it
    displaces is counted, so the proactive clearing buys it and charges the request 430; funded, the
    request never pays it."""
    rc = round_config(slots=1, rule=rule)
    net, view = grid()
    orders: list[FlexRequest | FlexOffer] = [request("r1", 14, 300.0, 400.0), offer("dear", 17, 430.0, 120.0),
                                             offer("fair", 16, 95.0, 60.0)]
    proactive = clear_market(net, profiles(rc), rc, orders, view=view, ac_validation=False, certificate=False)
    assert ("dear", 0) in _leaves(proactive)
    out = clear_market(net, profiles(rc), rc, orders, view=view, ac_validation=False, funded_only=True)
    leaves = _leaves(out)
    assert ("dear", 0) not in leaves
    assert "dear" not in {a.order_id for a in out.accepted}
    assert leaves[("fair", 0)].kw == 60.0
    _assert_funded(out, orders)


def test_funded_dlmp_is_the_same_under_permutations() -> None:
    import random

    rc = round_config(slots=1, rule=PricingRule.DLMP)
    net, view = grid()
    orders: list[FlexRequest | FlexOffer] = [request("r1", 14, 150.0, 400.0), request("r2", 6, 60.0, 100.0),
                                             offer("bat", 17, 110.0, 120.0), offer("ev", 16, 95.0, 60.0)]
    first = clear_market(net, profiles(rc), rc, orders, view=view, ac_validation=False, funded_only=True)
    rng = random.Random(5)
    for _ in range(3):
        shuffled = orders[:]
        rng.shuffle(shuffled)
        again = clear_market(net, profiles(rc), rc, shuffled, view=view, ac_validation=False, funded_only=True)
        assert again.merkle_root == first.merkle_root
        assert again.certificate is not None and first.certificate is not None
        assert json.loads(again.certificate.to_json()) == json.loads(first.certificate.to_json())


# ------------------------------------------------------------------ the funded rule alone, on integers


def _funded_case(bids: list[float], caps: list[float], request_w: list[int], served_w: list[list[int]],
                 rule_prices: list[float], slot_s: int, rule: PricingRule) -> tuple[FundedLeaves, list[FlexOffer],
                                                                                      list[FlexRequest]]:
    """Offers (one slot each, all in slot 0) and one-slot requests; `served_w[e][q]` W of offer e for
    request q, kept only where the clearing would pair them (cap >= bid)."""
    offers = [offer(f"o{e}", 17, b, max(sum(served_w[e]), 1) / 1000) for e, b in enumerate(bids)]
    requests = [request(f"r{q}", 14, w / 1000, c) for q, (w, c) in enumerate(zip(request_w, caps, strict=True))]
    pe, pq, pw = [], [], []
    for e, row in enumerate(served_w):
        for q, w_ in enumerate(row):
            if offers[e].price_micro_per_mwh <= requests[q].price_cap_micro_per_mwh:
                pe.append(e)
                pq.append(q)
                pw.append(w_)
    arr = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
    w = funded_allocation_w(arr(pe), arr(pq), np.array(pw, dtype=float) / 1e6,
                            [o.max_power_w[0] for o in offers], [r.power_w[0] for r in requests])
    fl = funded_leaves(rule, offers, requests, [(e, 0) for e in range(len(offers))],
                       [(q, 0) for q in range(len(requests))], arr(pe), arr(pq), w, slot_s,
                       [price_to_micro(p) for p in rule_prices])
    return fl, offers, requests


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_funded_leaves_are_individually_rational_capped_and_funded(data: st.DataObject) -> None:
    n_off, n_req = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    price = st.decimals(min_value=0, max_value=500, places=6).map(float)
    watts = st.integers(0, 300_000)
    bids = [data.draw(price) for _ in range(n_off)]
    caps = [data.draw(price) for _ in range(n_req)]
    served = [[data.draw(watts) for _ in range(n_req)] for _ in range(n_off)]
    request_w = [max(sum(served[e][q] for e in range(n_off)), 1) for q in range(n_req)]
    rule = data.draw(st.sampled_from(list(PricingRule)))
    rule_prices = [data.draw(st.floats(-100, 900)) for _ in range(n_off)]
    slot_s = data.draw(st.sampled_from([900, 1800, 3600]))
    fl, offers, requests = _funded_case(bids, caps, request_w, served, rule_prices, slot_s, rule)
    paid = charged = 0
    for e, o in enumerate(offers):
        if fl.offer_w[e]:
            assert fl.offer_price_micro[e] >= o.price_micro_per_mwh
            paid += value_micro_down(fl.offer_w[e], slot_s, fl.offer_price_micro[e])
    for q, r in enumerate(requests):
        if fl.request_w[q]:
            assert fl.request_price_micro[q] <= r.price_cap_micro_per_mwh
            value = value_micro_up(fl.request_w[q], slot_s, fl.request_price_micro[q])
            assert value <= r.budget_micro(slot_s)  # within its escrow
            charged += value
    assert charged >= paid
    assert sum(fl.offer_w) == sum(fl.request_w)


def test_a_request_served_in_full_at_its_cap_is_charged_within_its_escrow() -> None:
    """150.001 kW at 250 EUR/MWh for 15 min is worth 9,375,062.5 micro-euros per slot: rounded up in
    each of 4 slots, 2 micro-euros more than the escrow (rounded up once); the last two slots are
    rounded down instead."""
    rc = round_config(slots=4, slot_s=900)
    req = request("r", 14, 150.001, 250.0, slots=(0, 1, 2, 3))
    off = offer("o", 17, 250.0, 150.001, slots=(0, 1, 2, 3))
    entries = [(0, k) for k in range(4)]
    pairs = np.arange(4, dtype=np.int64)
    fl = funded_leaves(PricingRule.DLMP, [off], [req], entries, entries, pairs, pairs,
                       np.full(4, 150_001, dtype=np.int64), rc.slot_seconds, [price_to_micro(310.0)] * 4)
    assert fl.offer_price_micro == (250_000_000,) * 4  # the DLMP of 310 clamped to the cap
    charges = [value_micro_up(w, 900, p) for w, p in zip(fl.request_w, fl.request_price_micro, strict=True)]
    assert charges == [9_375_063, 9_375_063, 9_375_062, 9_375_062]
    assert sum(charges) == req.budget_micro(900) == 37_500_250
    assert sum(charges) >= 4 * value_micro_down(150_001, 900, 250_000_000)
