"""A seeded population of household and small commercial assets for demos and benchmarks.

Sizes are typical of European households: home batteries of 5-15 kWh, a few community batteries
of 50-200 kWh, EVs with 7-22 kW chargers, heat pumps of 3-9 kW electric, rooftop PV of 4-30 kWp
following the shipped clear-sky shape, shiftable loads (washers, dryers, pool pumps) of 1-3 kWh.
Costs are in the range owners would ask: degradation 20-80 EUR/MWh, lateness 30-150 EUR/MWh,
feed-in tariffs 60-90 EUR/MWh.

`feeder_sites` draws the MV-connected sites of a feeder instead (what `flexgrid demo` trades with:
one market participant per MV/LV station or commercial connection): community batteries of
300-1,200 kWh at 0.4-0.6 C, EV charging hubs (car parks and depots) of 100-300 kW drawing their
cars' need from arrival in the late afternoon, building heat pumps and HVAC of 60-250 kW in
buildings of 150-600 kWh/K, and interruptible process loads (pumping, cold stores) of 50-200 kW.
Costs: degradation 30-70 EUR/MWh, lateness 40-150 EUR/MWh, comfort 1-5 EUR per K and hour,
shifting 20-80 EUR/MWh.
"""

from __future__ import annotations

import math

import numpy as np

from flexgrid.assets.models import (
    AssetBase,
    BatteryAsset,
    CurtailablePVAsset,
    EVAsset,
    HeatPumpAsset,
    ShiftableLoadAsset,
)
from flexgrid.errors import InputError
from flexgrid.grid.profiles import daily_shapes, shape_for_slots
from flexgrid.trading import RoundConfig

KINDS = ("battery", "ev", "heat_pump", "pv", "shiftable")
SITE_KINDS = ("battery", "ev", "heat_pump", "shiftable")


def _r(x: float, digits: int = 3) -> float:
    return round(float(x), digits)


def _check_sample(count: int, kinds: tuple[str, ...], allowed: tuple[str, ...], what: str) -> None:
    if count < 0:
        raise InputError("count", f"must be >= 0, got {count}")
    for k in kinds:
        if k not in allowed:
            raise InputError("kinds", f"unknown {what} {k!r} (one of {', '.join(allowed)})")


