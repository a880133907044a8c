"""Simulate an asset over the round's slots under accepted offers, and report what breaks.

Deliberately independent of the offer generator (`flexgrid.assets.offers`): it recomputes the
asset's plan, applies the activated flexibility slot by slot and checks the physics (state of
charge, energy need by departure, energy within the window, PV curtailment within the forecast,
temperature within the comfort band). The property test in tests/assets uses it to check that
any accepted combination of proposed offers is feasible; the demo uses it for state-of-charge plots.

Flexibility is relative to the asset's plan: in a slot where an offer was accepted the asset
must draw `plan - up + down`; a shiftable load or EV may re-plan only the slots of its window
in which nothing was accepted (elsewhere a change would show up as (non-)delivery).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from flexgrid.assets.models import (
    AssetBase,
    BatteryAsset,
    CurtailablePVAsset,
    EVAsset,
    HeatPumpAsset,
    ShiftableLoadAsset,
)
from flexgrid.errors import InputError
from flexgrid.market.clearing import leaf_order_id
from flexgrid.trading import Direction, FlexOffer, RoundConfig, Trade

TOL = 1e-6


@dataclass(frozen=True)
class Activation:
    """Accepted flexibility of one asset: kW per slot in each direction, and the slots that are
    committed (an accepted offer covers them, even at 0 kW)."""

    up_kw: tuple[float, ...]
    down_kw: tuple[float, ...]
    committed: frozenset[int]

    @classmethod
    def none(cls, slot_count: int) -> Activation:
        return cls((0.0,) * slot_count, (0.0,) * slot_count, frozenset())

    @classmethod
    def from_offers(cls, slot_count: int, accepted: Iterable[tuple[FlexOffer, Sequence[float]]]) -> Activation:
        """From accepted offers and the kW activated in each of the offer's slots."""
        up = [0.0] * slot_count
        down = [0.0] * slot_count
        committed: set[int] = set()
        for offer, kws in accepted:
            if len(kws) != len(offer.slots):
                raise InputError("kw", f"{len(kws)} values for {len(offer.slots)} slots", order_id=offer.order_id)
            target = up if offer.direction == Direction.UP else down
            for slot, kw in zip(offer.slots, kws, strict=True):
                if not 0 <= slot < slot_count:
                    raise InputError("slots", f"slot {slot} outside the round", order_id=offer.order_id)
                target[slot] += kw
                committed.add(slot)
        return cls(tuple(up), tuple(down), frozenset(committed))

    @classmethod
    def from_trades(cls, round_config: RoundConfig, offers: Sequence[FlexOffer], trades: Sequence[Trade]
                    ) -> dict[str, Activation]:
        """Per asset id: the activation the clearing's trades give the offers (all slots of an
        accepted offer are committed)."""
        by_leaf = {leaf_order_id(o): o for o in offers}
        per_offer: dict[str, dict[int, float]] = {}
        for t in trades:
            if t.order_id in by_leaf:
                per_offer.setdefault(t.order_id, {})[t.slot] = per_offer.get(t.order_id, {}).get(t.slot, 0.0) + t.kw
        grouped: dict[str, list[tuple[FlexOffer, list[float]]]] = {}
        for leaf, kws in per_offer.items():
            o = by_leaf[leaf]
            grouped.setdefault(o.asset_id, []).append((o, [kws.get(s, 0.0) for s in o.slots]))
        return {a: cls.from_offers(round_config.slot_count, acc) for a, acc in grouped.items()}


@dataclass
class AssetRun:
    """The simulated slots: power drawn (kW, < 0 injects), the asset's state after each slot
    (state of charge pu, temperature deviation K, or energy drawn so far kWh) and every violation."""

    power_kw: list[float] = field(default_factory=list)
    state: list[float] = field(default_factory=list)
    state_name: str = ""
    violations: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return not self.violations


def _battery(a: BatteryAsset, act: Activation, n: int, h: float) -> AssetRun:
    run = AssetRun(state_name="soc_pu")
    soc_kwh = a.soc_now_pu * a.capacity_kwh
    for t in range(n):
        discharge_kw = act.up_kw[t] - act.down_kw[t]
        if abs(discharge_kw) > a.power_kw * (1 + TOL) + TOL:
            run.violations.append(f"slot {t}: {abs(discharge_kw):.3f} kW exceeds the power of {a.power_kw} kW")
        if discharge_kw >= 0:
            soc_kwh -= discharge_kw * h / a.discharge_efficiency
        else:
            soc_kwh += -discharge_kw * h * a.charge_efficiency
        soc = soc_kwh / a.capacity_kwh
        if soc < a.soc_min_pu - TOL or soc > a.soc_max_pu + TOL:
            run.violations.append(f"slot {t}: state of charge {soc:.6f} outside [{a.soc_min_pu}, {a.soc_max_pu}]")
        run.power_kw.append(-discharge_kw)
        run.state.append(soc)
    return run


