"""Review of the certified path (flexgrid.opf.certify): cases where the AC operating point looks optimal
to a loose test but is not, and cases the other certify tests do not cover."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandapower as pp
import pytest
import scipy.sparse as sp

from flexgrid.grid import GridView, build_view, load_net, synthetic_profiles
from flexgrid.opf import DispatchProblem, DispatchResult
from flexgrid.opf.certify import certify_parts
from tests.opf.helpers import case33bw_evening

EVENING_S = 17 * 3600


@cache
def _grid() -> tuple[pp.pandapowerNet, GridView]:
    net = load_net("case33bw")
    return net, build_view(net, "case33bw")


def _with_offer(price: float, *, penalty_v_eur: float, certify: bool = True) -> tuple[DispatchProblem, DispatchResult]:
    """case33bw, two evening hours, an offer of up to 0.2 MW at bus 17 in slot 1 at `price` EUR/MWh."""
    return case33bw_evening(1.0, slots=2, offer_eur_per_mwh=price, penalty_v_eur=penalty_v_eur, certify=certify)


def _offer_mw(prob: DispatchProblem, res: DispatchResult) -> float:
    return float(res.solution.x[prob.model.blocks["offer_x"].idx()][0, 0])


def test_an_offer_slightly_in_the_money_is_not_certified_idle_under_a_large_penalty() -> None:
    # A large voltage penalty (1e8 EUR per pu^2 h, a user's way to make the band nearly hard) must not
    # loosen the test of the idle offer's reduced cost: priced 0.05 EUR/MWh below its node's price, the
    # offer runs at the optimum (Clarabel dispatches it and reaches a lower cost), so its slot is no
    # longer one the idle AC point solves.
    pen = 1e8
    _, idle = _with_offer(500.0, penalty_v_eur=pen)
    price = float(idle.dlmp_eur_per_mwh[_grid()[1].node(17), 1]) - 0.05
    prob, fast = _with_offer(price, penalty_v_eur=pen)
    slow_prob, slow = _with_offer(price, penalty_v_eur=pen, certify=False)
    assert _offer_mw(slow_prob, slow) > 1e-3
    assert _offer_mw(prob, fast) > 1e-3
    assert fast.solution.certified == 1
    assert fast.solution.objective <= slow.solution.objective + 1e-8 * abs(slow.solution.objective)
    np.testing.assert_allclose(fast.dlmp_eur_per_mwh, slow.dlmp_eur_per_mwh, rtol=2e-6, atol=1e-5)


def _parts_problem() -> tuple[DispatchProblem, tuple[object, ...]]:
    """case33bw, four evening hours (every slot certified), split into its components as Clarabel gets them."""
    net, view = _grid()
    prof = synthetic_profiles(net, view, slot_start_s=EVENING_S, slot_seconds=3600, slot_count=4, load_scale=1.0)
    prob = DispatchProblem(view, prof, slot_seconds=3600, wholesale_eur_per_mwh=60.0)
    prob.build()
    order, a, b, row_perm, col_perm, parts, c, head = prob.model._split()
    kind_code = {"zero": 0, "nonneg": 1, "soc": 2}
    kinds = np.concatenate([np.full(g.a.shape[0], kind_code[g.kind], dtype=np.int64) for g in order])[row_perm]
    assert prob.model.start is not None
    return prob, (a, b, c, kinds, head, prob.model.start[col_perm], parts)


def test_certifying_some_of_the_components_gives_what_certifying_all_gives_for_them() -> None:
    # certify_parts takes the slices of any independent components: rows and columns of the others
    # (label -1) must stay out of the Newton system, its cones included
    _, (a, b, c, kinds, head, x0, parts) = _parts_problem()
    assert isinstance(parts, list) and len(parts) == 4
    whole = certify_parts(a, b, c, kinds, head, x0, parts)  # type: ignore[arg-type]
    assert whole.ok.all()
    for subset in (parts[1:], parts[2:3], [parts[3], parts[0]]):
        some = certify_parts(a, b, c, kinds, head, x0, subset)  # type: ignore[arg-type]
        assert some.ok.all()
        for rows, cols in subset:
            np.testing.assert_array_equal(some.x[cols], whole.x[cols])
            np.testing.assert_allclose(some.z[rows], whole.z[rows], rtol=1e-12, atol=1e-12)


def _kkt_residuals(prob: DispatchProblem, res: DispatchResult) -> dict[str, float]:
    """The KKT conditions of the whole model at the solution, unscaled (check_kkt scales the dual residual
    by the largest cost, the 1e5 EUR voltage penalty, which hides errors of a thousandth of a EUR)."""
    m, sol = prob.model, res.solution
    stat = m.cost().copy()
    out = {"dual cone": 0.0, "primal": 0.0, "complementarity": 0.0}
    for g in m.groups:
        z = sol.z[g.name]
        s = g.b - g.a @ sol.x
        stat += g.a.T @ z
        if g.kind == "zero":
            out["primal"] = max(out["primal"], float(np.max(np.abs(s), initial=0.0)))
            continue
        if g.kind == "nonneg":
            sv, zv = s[:, None], z[:, None]
            s_out, z_out = -sv[:, 0], -zv[:, 0]
        else:
            sv, zv = s.reshape(-1, g.cone_dim), z.reshape(-1, g.cone_dim)
            s_out = np.linalg.norm(sv[:, 1:], axis=1) - sv[:, 0]
            z_out = np.linalg.norm(zv[:, 1:], axis=1) - zv[:, 0]
        out["primal"] = max(out["primal"], float(np.max(s_out, initial=0.0)))
        out["dual cone"] = max(out["dual cone"], float(np.max(z_out, initial=0.0)))
        out["complementarity"] = max(out["complementarity"], float(np.max(np.abs(np.sum(sv * zv, axis=1)), initial=0.0)))
    out["stationarity"] = float(np.max(np.abs(stat)))
    return out


def test_two_substations_with_off_nominal_taps_and_transformer_shunts_are_certified_exactly() -> None:
    # mv_oberrhein: two substations (two components per slot), their transformers 3 taps off neutral
    # (ratio 1.045) with iron losses and magnetising current. Every component is certified, and the point
    # meets the KKT conditions to rounding: the exact optimum. Clarabel's own answer is off by more here
    # (complementarity ~3e-5, slack_v_min ~-3e-10 at the 1e5 EUR penalty): compared within its tolerance.
    net = load_net("mv_oberrhein")
    net.trafo["tap_pos"] = net.trafo["tap_neutral"].fillna(0) + 3
    net.trafo["i0_percent"], net.trafo["pfe_kw"] = 0.5, 20.0
    view = build_view(net, "mv_oberrhein")
    assert np.any(np.abs(view.tap_ratio - 1.0) > 0.04)
    prof = synthetic_profiles(net, view, slot_start_s=12 * 3600, slot_seconds=3600, slot_count=2, load_scale=1.0)
    results = []
    for certify in (True, False):
        prob = DispatchProblem(view, prof, slot_seconds=3600, wholesale_eur_per_mwh=60.0)
        prob.build()
        if not certify:
            prob.model.start = None
        results.append((prob, prob.solve()))
    (prob, fast), (_, slow) = results
    assert (fast.solution.components, fast.solution.certified) == (4, 4)
    for name, value in _kkt_residuals(prob, fast).items():
        assert value < 1e-10, name
    assert fast.solution.objective == pytest.approx(slow.solution.objective, rel=1e-6)
    assert fast.v_pu is not None and slow.v_pu is not None
    np.testing.assert_allclose(fast.v_pu, slow.v_pu, atol=1e-6)
    np.testing.assert_allclose(fast.dlmp_eur_per_mwh, slow.dlmp_eur_per_mwh, rtol=1e-4)


def test_newton_landing_outside_a_cone_is_not_certified() -> None:
    # min t s.t. t + (d - 1) y = -d, t >= |y| (d = 1e-5) is infeasible. The candidate (1, 1) is on the
    # cone and 2e-5 off the equality; the system (equality, t^2 = y^2) is nearly singular along (1, 1),
    # and one Newton step takes it to (-1, -1): both equations met, t^2 = y^2 with t < 0, i.e. on the
    # cone's mirror image, outside the cone. Duals then solve with a positive multiplier, so only a
    # check of the polished point against the cone itself keeps it from being certified.
    d = 1e-5
    a = sp.csr_matrix(np.array([[1.0, d - 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    b = np.array([-d, 0.0, 0.0])
    c = np.array([1.0, 0.0])
    kinds = np.array([0, 2, 2], dtype=np.int64)
    heads = np.array([0, 1, 1], dtype=np.int64)
    out = certify_parts(a, b, c, kinds, heads, np.array([1.0, 1.0]), [(slice(0, 3), slice(0, 2))])
    assert not out.ok[0]
    # made feasible (right-hand side +d) and maximising t, the optimum is t = y = 1: certified there
    b[0], c[0] = d, -1.0
    out = certify_parts(a, b, c, kinds, heads, np.array([1.0, 1.0 + 1e-6]), [(slice(0, 3), slice(0, 2))])
    assert out.ok[0]
    np.testing.assert_allclose(out.x, [1.0, 1.0], rtol=1e-6)  # conditioned ~1/d


def test_a_column_taken_as_on_its_bound_is_certified_on_it() -> None:
    # min 2x + y s.t. x + y = 1, x >= 0: optimum x = 0, y = 1. A candidate with x = 5e-8 counts x's
    # bound as active (within the tolerance); the certified point must then have x on it, not 5e-8
    # off with a positive bound dual (complementarity broken, the objective 5e-8 too high)
    a = sp.csr_matrix(np.array([[1.0, 1.0], [-1.0, 0.0]]))
    b = np.array([1.0, 0.0])
    c = np.array([2.0, 1.0])
    kinds = np.array([0, 1], dtype=np.int64)
    heads = np.array([0, 1], dtype=np.int64)
    out = certify_parts(a, b, c, kinds, heads, np.array([5e-8, 1.0 - 5e-8]), [(slice(0, 2), slice(0, 2))])
    assert out.ok[0]  # (a program without cones once raised IndexError here)
    assert out.x.tolist() == [0.0, 1.0] and not np.signbit(out.x[0])
    assert out.z.tolist() == [-1.0, 1.0]
