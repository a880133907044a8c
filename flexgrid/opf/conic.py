"""A conic program built from sparse constants, solved through cvxpy, and checked without it.

Every FlexGrid optimisation is a `ConicModel`: one stacked variable vector `x`, a linear cost
`c`, and named constraint groups, each `A x + s = b` with `s` in a cone (Clarabel's standard
form): `zero` (equalities), `nonneg` (`A x <= b`) and `soc` (`b - A x` lies in second-order
cones of one size, first element the bound). Variables come in named blocks of shape
(rows, slots), laid out slot-major (index = offset + slot * rows + row), so that a per-slot
network matrix applies to all slots through `kron(I_T, M)` and no Python loop runs over buses
and slots. cvxpy compiles the model from these sparse constants (no `Parameter`s) and calls
Clarabel (SOCP) or HiGHS (LP, MILP).

The duals returned follow the convention `c + A' z = 0`, `z` in the dual cone, so the
certificate (`check_kkt`) is the same for every formulation.

Lazy cones (`lazy=True`, e.g. thermal limits, which on most branches and slots are far from
binding) are left out of the first solve of a component; the cones the solution violates or comes
near (within `LAZY_MARGIN`) are added and the component solved again, until none is. Exact: the
problem without some cones is a relaxation, and its optimum, strictly inside the left-out cones,
is optimal for the whole problem with zero duals on them (the KKT conditions hold as they are).
Lazy `nonneg` rows work the same way (a row is a cone of size 1).

Soft-limit slacks (`bound(..., slack=True)`: lower bound 0, positive cost, used in no other row
than their limits) are fixed at 0 in the first solve, their columns and bound rows left out: the
limits are hard. That solution is optimal for the soft problem when every slack's reduced cost
`c_j + A_j' z` is non-negative (the limit's dual below the penalty): the left-out bound row then
gets that reduced cost as its dual, and the KKT conditions of the whole problem hold. Slacks whose
reduced cost is not clearly positive (or all of them, if the hard problem has no solution) are
added and the component solved again. x and z always cover the whole model, so the certificate
and its auditors see the soft model as built.

Independent parts are solved apart: when the variables and constraints fall into several
connected components (a round without batteries or other devices decouples into its slots),
each component goes to the solver on its own and the solutions are stacked. This is exact (the
problem is the sum of the components' problems, its KKT conditions those of the components) and
saves time: an interior point method spends the iterations of its hardest component on all of
them when they are solved together, and the simplex method grows worse than linearly in size.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import cvxpy as cp
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from flexgrid.errors import SolverError
from flexgrid.opf.certify import certify_parts

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ConeKind = Literal["zero", "nonneg", "soc"]


LAZY_MARGIN = 1e-3  # a left-out cone is added when s0 - |s1| < LAZY_MARGIN (s0 + |s1|) at the solution
LAZY_ROUNDS = 3  # after as many rounds with cones added, a component is solved with all of them
SLACK_MARGIN = 1e-3  # a left-out slack column is added when its reduced cost is below this times its cost
CLARABEL_THREADS: int | None = None  # components solved at once (Clarabel releases the GIL while it iterates):
# None for the machine's cores, at most MAX_CLARABEL_THREADS; 1 solves them one after the other
MAX_CLARABEL_THREADS = 4

_STATUS = {  # Clarabel's statuses in cvxpy's words, so that errors read the same whatever the backend
    "PrimalInfeasible": "infeasible",
    "DualInfeasible": "unbounded",
    "AlmostSolved": "optimal_inaccurate",
    "AlmostPrimalInfeasible": "infeasible_inaccurate",
    "AlmostDualInfeasible": "unbounded_inaccurate",
    "MaxIterations": "user_limit (max iterations)",
    "MaxTime": "user_limit (time)",
    "NumericalError": "solver_error (numerical)",
    "InsufficientProgress": "solver_error (insufficient progress)",
}


@contextlib.contextmanager
def _quiet_stdout(active: bool) -> Iterator[None]:
    """HiGHS prints its banner from C++ straight to file descriptor 1, which would corrupt the
    JSON output of the command line: send descriptor 1 to /dev/null while it runs."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@dataclass(frozen=True)
class Block:
    name: str
    offset: int
    rows: int
    slots: int

    @property
    def size(self) -> int:
        return self.rows * self.slots

    def idx(self) -> IntArray:
        """Indices as an array of shape (rows, slots)."""
        return (self.offset + np.arange(self.size, dtype=np.int64)).reshape(self.slots, self.rows).T


@dataclass
class Group:
    name: str
    kind: ConeKind
    a: sp.csr_matrix
    b: FloatArray
    cone_dim: int = 0  # soc only: size of each cone (rows are cone after cone)
    category: str = ""  # for the price decomposition: balance, internal, voltage, congestion, losses, market
    lazy: bool = False  # soc and nonneg: cones (rows) left out of a solve until the solution comes near them
    lazy_start: npt.NDArray[np.bool_] | None = None  # per cone (row): lazy ones in the first solve all the same
    # rows -x_j <= 0 (lower bound 0) whose column is left out (x_j = 0) until its reduced cost calls
    # for it: every row (soft-limit slacks), or those of a mask (e.g. offers far out of the money)
    lazy_slack: bool | npt.NDArray[np.bool_] = False
    # lazy_slack rows that mark their component as stressed (e.g. the slacks of limits that a guess of the
    # state says are violated): it has every lazy column in the first solve. Without them it may have no
    # solution, and with only some of them (say, slacks without offers) it is nearly infeasible, which
    # costs an interior point method more iterations than the larger problem.
    slack_start: npt.NDArray[np.bool_] | None = None


