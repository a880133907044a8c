"""Chain-settled rounds (`funded_only=True`): every accepted offer is paid from a FlexRequest's
escrow, so the payer leaves cover the payee leaves to the micro-euro, under every pricing rule; no
offer is paid below its bid and no request charged above its cap. Without the flag the engine keeps
its proactive mode (the grid's limits and the energy price state the need)."""

from __future__ import annotations

import json

import pytest

from flexgrid.market import ClearingOutcome, clear_market, verify
from flexgrid.market.certificate import assignment_from_certificate
from flexgrid.trading import FlexOffer, FlexRequest, PricingRule, Trade
from flexgrid.trading.units import eur_to_micro
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
    as far as the cap allows: 400 each, and the request is charged exactly its cap."""
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
        assert leaves[("r1", slot)].price_eur_per_mwh == 400.0
        assert leaves[("r1", slot)].kw == 180.0  # both offers in full
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
