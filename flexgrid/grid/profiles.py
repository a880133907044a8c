"""Base load and PV profiles per node and slot.

By default FlexGrid ships one synthetic day (`data/daily_profiles_15min.csv`: a residential
load shape with morning and evening peaks, and a clear-sky PV shape, both normalised to a peak
of 1). Each bus's load follows the load shape scaled to the net's nominal `p_mw`/`q_mvar`; each
static generator follows the PV shape scaled to its `p_mw`; `gen` elements are constant. Slots
of any length are averaged from the 15-minute shape (the day wraps around at midnight, UTC).

Real profiles come as CSV in long form: `slot,bus,load_kw,pv_kw[,load_kvar]`, one row per bus
and slot that has load or PV (absent rows are zero).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandapower as pp

from flexgrid.errors import InputError
from flexgrid.grid.topology import GridView

FloatArray = npt.NDArray[np.float64]
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Profiles:
    """Per node (rows) and slot (columns): base load and available PV, in MW / Mvar."""

    load_p_mw: FloatArray
    load_q_mvar: FloatArray
    pv_p_mw: FloatArray

    @property
    def slot_count(self) -> int:
        return int(self.load_p_mw.shape[1])

    def net_withdrawal_mw(self) -> FloatArray:
        return self.load_p_mw - self.pv_p_mw


def daily_shapes() -> tuple[FloatArray, FloatArray]:
    """The shipped 15-minute load and PV shapes (96 values each, peak 1)."""
    text = resources.files("flexgrid.grid").joinpath("data/daily_profiles_15min.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    return (
        np.array([float(r["load_pu"]) for r in rows]),
        np.array([float(r["pv_pu"]) for r in rows]),
    )


def shape_for_slots(shape_15min: FloatArray, slot_start_s: int, slot_seconds: int, slot_count: int) -> FloatArray:
    """Average of a 15-minute daily shape over each slot (any slot length, wraps at midnight)."""
    per_second_cum = np.concatenate([[0.0], np.cumsum(np.repeat(shape_15min, 900))])  # one day

    def integral(t_s: npt.NDArray[np.int64]) -> FloatArray:
        days, rem = np.divmod(t_s, SECONDS_PER_DAY)
        return np.asarray(days * per_second_cum[-1] + per_second_cum[rem], dtype=float)

    starts = slot_start_s + slot_seconds * np.arange(slot_count, dtype=np.int64)
    return (integral(starts + slot_seconds) - integral(starts)) / slot_seconds


def synthetic_profiles(
    net: pp.pandapowerNet,
    view: GridView,
    *,
    slot_start_s: int,
    slot_seconds: int,
    slot_count: int,
    load_scale: float = 1.0,
    pv_scale: float = 1.0,
) -> Profiles:
    """The shipped synthetic day applied to the net's loads and generators."""
    load_shape, pv_shape = daily_shapes()
    lf = shape_for_slots(load_shape, slot_start_s, slot_seconds, slot_count) * load_scale
    pf = shape_for_slots(pv_shape, slot_start_s, slot_seconds, slot_count) * pv_scale
    p_nom = np.zeros(view.n_node)
    q_nom = np.zeros(view.n_node)
    pv_nom = np.zeros(view.n_node)
    const = np.zeros(view.n_node)
    for table, target, sign in (("load", p_nom, 1.0), ("sgen", pv_nom, 1.0), ("gen", const, 1.0)):
        df = getattr(net, table)
        if len(df) == 0:
            continue
        for _, row in df[df.in_service].iterrows():
            node = view.node_of_bus.get(int(row.bus))
            if node is None:
                continue
            scaling = float(row.get("scaling", 1.0))
            target[node] += sign * float(row.p_mw) * scaling
            if table == "load":
                q_nom[node] += float(row.q_mvar) * scaling
    return Profiles(
        load_p_mw=np.outer(p_nom, lf),
        load_q_mvar=np.outer(q_nom, lf),
        pv_p_mw=np.outer(pv_nom, pf) + np.outer(const, np.ones(slot_count)),
    )


def profiles_from_csv(source: str | Path, view: GridView, *, slot_count: int) -> Profiles:
    """Read long-form profiles (`slot,bus,load_kw,pv_kw[,load_kvar]`); `source` is a path or CSV text."""
    text = Path(source).read_text() if isinstance(source, Path) or "\n" not in str(source) else str(source)
    reader = csv.DictReader(io.StringIO(text))
    required = {"slot", "bus", "load_kw", "pv_kw"}
    if reader.fieldnames is None or not required <= set(reader.fieldnames):
        raise InputError("profiles", f"CSV needs the columns {sorted(required)}, got {reader.fieldnames}")
    load = np.zeros((view.n_node, slot_count))
    q = np.zeros((view.n_node, slot_count))
    pv = np.zeros((view.n_node, slot_count))
    for line_no, row in enumerate(reader, start=2):
        where = f"profiles line {line_no}"
        try:
            slot = int(row["slot"])
            bus = int(row["bus"])
            values = {k: float(row[k]) for k in ("load_kw", "pv_kw")}
            values["load_kvar"] = float(row.get("load_kvar") or 0.0)
        except (TypeError, ValueError) as exc:
            raise InputError(where, f"not a number: {exc}") from exc
        if not 0 <= slot < slot_count:
            raise InputError(f"{where}.slot", f"slot {slot} is outside the round (0..{slot_count - 1})")
        node = view.node(bus, field_name=f"{where}.bus")
        for k, v in values.items():
            if not math.isfinite(v):
                raise InputError(f"{where}.{k}", f"must be finite, got {v}")
        if values["load_kw"] < 0 or values["pv_kw"] < 0:
            raise InputError(f"{where}", "load_kw and pv_kw must not be negative")
        load[node, slot] += values["load_kw"] / 1e3
        pv[node, slot] += values["pv_kw"] / 1e3
        q[node, slot] += values["load_kvar"] / 1e3
    return Profiles(load_p_mw=load, load_q_mvar=q, pv_p_mw=pv)
