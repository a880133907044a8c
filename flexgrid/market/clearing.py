"""Network-constrained clearing of one round: FlexRequests, FlexOffers and P2P orders.

Objective (minimised, EUR over the round): energy bought at the substation at each slot's
wholesale price, plus the cost of accepted offers (their price times their energy), minus the
value of fulfilled FlexRequests (each at its price cap, up to its volume), minus the value of
matched P2P bids (plus the asks of matched P2P sellers), subject to the network. Limits are
soft (penalised slacks reported as violations), so a grid that cannot be kept within limits
still clears, and says where and how much.

- An UP offer adds injection (or sheds load) at its bus, a DOWN offer adds consumption.
- A FlexRequest (direction, bus, volume per slot) is fulfilled by offers of its direction and
  slot that sit electrically behind its bus: in the subtree of the request's bus on a radial
  network, at the same bus on a meshed one (DC), anywhere on a copper plate. Offers are
  assigned to requests (an offer's volume serves at most its own volume of requests).
- Without requests the clearing is *proactive*: the grid's limits state the need, and offers
  are bought only where they are cheaper than the energy and limit costs they avoid. With offer
  prices above the wholesale price and no congestion, nothing is bought.
- P2P orders are matched in a per-slot pool (energy sold = energy bought); each side pays or
  gets its DLMP plus the pool's price, so a buyer pays the seller's price plus the DLMP
  difference between them (the network charge).
- Funded rounds (`funded_only`, settled on chain from the requests' escrow): offers are paired
  only with requests whose cap is at least their bid, each pair's watts are priced at the offer's
  rule price clamped to [bid, the request's cap], offers paid the mean over their pairs rounded
  down, requests charged it rounded up (`funded_leaves`). The energy part of an UP offer's DLMP is
  paid only as far as the requests' caps allow: nobody else funds it on chain.
- Exclusive options (same provider and non-zero `exclusive_group`), minimum activation and
  `min_kw > 0` need binary variables: then the clearing is a MILP (HiGHS) and the gap is
  reported. With the SOCP formulation the binaries are chosen by the LinDistFlow MILP and the
  SOCP is solved with them fixed (no open-source MISOCP solver ships here); prices then come
  from the fixed (convex) problem.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandapower as pp

from flexgrid.errors import InputError
from flexgrid.grid.profiles import Profiles
from flexgrid.grid.reduction import Reduction, reduce_view
from flexgrid.grid.topology import GridView, build_view
from flexgrid.market.certificate import PRICE_DECIMALS, Certificate
from flexgrid.opf.conic import Block, ConeKind, ConicModel
from flexgrid.opf.devices import Devices
from flexgrid.opf.problem import DispatchProblem, DispatchResult, Violation
from flexgrid.opf.sensitivity import NAME as SENSITIVITY
from flexgrid.opf.sensitivity import SensitivityProblem
from flexgrid.opf.validate import ACReport, validate_ac
from flexgrid.trading import (
    ZERO_BYTES32,
    Direction,
    FlexOffer,
    FlexRequest,
    P2POrder,
    PricingRule,
    RoundConfig,
    Side,
    Trade,
    request_order_hash,
)
from flexgrid.trading.merkle import TradeTree, keccak256
from flexgrid.trading.models import _order_hash_bytes, check_for_round, order_kinds
from flexgrid.trading.units import (
    WS_PER_MWH,
    eur_per_mwh_to_micro,
    kw_to_w,
    micro_to_eur,
    value_micro_down,
    value_micro_up,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ACCEPT_TOL_MW = 5e-7  # below half a watt after rounding to W: not accepted
Order = FlexRequest | FlexOffer | P2POrder


@dataclass(frozen=True)
class Accepted:
    """One accepted quantity before pricing."""

    kind: str  # offer, request, p2p
    order_id: str
    slot: int
    mw: float


@dataclass
class ClearingOutcome:
    trades: tuple[Trade, ...]
    merkle_root: str
    accepted: tuple[Accepted, ...]
    leaf_order_ids: dict[str, str]  # leaf order hash -> the order's own id
    dlmp_eur_per_mwh: FloatArray  # node x slot
    components: dict[str, FloatArray]
    bus_of_node: IntArray
    violations: list[Violation]
    objective_eur: float
    mip_gap: float | None
    relaxation_gap_mw: float | None  # fictitious losses allowed by the SOC relaxation (0 = exact)
    ac: ACReport | None
    certificate: Certificate | None
    certificate_hash: str | None
    pricing: PricingRule
    formulation: str
    p2p_price_eur_per_mwh: FloatArray  # per slot, the pool's price on top of the DLMPs
    budget_balance_eur: float  # what the market takes in minus what it pays out
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dispatch: DispatchResult | None = None
    reduced_nodes: int | None = None  # nodes of the network the problem was solved on (None: not reduced)


def leaf_order_id(order: Order) -> str:
    """The bytes32 order hash used in the trade leaf: the order's id when it is one already
    (orders read from chain), `bytes32(requestId)` for a numbered request, else keccak256 of the id."""
    oid = order.order_id or ""
    if len(oid) == 66 and oid.startswith("0x"):
        return oid.lower()
    if isinstance(order, FlexRequest) and oid.isdigit():
        return request_order_hash(int(oid))
    return "0x" + keccak256(oid.encode()).hex()


_EXACT = 10**15  # integers below this come back exactly from a Trade's floats (units.scale_exact)


def _trade_leaf_values(trades: Sequence[Trade], rows: Sequence[tuple[str, int, str, int, int, int]]) -> list[list[Any]]:
    """Each trade's `leaf_values()`, from the integers of its row (leaf order id, slot, participant, watts,
    micro-EUR/MWh, micro-EUR) where its floats (watts / 1e3, micro / 1e6) give them back exactly (below
    10**15: the trade's own properties return the same integers), else from the trade."""
    out: list[list[Any]] = []
    hashes: dict[str, bytes] = {}
    for t, (lid, _, _, power_w, price_micro, micro) in zip(trades, rows, strict=True):
        if 0 <= power_w < _EXACT and 0 <= price_micro < _EXACT and -_EXACT < micro < _EXACT:
            b = hashes.get(lid)
            if b is None:
                b = hashes[lid] = _order_hash_bytes(lid)
            out.append([t.round_id, t.participant, b, t.slot, power_w, price_micro, micro])
        else:
            out.append(t.leaf_values())
    return out


def _order_json(order: Order) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(order.model_dump_json())
    return out


def inputs_hash(round_config: RoundConfig, grid_hash: str, orders: Sequence[Order], wholesale: FloatArray,
                formulation: str, pricing: PricingRule, *, funded_only: bool = False) -> str:
    """keccak256 of the canonical JSON of everything the clearing depends on, orders sorted by id."""
    doc = {
        "round": json.loads(round_config.model_dump_json()),
        "grid_model_hash": grid_hash,
        "orders": [[type(o).__name__, _order_json(o)]
                   for o in sorted(orders, key=lambda o: (type(o).__name__, str(o.order_id)))],
        "wholesale_eur_per_mwh": [float(v) for v in wholesale],
        "formulation": formulation,
        "pricing": int(pricing),
    }
    if funded_only:  # only when set, so that hashes of proactive clearings stay what they were
        doc["funded_only"] = True
    return "0x" + keccak256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hex()


def check_orders(orders: Sequence[Order], round_config: RoundConfig, view: GridView, now_s: int | None) -> None:
    """Typed errors for bad orders: missing or duplicate ids, foreign round, slot outside the round,
    price above the cap, expiry, unknown bus, inconsistent exclusive options."""
    seen: set[str] = set()
    groups: dict[tuple[str, str], FlexOffer] = {}
    now = round_config.gate_closure_s if now_s is None else now_s
    cap: int | None = None
    nodes = view.node_of_bus
    for order in orders:
        is_request, is_offer, is_p2p = order_kinds(type(order))
        if not (is_request or is_offer or is_p2p):
            raise InputError("orders", f"not an order: {type(order).__name__}")
        oid = order.order_id
        if not oid:
            raise InputError("order_id", "every order needs a unique id for the clearing")
        if oid in seen:
            raise InputError("order_id", f"duplicate order id {oid!r}", order_id=oid)
        seen.add(oid)
        cap = check_for_round(order, round_config, cap, now)
        if type(order.bus) is not int or order.bus not in nodes:  # else view.node finds it
            view.node(order.bus, order_id=oid)
        if is_offer and (offer := cast(FlexOffer, order)).exclusive_group != ZERO_BYTES32:
            key = (offer.provider, offer.exclusive_group)
            first = groups.setdefault(key, offer)
            if first.asset_id != offer.asset_id or first.direction != offer.direction:
                raise InputError(
                    "exclusive_group",
                    f"options of one group must share asset and direction; {first.order_id!r} differs",
                    order_id=oid,
                )


@dataclass
class _Built:
    problem: DispatchProblem
    offers: list[FlexOffer]
    requests: list[FlexRequest]
    p2p: list[P2POrder]
    off_entries: list[tuple[int, int]]  # (offer index, position in its slots)
    req_entries: list[tuple[int, int]]
    pairs: IntArray  # (offer entry, request entry)
    int_idx: IntArray
    has_pool: IntArray  # slots with a P2P pool


def _subtree_allowed(view: GridView, formulation: str) -> npt.NDArray[np.bool_]:
    """allowed[r, o] = an offer at node o can serve a request at node r."""
    n = view.n_node
    if formulation == "copperplate":
        return np.ones((n, n), dtype=bool)
    if not view.is_radial or formulation == "dc":
        return np.eye(n, dtype=bool)
    parent = np.full(n, -1)
    parent[view.to_node] = view.from_node
    allowed = np.eye(n, dtype=bool)
    for o in range(n):
        a = parent[o]
        while a >= 0:
            allowed[a, o] = True
            a = parent[a]
    return allowed


def _entry_columns(
    m: ConicModel, view: GridView, name: str, orders: Sequence[FlexOffer] | Sequence[FlexRequest],
    entries: Sequence[tuple[int, int]],
) -> tuple[Block, npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """A block `name` with one column per (order, slot position) entry: the block, its column
    indices, and each entry's grid node and slot."""
    blk = m.add_block(name, len(entries), 1)
    node_of = {b: view.node(b) for b in {o.bus for o in orders}}  # once per bus, not per entry
    # `entries` are every order's slots in order (as `_build` makes them): per order, then repeated
    counts = np.array([len(o.slots) for o in orders], dtype=np.int64)
    node = np.repeat(np.array([node_of[o.bus] for o in orders], dtype=np.int64), counts)
    slot = np.fromiter(chain.from_iterable(o.slots for o in orders), dtype=np.int64, count=len(entries))
    return blk, blk.idx().ravel(), node, slot


def _build(view: GridView, profiles: Profiles, rc: RoundConfig, offers: list[FlexOffer], requests: list[FlexRequest],
           p2p: list[P2POrder], wholesale: FloatArray, formulation: str, devices: Devices | None,
           exclude_offer: int | None = None, funded_only: bool = False) -> _Built:
    h = rc.slot_seconds / 3600.0
    problem_cls = SensitivityProblem if formulation == SENSITIVITY else DispatchProblem
    pr = problem_cls(view, profiles, slot_seconds=rc.slot_seconds, wholesale_eur_per_mwh=wholesale,
                     formulation=formulation, devices=devices)
    m = pr.model
    off_entries = [(i, k) for i, o in enumerate(offers) for k in range(len(o.slots))]
    req_entries = [(i, k) for i, r in enumerate(requests) for k in range(len(r.slots))]
    int_idx = np.zeros(0, dtype=np.int64)
    pairs = np.zeros((0, 2), dtype=np.int64)
    xo = None
    if off_entries:
        xo, xi, o_node, o_slot = _entry_columns(m, view, "offer_x", offers, off_entries)
        o_count = np.array([len(o.slots) for o in offers], dtype=np.int64)
        o_max = np.fromiter(chain.from_iterable(o.max_kw for o in offers), dtype=float, count=len(off_entries)) / 1e3
        if exclude_offer is not None:
            o_max = np.where(np.repeat(np.arange(len(offers)), o_count) == exclude_offer, 0.0, o_max)
        o_sign = np.repeat(np.array([-1.0 if o.direction == Direction.UP else 1.0 for o in offers]), o_count)
        m.bound("offer_x", xi, 0.0, o_max, category="market")
        m.add_cost(xi, np.repeat(np.array([o.price_eur_per_mwh * h for o in offers]), o_count))
        pr.add_withdrawal_mw(o_node, o_slot, xi, o_sign)
        needs_int = [j for j, o in enumerate(offers) if o.min_activation > 0 or max(o.min_kw, default=0.0) > 0
                     or o.exclusive_group != ZERO_BYTES32]
        if needs_int:
            ub = m.add_block("offer_u", len(needs_int), 1)
            ui = ub.idx().ravel()
            pos = {j: p for p, j in enumerate(needs_int)}
            ent = [e for e, (i, _) in enumerate(off_entries) if i in pos]
            u_of = np.array([ui[pos[off_entries[e][0]]] for e in ent])
            lo = np.array([max(offers[off_entries[e][0]].min_kw[off_entries[e][1]],
                               offers[off_entries[e][0]].min_activation * offers[off_entries[e][0]].max_kw[off_entries[e][1]])
                           / 1e3 for e in ent])
            rows = np.arange(len(ent))
            # x <= max u  and  lo u - x <= 0
            m.add("offer_activation_max", "nonneg", np.concatenate([rows, rows]), np.concatenate([xi[ent], u_of]),
                  np.concatenate([np.ones(len(ent)), -o_max[ent]]), np.zeros(len(ent)), category="market")
            m.add("offer_activation_min", "nonneg", np.concatenate([rows, rows]), np.concatenate([xi[ent], u_of]),
                  np.concatenate([-np.ones(len(ent)), lo]), np.zeros(len(ent)), category="market")
            m.bound("offer_u", ui, 0.0, 1.0, category="market")
            grp: dict[tuple[str, str], list[int]] = {}
            for j in needs_int:
                if offers[j].exclusive_group != ZERO_BYTES32:
                    grp.setdefault((offers[j].provider, offers[j].exclusive_group), []).append(pos[j])
            if grp:
                keys = sorted(grp)
                r_ = np.concatenate([np.full(len(grp[k]), g) for g, k in enumerate(keys)])
                c_ = np.concatenate([ui[grp[k]] for k in keys])
                m.add("exclusive_options", "nonneg", r_, c_, 1.0, np.ones(len(keys)), category="market")
            m.integer.append(ui)
            int_idx = ui
    if req_entries:
        _, yi, r_node, r_slot = _entry_columns(m, view, "request_y", requests, req_entries)
        m.bound("request_y", yi, 0.0, np.array([requests[i].kw[k] / 1e3 for i, k in req_entries]), category="market")
        m.add_cost(yi, np.array([-requests[i].price_cap_eur_per_mwh * h for i, _ in req_entries]))
        if off_entries:
            allowed = _subtree_allowed(view, formulation)
            o_dir = np.array([int(offers[i].direction) for i, _ in off_entries])
            r_dir = np.array([int(requests[i].direction) for i, _ in req_entries])
            ok = ((o_slot[:, None] == r_slot[None, :]) & (o_dir[:, None] == r_dir[None, :])
                  & allowed[r_node[None, :], o_node[:, None]])
            if funded_only:  # a request pays at most its cap: it is never paired with an offer bidding more
                o_bid = np.array([offers[i].price_micro_per_mwh for i, _ in off_entries])
                r_cap = np.array([requests[i].price_cap_micro_per_mwh for i, _ in req_entries])
                ok &= o_bid[:, None] <= r_cap[None, :]
            pairs = np.argwhere(ok).astype(np.int64)
        if len(pairs):
            ab = m.add_block("assign", len(pairs), 1)
            ai = ab.idx().ravel()
            m.bound("assign", ai, 0.0, None, category="market")
            assert xo is not None
            # sum_q a[e, q] - x[e] <= 0 ;  y[q] - sum_e a[e, q] <= 0  (both = 0 when funded_only:
            # every accepted offer serves a request, and every served request pays for its offers)
            cover: ConeKind = "zero" if funded_only else "nonneg"
            m.add("offer_cover", cover, np.concatenate([pairs[:, 0], np.arange(len(off_entries))]),
                  np.concatenate([ai, xo.idx().ravel()]), np.concatenate([np.ones(len(pairs)), -np.ones(len(off_entries))]),
                  np.zeros(len(off_entries)), category="market")
            m.add("request_cover", cover, np.concatenate([np.arange(len(req_entries)), pairs[:, 1]]),
                  np.concatenate([yi, ai]), np.concatenate([np.ones(len(req_entries)), -np.ones(len(pairs))]),
                  np.zeros(len(req_entries)), category="market")
        else:
            m.add("request_cover", "nonneg", np.arange(len(req_entries)), yi, 1.0, np.zeros(len(req_entries)),
                  category="market")
    if funded_only and off_entries and not len(pairs):
        assert xo is not None  # no request can pay for any offer: none is accepted
        m.add("offer_cover", "zero", np.arange(len(off_entries)), xo.idx().ravel(), -1.0, np.zeros(len(off_entries)),
              category="market")
    has_pool = np.zeros(0, dtype=np.int64)
    if p2p:
        qb = m.add_block("p2p_q", len(p2p), 1)
        qi = qb.idx().ravel()
        m.bound("p2p_q", qi, 0.0, np.array([o.kw / 1e3 for o in p2p]), category="market")
        sign = np.array([1.0 if o.side == Side.BUY else -1.0 for o in p2p])
        m.add_cost(qi, -sign * np.array([o.limit_price_eur_per_mwh * h for o in p2p]))
        slots = np.array([o.slot for o in p2p])
        pr.add_withdrawal_mw([view.node(o.bus) for o in p2p], slots, qi, sign)
        has_pool = np.unique(slots)
        row_of = {int(s): r for r, s in enumerate(has_pool)}
        m.add("p2p_pool", "zero", [row_of[int(s)] for s in slots], qi, -sign, np.zeros(len(has_pool)), category="market")
    pr.build()
    return _Built(pr, offers, requests, p2p, off_entries, req_entries, pairs, int_idx, has_pool)


def keep_nodes(view: GridView, profiles: Profiles, orders: Sequence[Order], devices: Devices | None) -> set[int]:
    """The nodes a reduced network must keep: slacks, every node with a load or PV profile (in any
    slot), with an order or with a device (`flexgrid.grid.reduction` keeps transformer terminals and
    shunts itself)."""
    keep = {int(n) for n in view.slack_nodes}
    active = (np.any(profiles.load_p_mw != 0, axis=1) | np.any(profiles.load_q_mvar != 0, axis=1)
              | np.any(profiles.pv_p_mw != 0, axis=1))
    keep.update(int(n) for n in np.flatnonzero(active))
    keep.update(view.node(o.bus) for o in orders)
    if devices is not None:
        keep.update(view.node(d.bus) for d in devices.every())
    return keep


def reduce_profiles(red: Reduction, profiles: Profiles) -> Profiles:
    """The profiles of the reduced network's nodes (eliminated nodes have none)."""
    return Profiles(load_p_mw=red.reduce_nodes(profiles.load_p_mw), load_q_mvar=red.reduce_nodes(profiles.load_q_mvar),
                    pv_p_mw=red.reduce_nodes(profiles.pv_p_mw))


def expand_dispatch(red: Reduction, pr: DispatchProblem, res: DispatchResult) -> tuple[DispatchResult, list[int]]:
    """The reduced problem's result on the full network (`Reduction.expand_v` / `expand_prices`), and
    the eliminated nodes to re-include (`Reduction.check`: empty when it is the full problem's result).

    DLMPs are exact at every node. Their components at an eliminated node: a dangling node has its
    parent's; an inner node of a merged chain has the energy, congestion and voltage components of the
    chain's upstream end and the rest of its (exact) DLMP in the losses component, so they add up."""
    sol, m = res.solution, pr.model
    k = pr.base / red.full.base_mva  # the model's per unit over the view's
    p, q, v2 = (sol.x[m.blocks[b].idx()] for b in ("P", "Q", "v"))
    l_ = sol.x[m.blocks["L"].idx()] if "L" in m.blocks else None
    v_full = red.expand_v(v2, p, q, l_, r_scale=k)
    scale = -1.0 / (pr.price_base * pr.slot_h)
    t_count, n_red = pr.t_count, red.reduced.n_node
    nu = (sol.z["balance_q"] * scale).reshape(t_count, n_red).T
    lam_full, _ = red.expand_prices(res.dlmp_eur_per_mwh, nu, v_full, p, q, l_, r_scale=k)
    anchor = red.anchors()
    comps = {c: red.expand_nodes(val) for c, val in res.components.items()}
    elim = np.flatnonzero(red.node_map < 0)
    if len(elim) and comps:
        for c in comps:
            if c != "losses":
                comps[c][elim] = comps[c][anchor[elim]]
        if "losses" in comps:
            comps["losses"][elim] = lam_full[elim] - sum(comps[c][elim] for c in comps if c != "losses")
    if l_ is None:  # LinDistFlow: the squared current the merged limit is on, near enough for the check
        v_from = np.maximum(v2[red.reduced.from_node], 1e-6)
        l_check = (p**2 + q**2) / v_from
    else:
        l_check = l_
    bad_v, bad_t = red.check(v_full, l_check, l_scale=k**2)
    full = DispatchResult(
        solution=sol, dlmp_eur_per_mwh=lam_full, components=comps, v_pu=np.sqrt(np.maximum(v_full, 0.0)),
        withdrawal_p_mw=red.expand_nodes(res.withdrawal_p_mw), withdrawal_q_mvar=red.expand_nodes(res.withdrawal_q_mvar),
        slack_p_mw=res.slack_p_mw, violations=res.violations, relaxation_gap_mw=res.relaxation_gap_mw,
        devices_mw=res.devices_mw, extra={**res.extra, "reduced_dlmp_eur_per_mwh": res.dlmp_eur_per_mwh})
    return full, sorted(set(bad_v) | set(bad_t))


def _solve_reduced(
    view: GridView, keep: set[int] | None, profiles: Profiles, rc: RoundConfig, offers: list[FlexOffer],
    requests: list[FlexRequest], p2p: list[P2POrder], wholesale: FloatArray, formulation: str,
    devices: Devices | None, timings: dict[str, float], *, exclude_offer: int | None = None, funded_only: bool = False,
) -> tuple[_Built, DispatchResult, float | None, list[str], Reduction | None]:
    """Build and solve on the network reduced to `keep` (`None`: the full network), re-including the
    eliminated nodes `expand_dispatch` asks for until none is left. Returns the built problem, its result
    on the full network, the MILP gap, notes and the final reduction (None when nothing is eliminated).
    Adds to `timings`' build_s and solve_s."""
    red = None if keep is None else reduce_view(view, keep)
    keep = set() if keep is None else set(keep)
    passes = 0
    while True:
        tb = time.perf_counter()
        rview = view if red is None else red.reduced
        rprof = profiles if red is None else reduce_profiles(red, profiles)
        built = _build(rview, rprof, rc, offers, requests, p2p, wholesale, formulation, devices,
                       exclude_offer=exclude_offer, funded_only=funded_only)
        t1 = time.perf_counter()
        timings["build_s"] = timings.get("build_s", 0.0) + t1 - tb
        res_red, mip_gap, notes = _solve(built, rview, rprof, rc, wholesale, formulation, devices,
                                         exclude_offer=exclude_offer, funded_only=funded_only)
        timings["solve_s"] = timings.get("solve_s", 0.0) + time.perf_counter() - t1
        passes += 1
        if red is None or red.is_identity:
            return built, res_red, mip_gap, notes, None
        res, extra = expand_dispatch(red, built.problem, res_red)
        if not extra:
            notes.append(f"network reduced from {view.n_node} to {red.reduced.n_node} nodes "
                         f"({passes} solve{'s' if passes > 1 else ''})")
            return built, res, mip_gap, notes, red
        keep |= set(extra)
        red = reduce_view(view, keep)


def _solve(b: _Built, view: GridView, profiles: Profiles, rc: RoundConfig, wholesale: FloatArray, formulation: str,
           devices: Devices | None, exclude_offer: int | None = None,
           funded_only: bool = False) -> tuple[DispatchResult, float | None, list[str]]:
    """Solve; with binaries, fix them from a MILP (LinDistFlow for SOCP) and re-solve the convex problem."""
    notes: list[str] = []
    m = b.problem.model
    if len(b.int_idx) == 0:
        return b.problem.solve(), None, notes
    stage = b
    if formulation in ("socp", SENSITIVITY):
        stage = _build(view, profiles, rc, b.offers, b.requests, b.p2p, wholesale, "lindistflow", devices, exclude_offer,
                       funded_only)
        notes.append(f"binaries chosen by the LinDistFlow MILP, {formulation.upper() if formulation == 'socp' else formulation} "
                     "solved with them fixed")
    sol = stage.problem.model.solve()
    u = np.round(sol.x[stage.int_idx])
    m.add("integer_fix", "zero", np.arange(len(b.int_idx)), b.int_idx, 1.0, u, category="market")
    m.integer = []
    return b.problem.solve(), sol.mip_gap, notes




def _groups(owner: IntArray, count: int) -> list[tuple[int, IntArray]]:
    """(idx, np.flatnonzero(owner == idx)) for each idx in range(count) that occurs in `owner`, ascending,
    from one stable sort instead of a scan of `owner` per idx."""
    owner = np.asarray(owner, dtype=np.int64)
    if not len(owner):
        return []
    by = np.argsort(owner, kind="stable")
    values, starts = np.unique(owner[by], return_index=True)
    return [(v, sel) for v, sel in zip(values.tolist(), np.split(by, starts[1:]), strict=True) if 0 <= v < count]


def funded_allocation_w(pair_e: IntArray, pair_q: IntArray, a_mw: FloatArray, offer_max_w: Sequence[int],
                        request_max_w: Sequence[int]) -> IntArray:
    """Whole watts of each offer-to-request assignment of a funded clearing: the solved MW rounded to
    the nearest watt (half up), then, should the pairs of one offer or request add up beyond its own
    power, reduced from its last pairs. An offer's leaf is the sum of its pairs and a
    request's leaf the sum of its pairs, so both sides of the funding balance count the same watts."""
    w = np.floor(np.maximum(np.asarray(a_mw, dtype=float), 0.0) * 1e6 + 0.5).astype(np.int64)
    for owner, limits in ((pair_e, offer_max_w), (pair_q, request_max_w)):
        for idx, sel in _groups(owner, len(limits)):
            excess = int(w[sel].sum()) - int(limits[idx])
            for s in sel[::-1]:
                if excess <= 0:
                    break
                cut = min(excess, int(w[s]))
                w[s] -= cut
                excess -= cut
    return w


@dataclass(frozen=True)
class FundedLeaves:
    """The leaves of a funded clearing, per offer entry and per request entry (see `funded_leaves`)."""

    offer_w: tuple[int, ...]
    offer_price_micro: tuple[int, ...]  # micro-EUR/MWh; 0 where offer_w is 0
    request_w: tuple[int, ...]
    request_price_micro: tuple[int, ...]
    pair_price_micro: tuple[int, ...]  # per pair: the rule's price clamped to [bid, the request's cap]


def price_to_micro(price_eur_per_mwh: float) -> int:
    """A computed price as the leaves carry it: rounded to `PRICE_DECIMALS`, never negative."""
    return eur_per_mwh_to_micro(max(round(float(price_eur_per_mwh), PRICE_DECIMALS), 0.0))


def funded_leaves(rule: PricingRule, offers: Sequence[FlexOffer], requests: Sequence[FlexRequest],
                  off_entries: Sequence[tuple[int, int]], req_entries: Sequence[tuple[int, int]],
                  pair_e: IntArray, pair_q: IntArray, pair_w: IntArray, slot_seconds: int,
                  rule_price_micro: Sequence[int] | None = None) -> FundedLeaves:
    """Quantities and prices of a round settled on chain, in integers, so that by construction:

    - the watts an offer entry sells to a request entry (one pair) are priced at the offer's rule price
      clamped to [its bid, that request's cap]: `max(bid, min(rule price, cap))`. The rule price is the
      bid (pay-as-bid), the highest bid of the offers bought in its slot and direction (uniform), or
      `rule_price_micro` per offer entry (DLMP: the offer's locational marginal value, DLMP +
      flexibility price for UP, flexibility price - DLMP for DOWN; VCG: bid + externality);
    - an offer entry is paid the watt-weighted mean of its pairs' prices, rounded down to the
      micro-euro per MWh (at least its bid: individually rational);
    - a request entry is charged what its pairs are worth at their prices, rounded up to the
      micro-euro (rounded down in its last slots where rounding up in every slot would exceed the
      request's escrow), at the lowest micro-price per MWh whose value reaches that charge: at most
      the mean of its pairs' prices rounded up, so at most its cap. The offers are paid their
      pairs' worth rounded down, so the payer leaves cover the payee leaves.

    Offers are only paired with requests whose cap is at least their bid (the clearing's eligibility),
    so the clamp is never empty."""
    n_off, n_req = len(off_entries), len(req_entries)
    pe, pq, pw = pair_e.tolist(), pair_q.tolist(), pair_w.tolist()
    offer_w = [0] * n_off
    request_w = [0] * n_req
    for e, q, w in zip(pe, pq, pw, strict=True):
        if w > 0:
            offer_w[e] += w
            request_w[q] += w
    bid_of: dict[int, int] = {}  # per offer, computed once
    for i, _ in off_entries:
        if i not in bid_of:
            bid_of[i] = offers[i].price_micro_per_mwh
    bid = [bid_of[i] for i, _ in off_entries]
    if rule == PricingRule.PAY_AS_BID:
        base = bid
    elif rule == PricingRule.UNIFORM:
        smp: dict[tuple[int, int], int] = {}
        for e, (i, k) in enumerate(off_entries):
            if offer_w[e] > 0:
                key = (offers[i].slots[k], int(offers[i].direction))
                smp[key] = max(smp.get(key, 0), bid[e])
        base = [smp.get((offers[i].slots[k], int(offers[i].direction)), 0) for i, k in off_entries]
    else:
        if rule_price_micro is None or len(rule_price_micro) != n_off:
            raise InputError("rule_price_micro", f"the {rule.name} rule needs one price per offer entry")
        base = [int(p) for p in rule_price_micro]
    pair_price = [max(bid[e], min(base[e], requests[req_entries[q][0]].price_cap_micro_per_mwh))
                  for e, q in zip(pe, pq, strict=True)]
    offer_value = [0] * n_off  # watts x micro-price of each entry's pairs
    request_value = [0] * n_req
    for e, q, w, p in zip(pe, pq, pw, pair_price, strict=True):
        if w > 0:
            offer_value[e] += w * p
            request_value[q] += w * p
    offer_price = [offer_value[e] // offer_w[e] if offer_w[e] > 0 else 0 for e in range(n_off)]
    # What each request entry owes, in micro-euros: request_value * s / WS_PER_MWH (it covers the
    # offers' payments, which are rounded down). Charged rounded up, except where the slots of one
    # request would then add up beyond its escrow (its budget at the cap, rounded up once over all
    # its slots): there the last slots are charged rounded down, which still covers what it owes.
    charge = [-(-request_value[q] * slot_seconds // WS_PER_MWH) for q in range(n_req)]
    entries_of: dict[int, list[int]] = {}
    for q, (j, _) in enumerate(req_entries):
        entries_of.setdefault(j, []).append(q)
    for i, r in enumerate(requests):
        entries = entries_of.get(i, [])
        excess = sum(charge[q] for q in entries) - r.budget_micro(slot_seconds)
        for q in reversed(entries):
            if excess <= 0:
                break
            if request_value[q] * slot_seconds % WS_PER_MWH:
                charge[q] -= 1
                excess -= 1
    # the lowest micro-price whose value (rounded up, as for every payer leaf) reaches the charge:
    # at most the mean of its pairs' prices rounded up, so at most its cap
    request_price = [max(0, (charge[q] - 1) * WS_PER_MWH // (request_w[q] * slot_seconds) + 1)
                     if request_w[q] > 0 else 0 for q in range(n_req)]
    return FundedLeaves(tuple(offer_w), tuple(offer_price), tuple(request_w), tuple(request_price),
                        tuple(pair_price))


def clear_market(
    net: pp.pandapowerNet,
    profiles: Profiles,
    round_config: RoundConfig,
    orders: Sequence[Order],
    *,
    wholesale_eur_per_mwh: float | Sequence[float] | FloatArray = 60.0,
    formulation: str = "socp",
    pricing: PricingRule | None = None,
    devices: Devices | None = None,
    view: GridView | None = None,
    ac_validation: bool = True,
    ac_slots: Sequence[int] | None = None,
    certificate: bool = True,
    now_s: int | None = None,
    check_grid_hash: bool = True,
    funded_only: bool = False,
    reduce_network: bool = True,
) -> ClearingOutcome:
    """Clear one round: validate -> build -> solve -> check status -> extract -> price -> AC-validate -> certify.

    `orders` may come in any order: they are sorted by id, so the result and its hashes do not
    depend on it. `pricing` defaults to the round's rule.

    `funded_only=True` is for rounds settled on chain, where only escrowed money can pay: every
    accepted offer then serves a FlexRequest whose cap is at least its bid (or is a matched P2P
    sale), no offer is bought proactively, and the leaves follow `funded_leaves`: each offer is paid
    its rule's price clamped to [its bid, the caps of the requests it serves], each request charged
    the mean of the prices of the watts it is served, rounded up (never above its cap), so that the
    payer leaves always cover the payee leaves, under every pricing rule. Without it the clearing
    may buy offers where the grid's limits or the energy price make them worth it (proactive mode). Raises `InputError` for bad input and
    `SolverError` when a solve is not optimal.

    `reduce_network=True` (SOCP and LinDistFlow) solves the problem on the network without the buses
    where nothing is connected (`flexgrid.grid.reduction`: dangling branches dropped, series lines
    merged; exact), re-including any eliminated bus whose reconstructed voltage breaks its limits (or
    whose chain's current limit binds) and solving again until none does. The outcome (voltages,
    withdrawals, DLMPs, AC validation) is given for the full network; the certificate certifies the
    reduced problem that was solved and states its prices for every node (`price_nodes`).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    view = view or build_view(net, round_config.grid_id)
    if check_grid_hash and round_config.grid_model_hash != view.model_hash():
        raise InputError("grid_model_hash", f"the round declares {round_config.grid_model_hash}, but grid "
                         f"{round_config.grid_id!r} hashes to {view.model_hash()}")
    rule = PricingRule(round_config.pricing_rule if pricing is None else pricing)
    if profiles.slot_count != round_config.slot_count:
        raise InputError("profiles", f"{profiles.slot_count} slots, but the round has {round_config.slot_count}")
    wholesale = np.broadcast_to(np.asarray(wholesale_eur_per_mwh, dtype=float), (round_config.slot_count,)).copy()
    if not np.all(np.isfinite(wholesale)):
        raise InputError("wholesale_eur_per_mwh", "must be finite in every slot")
    check_orders(orders, round_config, view, now_s)
    ordered = sorted(orders, key=lambda o: str(o.order_id))
    offers = [o for o in ordered if isinstance(o, FlexOffer)]
    requests = [o for o in ordered if isinstance(o, FlexRequest)]
    p2p = [o for o in ordered if isinstance(o, P2POrder)]
    h = round_config.slot_seconds / 3600.0

    full_view = view
    keep: set[int] | None = None
    if reduce_network and formulation in ("socp", "lindistflow") and view.is_radial:
        keep = keep_nodes(view, profiles, ordered, devices)
    built, res, mip_gap, notes, red = _solve_reduced(
        view, keep, profiles, round_config, offers, requests, p2p, wholesale, formulation, devices, timings,
        funded_only=funded_only)
    rview = view if red is None else red.reduced
    sol = res.solution
    m = built.problem.model
    x_off = sol.x[m.blocks["offer_x"].idx().ravel()] if offers else np.zeros(0)
    y_req = sol.x[m.blocks["request_y"].idx().ravel()] if requests else np.zeros(0)
    q_p2p = sol.x[m.blocks["p2p_q"].idx().ravel()] if p2p else np.zeros(0)
    a_val = sol.x[m.blocks["assign"].idx().ravel()] if "assign" in m.blocks else np.zeros(0)
    dlmp = res.dlmp_eur_per_mwh

    # marginal values of offers, requests and the P2P pool, EUR/MWh
    rho_off = np.zeros(len(built.off_entries))
    gamma = np.zeros(len(built.req_entries))
    if "offer_cover" in [g.name for g in m.groups]:
        rho_off = sol.z["offer_cover"] / h
    if requests:
        gamma = sol.z["request_cover"] / h
    pool = np.zeros(round_config.slot_count)
    if p2p:
        pool[built.has_pool] = -sol.z["p2p_pool"] / h

    node_of = {b: view.node(b) for b in {o.bus for o in offers}}  # full network's node of each offer's bus

    # ---------------------------------------------------------------- accepted quantities
    accepted: list[Accepted] = []
    off_e = np.flatnonzero(x_off > ACCEPT_TOL_MW)
    req_e = np.flatnonzero(y_req > ACCEPT_TOL_MW)
    p2p_e = np.flatnonzero(q_p2p > ACCEPT_TOL_MW)
    off_acc = list(zip(off_e.tolist(), x_off[off_e].tolist(), strict=True))  # (entry, MW)
    req_acc = list(zip(req_e.tolist(), y_req[req_e].tolist(), strict=True))
    p2p_acc = list(zip(p2p_e.tolist(), q_p2p[p2p_e].tolist(), strict=True))
    for e, x in off_acc:
        i, k = built.off_entries[e]
        accepted.append(Accepted("offer", str(offers[i].order_id), offers[i].slots[k], x))
    for q, y in req_acc:
        i, k = built.req_entries[q]
        accepted.append(Accepted("request", str(requests[i].order_id), requests[i].slots[k], y))
    for j, q_ in p2p_acc:
        accepted.append(Accepted("p2p", str(p2p[j].order_id), p2p[j].slot, q_))

    # ---------------------------------------------------------------- prices
    smp: dict[tuple[int, int], float] = {}
    for e, _ in off_acc:
        i, k = built.off_entries[e]
        key = (offers[i].slots[k], int(offers[i].direction))
        smp[key] = max(smp.get(key, 0.0), offers[i].price_eur_per_mwh)
    vcg_price: dict[int, float] = {}
    if rule == PricingRule.VCG and off_acc:
        tv = time.perf_counter()
        for i in sorted({built.off_entries[e][0] for e, _ in off_acc}):
            _, r2, _, _, _ = _solve_reduced(view, keep, profiles, round_config, offers, requests, p2p, wholesale,
                                                  formulation, devices, {}, exclude_offer=i, funded_only=funded_only)
            ent = [e for e, _ in off_acc if built.off_entries[e][0] == i]
            energy = float(sum(x_off[e] for e in ent)) * h
            own_cost = energy * offers[i].price_eur_per_mwh
            payment = own_cost + (r2.solution.objective - sol.objective)
            vcg_price[i] = max(payment / energy, 0.0) if energy > 0 else 0.0
        timings["vcg_s"] = time.perf_counter() - tv

    def offer_prices(entries: Sequence[int]) -> list[float]:
        """The rule's price of each offer entry, EUR/MWh. DLMP: the DLMP at the offer's node and slot plus
        its flexibility price (UP), or the flexibility price minus the DLMP (DOWN), in one array operation."""
        ent = [built.off_entries[e] for e in entries]
        if rule == PricingRule.PAY_AS_BID:
            return [offers[i].price_eur_per_mwh for i, _ in ent]
        if rule == PricingRule.UNIFORM:
            return [smp[(offers[i].slots[k], int(offers[i].direction))] for i, k in ent]
        if rule == PricingRule.VCG:
            return [vcg_price[i] for i, _ in ent]
        lam = dlmp[np.array([node_of[offers[i].bus] for i, _ in ent], dtype=np.int64),
                   np.array([offers[i].slots[k] for i, k in ent], dtype=np.int64)]
        rho = rho_off[np.asarray(entries, dtype=np.int64)]
        up = np.array([offers[i].direction == Direction.UP for i, _ in ent], dtype=bool)
        out: list[float] = np.where(up, lam + rho, rho - lam).tolist()
        return out

    pairs_of_request: dict[int, IntArray] = {}  # request entry -> its pairs, ascending
    if rule == PricingRule.PAY_AS_BID and len(built.pairs):
        by_q = np.argsort(built.pairs[:, 1], kind="stable")
        qs, starts = np.unique(built.pairs[by_q, 1], return_index=True)
        pairs_of_request = dict(zip(qs.tolist(), np.split(by_q, starts[1:]), strict=True))

    def request_price(q: int) -> float:
        i, k = built.req_entries[q]
        r = requests[i]
        if rule == PricingRule.PAY_AS_BID:
            sel = pairs_of_request.get(q, np.zeros(0, dtype=np.int64))
            vol = float(a_val[sel].sum()) if len(sel) else 0.0
            if vol <= 0:
                return 0.0
            return float(sum(a_val[s] * offers[built.off_entries[built.pairs[s, 0]][0]].price_eur_per_mwh
                             for s in sel) / vol)
        if rule == PricingRule.UNIFORM:
            return smp.get((r.slots[k], int(r.direction)), 0.0)
        return float(gamma[q])

    def p2p_price(j: int) -> float:
        o = p2p[j]
        if rule == PricingRule.PAY_AS_BID:
            return o.limit_price_eur_per_mwh
        return float(dlmp[view.node(o.bus), o.slot] + pool[o.slot])

    # ---------------------------------------------------------------- trades
    # One row per leaf: (leaf order id, slot, participant, watts, micro-EUR/MWh, micro-EUR), the Trades
    # made once the rows are sorted.
    rows: list[tuple[str, int, str, int, int, int]] = []
    leaf_ids: dict[str, str] = {}
    lid_of: dict[str, str] = {}  # order id -> leaf order id
    slot_s = round_config.slot_seconds
    balance_micro = 0

    def add_leaf(order: Order, participant: str | None, slot: int, power_w: int, price_micro: int, pays: bool) -> None:
        nonlocal balance_micro
        if power_w == 0:
            return
        if pays:
            micro = -value_micro_up(power_w, slot_s, price_micro)
        else:
            micro = value_micro_down(power_w, slot_s, price_micro)
        balance_micro -= micro
        oid = str(order.order_id)
        lid = lid_of.get(oid)
        if lid is None:
            lid = lid_of[oid] = leaf_order_id(order)
        leaf_ids[lid] = oid
        rows.append((lid, slot, participant or ZERO_ADDRESS, power_w, price_micro, micro))

    def add_trade(order: Order, participant: str | None, slot: int, mw: float, price: float, pays: bool) -> None:
        add_leaf(order, participant, slot, kw_to_w(round(mw * 1e3, 3)), price_to_micro(price), pays)

    if funded_only:
        # Chain-settled: whole-watt pairs, offers paid their rule's price within [bid, the lowest cap
        # they serve], requests charged the mean of their offers' prices rounded up (`funded_leaves`).
        pair_e = built.pairs[:, 0] if len(built.pairs) else np.zeros(0, dtype=np.int64)
        pair_q = built.pairs[:, 1] if len(built.pairs) else np.zeros(0, dtype=np.int64)
        max_w = [o.max_power_w for o in offers]  # each offer's watts per slot, computed once per offer
        req_w = [r.power_w for r in requests]
        pair_w = funded_allocation_w(
            pair_e, pair_q, a_val, [max_w[i][k] for i, k in built.off_entries],
            [req_w[i][k] for i, k in built.req_entries])
        rule_micro = None
        if rule == PricingRule.DLMP:  # every entry, as the auditor recomputes them from the certificate
            rule_micro = [price_to_micro(p) for p in offer_prices(range(len(built.off_entries)))]
        elif rule == PricingRule.VCG:
            rule_micro = [price_to_micro(vcg_price[i]) if i in vcg_price else offers[i].price_micro_per_mwh
                          for i, _ in built.off_entries]
        fl = funded_leaves(rule, offers, requests, built.off_entries, built.req_entries, pair_e, pair_q, pair_w,
                           round_config.slot_seconds, rule_micro)
        for e in (e for e, w in enumerate(fl.offer_w) if w):
            i, k = built.off_entries[e]
            add_leaf(offers[i], offers[i].provider, offers[i].slots[k], fl.offer_w[e], fl.offer_price_micro[e],
                     pays=False)
        for q in (q for q, w in enumerate(fl.request_w) if w):
            i, k = built.req_entries[q]
            add_leaf(requests[i], requests[i].dso, requests[i].slots[k], fl.request_w[q], fl.request_price_micro[q],
                     pays=True)
    else:
        for (e, x), price in zip(off_acc, offer_prices([e for e, _ in off_acc]), strict=True):
            i, k = built.off_entries[e]
            add_trade(offers[i], offers[i].provider, offers[i].slots[k], x, price, pays=False)
        for q, y in req_acc:
            i, k = built.req_entries[q]
            add_trade(requests[i], requests[i].dso, requests[i].slots[k], y, request_price(q), pays=True)
    for j, q_ in p2p_acc:
        add_trade(p2p[j], p2p[j].trader, p2p[j].slot, q_, p2p_price(j), pays=p2p[j].side == Side.BUY)
    rows.sort(key=itemgetter(0, 1))  # by (order hash, slot), as the leaves are listed
    trades = [Trade.of_leaf(round_config.round_id, participant, lid, slot, power_w, price_micro, micro)
              for lid, slot, participant, power_w, price_micro, micro in rows]
    root = TradeTree(trades, leaf_values=_trade_leaf_values(trades, rows)).root

    # ---------------------------------------------------------------- AC validation and certificate
    ac = None
    if ac_validation:
        ta = time.perf_counter()
        ac = validate_ac(net, view, res.withdrawal_p_mw, res.withdrawal_q_mvar, res.v_pu, slots=ac_slots)
        timings["ac_s"] = time.perf_counter() - ta
    cert = None
    if certificate:
        net_ = built.problem.build()
        cert = Certificate.from_model(
            m, sol, round_id=round_config.round_id, formulation=formulation, pricing=rule.name, base_mva=view.base_mva,
            slot_h=h, n_node=rview.n_node, slot_count=round_config.slot_count, balance_group=net_.balance_p,
            per_node_balance=net_.per_node_balance, dlmp_eur_per_mwh=dlmp,
            inputs_hash=inputs_hash(round_config, full_view.model_hash(), ordered, wholesale, formulation, rule,
                                    funded_only=funded_only),
            mip_gap=mip_gap, price_nodes=None if red is None else red.kept)
    timings["total_s"] = time.perf_counter() - t0
    return ClearingOutcome(
        trades=tuple(trades), merkle_root=root, accepted=tuple(accepted), leaf_order_ids=leaf_ids,
        dlmp_eur_per_mwh=dlmp, components=res.components, bus_of_node=view.bus_of_node, violations=res.violations,
        objective_eur=sol.objective, mip_gap=mip_gap, relaxation_gap_mw=res.relaxation_gap_mw, ac=ac, certificate=cert,
        certificate_hash=None if cert is None else cert.hash(), pricing=rule, formulation=formulation,
        p2p_price_eur_per_mwh=pool, budget_balance_eur=micro_to_eur(balance_micro), timings_s=timings, notes=notes,
        dispatch=res, reduced_nodes=None if red is None else red.reduced.n_node,
    )