@dataclass
class Solution:
    status: str
    x: FloatArray
    z: dict[str, FloatArray]
    objective: float
    solver: str
    solve_time_s: float
    mip_gap: float | None = None
    components: int = 0  # independent components solved apart (direct backends)
    certified: int = 0  # of which certified from the model's start point without a solver


@dataclass
class ConicModel:
    """Variables in blocks, a linear cost, constraint groups; see the module docstring."""

    n: int = 0
    blocks: dict[str, Block] = field(default_factory=dict)
    groups: list[Group] = field(default_factory=list)
    _cost: list[tuple[IntArray, FloatArray]] = field(default_factory=list)
    integer: list[IntArray] = field(default_factory=list)
    solver_options: dict[str, object] = field(default_factory=dict)
    # a candidate solution (e.g. an AC operating point with the flexibility idle): the components
    # where it is optimal are certified without Clarabel (`flexgrid.opf.certify`)
    start: FloatArray | None = None

    def add_block(self, name: str, rows: int, slots: int) -> Block:
        if name in self.blocks:
            raise ValueError(f"block {name} exists")
        blk = Block(name, self.n, rows, slots)
        self.blocks[name] = blk
        self.n += blk.size
        return blk

    def add_cost(self, idx: npt.ArrayLike, coef: npt.ArrayLike) -> None:
        i = np.asarray(idx, dtype=np.int64)
        self._cost.append((i.ravel(), np.broadcast_to(np.asarray(coef, dtype=float), i.shape).ravel().copy()))

    def cost(self) -> FloatArray:
        c = np.zeros(self.n)
        for i, v in self._cost:
            np.add.at(c, i, v)
        return c

    def add(self, name: str, kind: ConeKind, rows: npt.ArrayLike, cols: npt.ArrayLike, vals: npt.ArrayLike,
            b: npt.ArrayLike, *, n_rows: int | None = None, cone_dim: int = 0, category: str = "",
            lazy: bool = False, lazy_start: npt.NDArray[np.bool_] | None = None) -> Group:
        """Add a group from COO triplets (rows, cols, vals) and right-hand side `b`."""
        r = np.asarray(rows, dtype=np.int64)
        c = np.asarray(cols, dtype=np.int64).ravel()
        v = np.broadcast_to(np.asarray(vals, dtype=float), r.shape).ravel()
        r = r.ravel()
        b_arr = np.asarray(b, dtype=float).ravel()
        m = int(n_rows if n_rows is not None else len(b_arr))
        if len(b_arr) == 1 and m > 1:
            b_arr = np.full(m, b_arr[0])
        a = sp.csr_matrix((v, (r, c)), shape=(m, self.n))
        a.sum_duplicates()
        group = Group(name, kind, a, b_arr, cone_dim, category, lazy and kind in ("soc", "nonneg"),
                      None if lazy_start is None else np.asarray(lazy_start, dtype=bool))
        self.groups.append(group)
        return group

    def bound(self, name: str, idx: npt.ArrayLike, lower: npt.ArrayLike | None, upper: npt.ArrayLike | None,
              category: str = "bounds", *, slack: bool = False) -> None:
        """Simple bounds as `nonneg` rows (-x <= -lower, x <= upper). `slack`: the columns are soft-limit
        slacks (lower bound 0, positive cost), left at 0 by the direct Clarabel backend until a limit's
        dual nears the slack's cost (see the module docstring)."""
        shape = np.shape(idx)
        i = np.asarray(idx, dtype=np.int64).ravel()
        if lower is not None:
            lo = np.broadcast_to(np.asarray(lower, dtype=float), shape).ravel()
            g = self.add(f"{name}.lower", "nonneg", np.arange(len(i)), i, -1.0, -lo, category=category)
            g.lazy_slack = bool(slack and not np.any(lo))
        if upper is not None:
            hi = np.broadcast_to(np.asarray(upper, dtype=float), shape).ravel()
            self.add(f"{name}.upper", "nonneg", np.arange(len(i)), i, 1.0, hi, category=category)

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    def finalise(self) -> None:
        """Resize every group's matrix to the final number of variables."""
        for g in self.groups:
            if g.a.shape[1] != self.n:
                g.a = sp.csr_matrix((g.a.data, g.a.indices, g.a.indptr), shape=(g.a.shape[0], self.n))

    # -----------------------------------------------------------------------------------------
    def solve(self, *, solver: str | None = None, fixed: dict[int, float] | None = None,
              backend: str = "direct") -> Solution:
        """Solve, and raise `SolverError` unless the status is optimal.

        With `backend="direct"`, continuous cone programs go straight to Clarabel and continuous
        LPs straight to HiGHS (highspy): the model already is in their form, and skipping cvxpy's
        compilation saves time and memory on large feeders. MILPs go through cvxpy to HiGHS;
        `backend="cvxpy"` sends everything through cvxpy (the tests check that both agree).
        """
        self.finalise()
        ints = np.unique(np.concatenate(self.integer)) if self.integer and not fixed else np.zeros(0, dtype=np.int64)
        has_soc = any(g.kind == "soc" and g.a.shape[0] for g in self.groups)
        if solver is None:
            solver = "CLARABEL" if has_soc else "HIGHS"
        if len(ints) and has_soc:
            raise SolverError("unsupported", "integer variables with second-order cones need a MISOCP solver")
        if solver == "CLARABEL" and backend == "direct" and not fixed and not len(ints):
            return self._solve_clarabel()
        if solver == "HIGHS" and backend == "direct" and not fixed and not len(ints):
            return self._solve_highs_lp()
        return self._solve_cvxpy(solver, ints, fixed)

    def _stacked(self) -> tuple[list[Group], sp.csr_matrix, FloatArray, IntArray, list[int]]:
        """Non-empty groups in solver order (zero, nonneg, soc), their stacked rows, the cone of each row
        (one id per soc cone, the row itself otherwise), and the soc cone sizes in order."""
        self.finalise()
        order = [g for kind in ("zero", "nonneg", "soc") for g in self.groups if g.kind == kind and g.a.shape[0]]
        a = sp.vstack([g.a for g in order], format="csr") if order else sp.csr_matrix((0, self.n))
        b = np.concatenate([g.b for g in order]) if order else np.zeros(0)
        cone = np.arange(a.shape[0], dtype=np.int64)
        sizes: list[int] = []
        pos = 0
        for g in order:
            m = g.a.shape[0]
            if g.kind == "soc":
                cone[pos:pos + m] = pos + (np.arange(m) // g.cone_dim) * g.cone_dim
                sizes.extend([g.cone_dim] * (m // g.cone_dim))
            pos += m
        return order, a, b, cone, sizes

    def components(self, a: sp.csr_matrix, cone: IntArray) -> tuple[int, IntArray, IntArray]:
        """Connected components of the variables and rows (the rows of one cone stay together):
        (count, label of each column, label of each row)."""
        from scipy.sparse.csgraph import connected_components

        # nodes: the columns, then the rows; row i links to its columns and to its cone's first row.
        # Written straight in CSR (the column nodes have no entries of their own; undirected, the
        # links count both ways): each row of `a` with one more entry at its end.
        a = sp.csr_matrix(a)
        m, n = a.shape[0], self.n
        indptr = a.indptr.astype(np.int64)
        last = indptr[1:] + np.arange(m)  # where each row's extra entry goes
        indices = np.empty(a.nnz + m, dtype=np.int64)
        own = np.ones(a.nnz + m, dtype=bool)
        own[last] = False
        indices[own] = a.indices
        indices[last] = n + np.asarray(cone, dtype=np.int64)
        graph = sp.csr_matrix((np.ones(len(indices), dtype=np.int8), indices,
                               np.concatenate([np.zeros(n, dtype=np.int64), indptr + np.arange(m + 1)])),
                              shape=(n + m, n + m))
        count, label = connected_components(graph, directed=False)
        return int(count), label[:self.n].astype(np.int64), label[self.n:].astype(np.int64)

    def _split(self) -> tuple[list[Group], sp.csr_matrix, FloatArray, IntArray, IntArray, list[tuple[slice, slice]],
                              FloatArray, IntArray]:
        """The stacked problem with its rows and columns permuted so that every component is a
        contiguous block: (groups, permuted A, permuted b, row permutation, column permutation,
        the (rows, columns) slices of each component, permuted c, the permuted position of the first
        row of each permuted row's cone). Within a component rows keep the solver's order (zero,
        nonneg, soc, each in model order), so a cone's rows stay consecutive. Columns in no row are
        left out, fixed at 0 (an error if they have a cost: the problem would be unbounded)."""
        order, a, b, cone, _ = self._stacked()
        c = self.cost()
        count, col_label, row_label = self.components(a, cone)
        has_row = np.zeros(count, dtype=bool)
        has_row[row_label] = True
        lone = np.flatnonzero(~has_row[col_label])
        if len(lone) and np.any(c[lone] != 0):
            raise SolverError("unbounded", f"{int(np.sum(c[lone] != 0))} variables with a cost appear in no constraint")
        col_perm = np.argsort(col_label, kind="stable")
        row_perm = np.argsort(row_label, kind="stable")  # stable: solver order kept within a component
        col_start = np.searchsorted(col_label[col_perm], np.arange(count + 1))
        row_start = np.searchsorted(row_label[row_perm], np.arange(count + 1))
        parts = [(slice(int(row_start[k]), int(row_start[k + 1])), slice(int(col_start[k]), int(col_start[k + 1])))
                 for k in range(count) if has_row[k]]
        a_rows = a[row_perm]
        new_col = np.empty_like(col_perm)
        new_col[col_perm] = np.arange(len(col_perm), dtype=np.int64)
        a_perm = sp.csr_matrix((a_rows.data, new_col[a_rows.indices], a_rows.indptr), shape=a_rows.shape)
        a_perm.sort_indices()  # the same matrix as a[row_perm][:, col_perm], without a column gather
        position = np.empty_like(row_perm)
        position[row_perm] = np.arange(len(row_perm), dtype=np.int64)
        return order, a_perm, b[row_perm], row_perm, col_perm, parts, c[col_perm], position[cone[row_perm]]

    def _unstack(self, order: list[Group], zall: FloatArray) -> dict[str, FloatArray]:
        z: dict[str, FloatArray] = {g.name: np.zeros(0) for g in self.groups}
        pos = 0
        for g in order:
            z[g.name] = zall[pos:pos + g.a.shape[0]]
            pos += g.a.shape[0]
        return z

    def _unpermuted(self, order: list[Group], xp: FloatArray, zp: FloatArray, row_perm: IntArray,
                    col_perm: IntArray, solver: str, elapsed: float) -> Solution:
        """The optimal solution of `_split`'s permuted problem (primal `xp`, duals `zp`) in the
        model's own column and row order."""
        x = np.zeros(self.n)
        x[col_perm] = xp
        zall = np.zeros(len(zp))
        zall[row_perm] = zp
        return Solution("optimal", x, self._unstack(order, zall), float(self.cost() @ x), solver, elapsed, None)

    def _solve_highs_lp(self) -> Solution:
        """A continuous LP straight to HiGHS (rows `A x = b` or `A x <= b`, free columns), one call
        per independent component."""
        import time

        import highspy

        order, a_all, b_all, row_perm, col_perm, parts, c, _ = self._split()
        is_eq = np.concatenate([np.full(g.a.shape[0], g.kind == "zero") for g in order])[row_perm]
        xp = np.zeros(self.n)
        zp = np.zeros(a_all.shape[0])
        inf = highspy.kHighsInf
        elapsed = 0.0
        for rows, cols in parts:
            a = a_all[rows, cols].tocsc()
            b = b_all[rows]
            n_col = cols.stop - cols.start
            lp = highspy.HighsLp()
            lp.num_col_ = n_col
            lp.num_row_ = rows.stop - rows.start
            lp.col_cost_ = c[cols]
            lp.col_lower_ = np.full(n_col, -inf)
            lp.col_upper_ = np.full(n_col, inf)
            lp.row_lower_ = np.where(is_eq[rows], b, -inf)
            lp.row_upper_ = b
            lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
            lp.a_matrix_.start_ = a.indptr
            lp.a_matrix_.index_ = a.indices
            lp.a_matrix_.value_ = a.data
            t0 = time.perf_counter()
            with _quiet_stdout(True):
                h = highspy.Highs()
                h.setOptionValue("output_flag", False)
                for key, value in self.solver_options.items():
                    h.setOptionValue(key, value)  # type: ignore[arg-type]
                h.passModel(lp)
                h.run()
            elapsed += time.perf_counter() - t0
            status = h.modelStatusToString(h.getModelStatus())
            if status != "Optimal":
                raise SolverError(status.lower(), f"HiGHS on a model with {self.n} variables")
            sol = h.getSolution()
            xp[cols] = np.asarray(sol.col_value, dtype=float)
            zp[rows] = -np.asarray(sol.row_dual, dtype=float)  # HiGHS: c - A'y = reduced costs (0 for free columns)
        return self._unpermuted(order, xp, zp, row_perm, col_perm, "HIGHS", elapsed)

    def _solve_clarabel(self) -> Solution:
        """A continuous cone program straight to Clarabel, one call per independent component, lazy
        cones, rows and slack columns left out until needed (see the module docstring)."""
        import time

        import clarabel

        order, a_all, b_all, row_perm, col_perm, parts, c, head = self._split()
        kind_code = {"zero": 0, "nonneg": 1, "soc": 2}
        kinds = np.concatenate([np.full(g.a.shape[0], kind_code[g.kind], dtype=np.int64) for g in order])[row_perm]
        dims = np.concatenate([np.full(g.a.shape[0], g.cone_dim, dtype=np.int64) for g in order])[row_perm]
        # Clarabel's 1e-8 feasibility tolerance is relative to the data's scale: on small components it
        # can leave prices 1e-8 off; 1e-10 costs an iteration or two. Iterative refinement of each KKT
        # solve stops at 1e-10 instead of 1e-13 / 1e-12: a quarter less time per iteration, the same
        # iterations and solution (the termination criteria decide the accuracy, not the refinement).
        # A component that does not reach `Solved` is solved again with the refinement's defaults,
        # then with Clarabel's defaults, unless it ended `AlmostSolved` at a point that passes Clarabel's
        # own test for `Solved` at the last try's tolerances (`_solved_at`): that try could only stop at
        # such a point (ieee_european_lv_x2, every slot through Clarabel: 137 solves instead of 272 for
        # 96 slots; most ended AlmostSolved at 1e-10 with residuals ~1e-9 and gaps ~1e-11).
        tries = []
        for tol_feas, refine in ((1e-10, 1e-10), (1e-10, None), (None, None)):
            settings = clarabel.DefaultSettings()
            settings.verbose = False
            if tol_feas is not None:
                settings.tol_feas = tol_feas
            if refine is not None:
                settings.iterative_refinement_reltol = refine
                settings.iterative_refinement_abstol = refine
            for key, value in self.solver_options.items():
                setattr(settings, key, value)
            tries.append(settings)
        m_all = a_all.shape[0]
        lazy = np.zeros(m_all, dtype=bool)
        start = np.zeros(m_all, dtype=bool)  # lazy rows in the first solve all the same
        slack_row = np.zeros(m_all, dtype=bool)  # bound rows -x_j <= 0 of lazy columns
        slack_first = np.zeros(m_all, dtype=bool)  # of which those in the first solve all the same
        pos = 0
        for g in order:
            m = g.a.shape[0]
            if g.lazy:
                lazy[pos:pos + m] = True
                if g.lazy_start is not None:
                    start[pos:pos + m] = np.repeat(g.lazy_start, g.cone_dim) if g.kind == "soc" else g.lazy_start
            if np.any(g.lazy_slack):
                slack_row[pos:pos + m] = g.lazy_slack
                if g.slack_start is not None:
                    slack_first[pos:pos + m] = g.slack_start
            pos += m
        lazy, start, slack_row = lazy[row_perm], start[row_perm], slack_row[row_perm]
        slack_first = slack_first[row_perm] & slack_row
        slack_col = np.full(m_all, -1, dtype=np.int64)  # permuted column of each lazy slack row
        if np.any(slack_row):
            sr = a_all[np.flatnonzero(slack_row)]
            slack_col[slack_row] = sr.indices[sr.indptr[:-1]]
        whole = len(parts) == 1 and (parts[0][0].stop, parts[0][1].stop) == a_all.shape

        def solve_part(part: tuple[slice, slice]) -> tuple[FloatArray, FloatArray, float]:
            """One component, its columns `cols` and rows `rows` of the permuted problem: (x, z, solver
            seconds). Runs on a worker thread when components are solved at once (`clarabel_threads`)."""
            rows, cols = part
            a_comp = a_all if whole else a_all[rows, cols]
            return _solve_component(clarabel, tries, a_comp, b_all[rows], c[cols], kinds[rows], dims[rows],
                                    head[rows] - rows.start, lazy[rows], start[rows], slack_row[rows],
                                    slack_col[rows] - cols.start, slack_first[rows])

        xp = np.zeros(self.n)
        zp = np.zeros(m_all)
        elapsed = 0.0
        n_parts, n_cert = len(parts), 0
        # Stressed components (the formulation's base state loads a limit: `slack_first`), which the
        # start point seldom certifies, go to Clarabel at once on the worker threads while every
        # component is checked against the start point on this one (`flexgrid.opf.certify`); a certified
        # component's solution is the certified one (its Clarabel job, if any, is dropped), the others
        # follow to Clarabel. Whatever the threads and timing, a component's answer is the same.
        pool = _Pool(solve_part, clarabel_threads())
        try:
            # a start point from before columns were added does not describe this model: not used
            point = self.start if self.start is not None and len(self.start) == self.n else None
            for k, (rows, _) in enumerate(parts):
                if point is None or np.any(slack_first[rows]):
                    pool.submit(k, parts[k])
            if point is not None and parts:
                t0 = time.perf_counter()
                cert = certify_parts(a_all, b_all, c, kinds, head, point[col_perm], parts)
                for k, done in enumerate(cert.ok):
                    rows, cols = parts[k]
                    if done:
                        pool.drop(k)
                        xp[cols], zp[rows] = cert.x[cols], cert.z[rows]
                    elif not pool.has(k):
                        pool.submit(k, parts[k])
                n_cert = int(np.sum(cert.ok))
                elapsed += time.perf_counter() - t0
            for k, (xc, zc, spent) in pool.results():
                rows, cols = parts[k]
                elapsed += spent
                xp[cols] = xc
                zp[rows] = zc
        finally:
            pool.close()
        sol = self._unpermuted(order, xp, zp, row_perm, col_perm, "CLARABEL", elapsed)
        sol.components, sol.certified = n_parts, n_cert
        return sol

    def _solve_cvxpy(self, solver: str, ints: IntArray, fixed: dict[int, float] | None) -> Solution:
        import time
        x = cp.Variable(self.n, integer=[tuple(int(i) for i in ints)] if len(ints) else False)
        cons: list[cp.Constraint] = []
        for g in self.groups:
            if g.a.shape[0] == 0:
                cons.append(cp.Constant(0) == 0)
                continue
            if g.kind == "zero":
                cons.append(g.a @ x == g.b)
            elif g.kind == "nonneg":
                cons.append(g.a @ x <= g.b)
            else:
                d = g.cone_dim
                m = g.a.shape[0] // d
                rows = np.arange(g.a.shape[0]).reshape(m, d)
                t_rows, x_rows = rows[:, 0], rows[:, 1:].ravel()
                t = g.b[t_rows] - g.a[t_rows] @ x
                xs = g.b[x_rows] - g.a[x_rows] @ x
                cons.append(cp.SOC(t, cp.reshape(xs, (d - 1, m), order="F"), axis=0))
        if fixed:
            fi = np.array(sorted(fixed), dtype=np.int64)
            cons.append(x[fi] == np.array([fixed[int(i)] for i in fi]))
        c = self.cost()
        prob = cp.Problem(cp.Minimize(c @ x), cons)
        opts: dict[str, object] = dict(self.solver_options)
        if solver == "HIGHS":
            opts["output_flag"] = False
            if len(ints):
                opts["mip_rel_gap"] = 1e-6
        t0 = time.perf_counter()
        try:
            with _quiet_stdout(solver == "HIGHS"):
                prob.solve(solver=solver, **opts)
        except cp.error.SolverError as exc:
            raise SolverError("solver_error", f"{solver}: {exc}") from exc
        elapsed = time.perf_counter() - t0
        status = str(prob.status)
        if status != cp.OPTIMAL:
            raise SolverError(status, f"{solver} on a model with {self.n} variables")
        xv = np.asarray(x.value, dtype=float)
        gap = None
        if len(ints):
            info = prob.solver_stats.extra_stats
            gap = float(getattr(info, "mip_gap", float("nan")))
            return Solution(status, xv, {}, float(prob.value), solver, elapsed, gap)
        z: dict[str, FloatArray] = {}
        for g, con in zip(self.groups, cons, strict=False):
            if g.a.shape[0] == 0:
                z[g.name] = np.zeros(0)
                continue
            dv = con.dual_value
            if g.kind == "soc":
                d = g.cone_dim
                m = g.a.shape[0] // d
                u = np.atleast_1d(np.asarray(dv[0], dtype=float)).ravel()
                big_u = np.asarray(dv[1], dtype=float).reshape(d - 1, m, order="F")
                z[g.name] = np.vstack([u[None, :], big_u]).T.ravel()
            else:
                z[g.name] = np.atleast_1d(np.asarray(dv, dtype=float)).ravel()
        return Solution(status, xv, z, float(prob.value), solver, elapsed, gap)



def clarabel_threads() -> int:
    """Components the direct Clarabel backend solves at once: `CLARABEL_THREADS`, or the cores this
    process may use (at most `MAX_CLARABEL_THREADS`)."""
    if CLARABEL_THREADS is not None:
        return max(1, int(CLARABEL_THREADS))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_CLARABEL_THREADS))


_PartResult = tuple[FloatArray, FloatArray, float]  # a component's x, z and solver seconds


class _Pool:
    """Components submitted one by one (by their position `k` in the round) to up to `threads` worker
    threads, or solved in the calling thread with one. `results()` waits for all of them and gives
    them in the order of `k`; a failure raises the exception of the first failing component in that
    order, as the plain loop over the components in order would."""

    def __init__(self, fn: Callable[[tuple[slice, slice]], _PartResult], threads: int) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        self.fn = fn
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="flexgrid-clarabel") \
            if threads > 1 else None
        self.jobs: dict[int, Future[_PartResult]] = {}

    def submit(self, k: int, part: tuple[slice, slice]) -> None:
        from concurrent.futures import Future

        if self.pool is not None:
            self.jobs[k] = self.pool.submit(self.fn, part)
            return
        fut: Future[_PartResult] = Future()
        try:
            fut.set_result(self.fn(part))
        except Exception as exc:  # kept for `results`, raised in the components' order
            fut.set_exception(exc)
        self.jobs[k] = fut

    def has(self, k: int) -> bool:
        return k in self.jobs

    def drop(self, k: int) -> None:
        """Component `k`'s answer is not needed: its job is cancelled if it has not started (a running
        one finishes, unused)."""
        job = self.jobs.pop(k, None)
        if job is not None:
            job.cancel()

    def results(self) -> list[tuple[int, _PartResult]]:
        return [(k, self.jobs[k].result()) for k in sorted(self.jobs)]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _solve_component(clarabel: object, tries: list[object], a_comp: sp.csr_matrix, b: FloatArray, c: FloatArray,
                     kr: IntArray, dr: IntArray, hd: IntArray, lz: npt.NDArray[np.bool_],
                     start: npt.NDArray[np.bool_], slack_row: npt.NDArray[np.bool_], slack_col: IntArray,
                     slack_first: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray, float]:
    """One component with Clarabel: (x, z, solver seconds). Rows in solver order (kind `kr`, cone size
    `dr`, first row of the row's cone `hd`). Lazy rows (`lz`, those of `start` in the first solve) and
    the lazy columns (each with its bound row -x_j <= 0 `slack_row`, its column `slack_col`; but those
    whose bound row is marked `slack_first`, the stressed slots', when a row of the first solve uses
    them) are left out until the solution calls for them: a left-out row or cone is added when the solution violates or
    nears it; a left-out column (fixed at 0) when its reduced cost `c_j + A_j' z` is not clearly
    positive, e.g. when a limit's dual nears the slack's penalty. When none is, the solution is optimal
    for the whole component: left-out rows get zero duals, left-out columns' bounds the reduced cost of
    their column (exactly the KKT conditions of the whole). If the problem has no solution without them,
    every left-out column is added."""
    import time

    n_col = a_comp.shape[1]
    m = len(kr)
    is_head = hd == np.arange(m)
    heads = np.flatnonzero(lz & is_head)  # first rows of lazy cones and rows
    active = (~lz | start) & ~slack_row
    col_on = np.ones(n_col, dtype=bool)
    s_rows = np.flatnonzero(slack_row)
    s_cols = slack_col[s_rows]
    col_on[s_cols] = False
    a_csc = a_comp.tocsc()
    single = np.diff(a_comp.indptr) == 1

    def turn_on(cols: IntArray) -> None:
        """Columns `cols` in, with their bound rows and their left-out rows of one entry (bounds)."""
        col_on[cols] = True
        active[s_rows[np.isin(s_cols, cols)]] = True
        mask = np.zeros(n_col, dtype=bool)
        mask[cols] = True
        rows = np.unique(a_csc.indices[np.repeat(mask, np.diff(a_csc.indptr))])
        active[rows[lz[rows] & single[rows]]] = True

    if np.any(slack_first):  # the marked lazy columns (those of stressed slots) that a row of the first
        # solve uses (the others, e.g. the slacks of left-out limits, could only sit at 0 there; their
        # reduced costs call for them later)
        used = np.zeros(n_col, dtype=bool)
        used[a_comp.indices[np.repeat(active, np.diff(a_comp.indptr))]] = True
        turn_on(s_cols[used[s_cols] & slack_first[s_rows]])
    elapsed = 0.0
    lazy_round = 0
    for _ in range(LAZY_ROUNDS + 5):
        sel = np.flatnonzero(active)
        on = np.flatnonzero(col_on)
        cones = _clarabel_cones(clarabel, kr[sel], dr[sel], is_head[sel])
        a = a_csc[:, on] if len(on) < n_col else a_csc
        a = a[sel] if len(sel) < m else a
        p = sp.csc_matrix((len(on), len(on)))
        for settings in tries:
            t0 = time.perf_counter()
            result = clarabel.DefaultSolver(p, c[on], a, b[sel], cones, settings).solve()  # type: ignore[attr-defined]
            elapsed += time.perf_counter() - t0
            status = str(result.status)
            if status == "AlmostSolved" and _solved_at(result, tries[-1]):
                status = "Solved"
            if status == "Solved" or ("Infeasible" in status and not np.all(col_on)):
                break
        if status != "Solved":
            if not np.all(col_on):  # perhaps infeasible with hard limits: every column in (a stressed
                # component, whose prices will call for most of them; `slack_first` avoids this solve)
                turn_on(np.flatnonzero(~col_on))
                continue
            if not np.all(active):  # the partial problem can be harder for Clarabel than the whole
                # (one slot of a 1,813-bus feeder ended AlmostSolved under every setting with rows left
                # out, Solved with all of them): the whole component before giving up
                active[:] = True
                continue
            raise SolverError(_STATUS.get(status, status), f"Clarabel on a component with {n_col} variables")
        xc = np.zeros(n_col)
        xc[on] = np.asarray(result.x, dtype=float)
        zc = np.zeros(m)
        zc[sel] = np.asarray(result.z, dtype=float)
        last = lazy_round >= LAZY_ROUNDS
        added = False
        out = heads[~active[heads]]
        if len(out):
            d = np.maximum(dr[out], 1)
            near_rows = _near(a_comp @ xc, b, out, d, last)
            if len(near_rows):
                active[near_rows] = True
                added = True
        off = np.flatnonzero(~col_on)
        if len(off):
            reduced = c[off] + (a_csc.T @ zc)[off]
            low = reduced < SLACK_MARGIN * np.abs(c[off])
            if np.any(low):
                turn_on(off[low] if not last else off)
                added = True
        lazy_round += 1
        if not added:
            if len(off):
                zc[s_rows[~col_on[s_cols]]] = (c + a_csc.T @ zc)[s_cols][~col_on[s_cols]]
            return xc, zc, elapsed
    raise AssertionError("unreachable: the last round has every row and column")  # pragma: no cover


