"""N-1 with restoration on radial feeders, and expected energy not served.

For every branch (line or transformer) outage: the buses cut off from the substation, the load
lost, every tie switch (a normally-open line) that reconnects the cut area, the AC power flow of
each such restoration, its voltage and thermal violations, and the flexibility (load reduction
in the restored area) that would remove them. Expected energy not served (EENS) follows from
failure rates, repair and switching times.

Stated defaults (`ReliabilityData`): line failure rate 0.1 per km and year (overhead MV lines,
CIGRE/EPRI order of magnitude), transformer 0.015 per year, repair 5 h for a line and 24 h for a
transformer, 1 h to locate the fault and switch a tie, value of lost load 10,000 EUR/MWh.
During repair, load that a restoration can only carry with violations is counted as not served
unless flexibility relieves it (reported separately as `flex_needed_kw`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flexgrid.errors import InputError
from flexgrid.monitoring.network import BoolArray, ComplexArray, NetworkModel
from flexgrid.monitoring.powerflow import solve_batch
from flexgrid.monitoring.threads import single_blas_thread


@dataclass(frozen=True)
class ReliabilityData:
    line_failure_rate_per_km_yr: float = 0.1
    trafo_failure_rate_per_yr: float = 0.015
    line_repair_time_h: float = 5.0
    trafo_repair_time_h: float = 24.0
    switching_time_h: float = 1.0
    voll_eur_per_mwh: float = 10_000.0
    max_loading: float = 1.0  # 1.0 = 100 % of the rating

    def __post_init__(self) -> None:
        for name in ("line_failure_rate_per_km_yr", "trafo_failure_rate_per_yr", "line_repair_time_h",
                     "trafo_repair_time_h", "switching_time_h", "voll_eur_per_mwh", "max_loading"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise InputError(f"reliability.{name}", f"must be a non-negative number, got {value!r}")
        if self.switching_time_h > min(self.line_repair_time_h, self.trafo_repair_time_h):
            raise InputError("reliability.switching_time_h", "must not exceed the repair times")


@dataclass(frozen=True)
class TieOption:
    tie: str  # "line 33"
    feasible: bool  # restores every cut bus without violations
    min_vm_pu: float
    max_loading_percent: float
    violations: tuple[str, ...]
    flex_needed_kw: float  # load reduction in the restored area that removes the violations


@dataclass(frozen=True)
class OutageResult:
    branch: str
    kind: str
    element: int
    failure_rate_per_yr: float
    cut_buses: tuple[int, ...]
    cut_load_kw: float
    restoration: str | None  # the tie closed, if any
    restored_load_kw: float
    unserved_load_kw: float  # cut load no tie can pick up (until repair)
    violations: tuple[str, ...]  # after the chosen restoration (or, without cut, after the outage)
    flex_needed_kw: float
    flex_buses: tuple[int, ...]  # where that flexibility helps (the restored area)
    eens_mwh_per_yr: float  # without flexibility
    eens_with_flex_mwh_per_yr: float  # if the flexibility is available during repair
    options: tuple[TieOption, ...] = field(default=())


@dataclass(frozen=True)
class N1Report:
    outages: tuple[OutageResult, ...]
    base_violations: tuple[str, ...]
    eens_mwh_per_yr: float
    eens_with_flex_mwh_per_yr: float
    expected_cost_eur_per_yr: float
    reliability: ReliabilityData

    def restorable_share(self) -> float:
        cut = [o for o in self.outages if o.cut_load_kw > 0]
        if not cut:
            return 1.0
        return float(np.mean([o.unserved_load_kw == 0 for o in cut]))


@dataclass(frozen=True)
class _Limits:
    """Limits a contingency is judged against: the stated limits, relaxed to the base case where
    the base case already violates them (an outage is blamed only for what it makes worse)."""

    vm_min: np.ndarray
    vm_max: np.ndarray
    loading_max: np.ndarray


def _limits(model: NetworkModel, v_base: ComplexArray, max_loading: float) -> _Limits:
    vm = np.abs(v_base)
    loading = np.nan_to_num(model.loading_fraction(v_base, model.base_status))
    return _Limits(
        np.minimum(model.vm_min_pu, vm - 1e-6),
        np.maximum(model.vm_max_pu, vm + 1e-6),
        np.maximum(max_loading, loading + 1e-6),
    )


def _violations(
    model: NetworkModel, v: ComplexArray, status: BoolArray, energised: BoolArray, lim: _Limits
) -> tuple[list[str], float, float]:
    vm = np.abs(v)
    out: list[str] = []
    low = energised & (vm < lim.vm_min - 1e-9)
    high = energised & (vm > lim.vm_max + 1e-9)
    for b in np.flatnonzero(low):
        out.append(f"bus {int(model.bus_ids[b])} undervoltage {vm[b]:.4f} pu < {lim.vm_min[b]:.3f}")
    for b in np.flatnonzero(high):
        out.append(f"bus {int(model.bus_ids[b])} overvoltage {vm[b]:.4f} pu > {lim.vm_max[b]:.3f}")
    loading = model.loading_fraction(v, status)
    for k in np.flatnonzero(status & (loading > lim.loading_max + 1e-9)):
        out.append(f"{model.branch_kind[k]} {int(model.branch_element[k])} loaded {100 * loading[k]:.1f} %")
    min_vm = float(vm[energised].min()) if energised.any() else float("nan")
    max_ld = float(100 * loading[status].max()) if status.any() else 0.0
    return out, min_vm, max_ld


def _flex_needed_kw(
    model: NetworkModel, s_pu: ComplexArray, status: BoolArray, area: np.ndarray, lim: _Limits,
    steps: int = 41,
) -> float:
    """Smallest uniform reduction of the load in `area` (kW) that clears all violations."""
    factors = np.linspace(1.0, 0.0, steps)
    load = np.zeros(model.n_bus, dtype=np.complex128)
    load[area] = -(model.load_p_pu[area] + 1j * model.load_q_pu[area])
    # Only the load part of the area's injection is scaled; its generation stays.
    gen = s_pu - load
    s = gen[:, None] + load[:, None] * factors[None, :]
    flow = solve_batch(model, s, status)
    vm = flow.vm_pu
    en = flow.energised
    ok_v = np.all((vm[en] >= lim.vm_min[en, None] - 1e-9) & (vm[en] <= lim.vm_max[en, None] + 1e-9), axis=0)
    loading = model.loading_fraction(flow.v, status)
    ok_l = np.all(loading[status] <= lim.loading_max[status, None] + 1e-9, axis=0)
    ok = ok_v & ok_l & flow.converged
    if not ok.any():
        return float("inf")
    best = factors[int(np.flatnonzero(ok)[0])]
    area_load_kw = float(np.sum(model.load_p_pu[area])) * model.base_mva * 1000
    return (1.0 - float(best)) * area_load_kw


@single_blas_thread
def n_minus_1(
    model: NetworkModel,
    s_pu: ComplexArray | None = None,
    reliability: ReliabilityData | None = None,
    *,
    keep_options: bool = True,
) -> N1Report:
    """All single outages of in-operation lines and transformers, with tie-switch restoration.

    `s_pu` is the injection per bus (default: the net's loads and generation as given); with it, the
    load cut at a bus is its net consumption max(−P, 0) of those injections (without it, the net's
    load at the bus)."""
    rel = reliability or ReliabilityData()
    s = model.s_injection_pu() if s_pu is None else np.asarray(s_pu, dtype=np.complex128)
    if s.shape != (model.n_bus,):
        raise InputError("s_pu", f"expected {model.n_bus} injections, got shape {s.shape}")
    base = model.base_status
    base_flow = solve_batch(model, s, base)
    stated = _Limits(model.vm_min_pu, model.vm_max_pu, np.full(model.n_branch, rel.max_loading))
    base_viol, _, _ = _violations(model, base_flow.v[:, 0], base, base_flow.energised, stated)
    lim = _limits(model, base_flow.v[:, 0], rel.max_loading)
    if s_pu is None:
        load_kw = model.load_p_pu * model.base_mva * 1000
    else:
        load_kw = np.clip(-s.real, 0.0, None) * model.base_mva * 1000
    ties = np.flatnonzero(model.is_tie & ~base)
    results: list[OutageResult] = []
    for k in np.flatnonzero(base):
        kind = model.branch_kind[k]
        element = int(model.branch_element[k])
        if kind == "line":
            lam = rel.line_failure_rate_per_km_yr * float(model.length_km[k])
            repair = rel.line_repair_time_h
        else:
            lam = rel.trafo_failure_rate_per_yr
            repair = rel.trafo_repair_time_h
        status = base.copy()
        status[k] = False
        ener = model.energised(status)
        cut = np.flatnonzero(~ener)
        cut_kw = float(load_kw[cut].sum())
        options: list[TieOption] = []
        chosen: TieOption | None = None
        if cut.size == 0:
            flow = solve_batch(model, s, status)
            viol, _, _ = _violations(model, flow.v[:, 0], status, flow.energised, lim)
            flex = _flex_needed_kw(model, s, status, np.arange(model.n_bus), lim) if viol else 0.0
            results.append(OutageResult(
                f"{kind} {element}", kind, element, lam, (), 0.0, None, 0.0, 0.0, tuple(viol), flex,
                tuple(int(b) for b in model.bus_ids) if viol else (),
                lam * flex * (repair - 0.0) / 1000.0 if np.isfinite(flex) else float("inf"),
                0.0,
            ))
            continue
        in_cut = ~ener
        for tk in ties:
            a, b = int(model.f[tk]), int(model.t[tk])
            if in_cut[a] == in_cut[b]:
                continue
            st = status.copy()
            st[tk] = True
            flow = solve_batch(model, s, st)
            if not flow.energised.all() and np.any(flow.energised[cut] == 0):
                continue
            conv = bool(flow.converged[0])
            viol, min_vm, max_ld = _violations(model, flow.v[:, 0], st, flow.energised, lim)
            if not conv:
                viol = ["power flow does not converge", *viol]
            flex = _flex_needed_kw(model, s, st, cut, lim) if viol else 0.0
            opt = TieOption(
                f"{model.branch_kind[tk]} {int(model.branch_element[tk])}", not viol, min_vm, max_ld,
                tuple(viol), flex,
            )
            options.append(opt)
            better = chosen is None or (opt.flex_needed_kw, -opt.min_vm_pu) < (chosen.flex_needed_kw, -chosen.min_vm_pu)
            if better:
                chosen = opt
        switch_h = rel.switching_time_h
        if chosen is None or not np.isfinite(chosen.flex_needed_kw):
            eens = lam * cut_kw * repair / 1000.0
            results.append(OutageResult(
                f"{kind} {element}", kind, element, lam, tuple(int(model.bus_ids[c]) for c in cut), cut_kw,
                None, 0.0, cut_kw, (), 0.0, (), eens, eens, tuple(options) if keep_options else (),
            ))
            continue
        flex = chosen.flex_needed_kw
        eens_flex = lam * cut_kw * switch_h / 1000.0
        eens = eens_flex + lam * flex * (repair - switch_h) / 1000.0
        results.append(OutageResult(
            f"{kind} {element}", kind, element, lam, tuple(int(model.bus_ids[c]) for c in cut), cut_kw,
            chosen.tie, cut_kw, 0.0, chosen.violations, flex,
            tuple(int(model.bus_ids[c]) for c in cut) if flex > 0 else (), eens, eens_flex,
            tuple(options) if keep_options else (),
        ))
    total = float(sum(o.eens_mwh_per_yr for o in results))
    total_flex = float(sum(o.eens_with_flex_mwh_per_yr for o in results))
    return N1Report(
        tuple(results), tuple(base_viol), total, total_flex, total * rel.voll_eur_per_mwh, rel,
    )
