"""Weighted least squares state estimation with bad-data processing and uncertainty.

State: voltage angle of every bus but the slack buses (the external grids' angles are held, as in
pandapower's estimation) and voltage magnitude of every bus. Gauss-Newton on dense arrays (distribution feeders are small; a snapshot of case33bw takes
about a millisecond). After convergence:

- chi-square test of the objective J(x) = Σ (r/σ)² with m − n degrees of freedom;
- largest normalised residual: r_N,i = |r_i| / sqrt(Ω_ii), Ω = R − H G⁻¹ Hᵀ; while the
  chi-square test fails, the measurement with the largest r_N above the threshold is removed
  and the state re-estimated (meter channels first: gross errors are meter faults, see
  `estimate(removal=...)`; which channels an error can be found in at all: `redundancy.py`);
- optional robust (Huber) estimation by iteratively reweighted least squares;
- the covariance of the state, G⁻¹, gives a standard deviation per bus voltage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.stats import chi2

from flexgrid.errors import FlexGridError, InputError
from flexgrid.monitoring.measurements import Kind, MeasurementSet, Source
from flexgrid.monitoring.network import ComplexArray, FloatArray, NetworkModel
from flexgrid.monitoring.threads import single_blas_thread


class EstimationError(FlexGridError):
    """The estimator did not converge or the system is not observable."""


@dataclass(frozen=True)
class StateEstimate:
    """Result of one estimation; pandapower bus order is `model.bus_ids`."""

    v: ComplexArray
    vm_pu: FloatArray
    va_deg: FloatArray
    vm_std_pu: FloatArray
    va_std_deg: FloatArray
    converged: bool
    iterations: int
    objective: float  # J(x) = Σ (r/σ)² of the measurements kept
    chi2_threshold: float
    dof: int
    removed: tuple[str, ...] = ()  # labels of measurements removed as bad data
    removed_index: tuple[int, ...] = ()  # their positions in the measurement set given
    normalized_residuals: FloatArray = field(default_factory=lambda: np.zeros(0))
    # sqrt(Ω_ii)/σ_i of the measurements kept: 0 for a critical measurement (an error in it can
    # not be seen), 1 for a fully redundant one.
    redundancy: FloatArray = field(default_factory=lambda: np.zeros(0))
    kept_index: tuple[int, ...] = ()

    def minimal_detectable_error_sigma(self, lnr_threshold: float = 3.0, z_power: float = 2.33) -> FloatArray:
        """Smallest gross error, in units of each kept measurement's σ, that the largest
        normalised residual test finds with the power given by `z_power` (2.33: 99 %)."""
        with np.errstate(divide="ignore"):
            return np.where(self.redundancy > 0, (lnr_threshold + z_power) / self.redundancy, np.inf)

    @property
    def bad_data_suspected(self) -> bool:
        return self.objective > self.chi2_threshold


@dataclass
class _Workspace:
    y: ComplexArray
    yf: ComplexArray
    n: int
    slacks: np.ndarray  # buses whose angle is held (the external grids)
    theta_cols: np.ndarray  # buses whose angle is a state
    v_no_load: ComplexArray  # start point: carries transformer phase shifts, unlike a flat start


def _workspace(model: NetworkModel) -> _Workspace:
    from flexgrid.monitoring.powerflow import solve_batch

    yf, _ = model.branch_matrices()
    cols = np.flatnonzero(~model.is_slack)
    v0 = solve_batch(model, np.zeros(model.n_bus, dtype=np.complex128)).v[:, 0]
    return _Workspace(model.ybus(), yf, model.n_bus, model.slacks, cols, v0)


def _h_jac(model: NetworkModel, ws: _Workspace, ms: MeasurementSet, v: ComplexArray) -> tuple[FloatArray, FloatArray]:
    """Measurement function h(x) and Jacobian H (m x (n-1+n)) at voltages v."""
    n = ws.n
    m = ms.size
    h = np.empty(m)
    d_va = np.zeros((m, n))
    d_vm = np.zeros((m, n))
    vm = np.abs(v)
    vn = v / vm
    jv = 1j * v
    kind = ms.kind
    el = ms.element
    sel = np.flatnonzero(kind == Kind.V)
    if sel.size:
        h[sel] = vm[el[sel]]
        d_vm[sel, el[sel]] = 1.0
    sel = np.flatnonzero((kind == Kind.P_INJ) | (kind == Kind.Q_INJ))
    if sel.size:
        b = el[sel]
        yb = ws.y[b]
        ib = yb @ v
        s = v[b] * np.conj(ib)
        r = np.arange(sel.size)
        ds_va = 1j * v[b][:, None] * (-np.conj(yb * v[None, :]))
        ds_va[r, b] += 1j * v[b] * np.conj(ib)
        ds_vm = v[b][:, None] * np.conj(yb * vn[None, :])
        ds_vm[r, b] += np.conj(ib) * vn[b]
        is_p = kind[sel] == Kind.P_INJ
        h[sel] = np.where(is_p, s.real, s.imag)
        d_va[sel] = np.where(is_p[:, None], ds_va.real, ds_va.imag)
        d_vm[sel] = np.where(is_p[:, None], ds_vm.real, ds_vm.imag)
    sel = np.flatnonzero(kind >= Kind.P_FLOW)
    if sel.size:
        k = el[sel]
        yl = ws.yf[k]
        i_f = yl @ v
        fb = model.f[k]
        vf = v[fb]
        r = np.arange(sel.size)
        kd = kind[sel]
        dsf_va = vf[:, None] * np.conj(yl * jv[None, :])
        dsf_va[r, fb] += np.conj(i_f) * jv[fb]
        dsf_vm = vf[:, None] * np.conj(yl * vn[None, :])
        dsf_vm[r, fb] += np.conj(i_f) * vn[fb]
        sf = vf * np.conj(i_f)
        i_abs = np.maximum(np.abs(i_f), 1e-9)
        di_va = (np.conj(i_f)[:, None] * (yl * jv[None, :])).real / i_abs[:, None]
        di_vm = (np.conj(i_f)[:, None] * (yl * vn[None, :])).real / i_abs[:, None]
        is_p = (kd == Kind.P_FLOW)[:, None]
        is_q = (kd == Kind.Q_FLOW)[:, None]
        h[sel] = np.where(kd == Kind.P_FLOW, sf.real, np.where(kd == Kind.Q_FLOW, sf.imag, np.abs(i_f)))
        d_va[sel] = np.where(is_p, dsf_va.real, np.where(is_q, dsf_va.imag, di_va))
        d_vm[sel] = np.where(is_p, dsf_vm.real, np.where(is_q, dsf_vm.imag, di_vm))
    jac = np.hstack([d_va[:, ws.theta_cols], d_vm])
    return h, jac


def _validate(model: NetworkModel, ms: MeasurementSet) -> None:
    if ms.size == 0:
        raise InputError("measurements", "no measurements given")
    if not np.all(np.isfinite(ms.value)):
        i = int(np.flatnonzero(~np.isfinite(ms.value))[0])
        raise InputError(f"measurements[{i}].value", "is not a finite number")
    if not np.all(np.isfinite(ms.sigma)) or np.any(ms.sigma <= 0):
        i = int(np.flatnonzero(~(np.isfinite(ms.sigma) & (ms.sigma > 0)))[0])
        raise InputError(f"measurements[{i}].sigma", "must be a positive finite standard deviation")
    bus_kind = ms.kind <= Kind.Q_INJ
    if np.any(ms.element[bus_kind] >= model.n_bus) or np.any(ms.element < 0):
        raise InputError("measurements.element", "refers to a bus that is not in the model")
    if np.any(ms.element[~bus_kind] >= model.n_branch):
        raise InputError("measurements.element", "refers to a branch that is not in the model")


def _wls(
    model: NetworkModel,
    ws: _Workspace,
    ms: MeasurementSet,
    v0: ComplexArray,
    *,
    robust: bool,
    huber_c: float,
    tol: float,
    max_iter: int,
) -> tuple[ComplexArray, FloatArray, FloatArray, FloatArray, bool, int]:
    """Gauss-Newton (IRLS when robust). Returns v, H, residuals, weights used, converged, iterations."""
    v = v0.copy()
    w = 1.0 / ms.sigma**2
    weights = w.copy()
    va = np.angle(v)
    vm = np.abs(v)
    va_ref = np.angle(model.v_slacks)
    converged = False
    it = 0
    h = np.zeros(ms.size)
    jac = np.zeros((ms.size, ws.theta_cols.size + ws.n))
    for it in range(1, max_iter + 1):  # noqa: B007 - reported
        h, jac = _h_jac(model, ws, ms, v)
        r = ms.value - h
        if robust:
            u = np.abs(r) / ms.sigma
            weights = w * np.where(u <= huber_c, 1.0, huber_c / np.maximum(u, 1e-12))
        g = jac.T @ (jac * weights[:, None])
        rhs = jac.T @ (weights * r)
        try:
            dx = np.linalg.solve(g, rhs)
        except np.linalg.LinAlgError as exc:
            raise EstimationError("the gain matrix is singular: the measurements do not make the grid observable (run check_observability)") from exc
        nt = ws.theta_cols.size
        va[ws.theta_cols] += dx[:nt]
        vm += dx[nt:]
        va[ws.slacks] = va_ref
        v = vm * np.exp(1j * va)
        if np.max(np.abs(dx)) < tol:
            converged = True
            break
    h, jac = _h_jac(model, ws, ms, v)
    return v, jac, ms.value - h, weights, converged, it


def estimate(
    model: NetworkModel,
    measurements: MeasurementSet,
    *,
    bad_data: bool = True,
    robust: bool = False,
    huber_c: float = 1.5,
    chi2_confidence: float = 0.99,
    lnr_threshold: float = 3.0,
    max_removals: int = 5,
    removal: Literal["meters-first", "largest"] = "meters-first",
    v0: ComplexArray | None = None,
    tol: float = 1e-7,
    max_iter: int = 30,
    workspace: _Workspace | None = None,
) -> StateEstimate:
    """Estimate the state from `measurements` (meters + pseudo + virtual), see module docstring.

    `removal`: which measurement the bad-data loop removes while the chi-square test fails.
    "meters-first" (default): the meter channel with the largest normalised residual if one exceeds
    `lnr_threshold`, else the pseudo-measurement with the largest. Gross errors are telemetry faults
    of meters; a pseudo-measurement's error is already covered by its σ (30-50 % of a forecast), so
    where a meter and a pseudo-measurement check only each other (a critical pair, e.g. the
    substation flow and the first bus's forecast) the meter is the one to blame. "largest": the
    plain largest normalised residual over meters and pseudo-measurements alike."""
    if removal not in ("meters-first", "largest"):
        raise InputError("removal", f"must be 'meters-first' or 'largest', got {removal!r}")
    _validate(model, measurements)
    ws = workspace or _workspace(model)
    n_state = ws.theta_cols.size + ws.n
    start = ws.v_no_load if v0 is None else v0
    ms = measurements
    index = np.arange(ms.size)
    removed: list[str] = []
    removed_idx: list[int] = []
    while True:
        if ms.size < n_state:
            raise EstimationError(f"{ms.size} measurements for {n_state} states: not observable")
        v, jac, r, _, converged, it = _wls(
            model, ws, ms, start, robust=robust, huber_c=huber_c, tol=tol, max_iter=max_iter
        )
        w = 1.0 / ms.sigma**2
        g = jac.T @ (jac * w[:, None])
        try:
            cov = np.linalg.inv(g)
        except np.linalg.LinAlgError as exc:
            raise EstimationError("singular gain matrix at the solution: not observable") from exc
        objective = float(np.sum(r**2 * w))
        dof = ms.size - n_state
        threshold = float(chi2.ppf(chi2_confidence, dof)) if dof > 0 else 0.0
        omega = ms.sigma**2 - np.sum((jac @ cov) * jac, axis=1)
        ok = omega > 1e-6 * ms.sigma**2
        rn = np.zeros(ms.size)
        rn[ok] = np.abs(r[ok]) / np.sqrt(omega[ok])
        if not bad_data or robust or dof <= 0 or objective <= threshold or len(removed) >= max_removals:
            break
        cand = np.where(ms.source == Source.VIRTUAL, 0.0, rn)
        if removal == "meters-first":
            meters = np.where(ms.source == Source.METER, cand, 0.0)
            if np.max(meters, initial=0.0) > lnr_threshold:
                cand = meters
        worst = int(np.argmax(cand))
        if cand[worst] <= lnr_threshold:
            break
        removed.append(ms.labels[worst] if ms.labels else str(int(index[worst])))
        removed_idx.append(int(index[worst]))
        keep = np.ones(ms.size, dtype=bool)
        keep[worst] = False
        ms = ms.subset(keep)
        index = index[keep]
        start = v
    nt = ws.theta_cols.size
    var = np.clip(np.diag(cov), 0.0, None)
    va_std = np.zeros(ws.n)
    va_std[ws.theta_cols] = np.sqrt(var[:nt])
    return StateEstimate(
        v=v,
        vm_pu=np.abs(v),
        va_deg=np.angle(v, deg=True),
        vm_std_pu=np.sqrt(var[nt:]),
        va_std_deg=np.rad2deg(va_std),
        converged=converged,
        iterations=it,
        objective=objective,
        chi2_threshold=threshold,
        dof=dof,
        removed=tuple(removed),
        removed_index=tuple(removed_idx),
        normalized_residuals=rn,
        redundancy=np.sqrt(np.clip(omega, 0.0, None)) / ms.sigma,
        kept_index=tuple(int(i) for i in index),
    )


def state_covariance(model: NetworkModel, measurements: MeasurementSet, v: ComplexArray) -> FloatArray:
    """Covariance of the state (angles of non-slack buses, then magnitudes) at voltages v."""
    ws = _workspace(model)
    _, jac = _h_jac(model, ws, measurements, v)
    w = 1.0 / measurements.sigma**2
    return np.asarray(np.linalg.inv(jac.T @ (jac * w[:, None])))


def workspace(model: NetworkModel) -> _Workspace:
    """Precomputed matrices to reuse across many estimates on the same topology."""
    return _workspace(model)


@dataclass(frozen=True)
class ObservabilityReport:
    """Which buses the measurements determine, and for the others why not."""

    observable: bool
    unobservable_buses: tuple[int, ...]  # pandapower bus indices
    reasons: dict[int, str]
    rank_deficiency: int


def check_observability(
    model: NetworkModel, measurements: MeasurementSet, v: ComplexArray | None = None
) -> ObservabilityReport:
    """Numerical observability: the null space of the gain matrix at an operating point
    (default: flat start perturbed so that currents are not zero) names the buses whose
    voltage angle or magnitude the measurements leave undetermined."""
    ws = _workspace(model)
    if v is None:
        # A light-load operating point; at an exact flat start current magnitudes have no slope.
        from flexgrid.monitoring.powerflow import solve_batch

        v = solve_batch(model, model.s_injection_pu(0.5, 0.5)).v[:, 0]
    _, jac = _h_jac(model, ws, measurements, v)
    jn = jac / measurements.sigma[:, None]
    _, sv, vt = np.linalg.svd(jn, full_matrices=True)
    n_state = jac.shape[1]
    tol = max(jn.shape) * np.finfo(float).eps * (sv[0] if sv.size else 1.0) * 1e3
    rank = int(np.sum(sv > tol))
    null = vt[rank:]  # rows span the null space
    nt = ws.theta_cols.size
    weight = np.sum(null**2, axis=0) if null.size else np.zeros(n_state)
    bad_state = weight > 1e-8
    bad_angle = np.zeros(model.n_bus, dtype=bool)
    bad_angle[ws.theta_cols] = bad_state[:nt]
    bad_mag = bad_state[nt:]
    buses = np.flatnonzero(bad_angle | bad_mag)
    inj = {int(b) for b in measurements.element[measurements.kind <= Kind.Q_INJ][
        measurements.kind[measurements.kind <= Kind.Q_INJ] != Kind.V]}
    vmeas = {int(b) for b in measurements.element[measurements.kind == Kind.V]}
    flows = {int(k) for k in measurements.element[measurements.kind >= Kind.P_FLOW]}
    reasons: dict[int, str] = {}
    for b in buses:
        pd_bus = int(model.bus_ids[b])
        incident = np.flatnonzero(model.base_status & ((model.f == b) | (model.t == b)))
        metered = [int(k) for k in incident if int(k) in flows]
        what = []
        if bad_angle[b]:
            what.append("angle")
        if bad_mag[b]:
            what.append("magnitude")
        parts = []
        if b not in inj:
            parts.append("no injection measurement, forecast pseudo-measurement or zero-injection at the bus")
        if b not in vmeas:
            parts.append("no voltage meter")
        if not metered:
            parts.append("no metered branch at the bus")
        cluster = [int(model.bus_ids[c]) for c in buses]
        parts.append(
            f"the unmeasured buses {cluster} can only be determined together"
            if len(cluster) > 1 else "its balance is not closed by other measurements"
        )
        reasons[pd_bus] = f"voltage {' and '.join(what)} undetermined: " + "; ".join(parts)
    return ObservabilityReport(
        observable=buses.size == 0,
        unobservable_buses=tuple(int(model.bus_ids[b]) for b in buses),
        reasons=reasons,
        rank_deficiency=n_state - rank,
    )


@single_blas_thread
def estimate_series(
    model: NetworkModel,
    measurement_sets: list[MeasurementSet],
    **kwargs: object,
) -> list[StateEstimate]:
    """Estimate a sequence of snapshots (e.g. the 96 slots of a day), each warm-started from the
    previous estimate."""
    ws = _workspace(model)
    out: list[StateEstimate] = []
    v0: ComplexArray | None = None
    for ms in measurement_sets:
        est = estimate(model, ms, v0=v0, workspace=ws, **kwargs)  # type: ignore[arg-type]
        out.append(est)
        v0 = est.v
    return out


def residual_correlation(model: NetworkModel, measurements: MeasurementSet, v: ComplexArray) -> FloatArray:
    """Correlation of the residuals, ρ_ij = Ω_ij / sqrt(Ω_ii Ω_jj), Ω = R − H G⁻¹ Hᵀ, at voltages v.

    Two measurements with |ρ| close to 1 form a bad-data group: an error in one shows equally
    in the other's normalised residual, so the largest normalised residual test cannot tell
    which of them is wrong (it can still detect that one is)."""
    ws = _workspace(model)
    _, jac = _h_jac(model, ws, measurements, v)
    w = 1.0 / measurements.sigma**2
    cov = np.linalg.inv(jac.T @ (jac * w[:, None]))
    omega = np.diag(measurements.sigma**2) - jac @ cov @ jac.T
    d = np.sqrt(np.clip(np.diag(omega), 1e-300, None))
    return np.asarray(omega / d[:, None] / d[None, :])
