"""Network physics: how nodal withdrawals become flows, voltages and losses (PowerModels' `form`).

Each formulation adds its variables and constraints to a `ConicModel` for all slots at once,
from incidence-like sparse triplets (no loop over buses or slots), and labels its groups with a
category that the price decomposition uses: `balance` (nodal balances, whose duals are the
DLMPs), `internal` (equalities that only link network variables), `voltage`, `congestion` and
`losses`. Limits are soft: every voltage and thermal limit has a non-negative slack variable
with a penalty cost, so that an infeasible grid still gives a result with its violations.

- `socp`: the DistFlow branch-flow model with the second-order-cone relaxation of
  `P^2 + Q^2 = v l` (squared voltages `v`, squared currents `l`), losses, current limits.
  Radial networks only.
- `lindistflow`: DistFlow without losses, linear; thermal limits as an inner octagon of the
  apparent-power circle. Radial networks only.
- `dc`: the linearised bus-injection model (angles, reactances, active power only); works on
  meshed networks.
- `copperplate`: no network; one balance per slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from flexgrid.errors import InputError
from flexgrid.grid.topology import GridView
from flexgrid.opf.conic import Block, ConicModel

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FORMULATIONS = ("socp", "lindistflow", "dc", "copperplate")


@dataclass
class Withdrawal:
    """Nodal withdrawal (load minus generation) per node and slot, in per unit: a constant
    part and linear terms in the model's variables (rows are `slot * n_node + node`)."""

    constant_pu: FloatArray
    rows: list[IntArray] = field(default_factory=list)
    cols: list[IntArray] = field(default_factory=list)
    vals: list[FloatArray] = field(default_factory=list)

    def add(self, rows: IntArray, cols: IntArray, vals: FloatArray) -> None:
        self.rows.append(np.asarray(rows, dtype=np.int64).ravel())
        self.cols.append(np.asarray(cols, dtype=np.int64).ravel())
        self.vals.append(np.broadcast_to(np.asarray(vals, dtype=float), np.shape(rows)).ravel())

    def triplets(self) -> tuple[IntArray, IntArray, FloatArray]:
        if not self.rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(self.rows), np.concatenate(self.cols), np.concatenate(self.vals)

    def value(self, x: FloatArray) -> FloatArray:
        """The withdrawal (n_node, slots) at solution `x`."""
        n, t = self.constant_pu.shape
        r, c, v = self.triplets()
        # the constant, then each term in order (np.add.at's sums), by np.bincount
        out = np.bincount(np.concatenate([np.arange(n * t), r]),
                          weights=np.concatenate([self.constant_pu.T.ravel(), v * x[c]]), minlength=n * t)
        return np.asarray(out, dtype=np.float64).reshape(t, n).T


@dataclass
class Network:
    """What a formulation added: its blocks and the names the other layers need."""

    formulation: str
    slack_p: Block
    blocks: list[str]
    balance_p: str
    balance_q: str | None
    per_node_balance: bool  # False for copper plate (one balance row per slot)
    soft: dict[str, Block]  # kind -> slack block (v_max, v_min, thermal)
    soft_limit: dict[str, FloatArray]  # kind -> limit per row (v_max^2, v_min^2, i_max^2 or s_max)
    soft_rows: dict[str, IntArray]  # kind -> node/branch position of each row of the slack block
    # slots whose base state (no flexibility) loads a limit: the direct Clarabel backend starts them with
    # their lazy columns in (`Group.slack_start`; DispatchProblem marks the market's idle columns of them)
    stressed: npt.NDArray[np.bool_] | None = None


def _row(nodes: IntArray, n: int, t_count: int) -> IntArray:
    """Rows `slot * n + node` for every node (rows) and slot (columns)."""
    return np.asarray(nodes, dtype=np.int64)[:, None] + n * np.arange(t_count, dtype=np.int64)[None, :]


def _node_shunts(view: GridView) -> tuple[FloatArray, FloatArray]:
    g = view.node_g_pu.copy()
    b = view.node_b_pu.copy()
    inv_tap2 = 1.0 / view.tap_ratio**2  # the from-end half sits behind the ideal transformer
    np.add.at(g, view.from_node, view.g_shunt_pu / 2 * inv_tap2)
    np.add.at(g, view.to_node, view.g_shunt_pu / 2)
    np.add.at(b, view.from_node, view.b_shunt_pu / 2 * inv_tap2)
    np.add.at(b, view.to_node, view.b_shunt_pu / 2)
    return g, b