def _solved_at(result: object, settings: object) -> bool:
    """Clarabel's test for `Solved` (its `is_solved`: primal and dual residuals below tol_feas, the
    duality gap below tol_gap_abs or, relative to max(1, min |objective|), below tol_gap_rel) on a
    result's reported residuals and objectives, at the tolerances of `settings`."""
    p, d = float(result.obj_val), float(result.obj_val_dual)  # type: ignore[attr-defined]
    gap = abs(p - d)
    gap_ok = gap < settings.tol_gap_abs or gap / max(1.0, min(abs(p), abs(d))) < settings.tol_gap_rel  # type: ignore[attr-defined]
    return bool(gap_ok and float(result.r_prim) < settings.tol_feas  # type: ignore[attr-defined]
                and float(result.r_dual) < settings.tol_feas)  # type: ignore[attr-defined]


def _near(ax_all: FloatArray, b: FloatArray, heads: IntArray, dims: IntArray, every: bool) -> IntArray:
    """Rows of the left-out cones (nonneg rows: cones of size 1) starting at `heads` that the point
    `x` (`ax_all` = A x) violates or comes near (within LAZY_MARGIN), all of them if `every`."""
    out: list[IntArray] = []
    for d in np.unique(dims):
        h = heads[dims == d]
        r_idx = h[:, None] + np.arange(int(d))[None, :]
        if not every:
            flat = r_idx.ravel()
            ax = ax_all[flat]
            slack = (b[flat] - ax).reshape(r_idx.shape)
            if d == 1:
                head, rest = slack[:, 0], np.zeros(len(h))
                scale = np.abs(b[h]) + np.abs(ax)
            else:
                head, rest = slack[:, 0], np.linalg.norm(slack[:, 1:], axis=1)
                scale = np.abs(head) + rest
            r_idx = r_idx[head - rest < LAZY_MARGIN * scale]
        out.append(r_idx.ravel())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _clarabel_cones(clarabel: object, kinds: IntArray, dims: IntArray, is_head: npt.NDArray[np.bool_]) -> list[object]:
    """Clarabel's cone list for rows in solver order (zero, nonneg, then whole soc cones; `is_head`: the
    first row of each row's cone): one cone object per run of soc cones of one size."""
    cones: list[object] = []
    n_zero, n_nonneg = int(np.count_nonzero(kinds == 0)), int(np.count_nonzero(kinds == 1))
    if n_zero:
        cones.append(clarabel.ZeroConeT(n_zero))  # type: ignore[attr-defined]
    if n_nonneg:
        cones.append(clarabel.NonnegativeConeT(n_nonneg))  # type: ignore[attr-defined]
    soc_dims = dims[(kinds == 2) & is_head]  # one entry per cone
    cut = np.flatnonzero(np.diff(soc_dims)) + 1
    for lo, hi in zip(np.concatenate([[0], cut]), np.concatenate([cut, [len(soc_dims)]]), strict=True):
        if hi > lo:
            cones.extend([clarabel.SecondOrderConeT(int(soc_dims[lo]))] * int(hi - lo))  # type: ignore[attr-defined]
    return cones


