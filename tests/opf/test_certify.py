"""Slots certified from the AC operating point without a solver (flexgrid.opf.certify): the same optimum,
prices and KKT conditions as the solver's, and every slot where that point is not optimal left to it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.opf.helpers import case33bw_evening, kkt_ok


def test_uncongested_slots_are_certified_with_the_solvers_optimum_and_prices() -> None:
    # at 1.1 x the load two evening hours stay within every limit (certified), two fall below 0.91 pu
    # (left to Clarabel): the whole result is the solver's, to its tolerance, and exact where certified
    prob, fast = case33bw_evening(1.1)
    _, slow = case33bw_evening(1.1, certify=False)
    assert (fast.solution.components, fast.solution.certified) == (4, 2)
    assert slow.solution.certified == 0
    assert fast.solution.objective == pytest.approx(slow.solution.objective, rel=1e-8)
    # prices to the interior point method's accuracy (about 1e-6 relative; the certified ones are exact)
    np.testing.assert_allclose(fast.dlmp_eur_per_mwh, slow.dlmp_eur_per_mwh, rtol=2e-6, atol=1e-6)
    for name in ("energy", "losses", "congestion", "voltage"):
        np.testing.assert_allclose(fast.components[name], slow.components[name], rtol=2e-6, atol=1e-4)
    assert fast.v_pu is not None and slow.v_pu is not None
    np.testing.assert_allclose(fast.v_pu, slow.v_pu, atol=1e-8)
    assert [(v.kind, v.element, v.slot) for v in fast.violations] == [(v.kind, v.element, v.slot)
                                                                      for v in slow.violations]
    assert kkt_ok(prob, fast.solution, 1e-8)
    assert fast.relaxation_gap_mw is not None and fast.relaxation_gap_mw < 1e-9


def test_an_offer_in_the_money_is_not_certified_and_the_solver_takes_it() -> None:
    # at 20 EUR/MWh against 60 the offer should run: the AC point with it idle is not optimal there
    # (its reduced cost is negative), so its slot goes to Clarabel; one at 500 EUR/MWh stays idle, certified
    for price, runs, certified in ((20.0, True, 3), (500.0, False, 4)):
        prob, res = case33bw_evening(1.0, offer_eur_per_mwh=price)
        x = res.solution.x[prob.model.blocks["offer_x"].idx()][0, 0]
        assert res.solution.certified == certified
        assert x == pytest.approx(0.2 if runs else 0.0, abs=1e-7)  # x in MW (withdrawal coefficient -1 MW)
        assert kkt_ok(prob, res.solution, 1e-8)


def test_a_candidate_off_the_power_flow_is_polished_to_the_same_point() -> None:
    # every entry of the candidate off by ~1e-9 relative (a power flow stopped early; the active set is
    # still clear): Newton's method on the equalities and tight cones brings it back to the operating point
    _, exact = case33bw_evening(1.0)
    prob, polished = case33bw_evening(1.0, perturb=1e-9)
    assert exact.solution.certified == 4
    assert polished.solution.certified == 4
    np.testing.assert_allclose(polished.solution.x, exact.solution.x, atol=1e-10)
    assert kkt_ok(prob, polished.solution, 1e-8)


def test_a_candidate_that_violates_a_limit_is_left_to_the_solver() -> None:
    # at twice the load every slot violates v_min at the AC point: nothing certified, soft violations reported
    _, res = case33bw_evening(2.0)
    assert (res.solution.components, res.solution.certified) == (4, 0)
    assert res.violations