def build_network(model: ConicModel, view: GridView, t_count: int, wp: Withdrawal, wq: Withdrawal,
                  formulation: str, *, penalty_v: float, penalty_i: float, balance_scale: float = 1.0,
                  with_devices: bool = False) -> Network:
    """Add `formulation`'s network to `model` (see the module docstring). The nodal balance rows are
    multiplied by `balance_scale` (the model's power base over the grid's: their duals are then per
    unit of the grid's base whatever base the model works in). `with_devices`: the round has devices
    (batteries, flexible loads and EVs couple the slots into one component, whose first solve with the
    hard limits usually has a solution: the devices and the other slots relieve the stressed ones), so
    no slot is marked stressed (`Network.stressed`): the marks would only make that solve larger (case33bw, 96 slots, 6 batteries, 200 offers at 1.25 x
    the load: 0.37 s without, 0.44 s with them)."""
    if formulation not in FORMULATIONS:
        raise InputError("formulation", f"unknown formulation {formulation!r}; use one of {', '.join(FORMULATIONS)}")
    if formulation in ("socp", "lindistflow") and not view.is_radial:
        raise InputError(
            "formulation",
            f"{formulation} needs a radial network but grid {view.name!r} is meshed ({view.radial_reason}); "
            "use --formulation dc (or copperplate)",
        )
    if formulation == "copperplate":
        net = _copperplate(model, view, t_count, wp)
    elif formulation == "dc":
        net = _dc(model, view, t_count, wp, penalty_i)
    else:
        net = _distflow(model, view, t_count, wp, wq, losses=formulation == "socp", penalty_v=penalty_v,
                        penalty_i=penalty_i, mark_stressed=not with_devices)
    if balance_scale != 1.0:
        for g in model.groups:
            if g.category == "balance":
                g.a = g.a * balance_scale
                g.b = g.b * balance_scale
    return net


def _balance(model: ConicModel, name: str, view: GridView, t_count: int, w: Withdrawal,
             terms: list[tuple[IntArray, IntArray, FloatArray]]) -> None:
    n = view.n_node
    wr, wc, wv = w.triplets()
    rows = np.concatenate([t[0].ravel() for t in terms] + [wr])
    cols = np.concatenate([t[1].ravel() for t in terms] + [wc])
    vals = np.concatenate([np.broadcast_to(t[2], t[0].shape).ravel() for t in terms] + [-wv])
    model.add(name, "zero", rows, cols, vals, w.constant_pu.T.ravel(), n_rows=n * t_count, category="balance")


def _copperplate(model: ConicModel, view: GridView, t_count: int, wp: Withdrawal) -> Network:
    ns = len(view.slack_nodes)
    ps = model.add_block("p_slack", ns, t_count)
    n = view.n_node
    wr, wc, wv = wp.triplets()
    slot_of_row = wr // n
    pidx = ps.idx()
    rows = np.concatenate([np.broadcast_to(np.arange(t_count), pidx.shape).ravel(), slot_of_row])
    cols = np.concatenate([pidx.ravel(), wc])
    vals = np.concatenate([np.ones(pidx.size), -wv])
    model.add("balance_p", "zero", rows, cols, vals, wp.constant_pu.sum(axis=0), n_rows=t_count, category="balance")
    return Network("copperplate", ps, ["p_slack"], "balance_p", None, False, {}, {}, {})


