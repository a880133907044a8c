"""Measured delivery: meter series, pluggable baselines, delivered flexibility as `MeterReading`s.

A meter series is the metered net withdrawal of the asset an order comes from (kW averaged
over each slot; > 0 consumes, < 0 injects): the slot just before the round, every slot of the
round, and the same slots on previous days. A baseline estimates what the asset would have done
without activation; delivered flexibility is `baseline - measured` for UP (less consumption /
more injection), `measured - baseline` for DOWN, never below zero, rounded down to whole watts
(the metering leaf's `deliveredPowerW`). A P2P sell order delivers like UP.

`simulate_metering` makes seeded meter data for demos: a site load, day-to-day noise, each
accepted trade delivered in full, or in part by the providers named in `delivery_factor`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from flexgrid.errors import InputError
from flexgrid.market.clearing import leaf_order_id
from flexgrid.trading import Direction, FlexOffer, MeterReading, P2POrder, RoundConfig, Side, Trade


@dataclass(frozen=True)
class MeterSeries:
    """Metered net withdrawal (kW per slot, > 0 consumes) of the asset behind one order."""

    order_id: str  # the trade leaf's order hash
    participant: str
    before_kw: float  # the slot just before the round's first slot
    measured_kw: tuple[float, ...]  # every slot of the round
    history_kw: tuple[tuple[float, ...], ...] = ()  # previous days (oldest first), every slot of the round

    def check(self, slot_count: int) -> None:
        if len(self.measured_kw) != slot_count:
            raise InputError("measured_kw", f"has {len(self.measured_kw)} values, the round has {slot_count} slots",
                             order_id=self.order_id)
        for d, day in enumerate(self.history_kw):
            if len(day) != slot_count:
                raise InputError(f"history_kw[{d}]", f"has {len(day)} values, the round has {slot_count} slots",
                                 order_id=self.order_id)
        values = [self.before_kw, *self.measured_kw, *(v for day in self.history_kw for v in day)]
        if not all(math.isfinite(v) for v in values):
            raise InputError("measured_kw", "meter values must be finite numbers", order_id=self.order_id)

    def measured_before(self, slot: int) -> float:
        """The metered value of the slot before `slot` (the pre-round slot for slot 0)."""
        return self.before_kw if slot == 0 else self.measured_kw[slot - 1]


class Baseline(Protocol):
    """Estimates the withdrawal without activation (kW) in each activated slot of one order."""

    @property
    def name(self) -> str: ...

    def baseline_kw(self, series: MeterSeries, activated_slots: Sequence[int]) -> dict[int, float]: ...


@dataclass(frozen=True)
class MeterBeforeActivation:
    """The metered value of the slot before the first activated slot, held over all activated slots."""

    name: str = "meter-before-activation"

    def baseline_kw(self, series: MeterSeries, activated_slots: Sequence[int]) -> dict[int, float]:
        if not activated_slots:
            return {}
        value = series.measured_before(min(activated_slots))
        return dict.fromkeys(activated_slots, value)


@dataclass(frozen=True)
class SameSlotAverage:
    """The average of the same slot over the previous `days` days (or as many as there are)."""

    days: int = 5
    name: str = "same-slot-average"

    def __post_init__(self) -> None:
        if self.days < 1:
            raise InputError("days", f"must be at least 1, got {self.days}")

    def baseline_kw(self, series: MeterSeries, activated_slots: Sequence[int]) -> dict[int, float]:
        recent = series.history_kw[-self.days:]
        if not recent:
            raise InputError("history_kw", f"the {self.name} baseline needs at least one previous day of metering",
                             order_id=series.order_id)
        return {s: sum(day[s] for day in recent) / len(recent) for s in activated_slots}


BASELINES: dict[str, Baseline] = {b.name: b for b in (MeterBeforeActivation(), SameSlotAverage())}


def _floor_kw(kw: float) -> float:
    return max(math.floor(round(kw * 1000, 6)), 0) / 1000


def order_directions(orders: Sequence[FlexOffer | P2POrder]) -> dict[str, Direction]:
    """Leaf order hash -> the direction in which its delivery is measured (P2P sells as UP)."""
    out: dict[str, Direction] = {}
    for o in orders:
        if isinstance(o, FlexOffer):
            out[leaf_order_id(o)] = o.direction
        elif o.side == Side.SELL:
            out[leaf_order_id(o)] = Direction.UP
    return out


def delivered_kw(direction: Direction, baseline_kw: float, measured_kw: float) -> float:
    """Delivered flexibility in one slot: the measured change against the baseline, in the offer's direction."""
    change = baseline_kw - measured_kw if direction == Direction.UP else measured_kw - baseline_kw
    return _floor_kw(change)


