"""Time-coupled devices: batteries, shiftable loads, curtailable PV and EV charging.

Each kind is added for all its devices and slots at once (one block of shape devices x slots
per variable, one constraint group per kind). Powers are in MW, energies in MWh; a slot lasts
`slot_h` hours, so any slot length works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from flexgrid.errors import InputError

FloatArray = npt.NDArray[np.float64]


def _check(name: str, value: float, *, device: str, minimum: float = 0.0, strict: bool = False) -> None:
    if not math.isfinite(value) or value < minimum or (strict and value <= minimum):
        raise InputError(name, f"must be {'>' if strict else '>='} {minimum} and finite, got {value}", order_id=device)


@dataclass(frozen=True)
class Battery:
    device_id: str
    bus: int
    energy_mwh: float
    p_charge_mw: float
    p_discharge_mw: float
    soc_initial_mwh: float
    soc_final_min_mwh: float = 0.0
    eta_charge: float = 0.95
    eta_discharge: float = 0.95
    cost_eur_per_mwh: float = 1.0  # wear per MWh discharged

    def __post_init__(self) -> None:
        for f in ("energy_mwh", "p_charge_mw", "p_discharge_mw", "soc_initial_mwh", "soc_final_min_mwh",
                  "cost_eur_per_mwh"):
            _check(f, getattr(self, f), device=self.device_id)
        for f in ("eta_charge", "eta_discharge"):
            v = getattr(self, f)
            if not (0 < v <= 1):
                raise InputError(f, f"must be in (0, 1], got {v}", order_id=self.device_id)
        if self.soc_initial_mwh > self.energy_mwh or self.soc_final_min_mwh > self.energy_mwh:
            raise InputError("soc_initial_mwh", "state of charge above the energy capacity", order_id=self.device_id)


@dataclass(frozen=True)
class ShiftableLoad:
    """A load that must draw `energy_mwh` within slots [start_slot, end_slot), at most `p_max_mw`."""

    device_id: str
    bus: int
    energy_mwh: float
    p_max_mw: float
    start_slot: int
    end_slot: int


@dataclass(frozen=True)
class CurtailablePV:
    """PV with its own availability (MW per slot); curtailing costs `cost_eur_per_mwh`."""

    device_id: str
    bus: int
    available_mw: tuple[float, ...]
    cost_eur_per_mwh: float = 0.0


@dataclass(frozen=True)
class EVCharger:
    """An EV plugged in from `arrival_slot` to `departure_slot` (exclusive) needing `energy_mwh`."""

    device_id: str
    bus: int
    energy_mwh: float
    p_max_mw: float
    arrival_slot: int
    departure_slot: int
    eta: float = 0.92


@dataclass(frozen=True)
class Devices:
    batteries: tuple[Battery, ...] = ()
    shiftable: tuple[ShiftableLoad, ...] = ()
    pv: tuple[CurtailablePV, ...] = ()
    evs: tuple[EVCharger, ...] = ()

    def every(self) -> tuple[Battery | ShiftableLoad | CurtailablePV | EVCharger, ...]:
        """Every device, of every kind."""
        return (*self.batteries, *self.shiftable, *self.pv, *self.evs)

    def validate(self, slot_count: int, slot_h: float) -> None:
        ids = [d.device_id for d in self.every()]
        if len(set(ids)) != len(ids):
            raise InputError("device_id", "device ids must be unique")
        for s in self.shiftable:
            _check("energy_mwh", s.energy_mwh, device=s.device_id)
            _check("p_max_mw", s.p_max_mw, device=s.device_id)
            if not 0 <= s.start_slot < s.end_slot <= slot_count:
                raise InputError("end_slot", f"window [{s.start_slot}, {s.end_slot}) is outside 0..{slot_count}",
                                 order_id=s.device_id)
            if s.energy_mwh > s.p_max_mw * (s.end_slot - s.start_slot) * slot_h + 1e-9:
                raise InputError("energy_mwh", "more energy than the window can take at p_max_mw", order_id=s.device_id)
        for p in self.pv:
            if len(p.available_mw) != slot_count:
                raise InputError("available_mw", f"needs {slot_count} values", order_id=p.device_id)
            for v in p.available_mw:
                _check("available_mw", v, device=p.device_id)
        for e in self.evs:
            _check("energy_mwh", e.energy_mwh, device=e.device_id)
            _check("p_max_mw", e.p_max_mw, device=e.device_id)
            if not 0 <= e.arrival_slot < e.departure_slot <= slot_count:
                raise InputError("departure_slot", "plug-in window outside the round", order_id=e.device_id)
            if e.energy_mwh > e.p_max_mw * e.eta * (e.departure_slot - e.arrival_slot) * slot_h + 1e-9:
                raise InputError("energy_mwh", "the EV cannot be charged in its window", order_id=e.device_id)


def soc_dynamics(n_dev: int, t_count: int) -> sp.csr_matrix:
    """Matrix D with (D s)[d, t] = s[d, t] - s[d, t-1] (slot-major layout, s[-1] := 0)."""
    eye_t = sp.eye(t_count, format="csr")
    shift = sp.eye(t_count, k=-1, format="csr")
    return sp.kron(eye_t - shift, sp.eye(n_dev), format="csr")