def _dc(model: ConicModel, view: GridView, t_count: int, wp: Withdrawal, penalty_i: float) -> Network:
    n, nb, ns = view.n_node, view.n_branch, len(view.slack_nodes)
    th = model.add_block("theta", n, t_count)
    fl = model.add_block("F", nb, t_count)
    ps = model.add_block("p_slack", ns, t_count)
    f, t = view.from_node, view.to_node
    fi, ti_, thi, psi = fl.idx(), _row(t, n, t_count), th.idx(), ps.idx()
    g_sh, _ = _node_shunts(view)
    wp_dc = Withdrawal(wp.constant_pu + g_sh[:, None], wp.rows, wp.cols, wp.vals)
    _balance(model, "balance_p", view, t_count, wp_dc, [
        (ti_, fi, np.array(1.0)),
        (_row(f, n, t_count), fi, np.array(-1.0)),
        (_row(view.slack_nodes, n, t_count), psi, np.array(1.0)),
    ])
    x = np.maximum(view.x_pu, 1e-9)
    brow = _row(np.arange(nb), nb, t_count)
    model.add("flow_definition", "zero",
              np.concatenate([brow.ravel()] * 3),
              np.concatenate([fi.ravel(), thi[f].ravel(), thi[t].ravel()]),
              np.concatenate([np.ones(fi.size), np.broadcast_to(-1 / x[:, None], fi.shape).ravel(),
                              np.broadcast_to(1 / x[:, None], fi.shape).ravel()]),
              np.zeros(nb * t_count), category="internal")
    sref = thi[view.slack_nodes]
    model.add("angle_reference", "zero", np.arange(sref.size), sref.ravel(), 1.0, np.zeros(sref.size), category="internal")
    soft, limit, rows_of = _thermal_linear(model, view, t_count, fi, None, penalty_i)
    return Network("dc", ps, ["theta", "F", "p_slack", *[b.name for b in soft.values()]], "balance_p", None, True,
                   soft, limit, rows_of)


def _thermal_linear(model: ConicModel, view: GridView, t_count: int, p_idx: IntArray, q_idx: IntArray | None,
                    penalty_i: float) -> tuple[dict[str, Block], dict[str, FloatArray], dict[str, IntArray]]:
    lim = np.flatnonzero(np.isfinite(view.i_max_pu))
    if len(lim) == 0:
        return {}, {}, {}
    s_max = view.i_max_pu[lim]
    sig = model.add_block("slack_thermal", len(lim), t_count)
    si = sig.idx()
    dirs = [(1.0, 0.0), (-1.0, 0.0)] if q_idx is None else [
        (math.cos(a), math.sin(a)) for a in np.arange(8) * math.pi / 4]
    factor = 1.0 if q_idx is None else math.cos(math.pi / 8)  # inner octagon
    rows, cols, vals, b = [], [], [], []
    m = len(lim) * t_count
    for j, (cp_, cq) in enumerate(dirs):
        r = j * m + np.arange(m).reshape(t_count, len(lim)).T
        rows += [r.ravel(), r.ravel()]
        cols += [p_idx[lim].ravel(), si.ravel()]
        vals += [np.full(r.size, cp_), np.full(r.size, -1.0)]
        if q_idx is not None and abs(cq) > 1e-12:
            rows.append(r.ravel())
            cols.append(q_idx[lim].ravel())
            vals.append(np.full(r.size, cq))
        b.append(np.broadcast_to((s_max * factor)[:, None], r.shape).T.ravel())
    model.add("thermal", "nonneg", np.concatenate(rows), np.concatenate(cols), np.concatenate(vals),
              np.concatenate(b), category="congestion")
    model.bound("slack_thermal", si, 0.0, None, category="congestion", slack=True)
    model.add_cost(si, penalty_i)
    return {"thermal": sig}, {"thermal": s_max * factor}, {"thermal": lim}


LAZY_LOADING = 0.7  # thermal cones of lines the base withdrawals load beyond this are in the first solve
SLACK_LOADING = 0.95  # slots where the base withdrawals load a line beyond this have every slack in the first solve
SLACK_V_MIN = 0.1  # or put a node's v^2 within this share of its band above v_min
LAZY_V_MAX = 0.5  # upper voltage limits within this share of the band (v^2) of the base voltage: in the first solve


