"""The meta-service: from an asset's description to valid FlexOffers for a round.

`offer_options` works out what the asset can safely promise in the target slots, as mutually
exclusive options (one accepted at most), each priced from the asset's own costs;
`propose_offers` turns them into `FlexOffer`s that pass `validate_for_round`.

Why any accepted combination is feasible (the property test in tests/assets checks it by an
independent simulation):

- every option of one asset and direction is sized so that even full activation in all of its
  slots keeps the asset inside its limits; a partial activation moves it less, and at most one
  option of a group is accepted;
- the two directions draw on separate resources: a battery's UP options use only the energy
  above `soc_now` (down to `soc_min`), its DOWN options only the room above it (up to `soc_max`);
  a heat pump's UP options use the lower half of its comfort band, DOWN the upper half; a
  shiftable load or EV moves energy between the target slots and the rest of its window (UP
  options at most the free room outside the target, DOWN at most the planned energy outside
  it), so UP and DOWN offers made for the same target slots can be accepted together.

Pricing: a firm option (`min_activation = 1`: all of it or nothing) is priced at the asset's
cost per MWh; a divisible option carries `DIVISIBLE_PREMIUM` on top, because the asset keeps the
whole volume reserved but is paid only for what is activated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak

from flexgrid.assets.models import (
    AssetBase,
    BatteryAsset,
    CurtailablePVAsset,
    EVAsset,
    HeatPumpAsset,
    ShiftableLoadAsset,
)
from flexgrid.errors import InputError
from flexgrid.trading import ZERO_BYTES32, Direction, FlexOffer, RoundConfig, validate_for_round

DIVISIBLE_PREMIUM = 1.10
FIRM = 1.0
ONE_HOUR_S = 3600


@dataclass(frozen=True)
class OfferOption:
    """One option an asset can offer: power per slot, minimum activation, price, and why."""

    label: str
    direction: Direction
    slots: tuple[int, ...]
    max_kw: tuple[float, ...]
    min_activation: float
    price_eur_per_mwh: float

    def energy_kwh(self, slot_seconds: int) -> float:
        return sum(self.max_kw) * slot_seconds / 3600


def _floor_kw(kw: float) -> float:
    """Round a power down to whole watts (the on-chain encoding), never up: offers stay feasible."""
    return max(math.floor(round(kw * 1000, 6)), 0) / 1000


def _ceil_price(eur_per_mwh: float) -> float:
    """Round a price up to 6 decimals (micro-EUR): never sell below cost."""
    return max(math.ceil(round(eur_per_mwh * 1e6, 3)), 0) / 1e6


def _option(label: str, direction: Direction, powers: dict[int, float], min_activation: float,
            price: float) -> OfferOption | None:
    kept = [(t, _floor_kw(kw)) for t, kw in sorted(powers.items())]
    kept = [(t, kw) for t, kw in kept if kw > 0]
    if not kept:
        return None
    return OfferOption(label, direction, tuple(t for t, _ in kept), tuple(kw for _, kw in kept), min_activation,
                       _ceil_price(price))


def _target_slots(round_config: RoundConfig, slots: Sequence[int] | None, asset: str) -> list[int]:
    if slots is None:
        return list(range(round_config.slot_count))
    out = sorted(set(slots))
    if not out:
        raise InputError("slots", "needs at least one slot", order_id=asset)
    for s in out:
        if not 0 <= s < round_config.slot_count:
            raise InputError("slots", f"slot {s} is outside the round (slots 0..{round_config.slot_count - 1})",
                             order_id=asset)
    return out


def _battery(a: BatteryAsset, rc: RoundConfig, d: Direction, target: list[int]) -> list[OfferOption]:
    h = rc.slot_seconds / 3600
    if d == Direction.UP:  # discharge: the energy above soc_min reaches the grid after losses
        energy_kwh = (a.soc_now_pu - a.soc_min_pu) * a.capacity_kwh * a.discharge_efficiency
        cost = a.degradation_cost_eur_per_mwh / a.discharge_efficiency  # cell throughput per MWh delivered
        verb = "discharge"
    else:  # charge: the room below soc_max, measured at the grid side
        energy_kwh = (a.soc_max_pu - a.soc_now_pu) * a.capacity_kwh / a.charge_efficiency
        cost = a.degradation_cost_eur_per_mwh * a.charge_efficiency
        verb = "charge"
    if energy_kwh <= 0:
        return []
    out: list[OfferOption | None] = []
    spread_kw = min(a.power_kw, energy_kwh / (len(target) * h))
    out.append(_option(f"{verb} over the {len(target)} target slots", d, dict.fromkeys(target, spread_kw), 0.0,
                       cost * DIVISIBLE_PREMIUM))
    k = min(len(target), max(1, round(ONE_HOUR_S / rc.slot_seconds)))
    block_kw = min(a.power_kw, energy_kwh / (k * h))
    if k < len(target) and _floor_kw(block_kw) > _floor_kw(spread_kw):
        c_rate_per_h = block_kw / a.capacity_kwh  # fast cycling wears the cells more
        out.append(_option(f"{verb} at {_floor_kw(block_kw)} kW for {k * h:g} h", d,
                           dict.fromkeys(target[:k], block_kw), FIRM, cost * (1 + c_rate_per_h)))
    return [o for o in out if o is not None]


def _window(baseline: Sequence[float], power_kw: float, start: int, end: int, target: list[int], d: Direction,
            h: float, cost: float, divisible: bool, what: str) -> list[OfferOption]:
    """Options of a load that must draw a fixed energy in [start, end) at most `power_kw`."""
    inside = [t for t in target if start <= t < end]
    outside = [t for t in range(start, end) if t not in set(inside)]
    if not inside or not outside:
        return []
    if d == Direction.UP:  # draw less in the target, catch up outside it
        room = {t: baseline[t] for t in inside}
        absorb_kwh = sum(power_kw - baseline[t] for t in outside) * h
        verb = f"postpone {what}"
    else:  # draw more in the target, less outside it
        room = {t: power_kw - baseline[t] for t in inside}
        absorb_kwh = sum(baseline[t] for t in outside) * h
        verb = f"advance {what}"
    room = {t: kw for t, kw in room.items() if kw > 1e-9}
    want_kwh = sum(room.values()) * h
    if want_kwh <= 0 or absorb_kwh <= 1e-9:
        return []
    share = min(1.0, absorb_kwh / want_kwh)
    out: list[OfferOption | None] = []
    if divisible:
        out.append(_option(f"{verb}, any part", d, {t: kw * share for t, kw in room.items()}, 0.0,
                           cost * DIVISIBLE_PREMIUM))
    if share >= 1.0 - 1e-12:
        out.append(_option(f"{verb}, all of it", d, room, FIRM, cost))
    elif not divisible:  # a non-interruptible cycle moves whole slots: as many leading slots as fit
        fit: dict[int, float] = {}
        left = absorb_kwh
        for t, kw in sorted(room.items()):
            if kw * h > left + 1e-12:
                break
            fit[t] = kw
            left -= kw * h
        out.append(_option(f"{verb}, first {len(fit)} slots", d, fit, FIRM, cost))
    return [o for o in out if o is not None]


def _heat_pump(a: HeatPumpAsset, rc: RoundConfig, d: Direction, target: list[int]) -> list[OfferOption]:
    h = rc.slot_seconds / 3600
    room_kw = a.baseline_kw if d == Direction.UP else a.max_kw - a.baseline_kw
    verb = "heat less" if d == Direction.UP else "pre-heat"
    if room_kw <= 1e-9:
        return []
    band_kwh = a.band_kwh  # one side of the band, in electric kWh

    def price(kw: float, n_slots: int, premium: float) -> float:
        # cost of the temperature deviation while the option runs at full activation, per MWh shifted
        step_k = kw * h * a.cop / a.thermal_capacity_kwh_per_k
        kelvin_hours = sum(step_k * (i + 1) for i in range(n_slots)) * h
        energy_mwh = kw * n_slots * h / 1000
        return a.comfort_cost_eur_per_kh * kelvin_hours / energy_mwh * premium

    out: list[OfferOption | None] = []
    spread_kw = min(room_kw, band_kwh / (len(target) * h))
    out.append(_option(f"{verb} over the {len(target)} target slots", d, dict.fromkeys(target, spread_kw), 0.0,
                       price(spread_kw, len(target), DIVISIBLE_PREMIUM)))
    k = min(len(target), math.floor(band_kwh / (room_kw * h) + 1e-9))
    if k >= 1 and room_kw > spread_kw + 1e-9:
        label = f"{'switch off' if d == Direction.UP else 'run at full power'} for {k * h:g} h"
        out.append(_option(label, d, dict.fromkeys(target[:k], room_kw), FIRM, price(room_kw, k, 1.0)))
    return [o for o in out if o is not None]


def _pv(a: CurtailablePVAsset, rc: RoundConfig, d: Direction, target: list[int]) -> list[OfferOption]:
    if d == Direction.UP:
        raise InputError("direction", "curtailable PV can only reduce its feed-in (DOWN)", order_id=a.name)
    forecast = {t: a.forecast_kw[t] for t in target if a.forecast_kw[t] > 0}
    if not forecast:
        return []
    out: list[OfferOption | None] = [
        _option("curtail any part of the forecast", d, forecast, 0.0, a.feed_in_tariff_eur_per_mwh * DIVISIBLE_PREMIUM)
    ]
    peak = max(forecast.values())
    midday = {t: kw for t, kw in forecast.items() if kw >= peak / 2}
    out.append(_option("switch the inverter off over the PV peak", d, midday, FIRM, a.feed_in_tariff_eur_per_mwh))
    return [o for o in out if o is not None]


def offer_options(asset: AssetBase, round_config: RoundConfig, *, direction: Direction = Direction.UP,
                  slots: Sequence[int] | None = None) -> list[OfferOption]:
    """The mutually exclusive options `asset` can offer in `direction` over the target `slots`
    (default: the whole round), cheapest first; empty if it has nothing to offer."""
    if isinstance(direction, bool) or direction not in (0, 1):
        raise InputError("direction", f"must be UP (0) or DOWN (1), got {direction!r}", order_id=asset.name)
    direction = Direction(direction)
    target = _target_slots(round_config, slots, asset.name)
    asset.check_for_round(round_config)
    h = round_config.slot_seconds / 3600
    if isinstance(asset, BatteryAsset):
        options = _battery(asset, round_config, direction, target)
    elif isinstance(asset, EVAsset):
        options = _window(asset.baseline_schedule_kw(round_config), asset.charger_kw, asset.arrival_slot,
                          asset.departure_slot, target, direction, h, asset.value_of_lateness_eur_per_mwh, True,
                          "charging")
    elif isinstance(asset, ShiftableLoadAsset):
        options = _window(asset.baseline_schedule_kw(round_config), asset.power_kw, asset.window_start_slot,
                          asset.window_end_slot, target, direction, h, asset.shift_cost_eur_per_mwh,
                          asset.interruptible, "the load")
    elif isinstance(asset, CurtailablePVAsset):
        options = _pv(asset, round_config, direction, target)
    elif isinstance(asset, HeatPumpAsset):
        options = _heat_pump(asset, round_config, direction, target)
    else:
        raise InputError("asset", f"unsupported asset type {type(asset).__name__}")
    cap = round_config.price_cap_eur_per_mwh
    return sorted((o for o in options if o.price_eur_per_mwh <= cap), key=lambda o: (o.price_eur_per_mwh, o.label))


def exclusive_group_id(asset: AssetBase, round_id: int, direction: Direction) -> str:
    """The bytes32 exclusive group of one asset's options in one round and direction."""
    packed = encode(["bytes32", "uint256", "uint8"], [bytes.fromhex(asset.asset_id[2:]), round_id, int(direction)])
    return "0x" + keccak(packed).hex()


