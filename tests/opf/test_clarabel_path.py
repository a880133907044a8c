"""The direct Clarabel backend's component loop: threads, stressed components, errors (flexgrid.opf.conic)."""

from __future__ import annotations

import numpy as np
import pytest

from flexgrid.errors import SolverError
from flexgrid.grid import build_view, load_net, synthetic_profiles
from flexgrid.opf import Battery, Devices, DispatchProblem, conic
from tests.opf.helpers import kkt_ok


def _problem(load: float, slots: int = 4, devices: Devices | None = None) -> DispatchProblem:
    net = load_net("case33bw")
    view = build_view(net, "case33bw")
    prof = synthetic_profiles(net, view, slot_start_s=17 * 3600, slot_seconds=3600, slot_count=slots, load_scale=load)
    return DispatchProblem(view, prof, slot_seconds=3600, wholesale_eur_per_mwh=60.0, devices=devices)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Statuses of every Clarabel solve, in order."""
    import clarabel

    real = clarabel.DefaultSolver
    seen: list[str] = []

    class Counted:
        def __init__(self, *args: object) -> None:
            self.solver = real(*args)

        def solve(self) -> object:
            result = self.solver.solve()
            seen.append(str(result.status))
            return result

    monkeypatch.setattr(clarabel, "DefaultSolver", Counted)
    return seen


def test_components_on_threads_give_the_serial_result_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    # four slots, four components (with soft-limit violations at 1.6x load): the same x and duals, to the bit,
    # whether the components are solved one after the other or two at a time
    results = []
    for threads in (1, 2):
        monkeypatch.setattr(conic, "CLARABEL_THREADS", threads)
        prob = _problem(1.6)
        results.append(prob.solve())
    serial, threaded = results
    assert serial.violations
    np.testing.assert_array_equal(serial.solution.x, threaded.solution.x)
    assert serial.solution.z.keys() == threaded.solution.z.keys()
    for name, z in serial.solution.z.items():
        np.testing.assert_array_equal(z, threaded.solution.z[name], err_msg=name)
    assert conic.clarabel_threads() == 2


def test_a_stressed_slot_starts_with_its_slacks_instead_of_proving_hard_limits_infeasible(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # At twice the load the base state already violates v_min in every slot: the slacks are in the first
    # solve, one solve per slot. Without that mark the hard-limit problem is solved first, found
    # infeasible, and solved again with every column: the same optimum and prices, twice the solves.
    monkeypatch.setattr(conic, "CLARABEL_THREADS", 1)
    seen = _counting(monkeypatch)
    marked = _problem(2.0)
    a = marked.solve()
    calls_marked = list(seen)
    seen.clear()
    unmarked = _problem(2.0)
    unmarked.build()
    for g in unmarked.model.groups:
        g.slack_start = None
    b = unmarked.solve()
    assert calls_marked == ["Solved"] * 4
    assert "PrimalInfeasible" in seen and len(seen) >= 8
    assert a.violations and [(v.kind, v.element, v.slot) for v in a.violations] == [
        (v.kind, v.element, v.slot) for v in b.violations]
    assert a.solution.objective == pytest.approx(b.solution.objective, rel=1e-6)
    np.testing.assert_allclose(a.dlmp_eur_per_mwh, b.dlmp_eur_per_mwh, rtol=1e-5, atol=1e-3)
    assert kkt_ok(marked, a.solution) and kkt_ok(unmarked, b.solution)


def test_only_the_stressed_slots_idle_offers_start_in_and_none_when_devices_couple_the_slots() -> None:
    # case33bw at 1.1 x the load, four evening hours: the base state comes near v_min in some slots only.
    # An idle offer (priced far above the energy) in every slot starts in the first solve only in those
    # stressed slots; with a battery coupling the slots into one component nothing is marked (its first
    # solve with hard limits has a solution, the marks would only make it larger). Same optimum either way.
    results = []
    for devices in (None, Devices(batteries=(Battery("b", 17, 0.4, 0.2, 0.2, 0.1),))):
        prob = _problem(1.1, devices=devices)
        blk = prob.model.add_block("offer_x", 1, prob.t_count)
        prob.model.bound("offer_x", blk.idx(), 0.0, 0.1)
        prob.model.add_cost(blk.idx(), 5000.0 * prob.slot_h)
        prob.add_withdrawal_mw(np.full(prob.t_count, prob.view.node(17)), np.arange(prob.t_count), blk.idx()[0], -1.0)
        net = prob.build()
        lower = prob.model.group("offer_x.lower")
        results.append((prob, net, lower, prob.solve()))
    (_, net, lower, res), (_, net_dev, lower_dev, res_dev) = results
    assert net.stressed is not None and 0 < int(np.sum(net.stressed)) < 4
    assert lower.slack_start is not None
    np.testing.assert_array_equal(lower.slack_start, net.stressed)  # one offer column per slot
    assert net_dev.stressed is None and lower_dev.slack_start is None
    assert all(g.slack_start is None for g in results[1][0].model.groups)
    assert res.solution.x[results[0][0].model.blocks["offer_x"].idx()].max() < 1e-7  # idle: out of the money
    assert kkt_ok(results[0][0], res.solution) and kkt_ok(results[1][0], res_dev.solution)


@pytest.mark.parametrize("threads", [1, 2])
def test_an_infeasible_component_among_others_names_its_status(threads: int,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # two independent components: min x0 with |x1| <= x0, x1 = 1 (solvable); x2 >= 1, x2 <= 0 with
    # |x3| <= x2 (no solution): the error names the status, serial or on threads
    monkeypatch.setattr(conic, "CLARABEL_THREADS", threads)
    model = conic.ConicModel()
    model.add_block("x", 4, 1)
    model.add_cost([0], [1.0])
    model.add("fix", "zero", [0], [1], [1.0], [1.0])
    model.add("low", "nonneg", [0, 1], [2, 2], [-1.0, 1.0], [-1.0, 0.0])
    model.add("cone", "soc", [0, 1, 2, 3], [0, 1, 2, 3], [-1.0, -1.0, -1.0, -1.0], [0.0, 0.0, 0.0, 0.0], cone_dim=2)
    with pytest.raises(SolverError) as err:
        model.solve()
    assert err.value.status == "infeasible"
    model.groups = [g for g in model.groups if g.name != "low"]
    sol = model.solve()
    assert sol.x[0] == pytest.approx(1.0, abs=1e-6)


def test_the_solved_test_on_reported_residuals_agrees_with_clarabels_own() -> None:
    # An AlmostSolved component is accepted when its reported residuals and gap pass Clarabel's test for
    # Solved at the last try's tolerances: on a real SOCP stopped after 1, 2, ... iterations, that test
    # says Solved exactly when Clarabel does.
    import clarabel
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    n, m = 12, 20
    a_ineq = rng.normal(size=(m, n))
    x0 = rng.normal(size=n) / 10
    # min q'x with A x <= A x0 + 1 (strictly feasible at x0) and |x| <= 10
    big_a = sp.vstack([sp.csc_matrix(a_ineq), sp.csc_matrix((1, n)), -sp.eye(n)]).tocsc()
    big_b = np.concatenate([a_ineq @ x0 + 1.0, [10.0], np.zeros(n)])
    cones = [clarabel.NonnegativeConeT(m), clarabel.SecondOrderConeT(n + 1)]
    q = rng.normal(size=n)
    seen = set()
    for max_iter in range(1, 12):
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        settings.max_iter = max_iter
        result = clarabel.DefaultSolver(sp.csc_matrix((n, n)), q, big_a, big_b, cones, settings).solve()
        status = str(result.status)
        seen.add(status)
        # stopped by max_iter: AlmostSolved (the reduced tolerances met) and MaxIterations are not Solved
        assert conic._solved_at(result, settings) is (status == "Solved"), (max_iter, status)
    assert seen == {"Solved", "AlmostSolved", "MaxIterations"}
