"""Meter placement: the greedy result meets the accuracy target in seeded trials, is as good as
exhaustive search for up to three meters, and the robust option survives one failed meter."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from flexgrid.errors import InputError
from flexgrid.monitoring.measurements import PseudoConfig, substation_meter
from flexgrid.monitoring.network import NetworkModel
from flexgrid.monitoring.placement import (
    DEFAULT_METER_TYPES,
    _Evaluator,
    best_k_meters,
    greedy_placement,
)
from flexgrid.monitoring.simulation import run_trials

PSEUDO_50 = PseudoConfig(load_sigma_rel=0.5)  # the upper forecast uncertainty


def test_placement_meets_the_target_in_seeded_trials(case33bw: NetworkModel) -> None:
    """Every bus within 1 % with ≥95 % probability (300 trials; 2.5 % sampling allowance)."""
    placement = greedy_placement(case33bw, pseudo=PSEUDO_50)
    assert placement.meets_target and placement.meters
    baseline = placement.curve[0]
    assert baseline.error_bound_pu > 0.01  # the substation meter alone is not enough
    meters = [substation_meter(case33bw), *placement.as_meters()]
    trials = run_trials(case33bw, meters, 300, seed=21, pseudo=PSEUDO_50)
    share_within = np.mean(trials.abs_error_pu <= 0.01, axis=0)
    assert share_within.min() >= 0.925
    # and without the chosen meters some bus misses it
    bare = run_trials(case33bw, [substation_meter(case33bw)], 300, seed=21, pseudo=PSEUDO_50)
    assert np.mean(bare.abs_error_pu <= 0.01, axis=0).min() < 0.95


@pytest.mark.parametrize("net_name", ["case33bw", "cigre_mv"])
def test_cost_accuracy_curve_falls_as_meters_are_added(
    net_name: str, case33bw: NetworkModel, cigre_mv: NetworkModel
) -> None:
    model = case33bw if net_name == "case33bw" else cigre_mv
    placement = greedy_placement(model, pseudo=PSEUDO_50, continue_after_target=3)
    costs = [p.cost_eur for p in placement.curve]
    bounds = [p.error_bound_pu for p in placement.curve]
    assert costs == sorted(costs) and len(costs) >= 4
    assert all(b2 <= b1 + 1e-12 for b1, b2 in itertools.pairwise(bounds))
    assert placement.cost_eur == next(p.cost_eur for p in placement.curve if p.error_bound_pu <= 0.01)


def test_greedy_cost_is_minimal_against_all_one_and_two_meter_sets(case33bw: NetworkModel) -> None:
    placement = greedy_placement(case33bw, pseudo=PSEUDO_50)
    ev = _Evaluator(case33bw, PSEUDO_50, 1.0)
    cands = [(int(b), t) for i, b in enumerate(case33bw.bus_ids) if i != case33bw.slack for t in DEFAULT_METER_TYPES]
    gains = {(b, t.name): ev.gain_of(t.at(b)) for b, t in cands}
    cheapest = np.inf
    for k in (1, 2):
        for combo in itertools.combinations(cands, k):
            if len({b for b, _ in combo}) < k:
                continue
            g = ev.g_base + sum(gains[(b, t.name)] for b, t in combo)
            bound = 1.959964 * ev.vm_std(g[None])[0].max()
            if bound <= 0.01:
                cheapest = min(cheapest, sum(t.cost_eur for _, t in combo))
    assert placement.cost_eur <= 1.1 * cheapest


@pytest.mark.parametrize("net_name", ["case33bw", "cigre_mv"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_greedy_is_within_10_percent_of_exhaustive_search(
    net_name: str, k: int, case33bw: NetworkModel, cigre_mv: NetworkModel
) -> None:
    model = case33bw if net_name == "case33bw" else cigre_mv
    _, exact = best_k_meters(model, k, pseudo=PSEUDO_50)
    _, greedy = best_k_meters(model, k, pseudo=PSEUDO_50, exhaustive=False)
    assert exact <= greedy <= 1.1 * exact


def test_robust_placement_survives_any_one_meter_failing(case33bw: NetworkModel) -> None:
    robust = greedy_placement(case33bw, pseudo=PSEUDO_50, robust=True)
    plain = greedy_placement(case33bw, pseudo=PSEUDO_50)
    assert robust.meets_target and len(robust.meters) >= 2
    assert robust.cost_eur >= plain.cost_eur
    ev = _Evaluator(case33bw, PSEUDO_50, 1.0)
    types = {t.name: t for t in DEFAULT_METER_TYPES}
    gains = [ev.gain_of(types[t].at(b)) for b, t in robust.meters]
    for failed in range(len(gains)):
        g = ev.g_base + sum(gi for j, gi in enumerate(gains) if j != failed)
        assert 1.959964 * ev.vm_std(g[None])[0].max() <= 0.01
    # the plain placement does not survive the failure of its single meter
    if len(plain.meters) == 1:
        assert 1.959964 * ev.vm_std(ev.g_base[None])[0].max() > 0.01


def test_bad_placement_inputs_get_typed_errors(case33bw: NetworkModel) -> None:
    with pytest.raises(InputError) as exc:
        greedy_placement(case33bw, tolerance_pu=0)
    assert exc.value.field == "tolerance_pu"
    with pytest.raises(InputError) as exc:
        greedy_placement(case33bw, candidate_buses=[3, 77])
    assert exc.value.field == "candidate_buses"
    with pytest.raises(InputError) as exc:
        greedy_placement(case33bw, probability=1.5)
    assert exc.value.field == "probability"


def test_milp_placement_is_verified_and_optimal_on_case33bw(case33bw: NetworkModel) -> None:
    """At a tight target (0.5 %), no one- or two-meter set of any type meets it, and the MILP
    meets it with three voltage meters, the cheapest possible three; greedy pays more."""
    from flexgrid.monitoring.placement import milp_placement

    tol = 0.005
    milp = milp_placement(case33bw, pseudo=PSEUDO_50, tolerance_pu=tol)
    greedy = greedy_placement(case33bw, pseudo=PSEUDO_50, tolerance_pu=tol)
    assert milp.meets_target and milp.error_bound_pu <= tol
    assert milp.cost_eur <= greedy.cost_eur
    ev = _Evaluator(case33bw, PSEUDO_50, 1.0)
    cands = [(int(b), t) for i, b in enumerate(case33bw.bus_ids) if i != case33bw.slack for t in DEFAULT_METER_TYPES]
    gains = np.stack([ev.gain_of(t.at(b)) for b, t in cands])
    for k in (1, 2):
        idx = np.array([c for c in itertools.combinations(range(len(cands)), k)
                        if len({cands[i][0] for i in c}) == k])
        bound = 1.959964 * ev.vm_std(ev.g_base[None] + gains[idx].sum(axis=1)).max(axis=1)
        assert bound.min() > tol
    cheapest_three = 3 * min(t.cost_eur for t in DEFAULT_METER_TYPES)
    assert milp.cost_eur == cheapest_three
    # the MILP's own check agrees with an independent evaluation of its meters
    types = {t.name: t for t in DEFAULT_METER_TYPES}
    g = ev.g_base + sum(ev.gain_of(types[t].at(b)) for b, t in milp.meters)
    assert 1.959964 * ev.vm_std(g[None])[0].max() == pytest.approx(milp.error_bound_pu, rel=1e-6)


def test_robust_milp_survives_any_one_meter_failing(cigre_mv: NetworkModel) -> None:
    from flexgrid.monitoring.placement import milp_placement

    robust = milp_placement(cigre_mv, pseudo=PSEUDO_50, tolerance_pu=0.005, robust=True)
    plain = milp_placement(cigre_mv, pseudo=PSEUDO_50, tolerance_pu=0.005)
    assert robust.meets_target and robust.robust and len(robust.meters) >= 2
    assert robust.cost_eur >= plain.cost_eur
    ev = _Evaluator(cigre_mv, PSEUDO_50, 1.0)
    types = {t.name: t for t in DEFAULT_METER_TYPES}
    gains = [ev.gain_of(types[t].at(b)) for b, t in robust.meters]
    for failed in range(len(gains)):
        g = ev.g_base + sum(gi for j, gi in enumerate(gains) if j != failed)
        assert 1.959964 * ev.vm_std(g[None])[0].max() <= 0.005
