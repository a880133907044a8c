"""Exact AC power flow of radial networks, many slots at once, and its adjoint sensitivities.

`RadialAC.flow` solves the bus-injection AC power flow of a tree fed by its slack nodes with a
backward/forward sweep (node currents summed up the tree, voltage drops down it, both sparse
triangular solves with one column per slot); `sensitivities` gives loss factors and the
derivatives of squared voltages and currents from the adjoint of the power-flow Jacobian. The
`sensitivity` formulation iterates its LP against it, and the SOCP clearing takes its operating
point as the candidate that certifies uncongested slots without a solver (`flexgrid.opf.certify`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from threadpoolctl import ThreadpoolController

from flexgrid.errors import InputError, SolverError
from flexgrid.grid.topology import GridView
from flexgrid.opf.formulations import _node_shunts

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ComplexArray = npt.NDArray[np.complex128]

ADJOINT_CHUNK = 1024  # adjoint right-hand sides solved at once
V_MAX, V_MIN, I_FROM, I_TO = 0, 1, 2, 3  # kinds of constraint rows of `RadialAC.sensitivities`
WHAT = "the radial AC power flow"
# the path matrix (entries: branches times the branches above them) is used up to this many entries per
# branch, a triangular factorisation beyond (its solve costs ~25-50 path entries per branch)
PATH_ENTRIES_PER_BRANCH = 24


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()  # inspects the loaded libraries once


@contextmanager
def blas_one_thread() -> Iterator[None]:
    """BLAS limited to one thread: SuperLU's many-column solves call BLAS on small supernodes, where
    more threads only spin."""
    with _blas().limit(limits=1, user_api="blas"):
        yield


class RadialAC:
    """Exact AC power flow of a radial network for many slots at once (backward/forward sweep), and
    the adjoint sensitivities of scalar quantities to the nodal active withdrawals.

    Node currents (withdrawal and shunts, `conj(S / V) + y_sh V`) are summed up the tree (backward),
    voltages dropped down it (forward), both as sparse triangular solves with one column per slot.
    """

    def __init__(self, view: GridView) -> None:
        if not view.is_radial:
            raise InputError("formulation", f"{WHAT} needs a radial network but grid {view.name!r} is meshed "
                             f"({view.radial_reason}); use --formulation dc (or copperplate)")
        n, nb = view.n_node, view.n_branch
        self.view = view
        f, t = view.from_node, view.to_node
        kin = np.full(n, -1, dtype=np.int64)
        kin[t] = np.arange(nb)
        if nb != n - len(view.slack_nodes) or np.any(kin[np.setdiff1d(np.arange(n), view.slack_nodes)] < 0):
            raise InputError("formulation", f"{WHAT}: grid {view.name!r} is not a tree fed by its slacks")
        self.kin = kin
        z = view.r_pu + 1j * view.x_pu
        if np.any(np.abs(z) == 0):
            raise InputError("formulation", f"{WHAT}: a branch of grid {view.name!r} has zero impedance")
        self.z = z
        self.inv_tap = 1.0 / view.tap_ratio
        g_sh, b_sh = _node_shunts(view)
        self.y_sh = g_sh + 1j * b_sh
        # M I = J[to]: I_k - sum over children k' of I_k' / tap_k' = J_to(k); forward with M^T. M = 1 - P
        # with P nilpotent (a tree), so M^-1 = sum of the powers of P: the (sparse) path matrix, with one
        # entry per branch and branch above it. On deep trees (long LV feeders) that is many entries per
        # branch: there M, unit upper triangular with parents before children, is factored instead (LU
        # without fill), a solve then costing the tree's size (but more per entry).
        up = kin[f]
        child = np.flatnonzero(up >= 0)
        p = sp.csr_matrix((self.inv_tap[child], (up[child], child)), shape=(nb, nb))
        self.from_slack = np.flatnonzero(up < 0)
        depth = self._depth()
        self.path: sp.csr_matrix | None = None
        self.path_t: sp.csr_matrix | None = None
        self._lu: spla.SuperLU | None = None
        self.order = np.argsort(depth[t], kind="stable")  # branch positions, parents before children
        if int(depth[t].sum()) <= PATH_ENTRIES_PER_BRANCH * nb or nb == 0:
            path = sp.identity(nb, format="csr")
            term = path
            while term.nnz:  # at most the tree's height
                term = term @ p
                path = path + term
            self.path = path.tocsr()
            self.path_t = path.T.tocsr()
        else:
            m_tri = (sp.identity(nb, format="csr") - p)[self.order][:, self.order].tocsc()
            self._lu = spla.splu(m_tri, permc_spec="NATURAL", diag_pivot_thresh=0.0)
        # component of every node: the slack it hangs from
        comp = np.full(n, -1, dtype=np.int64)
        comp[view.slack_nodes] = np.arange(len(view.slack_nodes))
        order = np.argsort(depth, kind="stable")  # parents before children
        for node in order:
            if comp[node] < 0:
                comp[node] = comp[f[kin[node]]]
        self.comp = comp
        # bus admittance matrix
        y = 1.0 / z
        ys = view.g_shunt_pu + 1j * view.b_shunt_pu
        it = self.inv_tap
        rows = np.concatenate([f, f, t, t, np.arange(n)])
        cols = np.concatenate([f, t, f, t, np.arange(n)])
        vals = np.concatenate([(y + ys / 2) * it**2, -y * it, -y * it, y + ys / 2, view.node_g_pu + 1j * view.node_b_pu])
        self.ybus = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
        self.ybus.sum_duplicates()
        self.yff: ComplexArray = np.asarray((y + ys / 2) * it**2, dtype=complex)
        self.yft: ComplexArray = np.asarray(-y * it, dtype=complex)
        self.ytf: ComplexArray = np.asarray(-y * it, dtype=complex)
        self.ytt: ComplexArray = np.asarray(y + ys / 2, dtype=complex)

    def _depth(self) -> IntArray:
        v = self.view
        n = v.n_node
        parent = np.full(n, -1, dtype=np.int64)
        parent[v.to_node] = v.from_node
        depth = np.zeros(n, dtype=np.int64)
        cur = parent.copy()
        while np.any(cur >= 0):  # at most the tree's height
            depth += cur >= 0
            cur = np.where(cur >= 0, parent[np.maximum(cur, 0)], -1)
        return depth

    def _solve(self, rhs: ComplexArray, trans: bool) -> ComplexArray:
        """M^-1 rhs (currents up the tree) or M^-T rhs (voltage drops down it)."""
        if self._lu is None:
            assert self.path is not None and self.path_t is not None
            return np.asarray((self.path_t if trans else self.path) @ rhs)
        out = np.empty(rhs.shape, dtype=complex)
        if not out.size:
            return out
        x = np.ascontiguousarray(rhs[self.order], dtype=complex)
        # M is real: one real solve for the real and imaginary parts side by side
        with blas_one_thread():
            y = self._lu.solve(x.view(np.float64), trans="T" if trans else "N")
        out[self.order] = np.ascontiguousarray(y).view(np.complex128)
        return out

    def flow(self, s_w: ComplexArray, v_init: ComplexArray | None = None, *, tol_pu: float = 1e-11,
             max_iter: int = 200) -> ComplexArray:
        """Complex voltages (node x slot) for the complex withdrawals `s_w` (node x slot, pu)."""
        view = self.view
        n, t_count = s_w.shape
        vs = view.slack_v_pu.astype(complex)
        v = np.empty((n, t_count), dtype=complex)
        if v_init is None:
            v[:] = vs[self.comp][:, None]
        else:
            v[:] = v_init
        v[view.slack_nodes] = vs[:, None]
        f, t = view.from_node, view.to_node
        step = np.inf
        for _ in range(max_iter):
            j = np.conj(s_w / v) + self.y_sh[:, None] * v
            i_s = self._solve(j[t], trans=False)
            rhs = -self.z[:, None] * i_s
            rhs[self.from_slack] += (self.inv_tap[self.from_slack, None] * v[f[self.from_slack]])
            v_new = v.copy()
            v_new[t] = self._solve(rhs, trans=True)
            step = float(np.max(np.abs(v_new - v), initial=0.0))
            v = v_new
            if not np.isfinite(step):
                break
            if step < tol_pu:
                return v
        raise SolverError("ac_not_converged", f"{WHAT} (backward/forward sweep) did not "
                          f"converge (last step {step:.3g} pu): the withdrawals are beyond what the feeder can carry")

    def slack_import(self, v: ComplexArray, s_w: ComplexArray) -> FloatArray:
        """Active power each slack imports (slack x slot, pu): its own withdrawal plus what it injects."""
        sl = self.view.slack_nodes
        s_calc = v[sl] * np.conj(self.ybus[sl] @ v)
        return np.asarray(s_w[sl].real + s_calc.real)

    def mismatch(self, v: ComplexArray, s_w: ComplexArray) -> float:
        """Largest nodal power mismatch (pu) of the non-slack nodes: 0 for an exact AC solution."""
        s_calc = v * np.conj(self.ybus @ v)
        free = np.flatnonzero(self.kin >= 0)
        return float(np.max(np.abs(s_calc[free] + s_w[free]), initial=0.0))

    def currents2(self, v: ComplexArray) -> tuple[FloatArray, FloatArray]:
        """Squared current magnitudes at the from and to terminals (branch x slot, pu)."""
        f, t = self.view.from_node, self.view.to_node
        i_f = self.yff[:, None] * v[f] + self.yft[:, None] * v[t]
        i_t = self.ytf[:, None] * v[f] + self.ytt[:, None] * v[t]
        return np.abs(i_f) ** 2, np.abs(i_t) ** 2

    def sensitivities(self, v: ComplexArray, kind: IntArray, element: IntArray, slot: IntArray
                      ) -> tuple[FloatArray, FloatArray]:
        """At voltages `v` (node x slot): d(import)/dw (node x slot: 1 + loss factor, w the active
        withdrawal), and for every constraint c (kind V_MAX / V_MIN: |V|^2 of node element[c]; I_FROM /
        I_TO: |I|^2 at the from / to terminal of branch element[c]; in slot slot[c]) its row d/dw (c x node).

        Adjoint method: with F(x, w) = S_calc(x) + S_w = 0 the power flow of a slot in x = (theta, |V|)
        of its non-slack nodes, dg/dw_P = -(J^-T grad g)[P rows]. J has the tree's block structure (2x2
        blocks per node and per branch), so J^T is eliminated leaf to root without fill (`_TreeSolver`)."""
        view = self.view
        n, t_count = v.shape
        kin = self.kin
        free = np.flatnonzero(kin >= 0)
        solver = _TreeSolver(self, v)
        vn = v / np.abs(v)
        # gradients (position, column, theta|Vm): first one column per slot for the import, then one per constraint
        n_c = len(kind)
        cols_slot = np.concatenate([np.arange(t_count, dtype=np.int64), slot.astype(np.int64)])
        ent_pos: list[IntArray] = []
        ent_col: list[IntArray] = []
        ent_cmp: list[IntArray] = []
        ent_val: list[FloatArray] = []
        coo = self.ybus.tocoo()
        sl = np.zeros(n, dtype=bool)
        sl[view.slack_nodes] = True
        s_rows = sl[coo.row] & (kin[coo.col] >= 0)
        rs, cs, ys = coo.row[s_rows], coo.col[s_rows], coo.data[s_rows]
        tt = np.broadcast_to(np.arange(t_count)[None, :], (len(rs), t_count))
        pos_s = np.broadcast_to(kin[cs][:, None], tt.shape)
        ent_pos += [pos_s.ravel(), pos_s.ravel()]
        ent_col += [tt.ravel(), tt.ravel()]
        ent_cmp += [np.zeros(tt.size, np.int64), np.ones(tt.size, np.int64)]
        ent_val += [np.real(-1j * v[rs] * np.conj(ys[:, None] * v[cs])).ravel(),
                    np.real(v[rs] * np.conj(ys[:, None] * vn[cs])).ravel()]
        is_v = np.flatnonzero(kind <= V_MIN)
        if len(is_v):
            nd, sv = element[is_v], slot[is_v]
            ent_pos.append(kin[nd])
            ent_col.append(t_count + is_v)
            ent_cmp.append(np.ones(len(is_v), np.int64))
            ent_val.append(2 * np.abs(v[nd, sv]))
        for end in (I_FROM, I_TO):
            sel = np.flatnonzero(kind == end)
            if not len(sel):
                continue
            k, s_ = element[sel], slot[sel]
            fa, ta = view.from_node[k], view.to_node[k]
            ya, yb = (self.yff[k], self.yft[k]) if end == I_FROM else (self.ytf[k], self.ytt[k])
            cur = ya * v[fa, s_] + yb * v[ta, s_]
            for node, yc in ((fa, ya), (ta, yb)):
                ok = kin[node] >= 0
                c_, nd_, t_, y_ = sel[ok], node[ok], s_[ok], yc[ok]
                cc = np.conj(cur[ok])
                ent_pos += [kin[nd_], kin[nd_]]
                ent_col += [t_count + c_, t_count + c_]
                ent_cmp += [np.zeros(len(c_), np.int64), np.ones(len(c_), np.int64)]
                ent_val += [2 * np.real(cc * 1j * y_ * v[nd_, t_]), 2 * np.real(cc * y_ * vn[nd_, t_])]
        ep, ec, em, ev = (np.concatenate(x) for x in (ent_pos, ent_col, ent_cmp, ent_val))
        a = np.ones((n, t_count))
        sens = np.zeros((n_c, n))
        n_cols = t_count + n_c
        for lo in range(0, n_cols, ADJOINT_CHUNK):
            hi = min(n_cols, lo + ADJOINT_CHUNK)
            pick = (ec >= lo) & (ec < hi)
            g = np.zeros((view.n_branch, hi - lo, 2))
            np.add.at(g, (ep[pick], ec[pick] - lo, em[pick]), ev[pick])
            y = solver.solve_transposed(g, cols_slot[lo:hi])
            dp = -y[kin[free], :, 0]  # (free nodes, columns): d g / d w_P
            imp = np.arange(lo, min(hi, t_count))
            a[np.ix_(free, imp)] = dp[:, imp - lo]
            con = np.arange(max(lo, t_count), hi)
            sens[np.ix_(con - t_count, free)] = dp[:, con - lo].T
        return a, sens


class _TreeSolver:
    """The power-flow Jacobian of every slot at voltages `v`, factored for solves with its transpose.

    Unknowns per non-slack node (at its branch's position): (theta, |V|); equations (P, Q). A radial
    network's Jacobian has 2x2 blocks on the diagonal and for each branch between two non-slack nodes,
    so eliminating J^T from the leaves to the root (one tree level at a time, every slot at once) is
    exact and creates no fill."""

    def __init__(self, ac: RadialAC, v: ComplexArray) -> None:
        view = ac.view
        kin = ac.kin
        nb = view.n_branch
        node = view.to_node  # node of each position
        par = kin[view.from_node]  # parent position (-1: the parent is a slack)
        self.par = par
        vn = v / np.abs(v)
        ib = np.asarray(ac.ybus @ v)
        ydiag = ac.ybus.diagonal()

        def block(i: IntArray, j: IntArray, y: ComplexArray, diag: bool) -> FloatArray:
            """J[i, j] as (len(i), T, 2, 2): rows (P, Q) of node i, columns (theta, |V|) of node j."""
            d_vm = v[i] * np.conj(y[:, None] * vn[j])
            d_va = -1j * v[i] * np.conj(y[:, None] * v[j])
            if diag:
                d_vm = d_vm + np.conj(ib[i]) * vn[i]
                d_va = d_va + 1j * v[i] * np.conj(ib[i])
            return np.stack([np.stack([d_va.real, d_vm.real], -1), np.stack([d_va.imag, d_vm.imag], -1)], -2)

        # A = J^T: A[i, i] = J[i, i]^T, A[i, p] = J[p, i]^T, A[p, i] = J[i, p]^T
        a_diag = np.swapaxes(block(node, node, ydiag[node], True), -1, -2)
        has_p = par >= 0
        pnode = view.from_node
        self.a_ip = np.swapaxes(block(pnode, node, ac.yft, False), -1, -2)  # A[i, parent]
        self.a_pi = np.swapaxes(block(node, pnode, ac.ytf, False), -1, -2)  # A[parent, i]
        depth = np.zeros(nb, dtype=np.int64)
        cur = par.copy()
        while np.any(cur >= 0):
            depth += cur >= 0
            cur = np.where(cur >= 0, par[np.maximum(cur, 0)], -1)
        self.levels = [np.flatnonzero(depth == d) for d in range(int(depth.max(initial=0)) + 1)]
        inv = np.empty_like(a_diag)
        for lev in reversed(self.levels):
            det = a_diag[lev, ..., 0, 0] * a_diag[lev, ..., 1, 1] - a_diag[lev, ..., 0, 1] * a_diag[lev, ..., 1, 0]
            scale = np.abs(a_diag[lev]).max(axis=(-1, -2)) ** 2
            if np.any(np.abs(det) <= 1e-14 * scale) or not np.all(np.isfinite(det)):
                raise SolverError("singular_jacobian", f"{WHAT}: its Jacobian is singular at the "
                                  "operating point (voltage collapse)")
            m_inv = np.stack([np.stack([a_diag[lev, ..., 1, 1], -a_diag[lev, ..., 0, 1]], -1),
                              np.stack([-a_diag[lev, ..., 1, 0], a_diag[lev, ..., 0, 0]], -1)], -2) / det[..., None, None]
            inv[lev] = m_inv
            up = lev[has_p[lev]]
            if len(up):  # A[p, p] -= A[p, i] A[i, i]^-1 A[i, p]
                upd = self.a_pi[up] @ inv[up] @ self.a_ip[up]
                np.add.at(a_diag, par[up], -upd)
        self.inv = inv

    def solve_transposed(self, g: FloatArray, col_slot: IntArray) -> FloatArray:
        """y with J^T y = g, for right-hand sides g (position, column, 2), column c in slot col_slot[c]."""
        g = g.copy()
        par, inv = self.par, self.inv

        def mul(m: FloatArray, pos: IntArray, x: FloatArray) -> FloatArray:
            """m[pos] (per position and slot, 2x2) times x (position, column, 2), each column in its slot."""
            mc = m[pos][:, col_slot]  # (positions, columns, 2, 2)
            out = np.empty_like(x)
            out[..., 0] = mc[..., 0, 0] * x[..., 0] + mc[..., 0, 1] * x[..., 1]
            out[..., 1] = mc[..., 1, 0] * x[..., 0] + mc[..., 1, 1] * x[..., 1]
            return out

        u = np.zeros_like(g)
        for lev in reversed(self.levels):  # leaves to root
            u[lev] = mul(inv, lev, g[lev])
            up = lev[par[lev] >= 0]
            if len(up):
                np.add.at(g, par[up], -mul(self.a_pi, up, u[up]))
        y = np.zeros_like(g)
        for lev in self.levels:  # root to leaves
            rhs = g[lev].copy()
            inner = par[lev] >= 0
            if np.any(inner):
                sel = lev[inner]
                rhs[inner] -= mul(self.a_ip, sel, y[par[sel]])
            y[lev] = mul(inv, lev, rhs)
        return y
