"""Components solved without a solver: a candidate point, polished and certified by its KKT conditions.

Most slots of a day congest nothing: no limit binds, every offer stays out of the money, and the
optimum of the SOCP is the network's AC operating point with the flexibility idle (the cones of
the branch-flow relaxation are tight there). An interior point method spends ten or more
factorisations of the whole KKT system to find that point; a power flow and one linear solve for
the duals find it exactly.

`certify_parts` takes such a candidate for every column (`x0`, e.g. the AC power flow of the base
withdrawals) and, for each independent component of a cone program `min c'x, A x + s = b, s in K`
(rows in solver order: zero, nonneg, soc), decides from the candidate alone which constraints are
active: equalities, single-entry `nonneg` rows (bounds) with zero slack, cones on their boundary
(`s0 = |s1:|`). When no other inequality is active and the columns that sit on no active bound
are exactly as many as the equalities plus the tight cones (a square system, as the branch-flow
model is with its flexibility at zero), then

1. Newton's method on (equalities, `s0^2 - |s1:|^2 = 0` of the tight cones) in those columns
   polishes the candidate to machine precision (one or two steps from an AC power flow);
2. the duals follow from stationarity `c + A' z = 0`: with `J` that system's Jacobian at the
   polished point, `J' w = c` gives the equality duals `w` and the cone duals `2 w_k (s0, -s1:)`;
   each active bound's dual is what its column needs to balance;
3. the component is certified when every tight cone's multiplier and every bound's dual is
   non-negative (within rounding) and every inactive constraint is strictly feasible.

A certified component satisfies the KKT conditions of the whole component (primal feasible, dual
feasible, complementary: zero duality gap), so its solution is optimal, the same point any solver
converges to, and `check_kkt` and the auditors verify it like any other. A component that fails
any test (an offer in the money, a limit near binding, a device with state, a singular system) is
left to the solver; nothing here is approximate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import scipy.sparse.linalg as spla

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

TOL_FEAS = 1e-9  # primal residual allowed at the polished point (relative to max(1, |b|))
TOL_ACTIVE = 1e-7  # a bound or cone is active when its slack is below this (relative); inactive ones
# must be clear of it, so that the active set is unambiguous
TOL_DUAL = 1e-9  # a dual this far below 0 (relative to max(1, |c|)) is rounding and set to 0
NEWTON_STEPS = 6


@dataclass(frozen=True)
class Certified:
    """Which parts were certified, and the primal and dual solution of their columns and rows
    (entries of parts not certified are 0)."""

    ok: BoolArray
    x: FloatArray
    z: FloatArray
    reasons: dict[str, int]  # why parts were left to the solver: reason -> count


def _labels(parts: list[tuple[slice, slice]], m: int, n: int) -> tuple[IntArray, IntArray]:
    row_lab = np.full(m, -1, dtype=np.int64)
    col_lab = np.full(n, -1, dtype=np.int64)
    for k, (rows, cols) in enumerate(parts):
        row_lab[rows] = k
        col_lab[cols] = k
    return row_lab, col_lab


def _in(ok: BoolArray, labels: IntArray) -> BoolArray:
    """Rows or columns (by their part label, -1 for none) of the parts still `ok`."""
    return (labels >= 0) & ok[np.maximum(labels, 0)]


def _fail(bad: BoolArray, labels: IntArray, n_parts: int) -> BoolArray:
    """Parts with at least one flagged row or column (labels -1 ignored)."""
    out = np.zeros(n_parts, dtype=bool)
    sel = labels[bad]
    out[sel[sel >= 0]] = True
    return out


def certify_parts(a: sp.csr_matrix, b: FloatArray, c: FloatArray, kinds: IntArray, heads: IntArray,
                  x0: FloatArray, parts: list[tuple[slice, slice]]) -> Certified:
    """Certify the parts (row and column slices of independent components of `a`) whose optimum the
    candidate `x0` gives; see the module docstring. `kinds`: 0 zero, 1 nonneg, 2 soc per row; `heads`:
    the first row of each row's cone (the row itself for zero and nonneg rows)."""
    m, n = a.shape
    n_parts = len(parts)
    reasons: dict[str, int] = {}
    ok = np.ones(n_parts, dtype=bool)
    x = np.where(np.isfinite(x0), x0, 0.0)
    row_lab, col_lab = _labels(parts, m, n)

    def drop(mask: BoolArray, why: str) -> None:
        new = mask & ok
        if np.any(new):
            reasons[why] = reasons.get(why, 0) + int(np.sum(new))
            ok[new] = False

    drop(_fail(~np.isfinite(x0), col_lab, n_parts), "no candidate")
    nnz_row = np.diff(a.indptr)
    is_zero, is_nonneg, is_soc = kinds == 0, kinds == 1, kinds == 2
    bound = is_nonneg & (nnz_row == 1)
    is_head = is_soc & (heads == np.arange(m))
    tail = is_soc & ~is_head
    head_rows = np.flatnonzero(is_head)
    cone_of = np.where(is_soc, np.cumsum(is_head) - 1, -1)  # a cone's rows follow its head
    cone_lab = row_lab[head_rows]
    scale_b = np.maximum(1.0, np.abs(b))

    def tail_norm2(s: FloatArray) -> FloatArray:
        """|s1:|^2 of every cone."""
        return np.asarray(np.bincount(cone_of[tail], weights=s[tail] ** 2, minlength=len(head_rows)), dtype=float)

    def classify(x: FloatArray) -> tuple[FloatArray, BoolArray, FloatArray, FloatArray, BoolArray]:
        """Slacks, active bounds, cone heads s0, the norms |s1:|, tight cones."""
        s = b - a @ x
        s0 = s[head_rows]
        unorm = np.sqrt(tail_norm2(s))
        tight = s0 - unorm <= TOL_ACTIVE * np.maximum(1.0, s0 + unorm)
        active = bound & (s <= TOL_ACTIVE * scale_b)
        return s, active, s0, unorm, tight

    def check_point(s: FloatArray, active: BoolArray, s0: FloatArray, unorm: FloatArray, tight: BoolArray) -> None:
        """Drop the parts where the point violates a limit or a cone (s0^2 = |s1:|^2 also holds on the
        cone's mirror image, s0 < 0), sits at a cone's apex, or where a limit other than a bound is active."""
        drop(_fail(is_nonneg & (s < -TOL_FEAS * scale_b), row_lab, n_parts), "the point violates a limit")
        drop(_fail(is_nonneg & ~active & (s <= TOL_ACTIVE * scale_b), row_lab, n_parts), "a limit is active")
        drop(_fail(s0 - unorm < -1e-6 * np.maximum(1.0, s0 + unorm), cone_lab, n_parts), "the point is outside a cone")
        drop(_fail(tight & (s0 <= TOL_ACTIVE), cone_lab, n_parts), "a cone at its apex")

    s, active, s0, unorm, tight = classify(x)
    drop(_fail(is_zero & (np.abs(s) > 1e-4 * scale_b), row_lab, n_parts), "candidate far from the equalities")
    check_point(s, active, s0, unorm, tight)
    # columns on an active bound are fixed (one bound at most); the others are the unknowns
    act_rows = np.flatnonzero(active)
    act_col = a.indices[a.indptr[act_rows]]
    per_col = np.bincount(act_col, minlength=n)
    drop(_fail(per_col > 1, col_lab, n_parts), "a column on two bounds")
    # and put on it: the candidate may be up to TOL_ACTIVE off, which the bound's dual would not forgive
    on = per_col[act_col] == 1
    snap = b[act_rows[on]] / a.data[a.indptr[act_rows[on]]] + 0.0  # (+0.0: no -0.0 from 0 / -1)
    snapped = bool(np.any(x[act_col[on]] != snap))
    x[act_col[on]] = snap
    free = per_col == 0
    n_unk = np.bincount(col_lab[free & (col_lab >= 0)], minlength=n_parts)
    n_eq = (np.bincount(row_lab[is_zero & (row_lab >= 0)], minlength=n_parts)
            + np.bincount(cone_lab[tight & (cone_lab >= 0)], minlength=n_parts))
    drop(n_unk != n_eq, "not a square system")
    if not np.any(ok):
        return Certified(ok, np.zeros(n), np.zeros(m), reasons)

    # the parts still in: Newton on their equalities and tight cones, in their free columns
    keep_row = _in(ok, row_lab)
    zrows = np.flatnonzero(is_zero & keep_row)
    ucols = np.flatnonzero(free & _in(ok, col_lab))
    ucols = ucols[np.argsort(col_lab[ucols], kind="stable")]  # part by part, in the order given
    a_csc = a.tocsc()
    a_u = a_csc[:, ucols].tocsr()
    tight_idx = np.flatnonzero(tight & _in(ok, cone_lab))
    # the system's rows component by component (equalities, then tight cones): one block per part
    eq_lab = np.concatenate([row_lab[zrows], cone_lab[tight_idx]])
    eq_order = np.argsort(eq_lab, kind="stable")
    eq_rank = np.empty_like(eq_order)
    eq_rank[eq_order] = np.arange(len(eq_order))
    in_parts = np.flatnonzero(ok)
    r_bounds = np.searchsorted(eq_lab[eq_order], np.concatenate([in_parts, [n_parts]]))[:, None]
    c_bounds = np.searchsorted(col_lab[ucols], np.concatenate([in_parts, [n_parts]]))[:, None]
    in_tight = np.zeros(len(head_rows), dtype=bool)
    in_tight[tight_idx] = True
    soc_rows = np.flatnonzero(is_soc)
    sel_rows = soc_rows[in_tight[cone_of[soc_rows]]]  # (no cone at all: none)
    sel_k = np.searchsorted(tight_idx, cone_of[sel_rows])

    def system(s: FloatArray) -> tuple[sp.csr_matrix, FloatArray, sp.csc_matrix]:
        """E (equality selector and 2 (s0, -s1:) per tight cone; rows in block order), F(x) and
        J = -E A[:, free] (block diagonal, one block per part)."""
        coef = np.where(is_head[sel_rows], 2 * s[sel_rows], -2 * s[sel_rows])
        e = sp.csr_matrix((np.concatenate([np.ones(len(zrows)), coef]),
                           (eq_rank[np.concatenate([np.arange(len(zrows)), len(zrows) + sel_k])],
                            np.concatenate([zrows, sel_rows]))), shape=(len(eq_lab), m))
        f = np.concatenate([s[zrows], s[head_rows[tight_idx]] ** 2 - tail_norm2(s)[tight_idx]])[eq_order]
        return e, f, -(e @ a_u).tocsc()

    def block_solve(jac: sp.csc_matrix, rhs: FloatArray, trans: bool) -> tuple[FloatArray, BoolArray]:
        """Solve part by part (a factorisation of each small block costs less than one of the whole);
        a singular block fails its part only."""
        out = np.zeros(len(rhs))
        failed = np.zeros(n_parts, dtype=bool)
        for k, r0, r1, c0, c1 in zip(in_parts, r_bounds[:-1, 0], r_bounds[1:, 0], c_bounds[:-1, 0],
                                     c_bounds[1:, 0], strict=True):
            if not ok[k]:
                continue
            try:
                lu = spla.splu(jac[r0:r1, c0:c1].tocsc())
                sol = lu.solve(rhs[c0:c1] if trans else rhs[r0:r1], trans="T" if trans else "N")
            except RuntimeError:  # splu: "Factor is exactly singular"
                failed[k] = True
                continue
            if not np.all(np.isfinite(sol)):
                failed[k] = True
            elif trans:
                out[r0:r1] = sol
            else:
                out[c0:c1] = sol
        return out, failed

    if snapped:
        s = b - a @ x
    f_scale = np.concatenate([scale_b[zrows], np.maximum(1.0, s[head_rows[tight_idx]]) ** 2])[eq_order]
    e, f, jac = system(s)
    moved = snapped
    for _ in range(NEWTON_STEPS):  # a power flow's point usually meets them already: no step
        if np.all(np.abs(f) <= 1e-12 * f_scale):
            break
        step, failed = block_solve(jac, -f, trans=False)
        drop(failed, "singular or diverging system")
        x[ucols] += np.where(ok[col_lab[ucols]], step, 0.0)
        moved = True
        s = b - a @ x
        e, f, jac = system(s)
    w, failed = block_solve(jac, c[ucols], trans=True)
    drop(failed, "singular or diverging system")

    # the polished point: the same active set, feasible to rounding
    if moved:
        s, active2, s0, unorm, tight2 = classify(x)
        drop(_fail(keep_row & (active2 != active), row_lab, n_parts), "the active set moved")
        drop(_fail(tight2 != tight, cone_lab, n_parts), "the active set moved")
        check_point(s, active, s0, unorm, tight)
    drop(_fail(is_zero & (np.abs(s) > TOL_FEAS * scale_b), row_lab, n_parts), "equalities not met")
    z = e.T @ w  # equality duals and 2 w_k (s0, -s1:) on the tight cones
    alpha = w[eq_rank[len(zrows):]]
    # The duals' scale is that of the free columns' costs (the energy): a penalty on a slack column
    # that stays at 0 sets no dual, and taken as the scale it would pass a negative multiplier or
    # reduced cost of a thousandth of that penalty as rounding (an offer in the money left idle).
    c_scale = max(1.0, float(np.max(np.abs(c[ucols]), initial=0.0)))
    neg_cone = np.zeros(len(head_rows), dtype=bool)
    neg_cone[tight_idx[alpha < -TOL_DUAL * c_scale]] = True
    drop(_fail(neg_cone, cone_lab, n_parts), "a cone's multiplier is negative")
    round_cone = np.zeros(len(head_rows), dtype=bool)
    round_cone[tight_idx[(alpha < 0) & (alpha >= -TOL_DUAL * c_scale)]] = True
    z[soc_rows[round_cone[cone_of[soc_rows]]]] = 0.0  # rounding: the multiplier is 0
    # the bound rows' duals: what their fixed columns need to balance (c_j + A_j' z + a_rj z_r = 0)
    red = c + a_csc.T @ z
    off = np.zeros(n, dtype=bool)
    off[ucols[np.abs(red[ucols]) > 1e-8 * c_scale]] = True
    drop(_fail(off, col_lab, n_parts), "stationarity not met")
    # a fixed column's reduced cost is rounding only relative to the terms it sums (its cost, A_j' z)
    az = sp.csr_matrix((np.abs(a.data), a.indices, a.indptr), shape=a.shape).T @ np.abs(z)
    terms = np.maximum(1.0, np.abs(c[act_col]) + az[act_col])
    z[act_rows] = -red[act_col] / a.data[a.indptr[act_rows]]
    neg = np.zeros(m, dtype=bool)
    neg[act_rows[z[act_rows] < -TOL_DUAL * terms]] = True
    drop(_fail(neg, row_lab, n_parts), "an idle variable's reduced cost is negative")
    z[act_rows] = np.maximum(z[act_rows], 0.0)
    return Certified(ok, np.where(_in(ok, col_lab), x, 0.0), np.where(_in(ok, row_lab), z, 0.0), reasons)