@dataclass(frozen=True)
class KKTReport:
    primal_residual: float
    dual_residual: float
    cone_violation: float
    duality_gap: float
    ok: bool
    reasons: tuple[str, ...]


def check_kkt(
    c: FloatArray,
    groups: list[tuple[str, str, sp.csr_matrix, FloatArray, int]],
    x: FloatArray,
    z: dict[str, FloatArray],
    *,
    tol_feas: float = 1e-6,
    tol_gap: float = 1e-6,
) -> KKTReport:
    """Check a primal-dual pair of `min c'x, A x + s = b, s in K` without a solver.

    Primal residuals (equalities, inequalities, cones), dual feasibility (`z` in the dual cone
    and `c + A' z = 0`), and the relative duality gap `|c'x + b'z| / max(1, |c'x|)`.
    """
    reasons: list[str] = []
    p_res = 0.0
    cone_viol = 0.0
    aty = np.zeros_like(c)
    bz = 0.0
    scale_b = 1.0
    for name, kind, a, b, d in groups:
        zg = z[name]
        if a.shape[0] == 0:
            continue
        s = b - a @ x
        scale_b = max(scale_b, float(np.max(np.abs(b), initial=0.0)))
        if kind == "zero":
            p_res = max(p_res, float(np.max(np.abs(s))))
        elif kind == "nonneg":
            p_res = max(p_res, float(np.max(-s, initial=0.0)))
            cone_viol = max(cone_viol, float(np.max(-zg, initial=0.0)))
        else:
            sm = s.reshape(-1, d)
            zm = zg.reshape(-1, d)
            p_res = max(p_res, float(np.max(np.linalg.norm(sm[:, 1:], axis=1) - sm[:, 0], initial=0.0)))
            cone_viol = max(cone_viol, float(np.max(np.linalg.norm(zm[:, 1:], axis=1) - zm[:, 0], initial=0.0)))
        aty += a.T @ zg
        bz += float(b @ zg)
    d_res = float(np.max(np.abs(c + aty), initial=0.0))
    primal_obj = float(c @ x)
    gap = abs(primal_obj + bz) / max(1.0, abs(primal_obj))
    c_scale = max(1.0, float(np.max(np.abs(c), initial=0.0)))
    z_scale = max(1.0, max((float(np.max(np.abs(v), initial=0.0)) for v in z.values()), default=1.0))
    if p_res > tol_feas * scale_b:
        reasons.append(f"primal residual {p_res:.3e} above {tol_feas:g} x {scale_b:.3g}")
    if cone_viol > tol_feas * z_scale:
        reasons.append(f"duals outside their cone by {cone_viol:.3e}")
    if d_res > tol_feas * max(c_scale, z_scale):
        reasons.append(f"stationarity residual |c + A'z| = {d_res:.3e}")
    if gap > tol_gap:
        reasons.append(f"relative duality gap {gap:.3e} above {tol_gap:g}")
    return KKTReport(p_res, d_res, cone_viol, gap, not reasons, tuple(reasons))