def propose_offers(
    asset: AssetBase,
    round_config: RoundConfig,
    *,
    provider: str,
    bus: int,
    nonce_start: int,
    expiry_s: int,
    direction: Direction = Direction.UP,
    slots: Sequence[int] | None = None,
) -> list[FlexOffer]:
    """Valid FlexOffers for `asset` in the round: its `offer_options`, one offer each, nonces
    `nonce_start, nonce_start + 1, ...`. With two or more options they share one exclusive group
    (at most one is accepted). Unsigned and without `order_id`: sign them with the provider's key."""
    if expiry_s < round_config.gate_closure_s:
        raise InputError("expiry_s", f"{expiry_s} is before the round's gate closure {round_config.gate_closure_s}; "
                         "the offer would expire before it is cleared", order_id=asset.name)
    if nonce_start < 0:
        raise InputError("nonce_start", f"must be >= 0, got {nonce_start}", order_id=asset.name)
    options = offer_options(asset, round_config, direction=direction, slots=slots)
    group = exclusive_group_id(asset, round_config.round_id, direction) if len(options) >= 2 else ZERO_BYTES32
    offers = []
    for i, opt in enumerate(options):
        offer = FlexOffer(
            provider=provider,
            round_id=round_config.round_id,
            bus=bus,
            asset_id=asset.asset_id,
            direction=opt.direction,
            slots=opt.slots,
            min_kw=(0.0,) * len(opt.slots),
            max_kw=opt.max_kw,
            price_eur_per_mwh=opt.price_eur_per_mwh,
            exclusive_group=group,
            min_activation=opt.min_activation,
            nonce=nonce_start + i,
            expiry_s=expiry_s,
        )
        validate_for_round(offer, round_config, now_s=round_config.gate_closure_s)
        offers.append(offer)
    return offers


__all__ = ["DIVISIBLE_PREMIUM", "OfferOption", "exclusive_group_id", "offer_options", "propose_offers"]
