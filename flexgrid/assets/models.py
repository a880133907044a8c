"""Typed descriptions of the assets a prosumer owns (docs/assets.md).

Each model is a frozen pydantic model validated on construction (bad input raises
`flexgrid.errors.InputError` naming the field, with the asset's name as the order id). What
depends on the round (slot windows, forecast length) is checked against the round by
`check_for_round`. Units are in the names: kW, kWh, per unit (`_pu`, a fraction 0..1), EUR/MWh.

The baseline of each asset (what it does when no offer is activated) is part of its
description, because flexibility is measured against it:

- battery: idle (0 kW);
- EV: charges at full charger power from arrival until its need is met ("charge now");
- shiftable load: runs at full power from the start of its window until its energy is drawn;
- curtailable PV: injects its forecast;
- heat pump: draws `baseline_kw` in every slot to hold its set point.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Self

from eth_utils import keccak
from pydantic import Field, model_validator

from flexgrid.errors import InputError
from flexgrid.trading import FlexModel, RoundConfig


def _finite(name: str, value: float, asset: str, *, minimum: float = 0.0, strict: bool = False) -> None:
    if not math.isfinite(value):
        raise InputError(name, f"must be a finite number, got {value}", order_id=asset)
    if value < minimum or (strict and value <= minimum):
        raise InputError(name, f"must be {'>' if strict else '>='} {minimum}, got {value}", order_id=asset)


def _fraction(name: str, value: float, asset: str, *, zero_ok: bool = True) -> None:
    _finite(name, value, asset)
    if value > 1.0 or (not zero_ok and value <= 0.0):
        raise InputError(name, f"must be in {'[0' if zero_ok else '(0'}, 1], got {value}", order_id=asset)


class AssetBase(FlexModel):
    """Common fields: the asset's name (its identity for the owner) and its bytes32 asset id."""

    name: str

    @model_validator(mode="after")
    def _check_name(self) -> Self:
        if not self.name.strip():
            raise InputError("name", "must not be empty")
        return self

    @property
    def asset_id(self) -> str:
        """The `assetId` of its offers: the name if it is a bytes32 already, else keccak256(utf8(name))."""
        if len(self.name) == 66 and self.name.startswith("0x"):
            try:
                bytes.fromhex(self.name[2:])
                return self.name.lower()
            except ValueError:
                pass
        return "0x" + keccak(text=self.name).hex()

    def check_for_round(self, round_config: RoundConfig) -> None:
        """Raise `InputError` if the asset does not fit the round (windows, forecast length)."""

    def baseline_schedule_kw(self, round_config: RoundConfig) -> tuple[float, ...]:
        """Planned power per slot without activation, kW; > 0 consumes, < 0 injects."""
        raise NotImplementedError


class BatteryAsset(AssetBase):
    """A stationary battery. State of charge as fractions of the capacity (`_pu`)."""

    kind: Literal["battery"] = "battery"
    capacity_kwh: float
    power_kw: float  # both charging and discharging
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_now_pu: float
    soc_min_pu: float = 0.1
    soc_max_pu: float = 0.9
    degradation_cost_eur_per_mwh: float  # wear per MWh passing through the cells

    @model_validator(mode="after")
    def _check(self) -> Self:
        n = self.name
        _finite("capacity_kwh", self.capacity_kwh, n, strict=True)
        _finite("power_kw", self.power_kw, n, strict=True)
        _fraction("charge_efficiency", self.charge_efficiency, n, zero_ok=False)
        _fraction("discharge_efficiency", self.discharge_efficiency, n, zero_ok=False)
        for f in ("soc_now_pu", "soc_min_pu", "soc_max_pu"):
            _fraction(f, getattr(self, f), n)
        if self.soc_min_pu > self.soc_max_pu:
            raise InputError("soc_min_pu", f"{self.soc_min_pu} is above soc_max_pu = {self.soc_max_pu}", order_id=n)
        if not self.soc_min_pu <= self.soc_now_pu <= self.soc_max_pu:
            raise InputError(
                "soc_now_pu",
                f"{self.soc_now_pu} is outside [soc_min_pu, soc_max_pu] = [{self.soc_min_pu}, {self.soc_max_pu}]",
                order_id=n,
            )
        _finite("degradation_cost_eur_per_mwh", self.degradation_cost_eur_per_mwh, n)
        return self

    def baseline_schedule_kw(self, round_config: RoundConfig) -> tuple[float, ...]:
        return (0.0,) * round_config.slot_count


def _window_check(asset: str, start_field: str, start: int, end_field: str, end: int, slot_count: int) -> None:
    if start < 0:
        raise InputError(start_field, f"must be >= 0, got {start}", order_id=asset)
    if end <= start:
        raise InputError(end_field, f"{end} must be after {start_field} = {start} (end is exclusive)", order_id=asset)
    if end > slot_count:
        raise InputError(end_field, f"{end} is beyond the round's {slot_count} slots", order_id=asset)


