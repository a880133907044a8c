"""Batched AC power flow on a `NetworkModel` (fixed-point Z-bus iteration).

Many scenarios are solved at once: one factorisation of the admittance matrix, then each
iteration is a single matrix product over all scenarios. The result is the exact AC solution
(to `tol_pu`) of the PQ-bus model and agrees with pandapower's `runpp` (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flexgrid.monitoring.network import BoolArray, ComplexArray, NetworkModel


@dataclass(frozen=True)
class BatchFlow:
    """Voltages of K scenarios; `converged[k]` is False where the iteration did not converge."""

    v: ComplexArray  # (n_bus, K); 0 at de-energised buses
    converged: BoolArray  # (K,)
    energised: BoolArray  # (n_bus,)
    iterations: int

    @property
    def vm_pu(self) -> np.ndarray:
        return np.abs(self.v)


def solve_batch(
    model: NetworkModel,
    s_pu: ComplexArray,
    status: BoolArray | None = None,
    *,
    ybus: ComplexArray | None = None,
    tol_pu: float = 1e-9,
    max_iter: int = 100,
) -> BatchFlow:
    """Solve K power flows. `s_pu` has shape (n_bus,) or (n_bus, K): injection per bus in pu.

    Buses not connected to a slack bus (after an outage) get voltage 0 and are left out; every slack
    bus (external grid) is held at its voltage.
    """
    s = np.asarray(s_pu, dtype=np.complex128)
    single = s.ndim == 1
    if single:
        s = s[:, None]
    n, k = s.shape
    if n != model.n_bus:
        raise ValueError(f"s_pu has {n} rows, the model has {model.n_bus} buses")
    ener = model.energised(status)
    y = model.ybus(status) if ybus is None else ybus
    others = np.flatnonzero(ener & ~model.is_slack)
    v = np.zeros((n, k), dtype=np.complex128)
    v[model.slacks] = model.v_slacks[:, None]
    if others.size == 0:
        return BatchFlow(v, np.ones(k, dtype=bool), ener, 0)
    y_oo = y[np.ix_(others, others)]
    z_oo = np.linalg.inv(y_oo)
    w = -(z_oo @ (y[np.ix_(others, model.slacks)] @ model.v_slacks))  # no-load voltages
    s_o = s[others]
    v_o = np.repeat(w[:, None], k, axis=1)
    converged = np.zeros(k, dtype=bool)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - iteration count is reported
        v_new = w[:, None] + z_oo @ np.conj(s_o / v_o)
        step = np.max(np.abs(v_new - v_o), axis=0)
        v_o = v_new
        if np.all(step < tol_pu):
            converged[:] = True
            break
    else:
        converged = step < tol_pu
    bad = ~np.isfinite(v_o).all(axis=0)
    converged &= ~bad
    v[others] = v_o
    return BatchFlow(v, converged, ener, it)


def branch_currents_pu(
    model: NetworkModel, v: ComplexArray, status: BoolArray | None = None
) -> tuple[ComplexArray, ComplexArray]:
    """Complex currents at the from and to ends of every branch (pu of the end's bus base)."""
    yf, yt = model.branch_matrices(status)
    return yf @ v, yt @ v
