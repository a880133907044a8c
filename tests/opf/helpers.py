"""Shared by the OPF tests."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandapower as pp

from flexgrid.grid import GridView, build_view, load_net, synthetic_profiles
from flexgrid.opf import DispatchProblem, DispatchResult, check_kkt
from flexgrid.opf.conic import Solution
from flexgrid.opf.problem import PENALTY_V_EUR

EVENING_S = 17 * 3600


def kkt_ok(problem: DispatchProblem, solution: Solution, tol: float = 1e-6) -> bool:
    """The certificate's check (`check_kkt`) of `solution` against every group of the problem's model."""
    m = problem.model
    groups = [(g.name, str(g.kind), g.a, g.b, g.cone_dim) for g in m.groups]
    return check_kkt(m.cost(), groups, solution.x, solution.z, tol_feas=tol, tol_gap=tol).ok


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