def _charge_now(energy_kwh: float, power_kw: float, start: int, end: int, slot_count: int, slot_h: float
                ) -> tuple[float, ...]:
    """Full power from `start` until `energy_kwh` is drawn; the last slot takes the remainder."""
    out = [0.0] * slot_count
    left = energy_kwh
    for t in range(start, end):
        if left <= 1e-12:
            break
        kw = min(power_kw, left / slot_h)
        out[t] = kw
        left -= kw * slot_h
    return tuple(out)


class EVAsset(AssetBase):
    """An electric vehicle plugged in from `arrival_slot` to `departure_slot` (exclusive)."""

    kind: Literal["ev"] = "ev"
    arrival_slot: int
    departure_slot: int
    energy_need_kwh: float  # energy into the car's battery by departure
    charger_kw: float
    charge_efficiency: float = 0.92
    # what the owner asks per MWh of charging moved later (the risk and nuisance of a late full car)
    value_of_lateness_eur_per_mwh: float

    @model_validator(mode="after")
    def _check(self) -> Self:
        n = self.name
        _finite("energy_need_kwh", self.energy_need_kwh, n)
        _finite("charger_kw", self.charger_kw, n, strict=True)
        _fraction("charge_efficiency", self.charge_efficiency, n, zero_ok=False)
        _finite("value_of_lateness_eur_per_mwh", self.value_of_lateness_eur_per_mwh, n)
        if self.arrival_slot < 0:
            raise InputError("arrival_slot", f"must be >= 0, got {self.arrival_slot}", order_id=n)
        if self.departure_slot <= self.arrival_slot:
            raise InputError("departure_slot", f"{self.departure_slot} must be after arrival_slot = "
                             f"{self.arrival_slot} (departure is exclusive)", order_id=n)
        return self

    @property
    def grid_energy_kwh(self) -> float:
        """Energy drawn from the grid to put `energy_need_kwh` into the car."""
        return self.energy_need_kwh / self.charge_efficiency

    def check_for_round(self, round_config: RoundConfig) -> None:
        _window_check(self.name, "arrival_slot", self.arrival_slot, "departure_slot", self.departure_slot,
                      round_config.slot_count)
        slot_h = round_config.slot_seconds / 3600
        most = self.charger_kw * (self.departure_slot - self.arrival_slot) * slot_h * self.charge_efficiency
        if self.energy_need_kwh > most + 1e-9:
            raise InputError("energy_need_kwh", f"{self.energy_need_kwh} kWh cannot be charged in the plug-in "
                             f"window (at most {most:.3f} kWh)", order_id=self.name)

    def baseline_schedule_kw(self, round_config: RoundConfig) -> tuple[float, ...]:
        self.check_for_round(round_config)
        return _charge_now(self.grid_energy_kwh, self.charger_kw, self.arrival_slot, self.departure_slot,
                           round_config.slot_count, round_config.slot_seconds / 3600)


class ShiftableLoadAsset(AssetBase):
    """A load that must draw `energy_kwh` in slots [window_start_slot, window_end_slot)."""

    kind: Literal["shiftable"] = "shiftable"
    energy_kwh: float
    power_kw: float
    window_start_slot: int
    window_end_slot: int
    shift_cost_eur_per_mwh: float  # the owner's nuisance per MWh moved
    interruptible: bool = True  # False: a started cycle is moved as a whole (all-or-nothing offers)

    @model_validator(mode="after")
    def _check(self) -> Self:
        n = self.name
        _finite("energy_kwh", self.energy_kwh, n, strict=True)
        _finite("power_kw", self.power_kw, n, strict=True)
        _finite("shift_cost_eur_per_mwh", self.shift_cost_eur_per_mwh, n)
        if self.window_start_slot < 0:
            raise InputError("window_start_slot", f"must be >= 0, got {self.window_start_slot}", order_id=n)
        if self.window_end_slot <= self.window_start_slot:
            raise InputError("window_end_slot", f"{self.window_end_slot} must be after window_start_slot = "
                             f"{self.window_start_slot} (end is exclusive)", order_id=n)
        return self

    def check_for_round(self, round_config: RoundConfig) -> None:
        _window_check(self.name, "window_start_slot", self.window_start_slot, "window_end_slot",
                      self.window_end_slot, round_config.slot_count)
        slot_h = round_config.slot_seconds / 3600
        most = self.power_kw * (self.window_end_slot - self.window_start_slot) * slot_h
        if self.energy_kwh > most + 1e-9:
            raise InputError("energy_kwh", f"{self.energy_kwh} kWh does not fit the window at {self.power_kw} kW "
                             f"(at most {most:.3f} kWh)", order_id=self.name)

    def baseline_schedule_kw(self, round_config: RoundConfig) -> tuple[float, ...]:
        self.check_for_round(round_config)
        return _charge_now(self.energy_kwh, self.power_kw, self.window_start_slot, self.window_end_slot,
                           round_config.slot_count, round_config.slot_seconds / 3600)


