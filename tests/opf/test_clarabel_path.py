"""The direct Clarabel backend's component loop: threads, errors (flexgrid.opf.conic)."""

from __future__ import annotations

import numpy as np
import pytest

from flexgrid.errors import SolverError
from flexgrid.grid import build_view, load_net, synthetic_profiles
from flexgrid.opf import DispatchProblem, conic


def _problem(load: float, slots: int = 4) -> DispatchProblem:
    net = load_net("case33bw")
    view = build_view(net, "case33bw")
    prof = synthetic_profiles(net, view, slot_start_s=17 * 3600, slot_seconds=3600, slot_count=slots, load_scale=load)
    return DispatchProblem(view, prof, slot_seconds=3600, wholesale_eur_per_mwh=60.0)


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
