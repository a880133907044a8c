"""Assets scheduled directly by the clearing engine's OPF through `asset_devices`."""

from __future__ import annotations

import numpy as np
import pytest

from flexgrid.assets import (
    Activation,
    BatteryAsset,
    CurtailablePVAsset,
    EVAsset,
    HeatPumpAsset,
    ShiftableLoadAsset,
    asset_devices,
    simulate_asset,
)
from flexgrid.errors import InputError
from flexgrid.market import clear_market
from flexgrid.trading import PricingRule, RoundConfig, SealMode
from tests.market.helpers import grid, profiles, round_config

BATTERY = BatteryAsset(name="bat", capacity_kwh=200.0, power_kw=100.0, soc_now_pu=0.5, soc_min_pu=0.2,
                       soc_max_pu=0.9, degradation_cost_eur_per_mwh=5.0)
HEAT_PUMP = HeatPumpAsset(name="hp", max_kw=40.0, baseline_kw=20.0, cop=3.0, thermal_capacity_kwh_per_k=60.0,
                          comfort_band_k=1.0, comfort_cost_eur_per_kh=0.0)


def plain_round(slots: int) -> RoundConfig:
    return RoundConfig(round_id=7, grid_id="case33bw", grid_model_hash="0x" + "11" * 32, slot_start_s=61_200,
                       slot_seconds=900, slot_count=slots, gate_closure_s=60_300, pricing_rule=PricingRule.DLMP,
                       seal_mode=SealMode.OPEN, dispute_window_s=600, price_cap_eur_per_mwh=1000.0, tolerance_bps=500,
                       penalty_bps=1000, bid_deposit_eur=10.0)


def test_devices_carry_the_assets_limits_in_mw() -> None:
    rc = plain_round(4)
    ev = EVAsset(name="ev", arrival_slot=0, departure_slot=4, energy_need_kwh=20.0, charger_kw=22.0,
                 value_of_lateness_eur_per_mwh=10.0)
    load = ShiftableLoadAsset(name="l", energy_kwh=1.0, power_kw=2.0, window_start_slot=1, window_end_slot=4,
                              shift_cost_eur_per_mwh=1.0)
    pv = CurtailablePVAsset(name="pv", forecast_kw=(0.0, 5.0, 10.0, 5.0), feed_in_tariff_eur_per_mwh=70.0)
    d = asset_devices({17: [BATTERY, HEAT_PUMP], 16: [ev, load, pv]}, rc)
    bat, hp = d.batteries
    assert (bat.energy_mwh, bat.soc_initial_mwh, bat.p_discharge_mw) == pytest.approx((0.14, 0.06, 0.1))
    assert (hp.energy_mwh, hp.p_charge_mw, hp.p_discharge_mw) == pytest.approx((2 * 0.02, 0.02, 0.02))
    assert d.evs[0].energy_mwh == pytest.approx(0.02) and d.evs[0].arrival_slot == 0
    assert d.shiftable[0].start_slot == 1 and d.pv[0].available_mw == pytest.approx((0.0, 0.005, 0.01, 0.005))
    with pytest.raises(InputError) as err:
        asset_devices([(16, pv)], plain_round(8))
    assert err.value.field == "forecast_kw"


def test_opf_schedules_a_battery_and_a_heat_pump_within_what_the_assets_allow() -> None:
    rc = round_config(slots=8, slot_s=900, rule=PricingRule.DLMP)
    net, view = grid()
    prices = [100.0, 100.0, 20.0, 20.0, 250.0, 250.0, 60.0, 60.0]
    devices = asset_devices([(17, BATTERY), (15, HEAT_PUMP)], rc)
    out = clear_market(net, profiles(rc), rc, [], wholesale_eur_per_mwh=prices, formulation="lindistflow", view=view,
                       devices=devices, ac_validation=False, certificate=False, now_s=rc.gate_closure_s)
    assert out.dispatch is not None
    ch_kw = out.dispatch.devices_mw["bat_ch"] * 1000
    dis_kw = out.dispatch.devices_mw["bat_dis"] * 1000
    assert dis_kw[0, 4:6].sum() > 0 and ch_kw[0, 2:4].sum() > 0  # buys cheap, sells dear
    for row, asset in enumerate((BATTERY, HEAT_PUMP)):
        act = Activation(tuple(np.round(dis_kw[row], 6)), tuple(np.round(ch_kw[row], 6)), frozenset(range(8)))
        run = simulate_asset(asset, rc, act)
        assert run.feasible, (asset.name, run.violations)