def sample_assets(round_config: RoundConfig, count: int, *, seed: int,
                  kinds: tuple[str, ...] = KINDS) -> list[AssetBase]:
    """`count` assets cycling through `kinds`, their parameters drawn from a seeded generator;
    every one fits the round (windows inside it, PV forecast per slot)."""
    _check_sample(count, kinds, KINDS, "kind")
    rng = np.random.default_rng(seed)
    n = round_config.slot_count
    h = round_config.slot_seconds / 3600
    _, pv_shape = daily_shapes()
    pv_pu = shape_for_slots(pv_shape, round_config.slot_start_s, round_config.slot_seconds, n)
    out: list[AssetBase] = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        name = f"{kind}-{i:03d}"
        if kind == "battery":
            big = rng.random() < 0.15
            cap = rng.uniform(50, 200) if big else rng.uniform(5, 15)
            out.append(BatteryAsset(
                name=name, capacity_kwh=_r(cap), power_kw=_r(cap * rng.uniform(0.3, 0.6)),
                soc_now_pu=_r(rng.uniform(0.3, 0.9), 2), soc_min_pu=0.1, soc_max_pu=0.95,
                degradation_cost_eur_per_mwh=_r(rng.uniform(20, 80), 2)))
        elif kind == "ev":
            # most cars come home between 16:00 and 19:00 and stay plugged in overnight
            tod_s = (round_config.slot_start_s + round_config.slot_seconds * np.arange(n)) % 86_400
            home = np.flatnonzero((tod_s >= 16 * 3600) & (tod_s < 19 * 3600))
            arrival = int(rng.choice(home)) if len(home) else int(rng.integers(0, max(1, n // 2)))
            departure = n if rng.random() < 0.7 else int(rng.integers(arrival + 1, n + 1))
            charger = float(rng.choice([7.4, 11.0, 22.0]))
            most = charger * (departure - arrival) * h * 0.92
            out.append(EVAsset(
                name=name, arrival_slot=arrival, departure_slot=departure,
                energy_need_kwh=_r(min(most * rng.uniform(0.2, 0.7), 60.0)), charger_kw=charger,
                value_of_lateness_eur_per_mwh=_r(rng.uniform(30, 150), 2)))
        elif kind == "heat_pump":
            top = rng.uniform(3, 9)
            out.append(HeatPumpAsset(
                name=name, max_kw=_r(top), baseline_kw=_r(top * rng.uniform(0.3, 0.7)), cop=_r(rng.uniform(2.5, 4), 2),
                thermal_capacity_kwh_per_k=_r(rng.uniform(5, 20), 2), comfort_band_k=_r(rng.uniform(0.5, 1.5), 2),
                comfort_cost_eur_per_kh=_r(rng.uniform(0.05, 0.5), 3)))
        elif kind == "pv":
            peak = rng.uniform(4, 30)
            out.append(CurtailablePVAsset(
                name=name, forecast_kw=tuple(_r(peak * v) for v in pv_pu),
                feed_in_tariff_eur_per_mwh=_r(rng.uniform(60, 90), 2)))
        else:
            start = int(rng.integers(0, n))
            end = int(rng.integers(start + 1, n + 1))
            power = float(rng.choice([1.0, 2.0, 3.0]))
            energy = min(rng.uniform(1, 3), power * (end - start) * h)
            out.append(ShiftableLoadAsset(
                name=name, energy_kwh=max(math.floor(energy * 1000), 1) / 1000, power_kw=power, window_start_slot=start, window_end_slot=end,
                shift_cost_eur_per_mwh=_r(rng.uniform(10, 60), 2), interruptible=bool(rng.random() < 0.6)))
    return out


def feeder_sites(round_config: RoundConfig, count: int, *, seed: int,
                 kinds: tuple[str, ...] = SITE_KINDS) -> list[AssetBase]:
    """`count` MV-connected sites cycling through `kinds` (no PV: a site's PV is behind its meter),
    drawn from a seeded generator; every one fits the round."""
    _check_sample(count, kinds, SITE_KINDS, "site kind")
    rng = np.random.default_rng(seed)
    n = round_config.slot_count
    h = round_config.slot_seconds / 3600
    tod_s = (round_config.slot_start_s + round_config.slot_seconds * np.arange(n)) % 86_400
    out: list[AssetBase] = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        name = f"{kind}-site-{i:03d}"
        if kind == "battery":
            cap = rng.uniform(300, 1200)
            out.append(BatteryAsset(
                name=name, capacity_kwh=_r(cap), power_kw=_r(cap * rng.uniform(0.4, 0.6)),
                soc_now_pu=_r(rng.uniform(0.75, 0.95), 2), soc_min_pu=0.1, soc_max_pu=0.95,
                degradation_cost_eur_per_mwh=_r(rng.uniform(30, 70), 2)))
        elif kind == "ev":
            # the cars arrive between 16:00 and 18:30 and stay until the end of the round
            home = np.flatnonzero((tod_s >= 16 * 3600) & (tod_s < 18.5 * 3600))
            arrival = int(rng.choice(home)) if len(home) else 0
            charger = float(rng.uniform(100, 300))
            most = charger * (n - arrival) * h * 0.92
            out.append(EVAsset(
                name=name, arrival_slot=arrival, departure_slot=n,
                energy_need_kwh=_r(min(most * rng.uniform(0.25, 0.5), charger * 3)), charger_kw=_r(charger),
                value_of_lateness_eur_per_mwh=_r(rng.uniform(40, 150), 2)))
        elif kind == "heat_pump":
            top = rng.uniform(60, 250)
            out.append(HeatPumpAsset(
                name=name, max_kw=_r(top), baseline_kw=_r(top * rng.uniform(0.5, 0.8)), cop=_r(rng.uniform(2.5, 3.5), 2),
                thermal_capacity_kwh_per_k=_r(rng.uniform(150, 600), 2), comfort_band_k=_r(rng.uniform(1.0, 2.0), 2),
                comfort_cost_eur_per_kh=_r(rng.uniform(1, 5), 3)))
        else:
            power = float(rng.uniform(50, 200))
            out.append(ShiftableLoadAsset(
                name=name, energy_kwh=_r(power * min(n * h, 24.0) * rng.uniform(0.3, 0.5)), power_kw=_r(power),
                window_start_slot=0, window_end_slot=n, shift_cost_eur_per_mwh=_r(rng.uniform(20, 80), 2),
                interruptible=True))
    return out


__all__ = ["KINDS", "SITE_KINDS", "feeder_sites", "sample_assets"]
