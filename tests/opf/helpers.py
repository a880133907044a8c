"""Shared by the OPF tests."""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt
import pandapower as pp

from flexgrid.grid import GridView, build_view, load_net, synthetic_profiles
from flexgrid.opf import DispatchProblem, DispatchResult, check_kkt
from flexgrid.opf.conic import Solution
from flexgrid.opf.problem import PENALTY_V_EUR

EVENING_S = 17 * 3600
IntArray = npt.NDArray[np.int64]


def kkt_ok(problem: DispatchProblem, solution: Solution, tol: float = 1e-6) -> bool:
    """The certificate's check (`check_kkt`) of `solution` against every group of the problem's model."""
    m = problem.model
    groups = [(g.name, str(g.kind), g.a, g.b, g.cone_dim) for g in m.groups]
    return check_kkt(m.cost(), groups, solution.x, solution.z, tol_feas=tol, tol_gap=tol).ok


def add_offers(prob: DispatchProblem, view: GridView, buses: tuple[int, ...], max_mw: float,
               eur_per_mwh: npt.ArrayLike) -> IntArray:
    """An offer block `offer_x` (one row per bus, every slot: 0..`max_mw` MW injected at the bus, at
    `eur_per_mwh`, per row or one for all); its column indices (bus x slot)."""
    idx = prob.model.add_block("offer_x", len(buses), prob.t_count).idx()
    prob.model.bound("offer_x", idx, 0.0, max_mw)
    prob.model.add_cost(idx, np.asarray(eur_per_mwh, dtype=float) * prob.slot_h)
    slots = np.arange(prob.t_count)
    for k, bus in enumerate(buses):
        prob.add_withdrawal_mw(np.full(prob.t_count, view.node(bus)), slots, idx[k], -1.0)
    return idx


@cache
def case33bw() -> tuple[pp.pandapowerNet, GridView]:
    net = load_net("case33bw")
    return net, build_view(net, "case33bw")


def case33bw_evening(load: float, *, slots: int = 4, offer_eur_per_mwh: float | None = None,
                     penalty_v_eur: float = PENALTY_V_EUR, certify: bool = True,
                     perturb: float = 0.0) -> tuple[DispatchProblem, DispatchResult]:
    """case33bw, `slots` evening hours at `load` times the base load, solved; optionally an offer of up to
    0.2 MW at bus 17 in slot 1 at `offer_eur_per_mwh`. `certify=False` sends every slot to Clarabel;
    `perturb` moves every entry of the start point by that much (relative, random)."""
    net, view = case33bw()
    prof = synthetic_profiles(net, view, slot_start_s=EVENING_S, slot_seconds=3600, slot_count=slots, load_scale=load)
    prob = DispatchProblem(view, prof, slot_seconds=3600, wholesale_eur_per_mwh=60.0, penalty_v_eur=penalty_v_eur)
    if offer_eur_per_mwh is not None:
        blk = prob.model.add_block("offer_x", 1, 1)
        prob.model.bound("offer_x", blk.idx(), 0.0, 0.2)
        prob.model.add_cost(blk.idx(), offer_eur_per_mwh * prob.slot_h)
        prob.add_withdrawal_mw([view.node(17)], [1], blk.idx()[0], -1.0)
    prob.build()
    if not certify:
        prob.model.start = None
    elif perturb:
        assert prob.model.start is not None
        rng = np.random.default_rng(1)
        prob.model.start = prob.model.start * (1 + perturb * rng.standard_normal(prob.model.n))
    return prob, prob.solve()
