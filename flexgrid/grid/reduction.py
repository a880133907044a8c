"""Exact network reduction for the branch-flow models: drop buses with nothing connected.

Real LV feeders have many buses where nothing is connected (cable joints, junctions, cable ends):
`ieee_european_lv` has 907 buses and 55 loads. Two eliminations are exact for the DistFlow
(LinDistFlow and the SOCP relaxation) and the AC physics; `reduce_view(view, keep)` applies them
to every node that is not in `keep` (the caller keeps every node with an order, a device, a load
or PV profile; slacks are always kept):

- **Dangling**: a leaf node (one branch) with nothing connected, whose branch is a line without
  shunt admittance, carries no flow: the node and its branch are removed, repeatedly (so a whole
  unloaded subtree goes). Its voltage is its parent's (`v_m = v_p`, no current), and so is its
  DLMP: withdrawing at it costs what withdrawing at the parent does.
- **Series**: a node with exactly two branches, both lines without shunt admittance and taps,
  no shunt of its own and nothing connected: the same current flows through both, so the two
  become one line with `r = r1 + r2`, `x = x1 + x2` and the smaller current limit. Exactness:
  with `l` the squared current, the two DistFlow drops `v_m = v_i - 2(r1 P + x1 Q) + |z1|^2 l`,
  `v_j = v_m - 2(r2 (P - r1 l) + x2 (Q - x1 l)) + |z2|^2 l` add up to
  `v_j = v_i - 2(R P + X Q) + (R^2 + X^2) l`, the merged drop; the losses are `(r1 + r2) l`; and
  the second segment's cone `(P - r1 l)^2 + (Q - x1 l)^2 <= v_m l` is the first one's
  `P^2 + Q^2 <= v_i l` minus `l` times the first drop (the identity
  `(P - r l)^2 + (Q - x l)^2 = P^2 + Q^2 - l (v_i - v_m)`), so it holds exactly when the first
  does. Hence a reduced solution expands to a full one with the same cost, and a full solution
  with equal currents on the two segments (every solution where the relaxation is exact) reduces
  to one: the optimum is the same.

What the reduction does not carry, and how the caller keeps exactness a posteriori: the voltage
limits of an eliminated node (the voltage along a chain is convex in the distance when losses
turn the flow, so its minimum can lie inside the chain and its neighbours' limits do not imply
its own), and the individual thermal limits where the merged (smaller) limit binds (each segment
then has its own penalty). After solving the reduced problem, `Reduction.check` reconstructs the
eliminated nodes' voltages exactly (`expand_v`) and returns the nodes whose limits are broken
beyond a tolerance and the chains whose merged limit is (nearly) binding; the caller keeps those
nodes and solves again (lazy re-inclusion) until nothing is returned, so that the final reduced
solution is a solution of the full problem.

DLMPs at eliminated nodes (`expand_prices`) are exact too (the marginal cost of a withdrawal
there, given unique duals): from the reduced solution's P and Q balance duals at the chain's ends
the stationarity conditions of the full problem are solved along the chain (closed form, see
`_chain_prices`); a dangling node gets its parent's prices. (Where a dangling node's voltage
limit is reached because its parent's binds, its duals are not unique: the parent's prices are
one valid choice, the lowest, what an injection there would earn; a full interior-point solve
may report another point of that interval.)

Everything is a deterministic function of the view and the keep set (nodes and branches in
ascending order of the full view's positions), so the auditor's re-run rebuilds the same problem.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flexgrid.grid.topology import GridView

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Chain:
    """The full-view branches (in order from the reduced branch's from node) merged into one."""

    branches: tuple[int, ...]
    inner: tuple[int, ...]  # full-view nodes between them, in the same order (len(branches) - 1)


@dataclass(frozen=True)
class Reduction:
    """A full view, its reduced view and the maps between them (see the module docstring)."""

    full: GridView
    reduced: GridView
    kept: IntArray  # full-view node of each reduced node (ascending)
    node_map: IntArray  # reduced node of each full node, -1 where eliminated
    chains: tuple[Chain, ...]  # one per reduced branch
    dangling: tuple[tuple[int, int, int], ...]  # (node, parent node, branch) in full-view positions, parents first

    @property
    def n_eliminated(self) -> int:
        return self.full.n_node - self.reduced.n_node

    @property
    def is_identity(self) -> bool:
        return self.n_eliminated == 0

    def anchors(self) -> IntArray:
        """For every full node, a kept node: itself if kept, the upstream end of its chain for an inner
        chain node, its nearest kept ancestor for a dangling one."""
        out = np.arange(self.full.n_node, dtype=np.int64)
        for k, ch in enumerate(self.chains):
            out[list(ch.inner)] = self.kept[self.reduced.from_node[k]]
        for node, parent, _ in self.dangling:
            out[node] = out[parent]
        return out

    def expand_nodes(self, values: FloatArray, fill: float = 0.0) -> FloatArray:
        """Per reduced node (rows) -> per full node; eliminated nodes get `fill` (withdrawals: 0)."""
        out = np.full((self.full.n_node, *values.shape[1:]), fill, dtype=float)
        out[self.kept] = values
        return out

    def reduce_nodes(self, values: FloatArray) -> FloatArray:
        """Per full node -> per reduced node (rows of the kept nodes)."""
        return np.asarray(values)[self.kept]

    def _segments(self, r_scale: float) -> tuple[FloatArray, FloatArray]:
        return self.full.r_pu * r_scale, self.full.x_pu * r_scale

    def expand_flows(self, p: FloatArray, q: FloatArray, l_: FloatArray | None, *, r_scale: float = 1.0
                     ) -> tuple[FloatArray, FloatArray, FloatArray | None]:
        """Sending-end P, Q (and squared current l) of every full-view branch from the reduced
        branches' values (branch x slot, model per unit; `r_scale` the model's base over the
        view's); dangling branches carry nothing."""
        nb, t = self.full.n_branch, p.shape[1]
        r, x = self._segments(r_scale)
        pf, qf = np.zeros((nb, t)), np.zeros((nb, t))
        lf = None if l_ is None else np.zeros((nb, t))
        for k, ch in enumerate(self.chains):
            pk, qk = p[k].copy(), q[k].copy()
            for b in ch.branches:
                pf[b], qf[b] = pk, qk
                if l_ is not None:
                    assert lf is not None
                    lf[b] = l_[k]
                    pk, qk = pk - r[b] * l_[k], qk - x[b] * l_[k]
        return pf, qf, lf

    def expand_v(self, v: FloatArray, p: FloatArray, q: FloatArray, l_: FloatArray | None, *,
                 r_scale: float = 1.0) -> FloatArray:
        """Squared voltages of every full node: kept ones as solved, inner chain nodes from the DistFlow
        drop of each segment (exact), dangling ones their parent's."""
        out = self.expand_nodes(v)
        r, x = self._segments(r_scale)
        for k, ch in enumerate(self.chains):
            if not ch.inner:
                continue
            u = out[self.kept[self.reduced.from_node[k]]].copy()
            pk, qk = p[k].copy(), q[k].copy()
            for b, m in zip(ch.branches, ch.inner, strict=False):
                lk = 0.0 if l_ is None else l_[k]
                u = u - 2 * (r[b] * pk + x[b] * qk) + (r[b] ** 2 + x[b] ** 2) * lk
                out[m] = u
                pk, qk = pk - r[b] * lk, qk - x[b] * lk
        for node, parent, _ in self.dangling:
            out[node] = out[parent]
        return out

    def expand_prices(self, lam: FloatArray, nu: FloatArray, v_full: FloatArray, p: FloatArray, q: FloatArray,
                      l_: FloatArray | None, *, r_scale: float = 1.0) -> tuple[FloatArray, FloatArray]:
        """Active and reactive prices (node x slot) of every full node from the reduced ones (see `_chain_prices`)."""
        lam_f, nu_f = self.expand_nodes(lam), self.expand_nodes(nu)
        r, x = self._segments(r_scale)
        for k, ch in enumerate(self.chains):
            if ch.inner:
                _chain_prices(self, k, ch, lam_f, nu_f, v_full, p[k], q[k], None if l_ is None else l_[k], r, x)
        for node, parent, _ in self.dangling:
            lam_f[node], nu_f[node] = lam_f[parent], nu_f[parent]
        return lam_f, nu_f

    def check(self, v_full: FloatArray, l_: FloatArray | None, *, tol_v2: float = 1e-6,
              thermal_margin: float = 0.99, l_scale: float = 1.0) -> tuple[list[int], list[int]]:
        """What the reduced problem left out and a full solve might see (see the module docstring):
        the inner chain nodes whose reconstructed squared voltage reaches their limits to within
        `tol_v2` or breaks them (a limit binding there changes the optimum or its prices), the dangling
        nodes whose voltage (their parent's) breaks their limits by more than `tol_v2`, and the inner nodes of the chains whose squared current reaches `thermal_margin`
        of the merged limit (`l_scale`: the model's base over the view's, squared, for l in model pu).
        Both ascending; empty when the reduced solution is a full one."""
        elim = np.flatnonzero(self.node_map < 0)
        bad_v: list[int] = []
        if len(elim):
            # inner chain nodes: reached or broken; dangling ones: broken (see above)
            dangling = np.isin(elim, [d[0] for d in self.dangling])
            tol = np.where(dangling, -tol_v2, tol_v2)[:, None]
            lo = self.full.v_min_pu[elim, None] ** 2 + tol
            hi = self.full.v_max_pu[elim, None] ** 2 - tol
            vv = v_full[elim]
            bad_v = sorted(int(n) for n in elim[np.any((vv < lo) | (vv > hi), axis=1)])
        bad_t: list[int] = []
        if l_ is not None:
            for k, ch in enumerate(self.chains):
                lim = self.reduced.i_max_pu[k]
                if ch.inner and np.isfinite(lim) and np.max(l_[k]) * l_scale >= thermal_margin * lim**2:
                    bad_t.extend(ch.inner)
        return bad_v, sorted(bad_t)


def _chain_prices(red: Reduction, k: int, ch: Chain, lam: FloatArray, nu: FloatArray, v_full: FloatArray,
                  p: FloatArray, q: FloatArray, l_: FloatArray | None, r: FloatArray, x: FloatArray) -> None:
    """Prices of a chain's inner nodes, written into `lam`/`nu` (full nodes x slots).

    The full problem's Lagrangian, with `lam`/`nu` the duals of the P/Q balances (marginal cost of a
    withdrawal), `mu` of each segment's voltage drop and `a` of its cone `v_f l >= P^2 + Q^2`, is
    stationary in each segment's P, Q, l (from `f` to `t`) and each inner node's v:

        lam_f - lam_t + 2 r mu + 2 a P = 0,   nu_f - nu_t + 2 x mu + 2 a Q = 0,
        r lam_t + x nu_t - |z|^2 mu - a v_f = 0,   mu_in - mu_out - a_out l = 0.

    The merged branch's `mu`, `a` follow from its own three conditions (least squares: two unknowns,
    the reduced solution's prices at its ends); the last segment has the merged branch's `mu` (the
    end node's stationarity is the same in both problems), and walking up the chain each segment's
    `a`, the prices at its from node and the previous segment's `mu` follow in closed form. With
    LinDistFlow (no l) `a = 0` and `mu` is constant along the chain. Valid where no voltage limit of
    an inner node and no thermal limit of the chain binds (the caller re-includes those)."""
    i, j = red.kept[red.reduced.from_node[k]], red.kept[red.reduced.to_node[k]]
    big_r = float(sum(r[b] for b in ch.branches))
    big_x = float(sum(x[b] for b in ch.branches))
    t_count = lam.shape[1]
    dl, dn = lam[j] - lam[i], nu[j] - nu[i]
    if l_ is None:  # 2 R mu = dl, 2 X mu = dn in least squares
        mu = (big_r * dl + big_x * dn) / (2 * (big_r**2 + big_x**2))
    else:  # rows (2R, 2P | dl), (2X, 2Q | dn), (R^2+X^2, v_i | R lam_j + X nu_j): normal equations, every slot at once
        c1 = np.array([np.full(t_count, 2 * big_r), np.full(t_count, 2 * big_x), np.full(t_count, big_r**2 + big_x**2)])
        c2 = np.array([2 * p, 2 * q, v_full[i]])
        rhs = np.array([dl, dn, big_r * lam[j] + big_x * nu[j]])
        a11, a12, a22 = (c1 * c1).sum(0), (c1 * c2).sum(0), (c2 * c2).sum(0)
        b1, b2 = (c1 * rhs).sum(0), (c2 * rhs).sum(0)
        mu = (a22 * b1 - a12 * b2) / (a11 * a22 - a12**2)
    # sending-end flows of each segment
    flows: list[tuple[FloatArray, FloatArray]] = []
    pk, qk = p.copy(), q.copy()
    for b in ch.branches:
        flows.append((pk, qk))
        if l_ is not None:
            pk, qk = pk - r[b] * l_, qk - x[b] * l_
    nodes = [i, *ch.inner, j]
    mu_s = mu
    for pos in range(len(ch.branches) - 1, 0, -1):  # the first segment's from node is kept: stop before it
        b = ch.branches[pos]
        u, w = nodes[pos], nodes[pos + 1]
        ps, qs = flows[pos]
        a_s = np.zeros(t_count) if l_ is None else (r[b] * lam[w] + x[b] * nu[w] - (r[b] ** 2 + x[b] ** 2) * mu_s) \
            / np.maximum(v_full[u], 1e-12)
        lam[u] = lam[w] - 2 * r[b] * mu_s - 2 * a_s * ps
        nu[u] = nu[w] - 2 * x[b] * mu_s - 2 * a_s * qs
        if l_ is not None:
            mu_s = mu_s + a_s * l_


def _eliminable_branch(view: GridView, k: int) -> bool:
    return (view.branch_kind[k] == "line" and view.g_shunt_pu[k] == 0.0 and view.b_shunt_pu[k] == 0.0
            and abs(view.tap_ratio[k] - 1.0) <= 1e-12)


def reduce_view(view: GridView, keep: Iterable[int]) -> Reduction:
    """Eliminate dangling and series nodes of a radial `view` that are not in `keep` (full-view node
    positions) and have no shunt; slacks are always kept (see the module docstring). A meshed view,
    or one where nothing can go, comes back unchanged (`Reduction.is_identity`)."""
    n, nb = view.n_node, view.n_branch
    keep_mask = np.zeros(n, dtype=bool)
    keep_list = np.fromiter((int(v) for v in keep), dtype=np.int64)
    keep_mask[keep_list] = True
    keep_mask[view.slack_nodes] = True
    keep_mask |= (view.node_g_pu != 0.0) | (view.node_b_pu != 0.0)
    if not view.is_radial:
        return _identity(view)
    ok_branch = np.array([_eliminable_branch(view, k) for k in range(nb)], dtype=bool)
    alive_b = np.ones(nb, dtype=bool)
    incident: list[set[int]] = [set() for _ in range(n)]
    for k in range(nb):
        incident[int(view.from_node[k])].add(k)
        incident[int(view.to_node[k])].add(k)

    # dangling: leaves with nothing connected, repeatedly (ascending node order, deterministic)
    dangling_rev: list[tuple[int, int, int]] = []
    alive_n = np.ones(n, dtype=bool)
    stack = sorted((m for m in range(n) if not keep_mask[m] and len(incident[m]) == 1), reverse=True)
    while stack:
        m = stack.pop()
        if not alive_n[m] or keep_mask[m] or len(incident[m]) != 1:
            continue
        (k,) = tuple(incident[m])
        if not ok_branch[k]:
            continue
        other = int(view.from_node[k]) if int(view.to_node[k]) == m else int(view.to_node[k])
        alive_n[m] = False
        alive_b[k] = False
        incident[m].clear()
        incident[other].discard(k)
        dangling_rev.append((m, other, k))
        if not keep_mask[other] and len(incident[other]) == 1:
            stack.append(other)
    # series: alive nodes with exactly two eliminable branches (one in, one out in the oriented tree)
    series = np.zeros(n, dtype=bool)
    for m in range(n):
        if alive_n[m] and not keep_mask[m] and len(incident[m]) == 2 and all(ok_branch[k] for k in incident[m]):
            series[m] = True
    kept = np.flatnonzero(alive_n & ~series).astype(np.int64)
    if len(kept) == n:
        return _identity(view)
    node_map = np.full(n, -1, dtype=np.int64)
    node_map[kept] = np.arange(len(kept))
    out_branch: dict[int, int] = {}  # node -> its outgoing alive branch (series nodes have exactly one)
    for k in np.flatnonzero(alive_b).tolist():
        f = int(view.from_node[k])
        if series[f]:
            out_branch[f] = k
    chains: list[Chain] = []
    for k in np.flatnonzero(alive_b).tolist():
        if series[int(view.from_node[k])]:
            continue  # not the head of a chain
        branches, inner = [k], []
        t = int(view.to_node[k])
        while series[t]:
            inner.append(t)
            k2 = out_branch[t]
            branches.append(k2)
            t = int(view.to_node[k2])
        chains.append(Chain(tuple(branches), tuple(inner)))
    chains.sort(key=lambda c: c.branches[0])
    dangling = tuple(reversed(dangling_rev))  # parents before children
    return Reduction(view, _reduced_view(view, kept, node_map, chains), kept, node_map, tuple(chains), dangling)


def _identity(view: GridView) -> Reduction:
    n = view.n_node
    chains = tuple(Chain((k,), ()) for k in range(view.n_branch))
    return Reduction(view, view, np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64), chains, ())


