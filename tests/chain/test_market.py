"""The typed market wrappers against the real contracts on anvil: a whole round, and typed reverts."""

from __future__ import annotations

import pytest

from flexgrid.errors import ContractRevert, SignatureError
from flexgrid.trading import (
    Direction,
    FlexOffer,
    FlexRequest,
    MeterReading,
    P2POrder,
    RoundState,
    Side,
    Trade,
)
from flexgrid.trading.canonical import input_hash
from flexgrid.trading.eip712 import Eip712Domain
from flexgrid.trading.merkle import MeteringTree, TradeTree, trade_leaf_hash
from flexgrid.trading.models import ClearingResult
from tests.conftest import MarketEnv

pytestmark = pytest.mark.chain

ASSET = "0x" + "a5" * 32


def make_offer(env: MarketEnv, round_id: int, provider_index: int = 0, **over: object) -> FlexOffer:
    provider = env.providers[provider_index]
    base: dict[str, object] = dict(
        provider=provider.address,
        round_id=round_id,
        bus=7,
        asset_id=ASSET,
        direction=Direction.UP,
        slots=(0, 1),
        min_kw=(0.0, 0.0),
        max_kw=(50.0, 40.0),
        price_eur_per_mwh=100.0,
        nonce=(round_id << 64) | 0,
        expiry_s=env.now_s() + 1000,
    )
    base.update(over)
    return FlexOffer(**base)  # type: ignore[arg-type]


def make_request(round_id: int, **over: object) -> FlexRequest:
    """A DSO's FlexRequest for `round_id`: 10 kW UP at bus 1 in slot 0, capped at 100 EUR/MWh."""
    base: dict[str, object] = dict(
        round_id=round_id, bus=1, direction=Direction.UP, slots=(0,), kw=(10.0,), price_cap_eur_per_mwh=100.0
    )
    base.update(over)
    return FlexRequest(**base)  # type: ignore[arg-type]


def make_p2p(env: MarketEnv, round_id: int, trader_index: int, **over: object) -> P2POrder:
    """A P2P order of provider `trader_index`: buy 8 kW at bus 3 in slot 1, limit 150 EUR/MWh."""
    base: dict[str, object] = dict(
        trader=env.providers[trader_index].address,
        round_id=round_id,
        bus=3,
        side=Side.BUY,
        slot=1,
        kw=8.0,
        limit_price_eur_per_mwh=150.0,
        nonce=round_id << 64,
        expiry_s=env.now_s() + 1000,
    )
    base.update(over)
    return P2POrder(**base)  # type: ignore[arg-type]