def meter_readings(round_config: RoundConfig, trades: Sequence[Trade], orders: Sequence[FlexOffer | P2POrder],
                   meters: Mapping[str, MeterSeries], baseline: Baseline) -> list[MeterReading]:
    """One `MeterReading` per payee trade (payment > 0) of an offer or P2P sale that has a meter series.

    `meters` is keyed by the trade leaf's order hash. Trades of orders without a series get no
    reading (they cannot be claimed against a metering root)."""
    directions = order_directions(orders)
    activated: dict[str, list[int]] = {}
    for t in trades:
        if t.round_id != round_config.round_id:
            raise InputError("round_id", f"trade is for round {t.round_id}, not {round_config.round_id}",
                             order_id=t.order_id)
        if t.payment_micro > 0 and t.order_id in directions:
            activated.setdefault(t.order_id, []).append(t.slot)
    for oid, series in meters.items():
        series.check(round_config.slot_count)
        if series.order_id != oid:
            raise InputError("order_id", f"the series is keyed {oid} but names {series.order_id}", order_id=oid)
    base: dict[str, dict[int, float]] = {
        oid: baseline.baseline_kw(meters[oid], sorted(slots)) for oid, slots in activated.items() if oid in meters
    }
    readings = []
    for t in trades:
        if t.order_id not in base:
            continue
        series = meters[t.order_id]
        if series.participant.lower() != t.participant.lower():
            raise InputError("participant", f"meter of {series.participant}, trade of {t.participant}",
                             order_id=t.order_id)
        kw = delivered_kw(directions[t.order_id], base[t.order_id][t.slot], series.measured_kw[t.slot])
        readings.append(MeterReading(round_id=t.round_id, participant=t.participant, order_id=t.order_id,
                                     slot=t.slot, delivered_kw=kw))
    return readings


def simulate_metering(round_config: RoundConfig, trades: Sequence[Trade], orders: Sequence[FlexOffer | P2POrder], *,
                      seed: int, history_days: int = 5, noise_pu: float = 0.02,
                      delivery_factor: Mapping[str, float] | None = None) -> dict[str, MeterSeries]:
    """Seeded meter series for every order with payee trades: a site drawing a steady load
    (1.5-3 times its largest accepted power, plus 1 kW) with `noise_pu` relative noise per slot and
    day, minus (UP) or plus (DOWN) the accepted power times the provider's delivery factor
    (`delivery_factor[address]`, default 1: full delivery)."""
    if not (math.isfinite(noise_pu) and 0 <= noise_pu < 0.5):
        raise InputError("noise_pu", f"must be in [0, 0.5), got {noise_pu}")
    if history_days < 0:
        raise InputError("history_days", f"must be >= 0, got {history_days}")
    factors = {k.lower(): v for k, v in (delivery_factor or {}).items()}
    for who, f in factors.items():
        if not (math.isfinite(f) and 0 <= f <= 2):
            raise InputError("delivery_factor", f"{who}: must be in [0, 2], got {f}")
    directions = order_directions(orders)
    n = round_config.slot_count
    accepted: dict[str, dict[int, float]] = {}
    owner: dict[str, str] = {}
    for t in trades:
        if t.payment_micro > 0 and t.order_id in directions:
            accepted.setdefault(t.order_id, {})[t.slot] = accepted.get(t.order_id, {}).get(t.slot, 0.0) + t.kw
            owner[t.order_id] = t.participant
    rng = np.random.default_rng(seed)
    out: dict[str, MeterSeries] = {}
    for oid in sorted(accepted):
        slots = accepted[oid]
        level_kw = max(slots.values()) * rng.uniform(1.5, 3.0) + 1.0
        shape = level_kw * (1 + 0.05 * np.sin(np.arange(-1, n) * 2 * np.pi / max(n, 8)))

        def day(values: np.ndarray) -> np.ndarray:
            return np.asarray(values * (1 + noise_pu * rng.standard_normal(len(values))))

        history = tuple(tuple(round(float(v), 3) for v in day(shape[1:])) for _ in range(history_days))
        today = day(shape)
        sign = -1.0 if directions[oid] == Direction.UP else 1.0
        factor = factors.get(owner[oid].lower(), 1.0)
        for s, kw in slots.items():
            today[s + 1] += sign * factor * kw
        out[oid] = MeterSeries(order_id=oid, participant=owner[oid], before_kw=round(float(today[0]), 3),
                               measured_kw=tuple(round(float(v), 3) for v in today[1:]), history_kw=history)
    return out


__all__ = [
    "BASELINES",
    "Baseline",
    "MeterBeforeActivation",
    "MeterSeries",
    "SameSlotAverage",
    "delivered_kw",
    "meter_readings",
    "order_directions",
    "simulate_metering",
]