def _window_load(plan_energy_kwh: float, need_kwh: float, efficiency: float, power_kw: float, start: int, end: int,
                 act: Activation, n: int, h: float, what: str) -> AssetRun:
    """A load that must put `need_kwh` (after `efficiency`) in [start, end): plan = full power from
    `start`; committed slots follow plan - up + down, free window slots are re-planned earliest first."""
    run = AssetRun(state_name="energy_kwh")
    plan = [0.0] * n
    left = plan_energy_kwh
    for t in range(start, end):
        plan[t] = min(power_kw, max(left, 0.0) / h)
        left -= plan[t] * h
    draw: list[float | None] = [None] * n
    for t in range(n):
        if t in act.committed or act.up_kw[t] or act.down_kw[t]:
            kw = plan[t] - act.up_kw[t] + act.down_kw[t]
            limit = power_kw if start <= t < end else 0.0
            if kw < -TOL or kw > limit * (1 + TOL) + TOL:
                run.violations.append(f"slot {t}: {what} would draw {kw:.3f} kW, allowed 0..{limit} kW")
            draw[t] = kw
        elif not start <= t < end:
            draw[t] = 0.0
    still_kwh = plan_energy_kwh - sum(kw for kw in draw if kw is not None) * h
    if still_kwh < -TOL * max(1.0, plan_energy_kwh):
        run.violations.append(f"{what} draws {-still_kwh:.3f} kWh more than it needs in its window")
    for t in range(start, end):  # re-plan the free slots of the window, earliest first
        if draw[t] is None:
            draw[t] = min(power_kw, max(still_kwh, 0.0) / h)
            still_kwh -= draw[t] * h  # type: ignore[operator]
    if still_kwh > TOL * max(1.0, plan_energy_kwh):
        run.violations.append(f"{what} misses {still_kwh * efficiency:.3f} kWh of its need by the end of its window")
    total = 0.0
    for t in range(n):
        kw = draw[t] or 0.0
        total += kw * h
        run.power_kw.append(kw)
        run.state.append(total * efficiency)
    if total * efficiency < need_kwh - TOL * max(1.0, need_kwh):
        run.violations.append(f"{what} gets {total * efficiency:.3f} kWh, needs {need_kwh} kWh")
    return run


def _pv(a: CurtailablePVAsset, act: Activation, n: int) -> AssetRun:
    run = AssetRun(state_name="curtailed_kw")
    for t in range(n):
        if act.up_kw[t] > TOL:
            run.violations.append(f"slot {t}: PV cannot inject more than its forecast ({act.up_kw[t]} kW UP)")
        if act.down_kw[t] > a.forecast_kw[t] * (1 + TOL) + TOL:
            run.violations.append(f"slot {t}: curtails {act.down_kw[t]} kW of a {a.forecast_kw[t]} kW forecast")
        run.power_kw.append(-(a.forecast_kw[t] - act.down_kw[t]))
        run.state.append(act.down_kw[t])
    return run


def _heat_pump(a: HeatPumpAsset, act: Activation, n: int, h: float) -> AssetRun:
    run = AssetRun(state_name="temperature_deviation_k")
    dev_k = 0.0
    for t in range(n):
        kw = a.baseline_kw - act.up_kw[t] + act.down_kw[t]
        if kw < -TOL or kw > a.max_kw * (1 + TOL) + TOL:
            run.violations.append(f"slot {t}: heat pump would draw {kw:.3f} kW, allowed 0..{a.max_kw} kW")
        dev_k += (kw - a.baseline_kw) * h * a.cop / a.thermal_capacity_kwh_per_k
        if abs(dev_k) > a.comfort_band_k * (1 + TOL) + TOL:
            run.violations.append(f"slot {t}: temperature {dev_k:+.4f} K from the set point, band ±{a.comfort_band_k} K")
        run.power_kw.append(kw)
        run.state.append(dev_k)
    return run


def simulate_asset(asset: AssetBase, round_config: RoundConfig, activation: Activation) -> AssetRun:
    """Run `asset` over the round's slots under `activation`; `run.violations` lists what breaks."""
    n = round_config.slot_count
    if len(activation.up_kw) != n or len(activation.down_kw) != n:
        raise InputError("activation", f"needs {n} values per direction, one per slot", order_id=asset.name)
    asset.check_for_round(round_config)
    h = round_config.slot_seconds / 3600
    if isinstance(asset, BatteryAsset):
        return _battery(asset, activation, n, h)
    if isinstance(asset, EVAsset):
        return _window_load(asset.energy_need_kwh / asset.charge_efficiency, asset.energy_need_kwh,
                            asset.charge_efficiency, asset.charger_kw, asset.arrival_slot, asset.departure_slot,
                            activation, n, h, "the EV")
    if isinstance(asset, ShiftableLoadAsset):
        return _window_load(asset.energy_kwh, asset.energy_kwh, 1.0, asset.power_kw, asset.window_start_slot,
                            asset.window_end_slot, activation, n, h, "the load")
    if isinstance(asset, CurtailablePVAsset):
        return _pv(asset, activation, n)
    if isinstance(asset, HeatPumpAsset):
        return _heat_pump(asset, activation, n, h)
    raise InputError("asset", f"unsupported asset type {type(asset).__name__}")


def simulate_assets(assets: Mapping[str, AssetBase], round_config: RoundConfig, offers: Sequence[FlexOffer],
                    trades: Sequence[Trade]) -> dict[str, AssetRun]:
    """Per asset id (`assets` maps asset id to asset): the run under the round's trades."""
    acts = Activation.from_trades(round_config, offers, trades)
    return {aid: simulate_asset(a, round_config, acts.get(aid, Activation.none(round_config.slot_count)))
            for aid, a in assets.items()}


__all__ = ["Activation", "AssetRun", "simulate_asset", "simulate_assets"]