def test_a_round_runs_from_request_to_withdrawal(market: MarketEnv) -> None:
    op, dso = market.client(), market.client(market.dso)
    provider = market.providers[0]
    cfg = op.create_round(market.round_config())
    assert cfg.round_id >= 1
    assert op.round_state(cfg.round_id) == RoundState.OPEN
    assert op.round_config(cfg.round_id, grid_id=market.grid_id) == cfg

    request = dso.submit_request(
        make_request(cfg.round_id, bus=7, slots=(0, 1), kw=(40.0, 40.0), price_cap_eur_per_mwh=200.0)
    )
    assert request.dso == market.dso.address and request.order_id is not None
    # 2 slots * 40 kW * 0.25 h * 0.2 EUR/kWh = 4 EUR escrowed
    assert op.escrow_of_micro(cfg.round_id, market.dso.address) == (4_000_000, 0)

    offer = make_offer(market, cfg.round_id)
    signed = offer.sign(provider, market.deployment.domain)
    order_hash = market.client(market.oracle).submit_offer(signed)  # anyone may relay
    assert order_hash == offer.digest(market.deployment.domain) == op.hash_offer(offer)

    # Clearing: the provider delivers 40 kW in both slots at 100 EUR/MWh = 1 EUR per slot,
    # paid by the DSO (payer leaves with negative payments).
    assert request.order_id is not None
    trades = [
        Trade(
            round_id=cfg.round_id,
            participant=provider.address,
            order_id=order_hash,
            slot=s,
            kw=40.0,
            price_eur_per_mwh=100.0,
            payment_eur=1.0,
        )
        for s in (0, 1)
    ]
    charges = [
        Trade(
            round_id=cfg.round_id,
            participant=market.dso.address,
            order_id=request.order_id,
            slot=s,
            kw=40.0,
            price_eur_per_mwh=100.0,
            payment_eur=-1.0,
        )
        for s in (0, 1)
    ]
    tree = TradeTree(trades + charges)
    result = ClearingResult(
        round_id=cfg.round_id,
        trades=tuple(trades + charges),
        merkle_root=tree.root,
        input_hash=input_hash(
            round_id=cfg.round_id,
            domain=market.deployment.domain,
            grid_model_hash=cfg.grid_model_hash,
            requests=[request],
            offers=[offer],
            p2p=[],
        ),
        certificate_hash="0x" + "ce" * 32,
        uri="file:///result.json",
    )
    market.time_travel(cfg.gate_closure_s)
    assert op.round_state(cfg.round_id) == RoundState.CLOSED
    market.client(market.oracle).commit_clearing(result)
    assert op.round_state(cfg.round_id) == RoundState.COMMITTED
    dso.approve_result(cfg.round_id)
    assert op.round_state(cfg.round_id) == RoundState.FINAL

    # Metering: full delivery in slot 0, 20 of 40 kW in slot 1 (below the 5 % tolerance).
    readings = [
        MeterReading(
            round_id=cfg.round_id, participant=provider.address, order_id=order_hash, slot=0, delivered_kw=40
        ),
        MeterReading(
            round_id=cfg.round_id, participant=provider.address, order_id=order_hash, slot=1, delivered_kw=20
        ),
    ]
    mtree = MeteringTree(readings)
    market.client(market.metering).commit_metering(cfg.round_id, mtree.root, "file:///metering.json")
    anyone = market.client(market.providers[1])
    for charge in charges:
        anyone.claim_charge(charge, tree.proof(charge))
    assert op.escrow_of_micro(cfg.round_id, market.dso.address) == (4_000_000, 2_000_000)
    for trade, reading in zip(trades, readings, strict=True):
        anyone.claim_payment(trade, tree.proof(trade), reading.delivered_kw, mtree.proof(reading))
        assert op.is_claimed(trade_leaf_hash(trade))
    # slot 0: 1 EUR; slot 1: reduced 0.5 EUR minus 20 % of the undelivered 0.5 EUR = 0.4 EUR
    assert op.balance_of_micro(provider.address) == 1_400_000

    before = op.token_balance_micro(provider.address)
    assert market.client(provider).withdraw() == 1_400_000
    assert op.token_balance_micro(provider.address) == before + 1_400_000


def test_claiming_a_leaf_twice_reverts_with_already_claimed(market: MarketEnv) -> None:
    op = market.client()
    cfg = op.create_round(market.round_config())
    request = market.client(market.dso).submit_request(make_request(cfg.round_id))
    provider = market.providers[0]
    offer = make_offer(market, cfg.round_id, slots=(0,), min_kw=(0.0,), max_kw=(10.0,))
    order_hash = op.submit_offer(offer.sign(provider, market.deployment.domain))
    trade = Trade(
        round_id=cfg.round_id,
        participant=provider.address,
        order_id=order_hash,
        slot=0,
        kw=10.0,
        price_eur_per_mwh=100.0,
        payment_eur=0.25,
    )
    charge = Trade(
        round_id=cfg.round_id,
        participant=market.dso.address,
        order_id=request.order_id or "",
        slot=0,
        kw=10.0,
        price_eur_per_mwh=100.0,
        payment_eur=-0.25,
    )
    tree = TradeTree([trade, charge])
    market.time_travel(cfg.gate_closure_s)
    market.client(market.oracle).commit_clearing(
        ClearingResult(
            round_id=cfg.round_id,
            trades=(trade, charge),
            merkle_root=tree.root,
            input_hash="0x" + "11" * 32,
            certificate_hash="0x" + "22" * 32,
        )
    )
    market.client(market.dso).approve_result(cfg.round_id)
    reading = MeterReading(
        round_id=cfg.round_id, participant=provider.address, order_id=order_hash, slot=0, delivered_kw=10.0
    )
    mtree = MeteringTree([reading])
    market.client(market.metering).commit_metering(cfg.round_id, mtree.root)
    op.claim_charge(charge, tree.proof(charge))
    op.claim_payment(trade, tree.proof(trade), 10.0, mtree.proof(reading))
    with pytest.raises(ContractRevert) as info:
        op.claim_payment(trade, tree.proof(trade), 10.0, mtree.proof(reading))
    assert info.value.error_name == "AlreadyClaimed"
    assert info.value.args_[0] == cfg.round_id


