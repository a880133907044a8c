"""The typed order model: encodings, and one bad-input test per validation rule."""

from __future__ import annotations

from typing import Any

import pytest

from flexgrid.errors import InputError
from flexgrid.trading import (
    ClearingResult,
    Direction,
    FlexOffer,
    FlexRequest,
    P2POrder,
    PricingRule,
    RoundConfig,
    SealMode,
    Side,
    Trade,
    request_order_hash,
    settle,
    validate_for_round,
    validate_orders,
)

PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ASSET = "0x" + "a1" * 32
HASH = "0x" + "5e" * 32


def round_config(**over: Any) -> RoundConfig:
    base: dict[str, Any] = dict(
        round_id=7,
        grid_id="case33bw",
        grid_model_hash="0x" + "11" * 32,
        slot_start_s=1_800_000_000,
        slot_seconds=900,
        slot_count=96,
        gate_closure_s=1_799_990_000,
        pricing_rule=PricingRule.UNIFORM,
        seal_mode=SealMode.OPEN,
        dispute_window_s=3600,
        price_cap_eur_per_mwh=500.0,
        tolerance_bps=500,
        penalty_bps=2000,
        bid_deposit_eur=10.0,
    )
    base.update(over)
    return RoundConfig(**base)


def offer(**over: Any) -> FlexOffer:
    base: dict[str, Any] = dict(
        order_id="offer-1",
        provider=PROVIDER,
        round_id=7,
        bus=12,
        asset_id=ASSET,
        direction=Direction.UP,
        slots=(4, 5, 6),
        min_kw=(0.0, 10.5, 0.0),
        max_kw=(20.0, 20.0, 5.125),
        price_eur_per_mwh=120.25,
        min_activation=0.5,
        nonce=(7 << 64) | 0,
        expiry_s=1_799_990_000,
    )
    base.update(over)
    return FlexOffer(**base)


def request(**over: Any) -> FlexRequest:
    base: dict[str, Any] = dict(
        order_id=request_order_hash(3),
        dso=PROVIDER,
        round_id=7,
        bus=12,
        direction=Direction.UP,
        slots=(4, 5),
        kw=(100.0, 50.0),
        price_cap_eur_per_mwh=300.0,
    )
    base.update(over)
    return FlexRequest(**base)


def p2p(**over: Any) -> P2POrder:
    base: dict[str, Any] = dict(
        order_id="p2p-1",
        trader=PROVIDER,
        round_id=7,
        bus=3,
        side=Side.SELL,
        slot=10,
        kw=4.2,
        limit_price_eur_per_mwh=80.0,
        nonce=1,
        expiry_s=1_799_990_000,
    )
    base.update(over)
    return P2POrder(**base)


def test_offer_exposes_its_on_chain_integer_encoding() -> None:
    o = offer()
    assert o.min_power_w == (0, 10_500, 0)
    assert o.max_power_w == (20_000, 20_000, 5_125)
    assert o.price_micro_per_mwh == 120_250_000
    assert o.min_activation_bps == 5_000
    assert o.message()["slots"] == [4, 5, 6]


def test_lower_case_address_is_checksummed() -> None:
    assert offer(provider=PROVIDER.lower()).provider == PROVIDER


def test_models_are_frozen() -> None:
    o = offer()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own frozen-instance error
        o.bus = 3


def test_request_budget_is_rounded_up_in_favour_of_the_escrow() -> None:
    # 1 W for 1 s at 1 micro/MWh is 1/3.6e9 of a base unit: rounded up to 1.
    r = request(kw=(0.001,), slots=(0,), price_cap_eur_per_mwh=0.000001)
    assert r.budget_micro(1) == 1
    # 100 kW + 50 kW for 900 s at 300 EUR/MWh = 37.5 kWh * 0.3 EUR/kWh = 11.25 EUR
    assert request().budget_micro(900) == 11_250_000