class CurtailablePVAsset(AssetBase):
    """A PV plant whose feed-in can be curtailed; curtailment loses the feed-in tariff."""

    kind: Literal["pv"] = "pv"
    forecast_kw: tuple[float, ...]  # one value per slot of the round
    feed_in_tariff_eur_per_mwh: float

    @model_validator(mode="after")
    def _check(self) -> Self:
        n = self.name
        if not self.forecast_kw:
            raise InputError("forecast_kw", "needs one value per slot of the round", order_id=n)
        for i, kw in enumerate(self.forecast_kw):
            _finite(f"forecast_kw[{i}]", kw, n)
        _finite("feed_in_tariff_eur_per_mwh", self.feed_in_tariff_eur_per_mwh, n)
        return self

    def check_for_round(self, round_config: RoundConfig) -> None:
        if len(self.forecast_kw) != round_config.slot_count:
            raise InputError("forecast_kw", f"has {len(self.forecast_kw)} values, the round has "
                             f"{round_config.slot_count} slots", order_id=self.name)

    def baseline_schedule_kw(self, round_config: RoundConfig) -> tuple[float, ...]:
        self.check_for_round(round_config)
        return tuple(-kw for kw in self.forecast_kw)


class HeatPumpAsset(AssetBase):
    """A heat pump in a building whose thermal mass lets it shift consumption within a comfort band.

    Thermal model: the indoor temperature deviates from the set point by
    `dT_t = dT_(t-1) + (p_t - baseline_kw) * h * cop / thermal_capacity_kwh_per_k`;
    comfort requires `|dT| <= comfort_band_k` at the end of every slot.
    """

    kind: Literal["heat_pump"] = "heat_pump"
    max_kw: float  # electric
    baseline_kw: float  # electric power that holds the set point
    cop: float
    thermal_capacity_kwh_per_k: float
    comfort_band_k: float
    comfort_cost_eur_per_kh: float  # the owner's price of one kelvin away from the set point for one hour

    @model_validator(mode="after")
    def _check(self) -> Self:
        n = self.name
        _finite("max_kw", self.max_kw, n, strict=True)
        _finite("baseline_kw", self.baseline_kw, n)
        if self.baseline_kw > self.max_kw:
            raise InputError("baseline_kw", f"{self.baseline_kw} kW is above max_kw = {self.max_kw}", order_id=n)
        _finite("cop", self.cop, n, strict=True)
        _finite("thermal_capacity_kwh_per_k", self.thermal_capacity_kwh_per_k, n, strict=True)
        _finite("comfort_band_k", self.comfort_band_k, n, strict=True)
        _finite("comfort_cost_eur_per_kh", self.comfort_cost_eur_per_kh, n)
        return self

    @property
    def band_kwh(self) -> float:
        """Electric energy that moves the temperature by the whole comfort band (one side)."""
        return self.comfort_band_k * self.thermal_capacity_kwh_per_k / self.cop

    def baseline_schedule_kw(self, round_config: RoundConfig) -> tuple[float, ...]:
        return (self.baseline_kw,) * round_config.slot_count


Asset = Annotated[
    BatteryAsset | EVAsset | ShiftableLoadAsset | CurtailablePVAsset | HeatPumpAsset,
    Field(discriminator="kind"),
]
ASSET_TYPES: dict[str, type[AssetBase]] = {
    "battery": BatteryAsset,
    "ev": EVAsset,
    "shiftable": ShiftableLoadAsset,
    "pv": CurtailablePVAsset,
    "heat_pump": HeatPumpAsset,
}


def parse_asset(data: dict[str, Any]) -> AssetBase:
    """Build an asset from a dict with a `kind` (battery, ev, shiftable, pv, heat_pump)."""
    kind = data.get("kind")
    cls = ASSET_TYPES.get(str(kind))
    if cls is None:
        raise InputError("kind", f"unknown asset kind {kind!r} (one of {', '.join(ASSET_TYPES)})",
                         order_id=data.get("name") if isinstance(data.get("name"), str) else None)
    return cls.model_validate(data)


__all__ = [
    "ASSET_TYPES",
    "Asset",
    "AssetBase",
    "BatteryAsset",
    "CurtailablePVAsset",
    "EVAsset",
    "HeatPumpAsset",
    "ShiftableLoadAsset",
    "parse_asset",
]