def test_request_from_a_non_dso_reverts_with_a_typed_error(market: MarketEnv) -> None:
    cfg = market.client().create_round(market.round_config())
    with pytest.raises(ContractRevert) as info:
        market.client(market.providers[0]).submit_request(
            make_request(cfg.round_id, kw=(1.0,), price_cap_eur_per_mwh=10.0)
        )
    assert info.value.error_name == "Unauthorized"
    assert info.value.args_[0] == market.providers[0].address


def test_unknown_round_view_reverts_with_unknown_round(market: MarketEnv) -> None:
    with pytest.raises(ContractRevert) as info:
        market.client().round_config(10_000)
    assert info.value.error_name == "UnknownRound"
    assert info.value.args_ == (10_000,)


def test_offer_after_gate_closure_is_rejected(market: MarketEnv) -> None:
    op = market.client()
    cfg = op.create_round(market.round_config())
    offer = make_offer(market, cfg.round_id, expiry_s=cfg.gate_closure_s + 100)
    market.time_travel(cfg.gate_closure_s + 1)
    with pytest.raises(ContractRevert) as info:
        op.submit_offer(offer.sign(market.providers[0], market.deployment.domain))
    assert info.value.error_name in {"WrongRoundState", "TooLate"}


def test_offer_signed_for_another_chain_is_refused_before_sending(market: MarketEnv) -> None:
    op = market.client()
    cfg = op.create_round(market.round_config())
    wrong = Eip712Domain(chain_id=1, verifying_contract=market.deployment.market)
    signed = make_offer(market, cfg.round_id).sign(market.providers[0], wrong)
    with pytest.raises(SignatureError) as info:
        op.submit_offer(signed)
    assert info.value.field == "chain_id"


def test_a_batch_of_offers_lands_in_one_transaction(market: MarketEnv) -> None:
    op = market.client()
    cfg = op.create_round(market.round_config())
    signed = [
        make_offer(market, cfg.round_id, provider_index=i % 6, nonce=(cfg.round_id << 64) | (i // 6)).sign(
            market.providers[i % 6], market.deployment.domain
        )
        for i in range(24)
    ]
    result = op.submit_offers(signed)
    hashes = ["0x" + bytes(e["orderHash"]).hex() for e in result.all("FlexOfferSubmitted")]
    assert hashes == [s.order_hash for s in signed]
    assert op.round_status(cfg.round_id)["orderCount"] == 24


def test_p2p_buy_order_escrows_its_value(market: MarketEnv) -> None:
    op = market.client()
    cfg = op.create_round(market.round_config())
    buyer = market.providers[2]
    order = make_p2p(market, cfg.round_id, 2)
    op.submit_p2p_orders([order.sign(buyer, market.deployment.domain)])
    # 8 kW * 0.25 h * 0.15 EUR/kWh = 0.3 EUR
    assert op.escrow_of_micro(cfg.round_id, buyer.address) == (300_000, 0)
    assert op.hash_p2p_order(order) == order.digest(market.deployment.domain)


def test_threads_sharing_one_relayer_account_do_not_collide(market: MarketEnv) -> None:
    from concurrent.futures import ThreadPoolExecutor

    op = market.client()
    cfg = op.create_round(market.round_config())
    signed = [
        make_offer(market, cfg.round_id, provider_index=i).sign(market.providers[i], market.deployment.domain)
        for i in range(6)
    ]
    relayer = market.client(market.oracle)
    with ThreadPoolExecutor(max_workers=6) as pool:
        hashes = list(pool.map(relayer.submit_offer, signed))
    assert hashes == [s.order_hash for s in signed]
    assert op.round_status(cfg.round_id)["orderCount"] == 6