BAD_OFFERS: list[tuple[dict[str, Any], str, str]] = [
    (dict(min_kw=(0.0, float("nan"), 0.0)), "min_kw[1]", "finite"),
    (dict(max_kw=(20.0, float("inf"), 1.0)), "max_kw[1]", "finite"),
    (dict(max_kw=(20.0, -1.0, 5.0)), "max_kw[1]", "negative"),
    (dict(max_kw=(20.0, 0.0, 5.0), min_kw=(0.0, 0.0, 0.0)), "max_kw[1]", "greater than 0"),
    (dict(min_kw=(0.0, 30.0, 0.0)), "min_kw[1]", "above max_kw[1]"),
    (dict(max_kw=(20.0, 20.0)), "max_kw", "2 values but there are 3 slots"),
    (dict(min_kw=(0.0,)), "min_kw", "1 values but there are 3 slots"),
    (dict(slots=(4, 4, 6)), "slots", "strictly increasing"),
    (dict(slots=(6, 5, 4)), "slots", "strictly increasing"),
    (dict(slots=(), min_kw=(), max_kw=()), "slots", "at least one slot"),
    (dict(slots=(1, 2, 70_000)), "slots", "outside"),
    (dict(max_kw=(20.0, 20.0, 5.1234)), "max_kw[2]", "more than 3 decimals"),
    (dict(price_eur_per_mwh=1.0000001), "price_eur_per_mwh", "more than 6 decimals"),
    (dict(price_eur_per_mwh=-3.0), "price_eur_per_mwh", "negative"),
    (dict(price_eur_per_mwh=float("nan")), "price_eur_per_mwh", "finite"),
    (dict(min_activation=1.5), "min_activation", "between 0 and 1"),
    (dict(min_activation=0.12345), "min_activation", "more than 4 decimals"),
    (dict(provider="0x1234"), "provider", "not an Ethereum address"),
    (dict(provider=PROVIDER.replace("C8", "c8")), "provider", "checksum"),
    (dict(asset_id="0x1234"), "asset_id", "not a bytes32"),
    (dict(asset_id="0x" + "zz" * 32), "asset_id", "non-hex"),
    (dict(exclusive_group="group-a"), "exclusive_group", "not a bytes32"),
    (dict(bus=-1), "bus", "outside"),
    (dict(bus=2**32), "bus", "outside"),
    (dict(nonce=-1), "nonce", "outside"),
    (dict(expiry_s=2**64), "expiry_s", "outside"),
    (dict(direction=2), "direction", "UP"),
    (dict(round_id="seven"), "round_id", "integer"),
    (dict(colour="red"), "colour", "not a field"),
]