def _reduced_view(view: GridView, kept: IntArray, node_map: IntArray, chains: list[Chain]) -> GridView:
    heads = np.array([c.branches[0] for c in chains], dtype=np.int64)
    tails = np.array([c.branches[-1] for c in chains], dtype=np.int64)
    r = np.array([view.r_pu[list(c.branches)].sum() for c in chains])
    x = np.array([view.x_pu[list(c.branches)].sum() for c in chains])
    # the merged limit is the smallest; its element names the merged branch (first on ties)
    tight = np.array([c.branches[int(np.argmin(view.i_max_pu[list(c.branches)]))] for c in chains], dtype=np.int64)
    return dataclasses.replace(
        view,
        n_node=len(kept),
        bus_of_node=view.bus_of_node[kept],
        node_of_bus={b: int(node_map[m]) for b, m in view.node_of_bus.items() if node_map[m] >= 0},
        vn_kv=view.vn_kv[kept],
        v_min_pu=view.v_min_pu[kept],
        v_max_pu=view.v_max_pu[kept],
        slack_nodes=node_map[view.slack_nodes],
        from_node=node_map[view.from_node[heads]],
        to_node=node_map[view.to_node[tails]],
        r_pu=r,
        x_pu=x,
        g_shunt_pu=view.g_shunt_pu[heads],
        b_shunt_pu=view.b_shunt_pu[heads],
        i_max_pu=np.array([view.i_max_pu[list(c.branches)].min() for c in chains]),
        tap_ratio=view.tap_ratio[heads],
        branch_kind=tuple(view.branch_kind[int(k)] for k in tight),
        branch_element=view.branch_element[tight],
        node_g_pu=view.node_g_pu[kept],
        node_b_pu=view.node_b_pu[kept],
    )
