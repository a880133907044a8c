"""Sensitivity-based clearing iterated against an exact AC power flow (successive linear programming).

The `sensitivity` formulation, for radial networks. At an AC operating point (the nodal
withdrawals `w0` of every slot and their exact AC voltages), the substation import, the squared
voltage magnitudes and the squared branch currents are linearised in the nodal active
withdrawals (loss factors, voltage and current sensitivities, from the adjoint of the AC power
flow Jacobian). The LP over the market variables alone (offers, requests, P2P, devices), with one
energy balance per slot and slack (import = losses included through the loss factors) and only the
voltage and current limits that are near binding (lazy rows, dense in the withdrawals below them),
is solved with HiGHS; a batched AC power flow of all slots at once (radial backward/forward sweep)
at the LP's withdrawals gives the next operating point. Repeat until the withdrawals move by less
than `tol_mw` and no further limit comes near binding.

At convergence the LP's solution is its own linearisation point: the import, voltages and currents
it uses are the AC ones (the linearisation is exact at its point), so the result satisfies the AC
power flow, not a relaxation of it; the reported voltages are the AC power flow's. The LP is a
first-order model of the AC problem at that point, so its duals are the DLMPs, decomposed as the
textbook does: energy (the balance dual) + losses (loss factor x energy) + congestion (current-limit
duals x current sensitivities) + voltage (voltage-limit duals x voltage sensitivities).

The LP is a `ConicModel` like the others (the final one is certified by `check_kkt`): the market's
blocks first, then the nodal withdrawals `w_p` (node x slot), the import `p_slack` (slack x slot)
and the limit slacks. Its `balance_p` rows (`w_p - market terms = constant withdrawal`, scaled as in
`DispatchProblem`) carry the DLMPs as their duals, so the certificate recomputes them the same way.

When it does not converge (the LP's vertex keeps moving, e.g. oscillating between two vertices of
nearly equal cost, or the AC power flow diverges) a `SolverError` names the reason; there is no
silent result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flexgrid.errors import InputError, SolverError
from flexgrid.grid.profiles import Profiles
from flexgrid.grid.topology import GridView
from flexgrid.opf.conic import Block, ConicModel, Solution
from flexgrid.opf.devices import Devices
from flexgrid.opf.formulations import Network
from flexgrid.opf.problem import (
    COMPONENTS,
    PENALTY_I_EUR,
    PENALTY_V_EUR,
    DispatchProblem,
    DispatchResult,
    Violation,
)
from flexgrid.opf.radial import I_FROM, I_TO, V_MAX, V_MIN, RadialAC

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ComplexArray = npt.NDArray[np.complex128]

NAME = "sensitivity"
TOL_MW = 1e-5  # converged when no withdrawal moves by more than this (10 W) between iterations
MAX_ITER = 40
TRUST_SHRINK = 0.25  # a column's trust region shrinks to this fraction of its last step when the step reverses
TRUST_GROW = 1.5  # and grows by this factor when the column moves on to its bound in the same direction
NEAR_V2 = 0.01  # a voltage row joins the LP when v^2 is within this of its limit (~0.005 pu of |V|)
NEAR_I = 0.9  # a current row joins the LP when |I| reaches this fraction of its limit
SPARSE_TOL = 1e-12  # sensitivities below this (relative to the row's largest) are left out


@dataclass
class _Rows:
    """The limit rows in the LP (monotone: a row once in stays in): kind, element, slot."""

    kind: IntArray
    element: IntArray
    slot: IntArray

    def add(self, kind: int, mask: npt.NDArray[np.bool_], elements: IntArray) -> int:
        """Add the rows where `mask` (element x slot) holds and that are not in yet; return how many."""
        e, s = np.nonzero(mask)
        if not len(e):
            return 0
        have = set(zip(self.kind.tolist(), self.element.tolist(), self.slot.tolist(), strict=True))
        new = [(kind, int(elements[i]), int(t)) for i, t in zip(e.tolist(), s.tolist(), strict=True)
               if (kind, int(elements[i]), int(t)) not in have]
        if not new:
            return 0
        arr = np.array(new, dtype=np.int64)
        self.kind = np.concatenate([self.kind, arr[:, 0]])
        self.element = np.concatenate([self.element, arr[:, 1]])
        self.slot = np.concatenate([self.slot, arr[:, 2]])
        order = np.lexsort((self.element, self.kind, self.slot))
        self.kind, self.element, self.slot = self.kind[order], self.element[order], self.slot[order]
        return len(new)


class SensitivityProblem(DispatchProblem):
    """`DispatchProblem`'s interface (model, add_withdrawal_mw, rows, build, solve -> DispatchResult)
    with the successive-LP physics of the module docstring. `model` is the market's model until
    `solve`, then the final LP (market blocks at the same positions)."""

    def __init__(self, view: GridView, profiles: Profiles, *, slot_seconds: int, wholesale_eur_per_mwh: npt.ArrayLike,
                 formulation: str = NAME, devices: Devices | None = None, penalty_v_eur: float = PENALTY_V_EUR,
                 penalty_i_eur: float = PENALTY_I_EUR, tol_mw: float = TOL_MW, max_iter: int | None = None) -> None:
        if not view.is_radial:
            raise InputError("formulation", f"{NAME} needs a radial network but grid {view.name!r} is meshed "
                             f"({view.radial_reason}); use --formulation dc (or copperplate)")
        super().__init__(view, profiles, slot_seconds=slot_seconds, wholesale_eur_per_mwh=wholesale_eur_per_mwh,
                         formulation=NAME, devices=devices, penalty_v_eur=penalty_v_eur, penalty_i_eur=penalty_i_eur)
        self.market = self.model
        self.ac = RadialAC(self.view)
        self.tol_mw = tol_mw
        self.max_iter = MAX_ITER if max_iter is None else max_iter
        self.k = self.base / self.price_base
        self.iterations = 0
        self.steps: list[float] = []  # largest withdrawal move of each iteration, MW
        self._a: FloatArray | None = None
        self._rows = _Rows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        self._v: ComplexArray | None = None

    # ----------------------------------------------------------------------------- building
    def build(self) -> Network:
        """The names the other layers need (the LP itself is built in `solve`, at each operating point)."""
        n, t_count, ns = self.view.n_node, self.t_count, len(self.view.slack_nodes)
        ps = Block("p_slack", self.market.n + n * t_count, ns, t_count)  # where `_lp` puts it
        return Network(NAME, ps, ["w_p", "p_slack"], "balance_p", None, True, {}, {}, {})

    def _lp(self, v: ComplexArray, w0: FloatArray, box: tuple[IntArray, FloatArray, FloatArray] | None = None
            ) -> ConicModel:
        """The LP linearised at voltages `v` and withdrawals `w0` (node x slot, model pu), with the trust
        region `box` (columns, lower, upper) when given."""
        mk = self.market
        mk.finalise()
        m = ConicModel(n=mk.n, blocks=dict(mk.blocks), groups=[dataclasses.replace(g) for g in mk.groups],
                       _cost=list(mk._cost), integer=list(mk.integer), solver_options=dict(mk.solver_options))
        view, t_count = self.view, self.t_count
        n, ns = view.n_node, len(view.slack_nodes)
        wb = m.add_block("w_p", n, t_count)
        ps = m.add_block("p_slack", ns, t_count)
        wi, psi = wb.idx(), ps.idx()
        k = self.k
        # nodal balance: w - market withdrawal terms = constant withdrawal (scaled: duals per pu of the grid's base)
        wr, wc, wv = self.wp.triplets()
        m.add("balance_p", "zero", np.concatenate([np.arange(n * t_count), wr]),
              np.concatenate([wi.T.ravel(), wc]), np.concatenate([np.full(n * t_count, k), -k * wv]),
              k * self.wp.constant_pu.T.ravel(), n_rows=n * t_count, category="balance")
        # energy balance per slack and slot: p_slack - sum_i a_i w_i = P0 - sum_i a_i w0_i
        s_w = w0 + 1j * self.wq.constant_pu
        p0 = self.ac.slack_import(v, s_w)
        rows = self._rows
        kinds, elems, slots = rows.kind, rows.element, rows.slot
        a, sens = self.ac.sensitivities(v, kinds, elems, slots)
        self._a = a
        comp = self.ac.comp
        er = (comp[:, None] + ns * np.arange(t_count)[None, :]).ravel()  # row of each (node, slot)
        m.add("energy_balance", "zero", np.concatenate([np.arange(ns * t_count), er]),
              np.concatenate([psi.T.ravel(), wi.ravel()]), np.concatenate([np.ones(ns * t_count), -a.ravel()]),
              (p0 - np.asarray(np.bincount(er, weights=(a * w0).ravel(), minlength=ns * t_count)).reshape(t_count, ns).T
               ).T.ravel(), category="energy")
        m.add_cost(psi, np.broadcast_to((self.wholesale * self.base * self.slot_h)[None, :], psi.shape))
        # limit rows, each with its penalised slack
        vm2 = np.abs(v) ** 2
        i2f, i2t = self.ac.currents2(v)
        for kind_name, sel, sign, lim, value, penalty in self._limit_rows(vm2, i2f, i2t):
            c = len(sel)
            if c == 0:
                continue
            sig = m.add_block(f"slack_{kind_name}", c, 1)
            si = sig.idx().ravel()
            s_rows = sens[sel]
            big = np.max(np.abs(s_rows), axis=1, initial=0.0)
            rr, nn = np.nonzero(np.abs(s_rows) > SPARSE_TOL * np.maximum(big, 1e-300)[:, None])
            coef = sign * s_rows[rr, nn]
            cols = wi[nn, slots[sel][rr]]
            # sign * (value + s (w - w0)) - slack <= sign * lim
            rhs = sign * (lim - value) + np.bincount(rr, weights=coef * w0[nn, slots[sel][rr]], minlength=c)
            m.add(kind_name, "nonneg", np.concatenate([rr, np.arange(c)]), np.concatenate([cols, si]),
                  np.concatenate([coef, -np.ones(c)]), rhs, n_rows=c,
                  category="congestion" if kind_name == "thermal" else "voltage")
            m.bound(f"slack_{kind_name}", si, 0.0, None,
                    category="congestion" if kind_name == "thermal" else "voltage")
            m.add_cost(si, penalty)
        if box is not None:
            m.bound("trust_region", box[0], box[1], box[2], category="trust")
        return m

    def _limit_rows(self, vm2: FloatArray, i2f: FloatArray, i2t: FloatArray
                    ) -> list[tuple[str, IntArray, float, FloatArray, FloatArray, float]]:
        """(name, positions in the rows, sign, limit, value at the point, penalty) of each kind of limit row."""
        r = self._rows
        view = self.view
        out = []
        for name, kind, sign, lim in (("v_max", V_MAX, 1.0, view.v_max_pu**2), ("v_min", V_MIN, -1.0, view.v_min_pu**2)):
            sel = np.flatnonzero(r.kind == kind)
            out.append((name, sel, sign, lim[r.element[sel]], vm2[r.element[sel], r.slot[sel]], self.penalty_v))
        th = np.flatnonzero(r.kind >= I_FROM)
        val = np.where(r.kind[th] == I_FROM, i2f[r.element[th], r.slot[th]], i2t[r.element[th], r.slot[th]])
        out.append(("thermal", th, 1.0, view.i_max_pu[r.element[th]] ** 2, val, self.penalty_i * self.k**2))
        return out

    def _near(self, v: ComplexArray) -> int:
        """Add the limit rows that are near binding (or violated) at voltages `v`; return how many were new."""
        view = self.view
        vm2 = np.abs(v) ** 2
        free = np.flatnonzero(self.ac.kin >= 0)
        added = self._rows.add(V_MAX, vm2[free] >= (view.v_max_pu[free] ** 2 - NEAR_V2)[:, None], free)
        added += self._rows.add(V_MIN, vm2[free] <= (view.v_min_pu[free] ** 2 + NEAR_V2)[:, None], free)
        lim = np.flatnonzero(np.isfinite(view.i_max_pu))
        if len(lim):
            i2f, i2t = self.ac.currents2(v)
            thr = ((NEAR_I * view.i_max_pu[lim]) ** 2)[:, None]
            added += self._rows.add(I_FROM, i2f[lim] >= thr, lim)
            two = (np.abs(view.g_shunt_pu[lim]) + np.abs(view.b_shunt_pu[lim]) > 0) | (
                np.abs(view.tap_ratio[lim] - 1.0) > 1e-12)
            added += self._rows.add(I_TO, (i2t[lim] >= thr) & two[:, None], lim)
        return added

    # ----------------------------------------------------------------------------- solving
    def solve(self, *, fixed: dict[int, float] | None = None, backend: str = "direct") -> DispatchResult:
        """Iterate LP <-> AC power flow to convergence (see the module docstring); raises `SolverError`
        when an LP is not optimal, the AC power flow diverges, or the iteration does not converge."""
        self.build()
        wq = self.wq.constant_pu
        w0 = self.wp.constant_pu.copy()
        v = self.ac.flow(w0 + 1j * wq)
        self._near(v)
        # Trust region on the columns that move withdrawals: none until a column's step reverses (the
        # optimum lies between two LP vertices, e.g. an offer whose own injection lowers its loss factor
        # below its price), then a box around the last point that shrinks at every further reversal.
        cols = np.unique(self.wp.triplets()[1])
        delta = np.full(len(cols), np.inf)
        x0: FloatArray | None = None
        d_prev = np.zeros(len(cols))
        step = np.inf
        for it in range(1, self.max_iter + 1):
            box = None
            if x0 is not None and np.any(np.isfinite(delta)):
                on = np.flatnonzero(np.isfinite(delta))
                box = (cols[on], x0[cols[on]] - delta[on], x0[cols[on]] + delta[on])
            lp = self._lp(v, w0, box)
            sol = lp.solve(fixed=fixed, backend=backend, solver="HIGHS")
            w1 = sol.x[lp.blocks["w_p"].idx()]
            v = self.ac.flow(w1 + 1j * wq, v)
            added = self._near(v)
            step = float(np.max(np.abs(w1 - w0), initial=0.0)) * self.base
            self.steps.append(step)
            if x0 is not None:
                d = sol.x[cols] - x0[cols]
                moved = np.abs(d) > self.tol_mw
                flip = moved & (d * d_prev < 0)  # against the column's last move: the optimum is in between
                delta[flip] = np.minimum(delta[flip], np.abs(d[flip])) * TRUST_SHRINK
                grow = moved & ~flip & (d * d_prev > 0) & (np.abs(d) >= 0.99 * delta)  # on along the box
                delta[grow] *= TRUST_GROW
                d_prev = np.where(moved, d, d_prev)
            x0 = sol.x
            w0 = w1
            if step <= self.tol_mw and not added:
                self.iterations = it
                self.model = lp
                self._v = v
                return self.result(sol)
        raise SolverError("not_converged", f"{NAME}: the withdrawals still moved by {step:.3g} MW after "
                          f"{self.max_iter} LP / AC power flow iterations; use --formulation socp")

    # ----------------------------------------------------------------------------- extraction
    def decompose(self, sol: Solution) -> dict[str, FloatArray]:
        m = self.model
        n, t_count, ns = self.view.n_node, self.t_count, len(self.view.slack_nodes)
        assert self._a is not None
        scale = 1.0 / (self.k * self.price_base * self.slot_h)
        z_e = sol.z["energy_balance"].reshape(t_count, ns).T  # slack x slot
        ze = z_e[self.ac.comp]  # node x slot
        comps = {c: np.zeros((n, t_count)) for c in COMPONENTS}
        comps["energy"] = -ze * scale
        comps["losses"] = -(self._a - 1.0) * ze * scale
        wi = m.blocks["w_p"].idx()
        for g in m.groups:
            if g.category in ("voltage", "congestion") and g.kind == "nonneg" and g.name in ("v_max", "v_min", "thermal"):
                part = np.asarray(g.a.T @ sol.z[g.name])[wi] * scale
                comps["congestion" if g.name == "thermal" else "voltage"] += part
        return comps

    def violations(self, sol: Solution, tol: float = 1e-6) -> list[Violation]:
        out: list[Violation] = []
        m, r, view = self.model, self._rows, self.view
        vm2 = np.abs(self._v) ** 2 if self._v is not None else None
        i2 = self.ac.currents2(self._v) if self._v is not None else None
        assert vm2 is not None and i2 is not None
        for name, sel, _sign, lim, _val, _pen in self._limit_rows(vm2, *i2):
            if f"slack_{name}" not in m.blocks or not len(sel):
                continue
            val = sol.x[m.blocks[f"slack_{name}"].idx().ravel()]
            for j in np.flatnonzero(val > tol).tolist():
                pos, s = int(sel[j]), int(r.slot[sel[j]])
                e = int(r.element[pos])
                if name == "thermal":
                    element = f"{view.branch_kind[e]} {int(view.branch_element[e])}"
                    amount = (np.sqrt(1 + val[j] / lim[j]) - 1) * 100
                    unit = "% loading"
                else:
                    element = f"bus {int(view.bus_of_node[e])}"
                    amount = abs(np.sqrt(max(lim[j] + (val[j] if name == "v_max" else -val[j]), 0)) - np.sqrt(lim[j]))
                    unit = "pu"
                if amount > 1e-4:
                    out.append(Violation(name, element, s, float(amount), unit))
        return out

    def voltages(self, sol: Solution) -> FloatArray:
        """The AC power flow's voltage magnitudes at the operating point the last LP was built on."""
        assert self._v is not None
        return np.abs(self._v)

    def result(self, sol: Solution) -> DispatchResult:
        """DispatchProblem's result (no relaxation here: no loss variable) with the iteration's record."""
        out = super().result(sol)
        assert self._v is not None
        s_w = self.wp.value(sol.x) + 1j * self.wq.constant_pu
        out.extra = {"iterations": self.iterations, "steps_mw": list(self.steps),
                     "ac_mismatch_pu": self.ac.mismatch(self._v, s_w), "limit_rows": len(self._rows.kind)}
        return out
