"""The settlement preview credits every account exactly what the FlexMarket credits it on anvil."""

from __future__ import annotations

import pytest

from flexgrid.settlement import (
    check_conservation,
    escrow_micro,
    meter_readings,
    preview_settlement,
    simulate_metering,
)
from flexgrid.settlement.metering import SameSlotAverage
from flexgrid.trading import ClearingResult, Direction, FlexOffer, FlexRequest, Trade
from flexgrid.trading.merkle import MeteringTree, TradeTree
from flexgrid.trading.units import (
    eur_per_mwh_to_micro,
    kw_to_w,
    micro_to_eur,
    value_micro_down,
    value_micro_up,
)
from tests.conftest import MarketEnv

pytestmark = pytest.mark.chain
SLOTS = (0, 1, 2)


def _trade(round_id: int, who: str, order_id: str, slot: int, kw: float, price: float, pays: bool) -> Trade:
    w, p = kw_to_w(kw), eur_per_mwh_to_micro(price)
    micro = -value_micro_up(w, 900, p) if pays else value_micro_down(w, 900, p)
    return Trade(round_id=round_id, participant=who, order_id=order_id, slot=slot, kw=kw, price_eur_per_mwh=price,
                 payment_eur=micro_to_eur(micro))


def test_preview_matches_the_contracts_credits_with_an_under_delivering_provider(market: MarketEnv) -> None:
    op = market.client()
    cfg = op.create_round(market.round_config(bid_deposit_eur=2.0, penalty_bps=10_000, tolerance_bps=500))
    dso = market.client(market.dso)
    request = dso.submit_request(FlexRequest(round_id=cfg.round_id, bus=5, direction=Direction.UP, slots=SLOTS,
                                             kw=(120.0,) * 3, price_cap_eur_per_mwh=250.0))
    good, lazy = market.providers[0], market.providers[1]
    offers: list[FlexOffer] = []
    for provider, price in ((good, 90.0), (lazy, 120.0)):
        market.client(provider).deposit_bid(cfg.round_id)
        offer = FlexOffer(provider=provider.address, round_id=cfg.round_id, bus=5, asset_id="0x" + "ab" * 32,
                          direction=Direction.UP, slots=SLOTS, min_kw=(0.0,) * 3, max_kw=(60.0,) * 3,
                          price_eur_per_mwh=price, nonce=cfg.round_id << 64, expiry_s=cfg.gate_closure_s)
        signed = offer.sign(provider, market.deployment.domain)
        op.submit_offer(signed)
        offers.append(offer.model_copy(update={"order_id": signed.order_hash}))
    trades: list[Trade] = []
    for slot in SLOTS:  # pay as bid: each offer 60 kW, the DSO pays the volume-weighted bid
        for o in offers:
            trades.append(_trade(cfg.round_id, o.provider, str(o.order_id), slot, 60.0, o.price_eur_per_mwh, False))
        trades.append(_trade(cfg.round_id, market.dso.address, str(request.order_id), slot, 120.0, 105.0, True))
    tree = TradeTree(trades)
    market.time_travel(cfg.gate_closure_s)
    market.client(market.oracle).commit_clearing(ClearingResult(
        round_id=cfg.round_id, trades=tuple(trades), merkle_root=tree.root, input_hash="0x" + "01" * 32,
        certificate_hash="0x" + "02" * 32))
    dso.approve_result(cfg.round_id)

    meters = simulate_metering(cfg, trades, offers, seed=5, noise_pu=0.0, delivery_factor={lazy.address: 0.3})
    readings = meter_readings(cfg, trades, offers, meters, SameSlotAverage())
    preview = preview_settlement(cfg, trades, readings, dso=market.dso.address,
                                 escrow=escrow_micro(cfg, [request]),
                                 deposits={good.address: cfg.bid_deposit_micro, lazy.address: cfg.bid_deposit_micro})
    check_conservation(preview)
    assert preview.deposit_penalties_micro > 0  # the lazy provider's penalty reaches into its deposit

    accounts = [market.dso, good, lazy]
    before = {a.address: op.balance_of_micro(a.address) for a in accounts}
    market.time_travel(cfg.slot_end_s)
    mtree = MeteringTree(readings)
    market.client(market.metering).commit_metering(cfg.round_id, mtree.root)
    for t in trades:
        if t.payment_micro < 0:
            op.claim_charge(t, tree.proof(t))
    for r in readings:
        t = next(x for x in trades if (x.order_id, x.slot) == (r.order_id, r.slot))
        op.claim_payment(t, tree.proof(t), r.delivered_kw, mtree.proof(r))
    market.time_travel(cfg.slot_end_s + 2 * cfg.settlement_s)
    op.close_round(cfg.round_id)
    for a in accounts:
        escrow, charged = op.escrow_of_micro(cfg.round_id, a.address)
        if escrow - charged + op.deposit_of_micro(cfg.round_id, a.address) > 0:
            op.release(cfg.round_id, a.address)
    credited = {a.address.lower(): op.balance_of_micro(a.address) - before[a.address] for a in accounts}
    assert credited == {a.address.lower(): preview.credits_micro.get(a.address.lower(), 0) for a in accounts}
    assert credited[lazy.address.lower()] == 0 and credited[good.address.lower()] > cfg.bid_deposit_micro
