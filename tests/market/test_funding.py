"""Chain-settled rounds (`funded_only=True`): every accepted offer is paid from a FlexRequest's
escrow, so the payer leaves cover the payee leaves to the micro-euro, under every pricing rule.
Without the flag the engine keeps its proactive mode (the grid's limits and the energy price
state the need)."""

from __future__ import annotations

import pytest

from flexgrid.market import clear_market, verify
from flexgrid.trading import PricingRule, Trade
from flexgrid.trading.units import eur_to_micro
from tests.market.helpers import grid, offer, profiles, request, round_config


def _micro(trades: tuple[Trade, ...], payer: bool) -> int:
    return sum(abs(eur_to_micro(t.payment_eur, signed=True)) for t in trades if (t.payment_eur < 0) == payer)


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
    orders = [
        request("r1", 14, 150.0, 400.0, slots=(0, 1)),
        offer("bat", 17, 110.0, 120.0, slots=(0, 1)),
        offer("ev", 16, 95.0, 60.0, slots=(0, 1)),
        offer("far", 5, 20.0, 200.0, slots=(0, 1)),  # cheap, but cannot relieve bus 14's subtree
    ]
    out = clear_market(net, profiles(rc), rc, orders, view=view, ac_validation=False, funded_only=True)
    paid = _micro(out.trades, payer=False)
    charged = _micro(out.trades, payer=True)
    assert paid > 0
    assert charged >= paid
    assert charged - paid <= 10 * len(out.trades)  # rounding up by a few micro-euros, never more
    offered = {a.order_id for a in out.accepted if a.kind == "offer"}
    assert "far" not in offered  # no request behind it pays for it
    # every kW bought is a kW some request asked for
    for slot in (0, 1):
        bought = sum(a.mw for a in out.accepted if a.kind == "offer" and a.slot == slot)
        served = sum(a.mw for a in out.accepted if a.kind == "request" and a.slot == slot)
        assert bought == pytest.approx(served, abs=1e-6)
    assert out.certificate is not None
    check = verify(out.certificate)
    assert check.ok, check.reasons
