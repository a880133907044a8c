"""Meters, pseudo-measurements and measurement sets for state estimation.

A `Meter` is what a DSO installs at a bus: the bus voltage and the P/Q flow (optionally the
current) of the branch that feeds the bus; at the substation, the flows of the branches that
leave it. Pseudo-measurements come from the load and generation forecast with a configurable
relative standard deviation; buses with neither load nor generation get exact zero-injection
(virtual) measurements. All values are per unit on the model's base.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from flexgrid.errors import InputError
from flexgrid.monitoring.network import ComplexArray, FloatArray, IntArray, NetworkModel


class Kind(IntEnum):
    V = 0  # voltage magnitude at a bus
    P_INJ = 1  # active injection at a bus
    Q_INJ = 2
    P_FLOW = 3  # active flow at the from end of a branch
    Q_FLOW = 4
    I_FLOW = 5  # current magnitude at the from end of a branch


class Source(IntEnum):
    METER = 0
    PSEUDO = 1
    VIRTUAL = 2  # zero injection: known exactly


@dataclass(frozen=True)
class Meter:
    """A meter at a pandapower bus. Accuracy is one standard deviation.

    Defaults (stated, overridable): voltage σ = 0.001 pu (a class-0.2 transducer, 0.2 % at about
    2σ), flow σ = 1 % of the reading with a floor of 0.1 kW/kvar (CT + transducer chain of a
    secondary substation), current σ = 1 % of the reading. `injection`: the P/Q the bus's loads and
    generators exchange with the grid (e.g. the meter of a secondary substation's transformer), with
    the flow accuracy.
    """

    bus: int
    voltage: bool = True
    flow: bool = True
    current: bool = False
    injection: bool = False
    v_sigma_pu: float = 0.001
    flow_sigma_rel: float = 0.01
    flow_sigma_floor_kw: float = 0.1
    i_sigma_rel: float = 0.01
    name: str = ""


@dataclass(frozen=True)
class PseudoConfig:
    """How forecasts become pseudo-measurements (σ relative to the forecast)."""

    load_sigma_rel: float = 0.3
    gen_sigma_rel: float = 0.5
    sigma_floor_kw: float = 0.5
    zero_injection_sigma_pu: float = 1e-6


@dataclass(frozen=True)
class Channels:
    """What a set of meters measures, independent of the readings."""

    kind: IntArray
    element: IntArray  # bus position (V, injections) or branch position (flows)
    sigma_abs_pu: FloatArray  # absolute part of σ
    sigma_rel: FloatArray  # relative part of σ (times |reading|)
    meter_index: IntArray  # which meter the channel belongs to
    labels: tuple[str, ...]

    @property
    def size(self) -> int:
        return int(self.kind.size)


@dataclass(frozen=True)
class MeasurementSet:
    """Measurements for one snapshot, aligned arrays."""

    kind: IntArray
    element: IntArray
    value: FloatArray
    sigma: FloatArray
    source: IntArray
    labels: tuple[str, ...] = field(default=())

    @property
    def size(self) -> int:
        return int(self.kind.size)

    def without(self, index: int) -> MeasurementSet:
        keep = np.ones(self.size, dtype=bool)
        keep[index] = False
        return self.subset(keep)

    def subset(self, keep: np.ndarray) -> MeasurementSet:
        labels = tuple(lab for lab, k in zip(self.labels, keep, strict=False) if k) if self.labels else ()
        return MeasurementSet(
            self.kind[keep], self.element[keep], self.value[keep], self.sigma[keep], self.source[keep], labels
        )

    def with_value(self, index: int, value: float) -> MeasurementSet:
        v = self.value.copy()
        v[index] = value
        return MeasurementSet(self.kind, self.element, v, self.sigma, self.source, self.labels)

    @staticmethod
    def concat(parts: Sequence[MeasurementSet]) -> MeasurementSet:
        return MeasurementSet(
            np.concatenate([p.kind for p in parts]),
            np.concatenate([p.element for p in parts]),
            np.concatenate([p.value for p in parts]),
            np.concatenate([p.sigma for p in parts]),
            np.concatenate([p.source for p in parts]),
            tuple(lab for p in parts for lab in (p.labels or ("",) * p.size)),
        )


def substation_meter(model: NetworkModel, **kwargs: float) -> Meter:
    """The meter at the slack bus: its voltage and the flows of the branches leaving it."""
    return Meter(bus=int(model.bus_ids[model.slack]), name="substation", **kwargs)  # type: ignore[arg-type]


def substation_meters(model: NetworkModel, **kwargs: float) -> list[Meter]:
    """A substation meter at every external grid: "substation" for a net with one, else
    "substation@BUS" (pandapower bus) for each."""
    if model.slacks.size == 1:
        return [substation_meter(model, **kwargs)]
    return [Meter(bus=int(model.bus_ids[b]), name=f"substation@{int(model.bus_ids[b])}", **kwargs)  # type: ignore[arg-type]
            for b in model.slacks]


def meter_channels(model: NetworkModel, meters: Sequence[Meter]) -> Channels:
    """Expand meters into measurement channels (flows of the feeding branch, or the
    branches leaving the substation)."""
    rows: list[tuple[int, int, float, float, int, str]] = []  # kind, element, s_abs, s_rel, owner, label
    parents = model.parents()
    for mi, m in enumerate(meters):
        if not np.isfinite(m.v_sigma_pu) or m.v_sigma_pu <= 0:
            raise InputError("meter.v_sigma_pu", f"must be a positive number, got {m.v_sigma_pu!r}")
        if not np.isfinite(m.flow_sigma_rel) or m.flow_sigma_rel <= 0:
            raise InputError("meter.flow_sigma_rel", f"must be a positive number, got {m.flow_sigma_rel!r}")
        b: int = model.bus_position(m.bus, "meter.bus")
        tag = m.name or f"bus {m.bus}"
        if m.voltage:
            rows.append((Kind.V, b, m.v_sigma_pu, 0.0, mi, f"{tag}: V"))
        floor_pu = m.flow_sigma_floor_kw / 1000.0 / model.base_mva
        if m.injection:
            for kd, q in ((Kind.P_INJ, "P"), (Kind.Q_INJ, "Q")):
                rows.append((kd, b, floor_pu, m.flow_sigma_rel, mi, f"{tag}: {q} injection"))
        feeding = parents[b]
        if model.is_slack[b]:
            branches = [int(kk) for kk in np.flatnonzero(model.base_status & ((model.f == b) | (model.t == b)))]
        else:
            branches = [] if feeding is None else [int(feeding)]
        for k in branches:
            name = f"{model.branch_kind[k]} {int(model.branch_element[k])}"
            if m.flow:
                for kd, q in ((Kind.P_FLOW, "P"), (Kind.Q_FLOW, "Q")):
                    rows.append((kd, k, floor_pu, m.flow_sigma_rel, mi, f"{tag}: {q} {name}"))
            if m.current:
                rows.append((Kind.I_FLOW, k, floor_pu, m.i_sigma_rel, mi, f"{tag}: I {name}"))
    kind, element, s_abs, s_rel, owner, labels = zip(*rows, strict=True) if rows else ((),) * 6
    return Channels(
        np.array(kind, dtype=np.int64),
        np.array(element, dtype=np.int64),
        np.array(s_abs, dtype=np.float64),
        np.array(s_rel, dtype=np.float64),
        np.array(owner, dtype=np.int64),
        tuple(labels),
    )


def measure(model: NetworkModel, kind: IntArray, element: IntArray, v: ComplexArray) -> FloatArray:
    """The exact value of each measured quantity for bus voltages `v` (n_bus,) or (n_bus, K)."""
    vv = v if v.ndim == 2 else v[:, None]
    out = np.empty((kind.size, vv.shape[1]))
    y = model.ybus()
    yf, _ = model.branch_matrices()
    sbus = None
    for kd in np.unique(kind):
        sel = kind == kd
        el = element[sel]
        if kd == Kind.V:
            out[sel] = np.abs(vv[el])
        elif kd in (Kind.P_INJ, Kind.Q_INJ):
            if sbus is None:
                sbus = vv * np.conj(y @ vv)
            out[sel] = sbus[el].real if kd == Kind.P_INJ else sbus[el].imag
        else:
            i_f = yf[el] @ vv
            if kd == Kind.I_FLOW:
                out[sel] = np.abs(i_f)
            else:
                sf = vv[model.f[el]] * np.conj(i_f)
                out[sel] = sf.real if kd == Kind.P_FLOW else sf.imag
    return out if v.ndim == 2 else out[:, 0]


def simulate_readings(
    model: NetworkModel, channels: Channels, v_true: ComplexArray, rng: np.random.Generator
) -> MeasurementSet:
    """Noisy readings of `channels` for the true state `v_true` (n_bus,), σ from the true value."""
    true = measure(model, channels.kind, channels.element, v_true)
    sigma = channels.sigma_abs_pu + channels.sigma_rel * np.abs(true)
    value = true + sigma * rng.standard_normal(true.shape)
    return MeasurementSet(
        channels.kind, channels.element, value, sigma,
        np.full(channels.size, Source.METER, dtype=np.int64), channels.labels,
    )


def readings(model: NetworkModel, channels: Channels, values: FloatArray) -> MeasurementSet:
    """Measurement set from real readings; σ is computed from the reading itself."""
    vals = np.asarray(values, dtype=np.float64)
    if vals.shape != (channels.size,):
        raise InputError("readings", f"expected {channels.size} values, got shape {vals.shape}")
    if not np.all(np.isfinite(vals)):
        bad = int(np.flatnonzero(~np.isfinite(vals))[0])
        raise InputError(f"readings[{bad}]", f"{channels.labels[bad]} is not a finite number")
    sigma = channels.sigma_abs_pu + channels.sigma_rel * np.abs(vals)
    return MeasurementSet(
        channels.kind, channels.element, vals, sigma,
        np.full(channels.size, Source.METER, dtype=np.int64), channels.labels,
    )


def pseudo_measurements(
    model: NetworkModel,
    load_p_pu: FloatArray,
    load_q_pu: FloatArray,
    gen_p_pu: FloatArray | None = None,
    gen_q_pu: FloatArray | None = None,
    config: PseudoConfig | None = None,
) -> MeasurementSet:
    """P/Q injection pseudo-measurements from forecasts, and zero-injection virtual measurements.

    The slack buses get none (their injection is what the external grids supply).
    """
    cfg = config or PseudoConfig()
    if cfg.load_sigma_rel <= 0 or cfg.gen_sigma_rel <= 0:
        raise InputError("pseudo.sigma_rel", "relative standard deviations must be positive")
    n = model.n_bus
    gp = np.zeros(n) if gen_p_pu is None else np.asarray(gen_p_pu, dtype=float)
    gq = np.zeros(n) if gen_q_pu is None else np.asarray(gen_q_pu, dtype=float)
    lp = np.asarray(load_p_pu, dtype=float)
    lq = np.asarray(load_q_pu, dtype=float)
    for name, arr in (("forecast.load_p", lp), ("forecast.load_q", lq), ("forecast.gen_p", gp), ("forecast.gen_q", gq)):
        if arr.shape != (n,):
            raise InputError(name, f"expected {n} values (one per bus), got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise InputError(name, "contains NaN or infinite values")
    floor = cfg.sigma_floor_kw / 1000.0 / model.base_mva
    has_load = (model.load_p_pu != 0) | (model.load_q_pu != 0) | (lp != 0) | (lq != 0)
    has_gen = (model.gen_p_pu != 0) | (model.gen_q_pu != 0) | (gp != 0) | (gq != 0)
    buses = np.flatnonzero(~model.is_slack)
    kind: list[int] = []
    element: list[int] = []
    value: list[float] = []
    sigma: list[float] = []
    source: list[int] = []
    labels: list[str] = []
    for b in buses:
        pd_bus = int(model.bus_ids[b])
        if not has_load[b] and not has_gen[b]:
            for kd, q in ((Kind.P_INJ, "P"), (Kind.Q_INJ, "Q")):
                kind.append(kd)
                element.append(int(b))
                value.append(0.0)
                sigma.append(cfg.zero_injection_sigma_pu)
                source.append(Source.VIRTUAL)
                labels.append(f"bus {pd_bus}: zero {q} injection")
            continue
        for kd, q, load, gen in ((Kind.P_INJ, "P", lp, gp), (Kind.Q_INJ, "Q", lq, gq)):
            s = np.hypot(cfg.load_sigma_rel * abs(load[b]), cfg.gen_sigma_rel * abs(gen[b]))
            kind.append(kd)
            element.append(int(b))
            value.append(float(gen[b] - load[b]))
            sigma.append(float(max(s, floor)))
            source.append(Source.PSEUDO)
            labels.append(f"bus {pd_bus}: pseudo {q} injection")
    return MeasurementSet(
        np.array(kind, dtype=np.int64),
        np.array(element, dtype=np.int64),
        np.array(value),
        np.array(sigma),
        np.array(source, dtype=np.int64),
        tuple(labels),
    )
