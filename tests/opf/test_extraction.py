"""DispatchProblem's extraction: the price decomposition solved slot by slot gives what one solve of the
whole system gives."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from flexgrid.grid import build_view, load_net, synthetic_profiles
from flexgrid.opf import DispatchProblem
from flexgrid.opf import problem as problem_mod

EVENING_S = 17 * 3600


def _problem(name: str, load: float, formulation: str) -> DispatchProblem:
    net = load_net(name)
    view = build_view(net, name)
    prof = synthetic_profiles(net, view, slot_start_s=EVENING_S, slot_seconds=3600, slot_count=3, load_scale=load)
    return DispatchProblem(view, prof, slot_seconds=3600, wholesale_eur_per_mwh=[40.0, 60.0, 90.0],
                           formulation=formulation)


@pytest.mark.parametrize(("name", "load", "formulation", "binding"), [
    ("kerber_dorfnetz", 1.3, "socp", "congestion"),
    ("case33bw", 1.5, "socp", "voltage"),
    ("case33bw", 1.5, "lindistflow", "voltage"),
    ("case33bw", 1.0, "dc", None),
])
def test_decomposition_by_slot_equals_the_whole_system_solve(
        name: str, load: float, formulation: str, binding: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    prob = _problem(name, load, formulation)
    res = prob.solve()
    calls: list[bool] = []
    by_slot = problem_mod._solve_by_slot

    def spy(a: sp.csr_matrix, rhs: np.ndarray, t_count: int, rows: np.ndarray) -> np.ndarray | None:
        y = by_slot(a, rhs, t_count, rows)
        calls.append(y is not None)
        return y

    monkeypatch.setattr(problem_mod, "_solve_by_slot", spy)
    fast = prob.decompose(res.solution)
    monkeypatch.setattr(problem_mod, "_solve_by_slot", lambda a, rhs, t_count, rows: None)
    whole = prob.decompose(res.solution)
    assert calls == [True]
    for comp in problem_mod.COMPONENTS:
        assert np.max(np.abs(fast[comp] - whole[comp])) < 1e-9, comp
    assert np.max(np.abs(sum(fast.values()) - res.dlmp_eur_per_mwh)) < 1e-5
    if binding is not None:
        assert np.max(np.abs(fast[binding])) > 1.0


def test_a_slot_with_another_matrix_is_solved_as_one_system() -> None:
    block = sp.csr_matrix(np.array([[2.0, 1.0], [0.0, 3.0]]))
    other = sp.csr_matrix(np.array([[2.0, 1.0], [0.0, 4.0]]))
    rhs = np.arange(8.0).reshape(2, 4)  # two right-hand sides over the four columns
    rows = np.array([3, 0, 2])
    same = problem_mod._solve_by_slot(sp.block_diag([block, block], format="csr"), rhs, 2, rows)
    assert same is not None
    whole = np.linalg.solve(sp.block_diag([block, block]).T.toarray(), rhs.T)
    assert np.allclose(same, whole[rows])
    assert problem_mod._solve_by_slot(sp.block_diag([block, other], format="csr"), rhs, 2, rows) is None
    coupled = sp.csr_matrix(np.kron(np.eye(2), block.toarray()) + np.eye(4, k=2))
    assert problem_mod._solve_by_slot(coupled, rhs, 2, rows) is None
