"""The asset meta-service: offers by hand, typed errors, and the feasibility simulation itself."""

from __future__ import annotations

from typing import Any

import pytest

from flexgrid.assets import (
    Activation,
    BatteryAsset,
    CurtailablePVAsset,
    EVAsset,
    HeatPumpAsset,
    ShiftableLoadAsset,
    exclusive_group_id,
    parse_asset,
    propose_offers,
    sample_assets,
    simulate_asset,
)
from flexgrid.errors import InputError
from flexgrid.trading import ZERO_BYTES32, Direction, PricingRule, RoundConfig, SealMode, validate_for_round

PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
GATE_S = 1_799_990_000


def rc(slot_count: int = 8, slot_seconds: int = 900, cap: float = 500.0) -> RoundConfig:
    return RoundConfig(round_id=3, grid_id="case33bw", grid_model_hash="0x" + "11" * 32, slot_start_s=1_800_000_000,
                       slot_seconds=slot_seconds, slot_count=slot_count, gate_closure_s=GATE_S,
                       pricing_rule=PricingRule.PAY_AS_BID, seal_mode=SealMode.OPEN, dispute_window_s=3600,
                       price_cap_eur_per_mwh=cap, tolerance_bps=500, penalty_bps=2000, bid_deposit_eur=0.0)


def battery(**over: Any) -> BatteryAsset:
    base: dict[str, Any] = dict(name="home battery", capacity_kwh=20.0, power_kw=10.0, soc_now_pu=0.6,
                                soc_min_pu=0.1, soc_max_pu=0.9, degradation_cost_eur_per_mwh=50.0)
    base.update(over)
    return BatteryAsset(**base)


def propose(asset: Any, round_config: RoundConfig | None = None, **kw: Any) -> list[Any]:
    kw.setdefault("direction", Direction.UP)
    return propose_offers(asset, round_config or rc(), provider=PROVIDER, bus=17, nonce_start=(3 << 64) + 5,
                          expiry_s=GATE_S, **kw)


def test_battery_spread_offer_uses_the_energy_above_min_soc_after_losses() -> None:
    # (0.6 - 0.1) * 20 kWh * 0.95 = 9.5 kWh over 4 slots of 15 min -> 9.5 kW, below the 10 kW limit
    offers = propose(battery(), slots=range(2, 6))
    assert len(offers) == 1
    (o,) = offers
    assert o.slots == (2, 3, 4, 5) and o.max_kw == (9.5,) * 4 and o.min_kw == (0.0,) * 4
    assert o.price_eur_per_mwh == pytest.approx(50 / 0.95 * 1.10, abs=1e-6)  # divisible: 10 % premium
    assert o.exclusive_group == ZERO_BYTES32 and o.min_activation == 0.0
    assert o.nonce == (3 << 64) + 5 and o.provider == PROVIDER and o.bus == 17
    assert o.asset_id == battery().asset_id


def test_battery_offers_exclusive_options_peak_spread_or_one_hour_at_full_power() -> None:
    offers = propose(battery(soc_now_pu=0.9), slots=range(8))  # 15.2 kWh deliverable, 8 slots = 2 h
    assert len(offers) == 2
    assert offers[0].exclusive_group == offers[1].exclusive_group != ZERO_BYTES32
    assert offers[0].exclusive_group == exclusive_group_id(battery(), 3, Direction.UP)
    spread, block = sorted(offers, key=lambda o: len(o.slots), reverse=True)
    assert spread.max_kw == (7.6,) * 8 and spread.min_activation == 0.0
    assert block.slots == (0, 1, 2, 3) and block.max_kw == (10.0,) * 4 and block.min_activation == 1.0
    assert block.price_eur_per_mwh != spread.price_eur_per_mwh
    assert [o.nonce for o in offers] == [(3 << 64) + 5, (3 << 64) + 6]
    for o in offers:
        validate_for_round(o, rc(), now_s=GATE_S)


def test_battery_charge_offer_uses_the_room_below_max_soc() -> None:
    # (0.9 - 0.6) * 20 kWh / 0.95 = 6.3158 kWh at the grid over 1 h -> 6.315 kW (rounded down to whole W)
    (o,) = propose(battery(), slots=range(4), direction=Direction.DOWN)
    assert o.direction == Direction.DOWN and o.max_kw == (6.315,) * 4


def test_full_battery_has_nothing_to_charge() -> None:
    assert propose(battery(soc_now_pu=0.9), direction=Direction.DOWN) == []


def test_ev_postpones_its_charging_into_the_rest_of_the_window() -> None:
    # 10 kWh / 0.92 = 10.87 kWh at 11 kW from slot 0: plan 11, 11, 11, 10.478 kW, then free until slot 8
    ev = EVAsset(name="ev", arrival_slot=0, departure_slot=8, energy_need_kwh=10.0, charger_kw=11.0,
                 value_of_lateness_eur_per_mwh=80.0)
    offers = propose(ev, slots=[2, 3])
    assert {o.min_activation for o in offers} == {0.0, 1.0}
    firm = next(o for o in offers if o.min_activation == 1.0)
    assert firm.slots == (2, 3) and firm.max_kw == (11.0, 10.478) and firm.price_eur_per_mwh == 80.0