def _base_state(view: GridView, wp: Withdrawal, wq: Withdrawal) -> tuple[FloatArray, FloatArray | None]:
    """Radial only: a guess of which limits may bind, from the constant withdrawals alone (no losses,
    no shunts, no flexibility): |S| / i_max of every branch and slot (0 without a limit), and the
    LinDistFlow squared voltage of every node and slot (None without a guess)."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    n, nb = view.n_node, view.n_branch
    t_count = wp.constant_pu.shape[1]
    keep = np.setdiff1d(np.arange(n), view.slack_nodes)
    if len(keep) != nb:  # pragma: no cover - radial views have one branch per non-slack node
        return np.zeros((nb, t_count)), None
    inc = sp.csr_matrix((np.concatenate([np.ones(nb), -np.ones(nb)]),
                         (np.concatenate([view.to_node, view.from_node]), np.concatenate([np.arange(nb)] * 2))),
                        shape=(n, nb))[keep].tocsc()
    lu = spla.splu(inc)
    p = lu.solve(np.ascontiguousarray(wp.constant_pu[keep]))
    q = lu.solve(np.ascontiguousarray(wq.constant_pu[keep]))
    with np.errstate(divide="ignore", invalid="ignore"):
        load = np.nan_to_num(np.sqrt(p**2 + q**2) / view.i_max_pu[:, None], nan=0.0, posinf=0.0)
    # v_to - v_from / tap^2 = -2 (r P + x Q), the slack nodes' v known
    inv_tap2 = 1.0 / view.tap_ratio**2
    drop = sp.csr_matrix((np.concatenate([np.ones(nb), -inv_tap2]),
                          (np.concatenate([np.arange(nb)] * 2), np.concatenate([view.to_node, view.from_node]))),
                         shape=(nb, n))
    v_slack = np.zeros(n)
    v_slack[view.slack_nodes] = view.slack_v_pu**2
    rhs = -2 * (view.r_pu[:, None] * p + view.x_pu[:, None] * q) - (drop @ v_slack)[:, None]
    v = np.repeat(v_slack[:, None], t_count, 1)
    v[keep] = spla.splu(drop[:, keep].tocsc()).solve(np.ascontiguousarray(rhs))
    return load, v


def _distflow(model: ConicModel, view: GridView, t_count: int, wp: Withdrawal, wq: Withdrawal, *, losses: bool,
              penalty_v: float, penalty_i: float, mark_stressed: bool = True) -> Network:
    n, nb, ns = view.n_node, view.n_branch, len(view.slack_nodes)
    f, t, r, x = view.from_node, view.to_node, view.r_pu, view.x_pu
    pb = model.add_block("P", nb, t_count)
    qb = model.add_block("Q", nb, t_count)
    lb = model.add_block("L", nb, t_count) if losses else None
    vb = model.add_block("v", n, t_count)
    ps = model.add_block("p_slack", ns, t_count)
    qs = model.add_block("q_slack", ns, t_count)
    pi, qi, vi, psi, qsi = pb.idx(), qb.idx(), vb.idx(), ps.idx(), qs.idx()
    rt, rf, rs = _row(t, n, t_count), _row(f, n, t_count), _row(view.slack_nodes, n, t_count)
    rn = _row(np.arange(n), n, t_count)
    g_sh, b_sh = _node_shunts(view)
    r2 = r[:, None] * np.ones((1, t_count))
    x2 = x[:, None] * np.ones((1, t_count))
    terms_p = [(rt, pi, np.array(1.0)), (rf, pi, np.array(-1.0)), (rs, psi, np.array(1.0)),
               (rn, vi, -g_sh[:, None] * np.ones((1, t_count)))]
    terms_q = [(rt, qi, np.array(1.0)), (rf, qi, np.array(-1.0)), (rs, qsi, np.array(1.0)),
               (rn, vi, b_sh[:, None] * np.ones((1, t_count)))]
    if lb is not None:
        li = lb.idx()
        terms_p.append((rt, li, -r2))
        terms_q.append((rt, li, -x2))
    _balance(model, "balance_p", view, t_count, wp, terms_p)
    _balance(model, "balance_q", view, t_count, wq, terms_q)

    # v_to - v_from / tap^2 + 2 (r P + x Q) - |z|^2 l = 0  (ideal transformer at the from end)
    br = _row(np.arange(nb), nb, t_count)
    inv_tap2 = (1.0 / view.tap_ratio**2)[:, None] * np.ones((1, t_count))
    rows = [br, br, br, br]
    cols = [vi[t], vi[f], pi, qi]
    vals = [np.ones_like(r2), -inv_tap2, 2 * r2, 2 * x2]
    if lb is not None:
        rows.append(br)
        cols.append(lb.idx())
        vals.append(-(r2**2 + x2**2))
    model.add("voltage_drop", "zero", np.concatenate([a.ravel() for a in rows]),
              np.concatenate([a.ravel() for a in cols]), np.concatenate([a.ravel() for a in vals]),
              np.zeros(nb * t_count), category="internal")
    sv = vi[view.slack_nodes]
    model.add("slack_voltage", "zero", np.arange(sv.size), sv.ravel(), 1.0,
              np.broadcast_to((view.slack_v_pu**2)[:, None], sv.shape).ravel(), category="internal")

    if lb is not None:
        li = lb.idx()
        # (v_f/tap^2 + l, 2P, 2Q, v_f/tap^2 - l) in the second-order cone, one per branch and slot
        cone = br.ravel()  # cone number = slot * nb + branch, in the same order as pi.ravel()
        it2 = inv_tap2.ravel()
        ones = np.ones(cone.size)
        rows4 = [4 * cone, 4 * cone, 4 * cone + 1, 4 * cone + 2, 4 * cone + 3, 4 * cone + 3]
        cols4 = [vi[f].ravel(), li.ravel(), pi.ravel(), qi.ravel(), vi[f].ravel(), li.ravel()]
        vals4 = [-it2, -ones, -2 * ones, -2 * ones, -it2, ones]
        model.add("branch_cone", "soc", np.concatenate(rows4), np.concatenate(cols4), np.concatenate(vals4),
                  np.zeros(4 * nb * t_count), cone_dim=4, category="losses")

    # soft voltage limits on every node but the slacks
    free = np.setdiff1d(np.arange(n), view.slack_nodes)
    soft: dict[str, Block] = {}
    limit: dict[str, FloatArray] = {}
    rows_of: dict[str, IntArray] = {}
    base_load, v_est = _base_state(view, wp, wq)
    # Slots where the base state violates a limit (or nearly: losses lower the voltages further) are
    # stressed: the direct Clarabel backend has every lazy column (soft-limit slacks, offers out of the
    # money) in their first solve (Group.slack_start). Without the slacks it has no solution (a wasted
    # solve proving it), with only some of them it is nearly infeasible (slow for an interior point method).
    stressed: npt.NDArray[np.bool_] | None = None
    if mark_stressed:
        stressed = np.any(base_load >= SLACK_LOADING, axis=0) if lb is not None else np.zeros(t_count, dtype=bool)
        if v_est is not None and len(free):
            band_min = view.v_max_pu[free] ** 2 - view.v_min_pu[free] ** 2
            stressed |= np.any(v_est[free] < (view.v_min_pu[free] ** 2 + SLACK_V_MIN * band_min)[:, None], axis=0)
    if len(free):
        # Upper voltage limits bind only under reverse flows: their rows are lazy, those within
        # LAZY_V_MAX of the band of the base state's voltage in the first solve (all without a guess).
        band = (view.v_max_pu[free] ** 2 - view.v_min_pu[free] ** 2)[:, None]
        for kind, sign, lim in (("v_max", 1.0, view.v_max_pu[free] ** 2), ("v_min", -1.0, view.v_min_pu[free] ** 2)):
            sig = model.add_block(f"slack_{kind}", len(free), t_count)
            si = sig.idx()
            m = len(free) * t_count
            rr = np.arange(m).reshape(t_count, len(free)).T
            model.add(kind, "nonneg", np.concatenate([rr.ravel(), rr.ravel()]),
                      np.concatenate([vi[free].ravel(), si.ravel()]),
                      np.concatenate([np.full(m, sign), np.full(m, -1.0)]),
                      np.broadcast_to((sign * lim)[:, None], rr.shape).T.ravel(), category="voltage",
                      lazy=kind == "v_max" and v_est is not None,
                      lazy_start=None if v_est is None else (v_est[free] > lim[:, None] - LAZY_V_MAX * band).T.ravel())
            model.bound(f"slack_{kind}", si, 0.0, None, category="voltage", slack=True)
            if stressed is not None:
                model.group(f"slack_{kind}.lower").slack_start = np.broadcast_to(stressed, si.shape).ravel()
            model.add_cost(si, penalty_v)
            soft[kind], limit[kind], rows_of[kind] = sig, lim, free
    if lb is not None:
        lim_b = np.flatnonzero(np.isfinite(view.i_max_pu))
        if len(lim_b):
            # |I|^2 <= i_max^2 at both terminals of the pi model (what pandapower's loading reports):
            # |S_terminal|^2 <= (i_max^2 v_terminal + slack) * 1, rotated cones written on P, Q, v (and
            # l at the receiving end), so that their duals price congestion apart from losses.
            sig = model.add_block("slack_thermal", len(lim_b), t_count)
            si = sig.idx()
            m = len(lim_b) * t_count
            # per (branch, slot) in the order of si.ravel() (branch-major within the block's layout)
            k2_all = np.broadcast_to(lim_b[:, None], (len(lim_b), t_count)).ravel()
            it2_all = 1.0 / view.tap_ratio[k2_all] ** 2
            i2_all = view.i_max_pu[k2_all] ** 2
            gh_all, bh_all = view.g_shunt_pu[k2_all] / 2, view.b_shunt_pu[k2_all] / 2
            vf_all, vt_all = vi[f[lim_b]].ravel(), vi[t[lim_b]].ravel()
            pk_all, qk_all = pi[lim_b].ravel(), qi[lim_b].ravel()
            lk_all = lb.idx()[lim_b].ravel()
            rows_t: list[IntArray] = []
            cols_t: list[IntArray] = []
            vals_t: list[FloatArray] = []
            # Without shunts and taps both terminal currents equal the series current: one cone suffices.
            two_ended = (np.abs(view.g_shunt_pu[lim_b]) + np.abs(view.b_shunt_pu[lim_b]) > 0) | (
                np.abs(view.tap_ratio[lim_b] - 1.0) > 1e-12)
            recv = np.flatnonzero(np.broadcast_to(two_ended[:, None], (len(lim_b), t_count)).ravel())
            n_recv = len(recv)
            for end in (0, 1):
                sel = np.arange(m) if end == 0 else recv
                cone = np.arange(m).reshape(t_count, len(lim_b)).T.ravel()
                cone = cone if end == 0 else m + np.arange(n_recv)
                k2, it2, i2, g_half, b_half = k2_all[sel], it2_all[sel], i2_all[sel], gh_all[sel], bh_all[sel]
                vf, vt, pk, qk, lk = vf_all[sel], vt_all[sel], pk_all[sel], qk_all[sel], lk_all[sel]
                ones, sig_k = np.ones(len(sel)), si.ravel()[sel]
                if end == 0:  # sending terminal: the shunt sits behind the ideal transformer (v' = v_f / tap^2),
                    # the terminal current is measured in front of it: |S|^2 <= i_max^2 v_f
                    v_end, v_coef = vf, i2
                    p_terms = [(pk, ones), (vf, g_half * it2)]
                    q_terms = [(qk, ones), (vf, -b_half * it2)]
                else:  # receiving terminal: P - r l - g/2 v_t, Q - x l + b/2 v_t
                    v_end, v_coef = vt, i2
                    p_terms = [(pk, ones), (lk, -view.r_pu[k2]), (vt, -g_half)]
                    q_terms = [(qk, ones), (lk, -view.x_pu[k2]), (vt, b_half)]
                for row_off, terms in ((1, p_terms), (2, q_terms)):
                    for col, coef in terms:
                        rows_t.append(4 * cone + row_off)
                        cols_t.append(col)
                        vals_t.append(-2.0 * coef)
                for row_off in (0, 3):
                    rows_t += [4 * cone + row_off, 4 * cone + row_off]
                    cols_t += [v_end, sig_k]
                    vals_t += [-v_coef, -ones]
            b_t = np.zeros(4 * (m + n_recv))
            b_t[0::4] = 1.0
            b_t[3::4] = -1.0
            # Most lines are far from their limit: the cones are lazy, those of lines loaded beyond
            # LAZY_LOADING by the base withdrawals alone (no losses, no flexibility) in the first solve.
            est = base_load[lim_b]  # branch x slot
            start = np.concatenate([est.T.ravel() >= LAZY_LOADING, est.ravel()[recv] >= LAZY_LOADING])
            model.add("thermal", "soc", np.concatenate(rows_t), np.concatenate(cols_t), np.concatenate(vals_t),
                      b_t, cone_dim=4, category="congestion", lazy=True, lazy_start=start)
            model.bound("slack_thermal", si, 0.0, None, category="congestion", slack=True)
            if stressed is not None:
                model.group("slack_thermal.lower").slack_start = np.broadcast_to(stressed, si.shape).ravel()
            model.add_cost(si, penalty_i)
            soft["thermal"], limit["thermal"], rows_of["thermal"] = sig, view.i_max_pu[lim_b] ** 2, lim_b
    else:
        s2, l2, r2_ = _thermal_linear(model, view, t_count, pi, qi, penalty_i)
        soft.update(s2)
        limit.update(l2)
        rows_of.update(r2_)
    names = ["P", "Q", "v", "p_slack", "q_slack", *([] if lb is None else ["L"]), *[b.name for b in soft.values()]]
    return Network("socp" if losses else "lindistflow", ps, names, "balance_p", "balance_q", True, soft, limit, rows_of,
                   stressed)
