"""The dispatch problem (PowerModels' `prob`): least-cost operation of a network over a round.

A `DispatchProblem` holds the data (grid view, profiles, wholesale prices, devices), lets the
market add its own decision variables as withdrawals at nodes and slots, then adds the chosen
formulation's physics, and runs build -> solve -> check status -> extract. The objective is the
energy bought at the substation at the wholesale price of each slot, plus device costs, plus
whatever the caller adds, plus penalties on soft limits.

Prices: the DLMP of node n in slot t is the marginal cost of one more MW withdrawn there for
the slot, `-z_balance / (base_mva * slot_h)` in EUR/MWh. `decompose` splits it into energy,
losses, congestion and voltage by solving the stationarity conditions of the network variables
once per component (a square linear system: the balance and internal duals are the unknowns,
each component's limit duals the right-hand side), so the components add up exactly when the
duals satisfy the KKT conditions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from flexgrid.errors import InputError, SolverError
from flexgrid.grid.profiles import Profiles
from flexgrid.grid.topology import GridView
from flexgrid.opf.conic import Block, ConicModel, Group, Solution
from flexgrid.opf.devices import Devices, soc_dynamics
from flexgrid.opf.formulations import Network, Withdrawal, _node_shunts, build_network
from flexgrid.opf.radial import RadialAC, blas_one_thread

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PENALTY_V_EUR = 1e5  # per pu of squared voltage beyond a limit, per hour
PENALTY_I_EUR = 1e4  # per pu of squared current (or apparent power) beyond a limit, per hour
COMPONENTS = ("energy", "losses", "congestion", "voltage")
LAZY_PRICE_FACTOR = 2.0  # see DispatchProblem._lazy_bounds


@dataclass(frozen=True)
class Violation:
    kind: str  # v_max, v_min, thermal
    element: str  # "bus 17" or "line 4" / "trafo 0"
    slot: int
    amount: float  # pu of voltage beyond the limit, or percent of loading beyond 100
    unit: str


@dataclass
class DispatchResult:
    solution: Solution
    dlmp_eur_per_mwh: FloatArray  # node x slot
    components: dict[str, FloatArray]
    v_pu: FloatArray | None  # node x slot, voltage magnitudes (None for dc / copperplate)
    withdrawal_p_mw: FloatArray
    withdrawal_q_mvar: FloatArray
    slack_p_mw: FloatArray
    violations: list[Violation]
    relaxation_gap_mw: float | None  # largest fictitious loss r (l - (P^2+Q^2)/v) of the SOC relaxation, MW
    devices_mw: dict[str, FloatArray] = field(default_factory=dict)  # bat_ch, bat_dis, bat_soc (MWh), ... device x slot
    extra: dict[str, object] = field(default_factory=dict)


def opf_base_mva(view: GridView, profiles: Profiles) -> float:
    """The power base the optimisation model uses: the grid's own, unless it is a hundred times or more
    the peak total load and generation (an LV feeder stored on a 100 MVA base), then the power of ten
    just above that peak. Results do not depend on it (up to solver tolerance), iterations do."""
    peak = float(np.max((np.abs(profiles.load_p_mw) + np.abs(profiles.pv_p_mw)).sum(axis=0), initial=0.0))
    if peak <= 0 or not math.isfinite(peak):
        return view.base_mva
    target = 10.0 ** math.ceil(math.log10(peak))
    return target if view.base_mva >= 100 * target else view.base_mva


def _sum_rows(n: int, idx: IntArray, vals: npt.NDArray[np.complex128]) -> npt.NDArray[np.complex128]:
    """`out[idx[i]] += vals[i]` over the rows of `vals` (rows x slots) in order, into n rows: np.add.at's
    sums, by np.bincount."""
    t = vals.shape[1]
    flat = (np.asarray(idx, dtype=np.int64)[:, None] * t + np.arange(t)).ravel()
    re = np.bincount(flat, weights=vals.real.ravel(), minlength=n * t)
    im = np.bincount(flat, weights=vals.imag.ravel(), minlength=n * t)
    return (re + 1j * im).reshape(n, t)


class DispatchProblem:
    """Data in, `DispatchResult` out; see the module docstring."""

    def __init__(self, view: GridView, profiles: Profiles, *, slot_seconds: int,
                 wholesale_eur_per_mwh: npt.ArrayLike, formulation: str = "socp", devices: Devices | None = None,
                 penalty_v_eur: float = PENALTY_V_EUR, penalty_i_eur: float = PENALTY_I_EUR) -> None:
        self.view = view
        self.t_count = profiles.slot_count
        if profiles.load_p_mw.shape != (view.n_node, self.t_count):
            raise InputError("profiles", f"shape {profiles.load_p_mw.shape} does not match {view.n_node} nodes")
        if slot_seconds <= 0:
            raise InputError("slot_seconds", f"must be positive, got {slot_seconds}")
        self.slot_h = slot_seconds / 3600.0
        price = np.broadcast_to(np.asarray(wholesale_eur_per_mwh, dtype=float), (self.t_count,)).copy()
        if not np.all(np.isfinite(price)):
            raise InputError("wholesale_eur_per_mwh", "must be finite in every slot")
        self.wholesale = price
        self.formulation = formulation
        # The model works in per unit on a base suited to the loads (see `opf_base_mva`); the balance
        # rows are scaled back to the grid's own base, so that their duals, and the DLMPs and the
        # certificate computed from them, read the same whatever base the model uses.
        self.grid_view = view
        self.price_base = view.base_mva
        self.view = view.rebased(opf_base_mva(view, profiles))
        self.base = self.view.base_mva
        self.model = ConicModel()
        self.wp = Withdrawal((profiles.load_p_mw - profiles.pv_p_mw) / self.base)
        self.wq = Withdrawal(profiles.load_q_mvar / self.base)
        self.penalty_v = penalty_v_eur * self.slot_h
        self.penalty_i = penalty_i_eur * self.slot_h
        self.devices = devices or Devices()
        self.device_blocks: dict[str, Block] = {}
        self.network: Network | None = None
        self._add_devices()

    # ----------------------------------------------------------------------------- building
    def rows(self, nodes: npt.ArrayLike, slots: npt.ArrayLike) -> IntArray:
        return np.asarray(slots, dtype=np.int64) * self.view.n_node + np.asarray(nodes, dtype=np.int64)

    def add_withdrawal_mw(self, nodes: npt.ArrayLike, slots: npt.ArrayLike, cols: npt.ArrayLike,
                          coef_mw: npt.ArrayLike) -> None:
        """Withdrawal at (node, slot) increases by `coef_mw * x[col]` MW."""
        rows = self.rows(nodes, slots)
        self.wp.add(rows, np.asarray(cols, dtype=np.int64), np.asarray(coef_mw, dtype=float) / self.base)

    def _nodes(self, buses: list[int], ids: list[str]) -> IntArray:
        return np.array([self.view.node(b, order_id=i) for b, i in zip(buses, ids, strict=True)], dtype=np.int64)

    def _add_devices(self) -> None:
        d, m, t_count, h = self.devices, self.model, self.t_count, self.slot_h
        d.validate(t_count, h)
        slots = np.arange(t_count)
        if d.batteries:
            bats = d.batteries
            nb = len(bats)
            nodes = self._nodes([b.bus for b in bats], [b.device_id for b in bats])
            ch, dis, soc = m.add_block("bat_ch", nb, t_count), m.add_block("bat_dis", nb, t_count), m.add_block(
                "bat_soc", nb, t_count)
            arr = {f: np.array([getattr(b, f) for b in bats]) for f in (
                "energy_mwh", "p_charge_mw", "p_discharge_mw", "soc_initial_mwh", "soc_final_min_mwh", "eta_charge",
                "eta_discharge", "cost_eur_per_mwh")}
            ci, di, si = ch.idx(), dis.idx(), soc.idx()
            m.bound("bat_ch", ci, 0.0, np.repeat(arr["p_charge_mw"][:, None], t_count, 1))
            m.bound("bat_dis", di, 0.0, np.repeat(arr["p_discharge_mw"][:, None], t_count, 1))
            m.bound("bat_soc", si, 0.0, np.repeat(arr["energy_mwh"][:, None], t_count, 1))
            dyn = soc_dynamics(nb, t_count).tocoo()
            # soc_t - soc_{t-1} - eta_c h ch_t + h / eta_d dis_t = soc_0 (t = 0) or 0
            rows = np.concatenate([dyn.row, (ci.T.ravel() - ci.min()), (di.T.ravel() - di.min())])
            cols = np.concatenate([si.T.ravel()[dyn.col], ci.T.ravel(), di.T.ravel()])
            vals = np.concatenate([dyn.data, np.tile(-arr["eta_charge"] * h, t_count),
                                   np.tile(h / arr["eta_discharge"], t_count)])
            b = np.zeros(nb * t_count)
            b[:nb] = arr["soc_initial_mwh"]
            m.add("battery_soc", "zero", rows, cols, vals, b, category="devices")
            m.bound("bat_final", si[:, -1], arr["soc_final_min_mwh"], None)
            m.add_cost(di, np.repeat((arr["cost_eur_per_mwh"] * h)[:, None], t_count, 1))
            nn = np.repeat(nodes[:, None], t_count, 1)
            ss = np.repeat(slots[None, :], nb, 0)
            self.add_withdrawal_mw(nn, ss, ci, 1.0)
            self.add_withdrawal_mw(nn, ss, di, -1.0)
            self.device_blocks.update(bat_ch=ch, bat_dis=dis, bat_soc=soc)
        windows = {
            "shift": [(x.device_id, x.bus, x.start_slot, x.end_slot, x.p_max_mw, x.energy_mwh, 1.0) for x in d.shiftable],
            "ev": [(x.device_id, x.bus, x.arrival_slot, x.departure_slot, x.p_max_mw, x.energy_mwh, x.eta) for x in d.evs],
        }
        for kind, devs in windows.items():
            if not devs:
                continue
            nd = len(devs)
            nodes = self._nodes([x[1] for x in devs], [x[0] for x in devs])
            blk = m.add_block(f"{kind}_p", nd, t_count)
            pi = blk.idx()
            upper = np.zeros((nd, t_count))
            for i, (_, _, lo, hi, p_max, _, _) in enumerate(devs):
                upper[i, lo:hi] = p_max
            m.bound(f"{kind}_p", pi, 0.0, upper)
            energy = np.array([x[5] for x in devs])
            eff = np.array([x[6] for x in devs])
            rows = np.repeat(np.arange(nd)[:, None], t_count, 1)
            if kind == "shift":
                m.add("shiftable_energy", "zero", rows, pi, h, energy, category="devices")
            else:
                m.add("ev_energy", "nonneg", rows, pi, -h * eff[:, None] * np.ones((1, t_count)), -energy,
                      category="devices")
            self.add_withdrawal_mw(np.repeat(nodes[:, None], t_count, 1), np.repeat(slots[None, :], nd, 0), pi, 1.0)
            self.device_blocks[f"{kind}_p"] = blk
        if d.pv:
            npv = len(d.pv)
            nodes = self._nodes([x.bus for x in d.pv], [x.device_id for x in d.pv])
            avail = np.array([x.available_mw for x in d.pv])
            blk = m.add_block("pv_curtail", npv, t_count)
            ci = blk.idx()
            m.bound("pv_curtail", ci, 0.0, avail)
            m.add_cost(ci, np.array([x.cost_eur_per_mwh * h for x in d.pv])[:, None] * np.ones((1, t_count)))
            np.add.at(self.wp.constant_pu, nodes, -avail / self.base)
            self.add_withdrawal_mw(np.repeat(nodes[:, None], t_count, 1), np.repeat(slots[None, :], npv, 0), ci, 1.0)
            self.device_blocks["pv_curtail"] = blk

    def build(self) -> Network:
        """Add the network physics and the substation's energy cost; call after adding market terms."""
        if self.network is not None:
            return self.network
        k = self.base / self.price_base  # a penalty per pu of the grid's base, in the model's pu
        net = build_network(self.model, self.view, self.t_count, self.wp, self.wq, self.formulation,
                            penalty_v=self.penalty_v,
                            penalty_i=self.penalty_i * (k**2 if self.formulation == "socp" else k),
                            balance_scale=k, with_devices=bool(self.device_blocks))
        cost = self.wholesale * self.base * self.slot_h
        self.model.add_cost(net.slack_p.idx(), np.broadcast_to(cost[None, :], (net.slack_p.rows, self.t_count)))
        self.network = net
        self._lazy_bounds(net)
        if self.formulation == "socp":
            self.model.start = self._operating_point(net)
        return net

    def _operating_point(self, net: Network) -> FloatArray | None:
        """The AC power flow of the constant withdrawals (every market and device variable at 0) as a
        point of the SOCP model, a candidate that certifies the slots where it is optimal without a
        solver (`flexgrid.opf.certify`); None when the power flow does not apply or converge."""
        view = self.view
        try:
            ac = RadialAC(view)
            v = ac.flow(self.wp.constant_pu + 1j * self.wq.constant_pu)
        except (InputError, SolverError):
            return None
        f, t = view.from_node, view.to_node
        vf = v[f] / view.tap_ratio[:, None]  # behind the ideal transformer at the from end
        i = (vf - v[t]) / (view.r_pu + 1j * view.x_pu)[:, None]
        s_br = vf * np.conj(i)  # series element, sending end: the model's P + jQ
        l2 = np.abs(i) ** 2
        v2 = np.abs(v) ** 2
        g_sh, b_sh = _node_shunts(view)
        # each slack's import closes its node's balance
        inflow = _sum_rows(view.n_node, np.concatenate([t, f]),
                           np.concatenate([s_br - (view.r_pu + 1j * view.x_pu)[:, None] * l2, -s_br]))
        sl = view.slack_nodes
        x = np.zeros(self.model.n)
        m = self.model.blocks
        x[m["P"].idx()], x[m["Q"].idx()], x[m["L"].idx()] = s_br.real, s_br.imag, l2
        x[m["v"].idx()] = v2
        x[net.slack_p.idx()] = self.wp.constant_pu[sl] + g_sh[sl, None] * v2[sl] - inflow[sl].real
        x[m["q_slack"].idx()] = self.wq.constant_pu[sl] - b_sh[sl, None] * v2[sl] - inflow[sl].imag
        return x

    def _lazy_bounds(self, net: Network) -> None:
        """Mark the bounds that the wholesale prices say will not bind as lazy (left out of the first
        Clarabel solve; see `ConicModel`): the upper bound of a variable used only in its bounds and the
        nodal balances whose cost is more than LAZY_PRICE_FACTOR times the value of its energy at the
        wholesale price (an offer far out of the money stays at 0), and the lower bound of one whose
        value is that many times its cost. A variable that stays at a lower bound of 0 is left out
        altogether (fixed at 0) until its reduced cost calls for it. Exact whatever the guess: a left-out
        bound that the solution violates, or a variable whose reduced cost is negative, is added and the
        component solved again."""
        m = self.model
        m.finalise()
        balance = {net.balance_p, *([net.balance_q] if net.balance_q else [])}
        # the variables used in a row that is neither a simple bound nor a nodal balance
        elsewhere = np.zeros(m.n, dtype=bool)
        simple: list[tuple[Group, float]] = []
        for g in m.groups:
            single = g.kind == "nonneg" and g.a.shape[0] > 0 and np.all(np.diff(g.a.indptr) == 1)
            if g.name in balance:
                continue
            if single and not g.lazy and not np.any(g.lazy_slack) and np.all(np.abs(g.a.data) == 1.0):
                if np.all(g.a.data == g.a.data[0]):
                    simple.append((g, float(g.a.data[0])))
            else:
                elsewhere[g.a.indices] = True
        if not simple:
            return
        r, cols, vals = self.wp.triplets()
        # EUR saved per unit of the variable at the wholesale price
        value = np.bincount(cols, weights=-vals * self.base * self.wholesale[r // self.view.n_node] * self.slot_h,
                            minlength=m.n)
        c = m.cost()
        alone = ~elsewhere
        idle = alone & (c > LAZY_PRICE_FACTOR * np.maximum(value, 0.0)) & (c > 0)  # stays at its lower bound
        full = alone & (value > LAZY_PRICE_FACTOR * np.maximum(c, 0.0)) & (value > 0)  # stays at its upper bound
        stressed_col = None
        if net.stressed is not None and np.any(net.stressed):
            stressed_col = np.zeros(m.n, dtype=bool)  # columns withdrawing at a node in a stressed slot
            stressed_col[cols[net.stressed[r // self.view.n_node]]] = True
        for g, sign in simple:
            out = (idle if sign > 0 else full)[g.a.indices]
            if np.any(out):
                g.lazy, g.lazy_start = True, ~out
            if sign < 0 and not np.any(g.b):  # lower bounds 0: an idle variable is left out altogether
                g.lazy_slack = idle[g.a.indices]
                if stressed_col is not None:  # except in the stressed slots' first solve (see Network)
                    g.slack_start = g.lazy_slack & stressed_col[g.a.indices]

    # ----------------------------------------------------------------------------- extraction
    def dlmp(self, sol: Solution) -> FloatArray:
        net = self.build()
        z = sol.z[net.balance_p]
        scale = -1.0 / (self.price_base * self.slot_h)
        if not net.per_node_balance:
            return np.repeat((z * scale)[None, :], self.view.n_node, 0)
        return (z * scale).reshape(self.t_count, self.view.n_node).T

    def decompose(self, sol: Solution) -> dict[str, FloatArray]:
        """Energy, losses, congestion and voltage components of the DLMPs (node x slot, EUR/MWh)."""
        net = self.build()
        n, t_count = self.view.n_node, self.t_count
        comps = {k: np.zeros((n, t_count)) for k in COMPONENTS}
        if not net.per_node_balance:
            comps["energy"] = self.dlmp(sol)
            return comps
        m = self.model
        # The loss variable's own condition is implied, and the soft-limit slacks appear in no
        # balance or internal row: leaving them out makes the system square. Columns slot-major
        # (slot, block, row), so that the system is block-diagonal by slot in this order.
        skip = {"L", *(b.name for b in net.soft.values())}
        names = [b for b in net.blocks if b not in skip]
        cols = np.vstack([m.blocks[b].idx() for b in names]).T.ravel()
        unknown = [g for g in m.groups if g.category in ("balance", "internal")]
        # Shunt terms (v in the nodal balances) are losses: keep them out of the system and put
        # their contribution, at the actual duals, in the losses component.
        is_v = np.zeros(m.n, dtype=bool)
        if "v" in m.blocks:
            is_v[m.blocks["v"].idx().ravel()] = True
        pos = np.full(m.n, -1, dtype=np.int64)
        pos[cols] = np.arange(len(cols))
        stacked = sp.vstack([g.a for g in unknown], format="csr")
        n_rows = stacked.shape[0]
        row = np.repeat(np.arange(n_rows), np.diff(stacked.indptr))
        balance_row = np.repeat(np.array([g.category == "balance" for g in unknown]),
                                [g.a.shape[0] for g in unknown])
        z_unknown = np.concatenate([sol.z[g.name] for g in unknown])
        col = pos[stacked.indices]
        shunt = is_v[stacked.indices] & balance_row[row]
        shunt_rhs = np.bincount(col[shunt], weights=stacked.data[shunt] * z_unknown[row[shunt]], minlength=len(cols))
        keep = (col >= 0) & ~shunt
        indptr = np.concatenate([[0], np.cumsum(np.bincount(row[keep], minlength=n_rows))])
        # the system's transpose: one row per unknown dual, one column per network variable
        a_all = sp.csr_matrix((stacked.data[keep], col[keep], indptr), shape=(n_rows, len(cols)))
        c = m.cost()
        owner = {"energy": [net.slack_p.name], "voltage": [b.name for k, b in net.soft.items() if k != "thermal"],
                 "congestion": [b.name for k, b in net.soft.items() if k == "thermal"], "losses": []}
        rhs_all = []
        for comp in COMPONENTS:
            cd = np.zeros(m.n)
            for bname in owner[comp]:
                idx = m.blocks[bname].idx().ravel()
                cd[idx] = c[idx]
            r = cd[cols].copy()
            if comp == "losses":
                r += shunt_rhs
            for g in m.groups:
                if g.category == comp and g.a.shape[0]:
                    r += (g.a.T @ sol.z[g.name])[cols]
            rhs_all.append(-r)
        n_bal = n * t_count  # the balance_p duals, the first unknowns
        y = _solve_by_slot(a_all, np.stack(rhs_all), t_count, np.arange(n_bal))
        if y is None:
            mat = a_all.T.tocsc()
            rhs = np.column_stack(rhs_all)
            if mat.shape[0] == mat.shape[1]:
                y = spla.splu(mat).solve(rhs)[:n_bal]
            else:  # pragma: no cover - non-square only for unusual data
                y = np.column_stack([spla.lsqr(mat, rhs[:, j], atol=1e-14, btol=1e-14)[0][:n_bal]
                                     for j in range(rhs.shape[1])])
        scale = -1.0 / (self.price_base * self.slot_h)
        for j, comp in enumerate(COMPONENTS):
            comps[comp] = (y[:, j] * scale).reshape(t_count, n).T
        return comps

    def voltages(self, sol: Solution) -> FloatArray | None:
        if "v" not in self.model.blocks:
            return None
        return np.sqrt(np.maximum(sol.x[self.model.blocks["v"].idx()], 0.0))

    def relaxation_gap_mw(self, sol: Solution) -> float | None:
        """How inexact the SOC relaxation is: the largest fictitious loss `r (l - (P^2+Q^2)/v)` it
        allows on a branch in a slot, in MW (0 when exact)."""
        if "L" not in self.model.blocks:
            return None
        b = self.model.blocks
        p, q, l_ = sol.x[b["P"].idx()], sol.x[b["Q"].idx()], sol.x[b["L"].idx()]
        vf = np.maximum(sol.x[b["v"].idx()][self.view.from_node] / self.view.tap_ratio[:, None] ** 2, 1e-6)
        fictitious = self.view.r_pu[:, None] * np.abs(l_ - (p**2 + q**2) / vf) * self.base
        return float(fictitious.max(initial=0.0))

    def violations(self, sol: Solution, tol: float = 1e-6) -> list[Violation]:
        net = self.build()
        out: list[Violation] = []
        v_all = sol.x[self.model.blocks["v"].idx()] if "v" in self.model.blocks else None
        for kind, blk in net.soft.items():
            val = sol.x[blk.idx()]
            lim = net.soft_limit[kind][:, None]
            rows, slots = np.nonzero(val > tol)
            for r, s in zip(rows.tolist(), slots.tolist(), strict=True):
                pos = int(net.soft_rows[kind][r])
                if kind == "thermal":
                    k = pos
                    element = f"{self.view.branch_kind[k]} {int(self.view.branch_element[k])}"
                    if self.formulation == "socp" and v_all is not None:
                        vf = v_all[self.view.from_node[k], s]
                        amount = (np.sqrt(1 + val[r, s] / (lim[r, 0] * max(vf, 1e-6))) - 1) * 100
                    else:
                        amount = val[r, s] / lim[r, 0] * 100
                    unit = "% loading"
                else:
                    element = f"bus {int(self.view.bus_of_node[pos])}"
                    base = lim[r, 0]
                    amount = abs(np.sqrt(max(base + (val[r, s] if kind == 'v_max' else -val[r, s]), 0)) - np.sqrt(base))
                    unit = "pu"
                if amount > 1e-4:
                    out.append(Violation(kind, element, s, float(amount), unit))
        return out

    def result(self, sol: Solution) -> DispatchResult:
        net = self.build()
        return DispatchResult(
            solution=sol,
            dlmp_eur_per_mwh=self.dlmp(sol),
            components=self.decompose(sol),
            v_pu=self.voltages(sol),
            withdrawal_p_mw=self.wp.value(sol.x) * self.base,
            withdrawal_q_mvar=self.wq.value(sol.x) * self.base,
            slack_p_mw=sol.x[net.slack_p.idx()] * self.base,
            violations=self.violations(sol),
            relaxation_gap_mw=self.relaxation_gap_mw(sol),
            devices_mw={name: sol.x[blk.idx()] for name, blk in self.device_blocks.items()},
        )

    def solve(self, *, fixed: dict[int, float] | None = None, backend: str = "direct") -> DispatchResult:
        """Build, solve (raises `SolverError` unless optimal), extract."""
        self.build()
        sol = self.model.solve(fixed=fixed, backend=backend)
        return self.result(sol)


def _solve_by_slot(a: sp.csr_matrix, rhs: FloatArray, t_count: int, rows: IntArray) -> FloatArray | None:
    """Rows `rows` of y with `a.T y = rhs[j]` for each right-hand side j (`rhs` is right-hand sides x
    columns of `a`; the result rows x right-hand sides), when `a`'s columns are slot-major (slot after
    slot, as many each) and every row lies in one slot, with the same matrix in every slot (up to the
    order of the rows in the slot): one small factorisation for all slots instead of one of the whole
    system. None otherwise (or when the system is not square)."""
    n_row, n_col = a.shape
    if n_row != n_col or t_count < 2 or n_col % t_count or not n_row:
        return None
    k = n_col // t_count
    count = np.diff(a.indptr)
    if np.any(count == 0):
        return None
    # rows keep the order of their columns: the same in every slot when the slots' matrices are equal
    slot = a.indices[a.indptr[:-1]] // k  # slot of each row's first column
    if np.any(a.indices // k != np.repeat(slot, count)):
        return None
    order = np.argsort(slot, kind="stable")
    if np.any(np.bincount(slot, minlength=t_count) != k):
        return None
    b = a[order]  # block-diagonal: rows s k .. (s + 1) k - 1 on the columns of slot s
    cnt = np.diff(b.indptr).reshape(t_count, k)
    if np.any(cnt != cnt[0]):
        return None
    nnz = int(cnt[0].sum())
    local = (b.indices - np.repeat(np.arange(t_count) * k, nnz)).reshape(t_count, nnz)
    data = b.data.reshape(t_count, nnz)
    if np.any(local != local[0]) or np.any(data != data[0]):
        return None
    m0 = sp.csr_matrix((data[0], local[0], b.indptr[:k + 1]), shape=(k, k))
    lu = spla.splu(m0.T.tocsc())
    n_rhs = rhs.shape[0]
    # column j * t_count + s: right-hand side j in slot s (a view: rhs's rows are slot-major)
    r = np.ascontiguousarray(rhs).reshape(n_rhs * t_count, k).T
    solved = np.zeros((k, n_rhs * t_count), order="F")
    busy = np.flatnonzero(np.any(r != 0, axis=0))  # e.g. congestion in a slot without a binding limit: 0
    if len(busy):
        with blas_one_thread():
            solved[:, busy] = lu.solve(np.asfortranarray(r[:, busy]))
    where = np.empty(n_row, dtype=np.int64)
    where[order] = np.arange(n_row)  # position of each row in the slot-sorted system
    q = where[np.asarray(rows, dtype=np.int64)]
    return solved[(q % k)[:, None], np.arange(n_rhs)[None, :] * t_count + (q // k)[:, None]]