def test_non_interruptible_load_only_offers_whole_slots() -> None:
    load = ShiftableLoadAsset(name="washer", energy_kwh=2.0, power_kw=2.0, window_start_slot=0, window_end_slot=6,
                              shift_cost_eur_per_mwh=30.0, interruptible=False)
    offers = propose(load, slots=range(4))
    assert offers and all(o.min_activation == 1.0 for o in offers)


def test_pv_curtailment_is_priced_at_the_lost_feed_in_tariff() -> None:
    pv = CurtailablePVAsset(name="roof", forecast_kw=(0, 1, 3, 5, 6, 5, 3, 1), feed_in_tariff_eur_per_mwh=70.0)
    offers = propose(pv, direction=Direction.DOWN)
    firm = next(o for o in offers if o.min_activation == 1.0)
    divisible = next(o for o in offers if o.min_activation == 0.0)
    assert firm.price_eur_per_mwh == 70.0 and firm.slots == (2, 3, 4, 5, 6)  # forecast >= half the peak
    assert divisible.slots == (1, 2, 3, 4, 5, 6, 7) and divisible.max_kw == (1, 3, 5, 6, 5, 3, 1)
    assert divisible.price_eur_per_mwh == pytest.approx(77.0)


def test_heat_pump_switch_off_lasts_as_long_as_the_comfort_band_allows() -> None:
    # band: 1 K * 5 kWh/K / COP 3 = 1.667 kWh electric; off at 2 kW lasts 3 slots of 15 min (1.5 kWh)
    hp = HeatPumpAsset(name="hp", max_kw=4.0, baseline_kw=2.0, cop=3.0, thermal_capacity_kwh_per_k=5.0,
                       comfort_band_k=1.0, comfort_cost_eur_per_kh=0.5)
    offers = propose(hp, slots=range(2, 6))
    off = next(o for o in offers if o.min_activation == 1.0)
    assert off.slots == (2, 3, 4) and off.max_kw == (2.0,) * 3


def test_options_above_the_price_cap_are_not_offered() -> None:
    assert propose(battery(degradation_cost_eur_per_mwh=1000.0), rc(cap=500.0)) == []


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: battery(soc_now_pu=0.95), "soc_now_pu"),
        (lambda: battery(capacity_kwh=float("nan")), "capacity_kwh"),
        (lambda: battery(power_kw=-1.0), "power_kw"),
        (lambda: battery(charge_efficiency=1.2), "charge_efficiency"),
        (lambda: battery(soc_min_pu=0.8, soc_max_pu=0.5), "soc_min_pu"),
        (lambda: EVAsset(name="ev", arrival_slot=4, departure_slot=4, energy_need_kwh=1.0, charger_kw=7.0,
                         value_of_lateness_eur_per_mwh=1.0), "departure_slot"),
        (lambda: HeatPumpAsset(name="hp", max_kw=2.0, baseline_kw=3.0, cop=3.0, thermal_capacity_kwh_per_k=5.0,
                               comfort_band_k=1.0, comfort_cost_eur_per_kh=1.0), "baseline_kw"),
        (lambda: parse_asset({"kind": "fridge", "name": "x"}), "kind"),
        (lambda: parse_asset({"kind": "battery", "name": "x"}), "capacity_kwh"),
    ],
)
def test_bad_asset_is_an_input_error_naming_the_field(build: Any, field: str) -> None:
    with pytest.raises(InputError) as err:
        build()
    assert err.value.field == field