@pytest.mark.parametrize(("change", "field", "reason"), BAD_OFFERS)
def test_bad_offer_is_rejected_naming_field_and_reason(
    change: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(InputError) as info:
        offer(**change)
    assert info.value.field == field
    assert reason in info.value.reason
    assert info.value.order_id == "offer-1"


def test_missing_field_is_named() -> None:
    data = offer().model_dump()
    del data["provider"]
    with pytest.raises(InputError) as info:
        FlexOffer(**data)
    assert (info.value.field, info.value.reason) == ("provider", "is required")


def test_model_validate_raises_input_error_too() -> None:
    data = offer().model_dump()
    data["max_kw"] = (1.0, float("nan"), 1.0)
    with pytest.raises(InputError) as info:
        FlexOffer.model_validate(data)
    assert info.value.field == "max_kw[1]"


BAD_REQUESTS: list[tuple[dict[str, Any], str, str]] = [
    (dict(kw=(100.0, -5.0)), "kw[1]", "negative"),
    (dict(kw=(100.0, float("nan"))), "kw[1]", "finite"),
    (dict(kw=(100.0, 0.0)), "kw[1]", "greater than 0"),
    (dict(kw=(100.0,)), "kw", "1 values but there are 2 slots"),
    (dict(slots=(5, 4)), "slots", "strictly increasing"),
    (dict(price_cap_eur_per_mwh=float("inf")), "price_cap_eur_per_mwh", "finite"),
    (dict(dso="not-an-address"), "dso", "not an Ethereum address"),
]


@pytest.mark.parametrize(("change", "field", "reason"), BAD_REQUESTS)
def test_bad_request_is_rejected(change: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(InputError) as info:
        request(**change)
    assert info.value.field == field
    assert reason in info.value.reason


BAD_P2P: list[tuple[dict[str, Any], str, str]] = [
    (dict(kw=-1.0), "kw", "negative"),
    (dict(kw=float("nan")), "kw", "finite"),
    (dict(kw=0.0), "kw", "greater than 0"),
    (dict(kw=1.0001), "kw", "more than 3 decimals"),
    (dict(limit_price_eur_per_mwh=-0.5), "limit_price_eur_per_mwh", "negative"),
    (dict(slot=65_536), "slot", "outside"),
    (dict(side=3), "side", "BUY"),
    (dict(trader="0x" + "00" * 19), "trader", "not an Ethereum address"),
]


@pytest.mark.parametrize(("change", "field", "reason"), BAD_P2P)
def test_bad_p2p_order_is_rejected(change: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(InputError) as info:
        p2p(**change)
    assert info.value.field == field
    assert reason in info.value.reason
    assert info.value.order_id == "p2p-1"


BAD_ROUNDS: list[tuple[dict[str, Any], str, str]] = [
    (dict(slot_seconds=0), "slot_seconds", "positive"),
    (dict(slot_count=0), "slot_count", "1.."),
    (dict(gate_closure_s=1_800_000_001), "gate_closure_s", "after the first slot"),
    (dict(tolerance_bps=10_001), "tolerance_bps", "0..10000"),
    (dict(penalty_bps=-1), "penalty_bps", "0..10000"),
    (dict(oracle_quorum=0), "oracle_quorum", "1..255"),
    (dict(price_cap_eur_per_mwh=0.0), "price_cap_eur_per_mwh", "greater than 0"),
    (dict(price_cap_eur_per_mwh=float("nan")), "price_cap_eur_per_mwh", "finite"),
    (dict(bid_deposit_eur=-1.0), "bid_deposit_eur", "negative"),
    (dict(bid_deposit_eur=0.0000001), "bid_deposit_eur", "more than 6 decimals"),
    (dict(grid_id=""), "grid_id", "empty"),
    (dict(grid_model_hash="abc"), "grid_model_hash", "bytes32"),
    (dict(pricing_rule=9), "pricing_rule", "PAY_AS_BID"),
]


@pytest.mark.parametrize(("change", "field", "reason"), BAD_ROUNDS)
def test_bad_round_config_is_rejected(change: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(InputError) as info:
        round_config(**change)
    assert info.value.field == field
    assert reason in info.value.reason


def test_valid_orders_pass_the_round_checks() -> None:
    cfg = round_config()
    for order in (offer(), request(), p2p()):
        validate_for_round(order, cfg, now_s=1_799_980_000)


@pytest.mark.parametrize(
    ("order", "field", "reason"),
    [
        (offer(slots=(94, 95, 96)), "slots", "slot 96 is outside the round"),
        (request(slots=(100, 101)), "slots", "outside the round"),
        (p2p(slot=96), "slot", "outside the round"),
        (offer(price_eur_per_mwh=500.000001), "price_eur_per_mwh", "above the round's price cap"),
        (request(price_cap_eur_per_mwh=600.0), "price_cap_eur_per_mwh", "above the round's price cap"),
        (p2p(limit_price_eur_per_mwh=501.0), "limit_price_eur_per_mwh", "above the round's price cap"),
        (offer(round_id=8), "round_id", "not round 7"),
        (offer(expiry_s=1_799_979_999), "expiry_s", "expired"),
        (p2p(expiry_s=1_799_979_999), "expiry_s", "expired"),
    ],
)
def test_order_that_does_not_fit_its_round_is_rejected(order: Any, field: str, reason: str) -> None:
    with pytest.raises(InputError) as info:
        validate_for_round(order, round_config(), now_s=1_799_980_000)
    assert info.value.field == field
    assert reason in info.value.reason
    assert info.value.order_id == order.order_id


def test_order_for_unknown_round_is_rejected() -> None:
    with pytest.raises(InputError) as info:
        validate_orders([offer(round_id=99)], {7: round_config()}, now_s=0)
    assert info.value.field == "round_id"
    assert "unknown round 99" in info.value.reason


def test_trade_leaf_values_use_the_on_chain_encoding() -> None:
    trade = Trade(
        round_id=7,
        participant=PROVIDER.lower(),
        order_id=HASH,
        slot=5,
        kw=12.5,
        price_eur_per_mwh=99.5,
        payment_eur=-1.25,
    )
    assert trade.leaf_values() == [7, PROVIDER, bytes.fromhex("5e" * 32), 5, 12_500, 99_500_000, -1_250_000]


def test_trade_with_file_id_cannot_become_a_leaf() -> None:
    trade = Trade(
        round_id=7, participant=PROVIDER, order_id="o-1", slot=5, kw=1, price_eur_per_mwh=1, payment_eur=1
    )
    with pytest.raises(InputError) as info:
        trade.leaf_values()
    assert info.value.field == "order_id"


def test_request_order_hash_is_the_id_as_bytes32() -> None:
    assert request_order_hash(3) == "0x" + "00" * 31 + "03"


def test_clearing_result_rejects_trades_of_another_round() -> None:
    trade = Trade(
        round_id=8, participant=PROVIDER, order_id=HASH, slot=0, kw=1, price_eur_per_mwh=1, payment_eur=1
    )
    with pytest.raises(InputError) as info:
        ClearingResult(
            round_id=7, trades=(trade,), merkle_root=HASH, input_hash=HASH, certificate_hash=HASH, uri=""
        )
    assert info.value.field == "trades[0].round_id"


def _trade(kw: float, payment_eur: float) -> Trade:
    return Trade(
        round_id=7,
        participant=PROVIDER,
        order_id=HASH,
        slot=0,
        kw=kw,
        price_eur_per_mwh=100,
        payment_eur=payment_eur,
    )


def test_settlement_within_tolerance_pays_in_full() -> None:
    s = settle(_trade(100, 25.0), 95.0, tolerance_bps=500, penalty_bps=2000)
    assert (s.paid_micro, s.penalty_micro, s.deposit_penalty_micro) == (25_000_000, 0, 0)


def test_settlement_below_tolerance_is_reduced_and_penalised() -> None:
    # delivered 60 of 100 kW: reduced = 15 EUR, penalty = 10 EUR * 20 % = 2 EUR -> 13 EUR paid.
    s = settle(_trade(100, 25.0), 60.0, tolerance_bps=500, penalty_bps=2000)
    assert (s.paid_micro, s.penalty_micro, s.deposit_penalty_micro) == (13_000_000, 2_000_000, 0)


def test_settlement_penalty_above_reduced_payment_comes_from_the_deposit() -> None:
    # delivered 10 of 100: reduced 2.5 EUR, penalty 22.5 EUR -> paid 0, 20 EUR from the deposit.
    s = settle(_trade(100, 25.0), 10.0, tolerance_bps=0, penalty_bps=10_000)
    assert (s.paid_micro, s.penalty_micro, s.deposit_penalty_micro) == (0, 22_500_000, 20_000_000)


def test_settlement_caps_over_delivery_at_the_accepted_power() -> None:
    s = settle(_trade(100, 25.0), 150.0, tolerance_bps=0, penalty_bps=0)
    assert s.delivered_kw == 100.0
    assert s.paid_micro == 25_000_000


def test_model_copy_with_an_update_is_validated() -> None:
    assert offer().model_copy(update={"bus": 3}).bus == 3
    with pytest.raises(InputError) as info:
        offer().model_copy(update={"max_kw": (1.0, -1.0, 1.0)})
    assert info.value.field == "max_kw[1]"


def test_numpy_numbers_convert_like_python_numbers() -> None:
    import numpy as np

    from flexgrid.trading.units import eur_to_micro, kw_to_w

    assert kw_to_w(np.float64(2.5)) == 2_500
    # kw_to_w is annotated `float` but also takes numpy scalars, which is what this test checks: the
    # two ignores go when its annotation names them
    assert kw_to_w(np.int64(3)) == 3_000  # type: ignore[arg-type]
    assert eur_to_micro(np.float64(-0.25), signed=True) == -250_000
    with pytest.raises(InputError, match="more than 3 decimals"):
        kw_to_w(np.float32(0.1))  # type: ignore[arg-type]  # float32 cannot hold 0.1 kW exactly
