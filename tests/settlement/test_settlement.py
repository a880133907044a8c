"""Metering, baselines and the settlement preview on small cases checked by hand, plus conservation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexgrid.errors import InputError
from flexgrid.market.clearing import leaf_order_id
from flexgrid.settlement import (
    MeterBeforeActivation,
    MeterSeries,
    SameSlotAverage,
    SettlementError,
    check_conservation,
    escrow_micro,
    meter_readings,
    preview_settlement,
    simulate_metering,
)
from flexgrid.trading import (
    Direction,
    FlexOffer,
    FlexRequest,
    MeterReading,
    P2POrder,
    PricingRule,
    RoundConfig,
    SealMode,
    Side,
    Trade,
)
from flexgrid.trading.units import (
    eur_per_mwh_to_micro,
    kw_to_w,
    micro_to_eur,
    value_micro_down,
    value_micro_up,
)

PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
DSO = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
OFFER_HASH = "0x" + "0f" * 32
REQUEST_HASH = "0x" + "00" * 31 + "01"


def rc(tolerance_bps: int = 500, penalty_bps: int = 2000, slot_count: int = 4) -> RoundConfig:
    return RoundConfig(round_id=9, grid_id="case33bw", grid_model_hash="0x" + "11" * 32, slot_start_s=1_800_000_000,
                       slot_seconds=900, slot_count=slot_count, gate_closure_s=1_799_990_000,
                       pricing_rule=PricingRule.PAY_AS_BID, seal_mode=SealMode.OPEN, dispute_window_s=3600,
                       price_cap_eur_per_mwh=500.0, tolerance_bps=tolerance_bps, penalty_bps=penalty_bps,
                       bid_deposit_eur=1.5)


def offer(direction: Direction = Direction.UP, slots: tuple[int, ...] = (1, 2)) -> FlexOffer:
    return FlexOffer(order_id=OFFER_HASH, provider=PROVIDER, round_id=9, bus=5, asset_id="0x" + "aa" * 32,
                     direction=direction, slots=slots, min_kw=(0.0,) * len(slots), max_kw=(10.0,) * len(slots),
                     price_eur_per_mwh=100.0, nonce=0, expiry_s=2**40)


def trade(slot: int, kw: float, price: float = 100.0, *, participant: str = PROVIDER, order_id: str = OFFER_HASH,
          pays: bool = False) -> Trade:
    w, p = kw_to_w(kw), eur_per_mwh_to_micro(price)
    micro = -value_micro_up(w, 900, p) if pays else value_micro_down(w, 900, p)
    return Trade(round_id=9, participant=participant, order_id=order_id, slot=slot, kw=kw, price_eur_per_mwh=price,
                 payment_eur=micro_to_eur(micro))


SERIES = MeterSeries(order_id=OFFER_HASH, participant=PROVIDER, before_kw=10.0, measured_kw=(10.0, 6.0, 6.0, 9.0),
                     history_kw=((9.0, 10.0, 11.0, 9.0), (11.0, 10.0, 9.0, 11.0)))


def readings_for(series: MeterSeries, baseline: Any, direction: Direction = Direction.UP,
                 slots: tuple[int, ...] = (1, 2)) -> dict[int, float]:
    trades = [trade(s, 4.0) for s in slots]
    out = meter_readings(rc(), trades, [offer(direction, slots)], {OFFER_HASH: series}, baseline)
    return {r.slot: r.delivered_kw for r in out}


def test_meter_before_activation_holds_the_slot_before_the_first_activated_slot() -> None:
    # baseline = measured in slot 0 = 10 kW; delivered UP = 10 - 6 in slots 1 and 2
    assert readings_for(SERIES, MeterBeforeActivation()) == {1: 4.0, 2: 4.0}


def test_meter_before_activation_of_slot_zero_uses_the_slot_before_the_round() -> None:
    series = MeterSeries(OFFER_HASH, PROVIDER, before_kw=12.0, measured_kw=(7.0, 6.0, 6.0, 9.0))
    assert readings_for(series, MeterBeforeActivation(), slots=(0, 1)) == {0: 5.0, 1: 6.0}


def test_same_slot_average_over_the_previous_days() -> None:
    assert readings_for(SERIES, SameSlotAverage(days=5)) == {1: 4.0, 2: 4.0}  # both days average 10 kW
    assert readings_for(SERIES, SameSlotAverage(days=1)) == {1: 4.0, 2: 3.0}  # the last day: 10, 9 kW


def test_down_delivery_is_measured_minus_baseline_and_never_negative() -> None:
    series = MeterSeries(OFFER_HASH, PROVIDER, before_kw=5.0, measured_kw=(5.0, 8.5, 4.0, 5.0))
    assert readings_for(series, MeterBeforeActivation(), Direction.DOWN) == {1: 3.5, 2: 0.0}


def test_missing_history_and_bad_series_are_input_errors() -> None:
    bare = MeterSeries(OFFER_HASH, PROVIDER, before_kw=5.0, measured_kw=(5.0,) * 4)
    with pytest.raises(InputError) as err:
        readings_for(bare, SameSlotAverage())
    assert err.value.field == "history_kw"
    with pytest.raises(InputError) as err:
        readings_for(MeterSeries(OFFER_HASH, PROVIDER, 5.0, (5.0, 5.0)), MeterBeforeActivation())
    assert err.value.field == "measured_kw"
    with pytest.raises(InputError) as err:
        readings_for(MeterSeries(OFFER_HASH, PROVIDER, 5.0, (5.0, float("nan"), 1.0, 1.0)), MeterBeforeActivation())
    assert err.value.field == "measured_kw"
    with pytest.raises(InputError) as err:
        SameSlotAverage(days=0)
    assert err.value.field == "days"


# ---------------------------------------------------------------- settlement preview by hand


def request(kw: float = 100.0, cap: float = 200.0) -> FlexRequest:
    return FlexRequest(order_id="1", dso=DSO, round_id=9, bus=5, direction=Direction.UP, slots=(0,), kw=(kw,),
                       price_cap_eur_per_mwh=cap)


def one_leaf_round(delivered_kw: float | None, *, penalty_bps: int = 2000, deposit: int = 1_500_000) -> Any:
    # 100 kW for 15 min at 100 EUR/MWh: 2.5 EUR; the request's budget at its 200 EUR/MWh cap: 5 EUR
    trades = [trade(0, 100.0), trade(0, 100.0, participant=DSO, order_id=REQUEST_HASH, pays=True)]
    readings = None if delivered_kw is None else [
        MeterReading(round_id=9, participant=PROVIDER, order_id=OFFER_HASH, slot=0, delivered_kw=delivered_kw)]
    escrow = escrow_micro(rc(), [request()])
    assert escrow == {DSO: 5_000_000}
    return preview_settlement(rc(penalty_bps=penalty_bps), trades, readings, dso=DSO, escrow=escrow,
                              deposits={PROVIDER: deposit})


def test_under_delivery_is_paid_pro_rata_minus_the_penalty() -> None:
    p = one_leaf_round(50.0)
    # reduced 2.5 * 50/100 = 1.25 EUR; penalty 2.5 * 50/100 * 20 % = 0.25 EUR; paid 1.00 EUR
    (s,) = p.settlements
    assert (s.paid_micro, s.penalty_micro, s.deposit_penalty_micro) == (1_000_000, 250_000, 0)
    assert (p.escrowed_micro, p.charged_micro, p.paid_micro) == (5_000_000, 2_500_000, 1_000_000)
    assert (p.to_dso_micro, p.released_micro) == (1_500_000, 2_500_000)
    assert p.credits_micro == {PROVIDER.lower(): 1_000_000 + 1_500_000, DSO.lower(): 4_000_000}
    assert p.conserved
    check_conservation(p)


def test_delivery_within_tolerance_is_paid_in_full() -> None:
    p = one_leaf_round(96.0)  # 4 % short, tolerance 5 %
    assert p.paid_micro == 2_500_000 and p.to_dso_micro == 0 and p.conserved


def test_penalty_above_the_reduced_payment_comes_from_the_deposit_up_to_what_is_left() -> None:
    p = one_leaf_round(10.0, penalty_bps=10_000)
    # reduced 0.25 EUR, penalty 2.25 EUR: paid 0, 2.00 EUR due from a 1.50 EUR deposit
    assert p.paid_micro == 0 and p.deposit_penalties_micro == 1_500_000 and p.deposits_released_micro == 0
    assert p.credits_micro == {DSO.lower(): 2_500_000 + 2_500_000 + 1_500_000}
    assert p.conserved


def test_without_metering_root_every_payee_is_paid_in_full_and_unread_leaves_pay_nothing() -> None:
    assert one_leaf_round(None).paid_micro == 2_500_000
    trades = [trade(0, 100.0), trade(0, 100.0, participant=DSO, order_id=REQUEST_HASH, pays=True)]
    p = preview_settlement(rc(), trades, [], dso=DSO, escrow={DSO: 5_000_000})
    assert p.unclaimed == (trades[0],) and p.paid_micro == 0 and p.to_dso_micro == 2_500_000 and p.conserved


def test_a_charge_beyond_the_payers_escrow_is_refused() -> None:
    trades = [trade(0, 100.0), trade(0, 100.0, participant=DSO, order_id=REQUEST_HASH, pays=True)]
    with pytest.raises(SettlementError):
        preview_settlement(rc(), trades, None, dso=DSO, escrow={DSO: 2_000_000})


def test_a_reading_for_no_payee_leaf_is_an_input_error() -> None:
    trades = [trade(0, 100.0), trade(0, 100.0, participant=DSO, order_id=REQUEST_HASH, pays=True)]
    stray = MeterReading(round_id=9, participant=PROVIDER, order_id=OFFER_HASH, slot=3, delivered_kw=1.0)
    with pytest.raises(InputError) as err:
        preview_settlement(rc(), trades, [stray], dso=DSO, escrow={DSO: 5_000_000})
    assert err.value.field == "readings"


def test_p2p_buys_escrow_their_value_at_the_limit_price() -> None:
    buy = P2POrder(order_id="b", trader=OTHER, round_id=9, bus=3, side=Side.BUY, slot=0, kw=4.0,
                   limit_price_eur_per_mwh=90.0, nonce=0, expiry_s=2**40)
    sell = buy.model_copy(update={"order_id": "s", "trader": PROVIDER, "side": Side.SELL})
    # 4 kW for 15 min = 1 kWh at 90 EUR/MWh = 0.09 EUR
    assert escrow_micro(rc(), [request()], [buy, sell]) == {DSO: 5_000_000, OTHER: 90_000}


# ---------------------------------------------------------------- simulated metering


def test_simulated_metering_measures_full_delivery_and_the_chosen_under_delivery() -> None:
    lazy = "0x" + "77" * 20
    offers = [offer(), offer().model_copy(update={"order_id": "0x" + "1f" * 32, "provider": lazy})]
    trades = [trade(s, 8.0, order_id=leaf_order_id(o), participant=o.provider) for o in offers for s in (1, 2)]
    meters = simulate_metering(rc(), trades, offers, seed=3, noise_pu=0.0, delivery_factor={lazy: 0.5})
    assert simulate_metering(rc(), trades, offers, seed=3, noise_pu=0.0, delivery_factor={lazy: 0.5}) == meters
    got = {(r.participant, r.slot): r.delivered_kw
           for r in meter_readings(rc(), trades, offers, meters, SameSlotAverage())}
    assert got == {(PROVIDER, 1): 8.0, (PROVIDER, 2): 8.0, (lazy, 1): 4.0, (lazy, 2): 4.0}
    noisy = simulate_metering(rc(), trades, offers, seed=3, noise_pu=0.02, history_days=10)
    for r in meter_readings(rc(), trades, offers, noisy, SameSlotAverage(days=10)):
        assert r.delivered_kw == pytest.approx(8.0, abs=3.0)


# ---------------------------------------------------------------- conservation, property


@st.composite
def settled_round(draw: Any) -> Any:
    n_leaves = draw(st.integers(1, 8))
    providers = [PROVIDER, OTHER, "0x" + "55" * 20]
    trades: list[Trade] = []
    readings: list[MeterReading] = []
    requests: list[FlexRequest] = []
    for i in range(n_leaves):
        w = draw(st.integers(1, 500_000))
        kw = w / 1000
        price_micro = draw(st.integers(0, 400_000_000))
        price = price_micro / 1e6
        who = draw(st.sampled_from(providers))
        oid = "0x" + f"{i + 16:064x}"
        trades.append(trade(i % 4, kw, price, participant=who, order_id=oid))
        # the DSO's request covers the leaf at a cap at least 1 EUR/MWh above its price
        requests.append(FlexRequest(order_id=str(i + 1), dso=DSO, round_id=9, bus=5, direction=Direction.UP,
                                    slots=(i % 4,), kw=((w + draw(st.integers(0, 1000))) / 1000,),
                                    price_cap_eur_per_mwh=(price_micro + 1_000_000 * draw(st.integers(1, 100))) / 1e6))
        trades.append(trade(i % 4, kw, price, participant=DSO, order_id="0x" + f"{i + 1:064x}", pays=True))
        if draw(st.integers(0, 9)) > 0:  # one leaf in ten goes unmetered
            readings.append(MeterReading(round_id=9, participant=who, order_id=oid, slot=i % 4,
                                         delivered_kw=draw(st.integers(0, w * 3 // 2)) / 1000))
    deposits = {p: draw(st.integers(0, 5_000_000)) for p in providers}
    cfg = rc(tolerance_bps=draw(st.integers(0, 10_000)), penalty_bps=draw(st.integers(0, 10_000)))
    return cfg, trades, readings, requests, deposits


@settings(max_examples=200, derandomize=True, deadline=None)
@given(settled_round())
def test_paid_plus_returned_equals_escrowed_for_any_delivery(case: Any) -> None:
    cfg, trades, readings, requests, deposits = case
    p = preview_settlement(cfg, trades, readings, dso=DSO, escrow=escrow_micro(cfg, requests), deposits=deposits)
    assert p.paid_micro + p.to_dso_micro + p.released_micro == p.escrowed_micro
    assert p.deposit_penalties_micro + p.deposits_released_micro == sum(deposits.values())
    assert sum(p.credits_micro.values()) == p.escrowed_micro + sum(deposits.values())
    assert 0 <= p.paid_micro <= sum(t.payment_micro for t in trades if t.payment_micro > 0)
    assert all(s.paid_micro <= s.payment_eur * 1_000_000 for s in p.settlements)
    assert p.conserved