@pytest.mark.parametrize(
    ("asset", "kwargs", "field"),
    [
        (EVAsset(name="ev", arrival_slot=2, departure_slot=12, energy_need_kwh=5.0, charger_kw=7.0,
                 value_of_lateness_eur_per_mwh=1.0), {}, "departure_slot"),
        (EVAsset(name="ev", arrival_slot=0, departure_slot=2, energy_need_kwh=50.0, charger_kw=7.0,
                 value_of_lateness_eur_per_mwh=1.0), {}, "energy_need_kwh"),
        (ShiftableLoadAsset(name="l", energy_kwh=10.0, power_kw=2.0, window_start_slot=0, window_end_slot=4,
                            shift_cost_eur_per_mwh=1.0), {}, "energy_kwh"),
        (CurtailablePVAsset(name="pv", forecast_kw=(1.0, 2.0), feed_in_tariff_eur_per_mwh=70.0),
         {"direction": Direction.DOWN}, "forecast_kw"),
        (CurtailablePVAsset(name="pv", forecast_kw=(1.0,) * 8, feed_in_tariff_eur_per_mwh=70.0), {}, "direction"),
        (battery(), {"slots": [7, 8]}, "slots"),
        (battery(), {"expiry_s": GATE_S - 1}, "expiry_s"),
        (battery(), {"direction": 2}, "direction"),
    ],
)
def test_asset_that_does_not_fit_the_round_is_an_input_error(asset: Any, kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = dict(provider=PROVIDER, bus=17, nonce_start=0, expiry_s=GATE_S, direction=Direction.UP)
    args.update(kwargs)
    with pytest.raises(InputError) as err:
        propose_offers(asset, rc(), **args)
    assert err.value.field == field
    assert err.value.order_id == asset.name


def test_parse_asset_round_trips_the_json_of_each_kind() -> None:
    hp = HeatPumpAsset(name="hp", max_kw=4.0, baseline_kw=2.0, cop=3.0, thermal_capacity_kwh_per_k=5.0,
                       comfort_band_k=1.0, comfort_cost_eur_per_kh=0.5)
    for asset in (battery(), hp):
        assert parse_asset(asset.model_dump()) == asset


# ---------------------------------------------------------------- the simulation catches what is infeasible


def test_simulation_flags_a_battery_discharged_below_min_soc() -> None:
    n = 8
    act = Activation((10.0,) * n, (0.0,) * n, frozenset(range(n)))  # 20 kWh out of a 20 kWh battery
    run = simulate_asset(battery(), rc(n), act)
    assert not run.feasible and "state of charge" in run.violations[0]
    ok = simulate_asset(battery(), rc(n), Activation((4.75,) * 2 + (0.0,) * 6, (0.0,) * n, frozenset({0, 1})))
    assert ok.feasible and ok.state[1] == pytest.approx(0.6 - 2 * 4.75 * 0.25 / 0.95 / 20)


def test_simulation_flags_an_ev_that_cannot_catch_up_before_departure() -> None:
    ev = EVAsset(name="ev", arrival_slot=0, departure_slot=4, energy_need_kwh=9.0, charger_kw=11.0,
                 charge_efficiency=1.0, value_of_lateness_eur_per_mwh=1.0)
    up = (0.0, 11.0, 11.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # plan 11, 11, 11, 3 kW: two full slots postponed
    run = simulate_asset(ev, rc(), Activation(up, (0.0,) * 8, frozenset({1, 2})))
    assert not run.feasible and any("misses" in v for v in run.violations)


def test_simulation_flags_pv_curtailed_beyond_its_forecast_and_heat_pump_out_of_band() -> None:
    pv = CurtailablePVAsset(name="pv", forecast_kw=(2.0,) * 8, feed_in_tariff_eur_per_mwh=70.0)
    assert not simulate_asset(pv, rc(), Activation((0.0,) * 8, (3.0,) + (0.0,) * 7, frozenset({0}))).feasible
    hp = HeatPumpAsset(name="hp", max_kw=4.0, baseline_kw=2.0, cop=3.0, thermal_capacity_kwh_per_k=5.0,
                       comfort_band_k=1.0, comfort_cost_eur_per_kh=0.5)
    off_all_round = Activation((2.0,) * 8, (0.0,) * 8, frozenset(range(8)))  # 4 kWh > 1.667 kWh of band
    assert not simulate_asset(hp, rc(), off_all_round).feasible


def test_a_sampled_population_of_fifty_prosumers_offers_flexibility_in_every_kind() -> None:
    round_config = RoundConfig(round_id=3, grid_id="case33bw", grid_model_hash="0x" + "11" * 32,
                               slot_start_s=1_800_000_000 - 1_800_000_000 % 86_400, slot_seconds=900, slot_count=96,
                               gate_closure_s=1_800_000_000 - 1_800_000_000 % 86_400 - 3600,
                               pricing_rule=PricingRule.DLMP, seal_mode=SealMode.OPEN, dispute_window_s=3600,
                               price_cap_eur_per_mwh=500.0, tolerance_bps=500, penalty_bps=2000, bid_deposit_eur=0.0)
    assets = sample_assets(round_config, 50, seed=4)
    assert assets == sample_assets(round_config, 50, seed=4) and len({a.name for a in assets}) == 50
    evening = range(68, 80)  # 17:00-20:00 UTC
    midday = range(44, 56)
    offering: set[str] = set()
    for a in assets:
        d, slots = (Direction.DOWN, midday) if isinstance(a, CurtailablePVAsset) else (Direction.UP, evening)
        if propose_offers(a, round_config, provider=PROVIDER, bus=5, nonce_start=0,
                          expiry_s=round_config.gate_closure_s, direction=d, slots=slots):
            offering.add(type(a).__name__)
    assert offering == {"BatteryAsset", "EVAsset", "HeatPumpAsset", "CurtailablePVAsset", "ShiftableLoadAsset"}
