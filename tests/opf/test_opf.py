"""The OPF layer: each formulation on real nets, AC agreement, price decomposition, devices, status checks."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pandapower as pp
import pytest

from flexgrid.errors import InputError, SolverError
from flexgrid.grid import GridView, Profiles, build_view, load_net, synthetic_profiles
from flexgrid.opf import (
    Battery,
    CurtailablePV,
    Devices,
    DispatchProblem,
    EVCharger,
    ShiftableLoad,
    validate_ac,
)
from flexgrid.opf.problem import PENALTY_I_EUR
from tests.opf.helpers import add_offers, kkt_ok

EVENING_S = 17 * 3600


@cache
def _grid(name: str) -> tuple[pp.pandapowerNet, GridView]:
    net = load_net(name)
    return net, build_view(net, name)


def _profiles(name: str, slots: int = 4, slot_s: int = 3600, start_s: int = EVENING_S, load: float = 1.0) -> Profiles:
    net, view = _grid(name)
    return synthetic_profiles(net, view, slot_start_s=start_s, slot_seconds=slot_s, slot_count=slots, load_scale=load)


@pytest.mark.parametrize("name", ["case33bw", "cigre_mv", "mv_oberrhein"])
def test_socp_matches_an_ac_power_flow(name: str) -> None:
    # cigre_mv: open switches and dangling lines; mv_oberrhein: two substations, off-nominal taps
    net, view = _grid(name)
    prob = DispatchProblem(view, _profiles(name), slot_seconds=3600, wholesale_eur_per_mwh=60.0)
    res = prob.solve()
    assert res.relaxation_gap_mw is not None and res.relaxation_gap_mw < 1e-5  # below 10 W: exact
    ac = validate_ac(net, view, res.withdrawal_p_mw, res.withdrawal_q_mvar, res.v_pu, slots=[0, 3])
    assert ac.max_v_error_pu is not None and ac.max_v_error_pu < 1e-4
    assert kkt_ok(prob, res.solution)


@pytest.mark.parametrize("formulation", ["socp", "lindistflow"])
def test_direct_solver_calls_and_cvxpy_give_the_same_optimum(formulation: str) -> None:
    _, view = _grid("case33bw")
    direct = DispatchProblem(view, _profiles("case33bw", load=1.5), slot_seconds=3600, wholesale_eur_per_mwh=60.0,
                             formulation=formulation)
    via_cvxpy = DispatchProblem(view, _profiles("case33bw", load=1.5), slot_seconds=3600, wholesale_eur_per_mwh=60.0,
                                formulation=formulation)
    a, b = direct.solve(backend="direct"), via_cvxpy.solve(backend="cvxpy")
    assert a.solution.objective == pytest.approx(b.solution.objective, rel=1e-7)
    np.testing.assert_allclose(a.dlmp_eur_per_mwh, b.dlmp_eur_per_mwh, rtol=1e-5, atol=1e-3)
    assert kkt_ok(direct, a.solution) and kkt_ok(via_cvxpy, b.solution)


@pytest.mark.parametrize("name", ["case33bw", "kerber_dorfnetz"])
def test_lindistflow_is_an_approximation_within_a_few_percent(name: str) -> None:
    net, view = _grid(name)
    prob = DispatchProblem(view, _profiles(name), slot_seconds=3600, wholesale_eur_per_mwh=60.0,
                           formulation="lindistflow")
    res = prob.solve()
    ac = validate_ac(net, view, res.withdrawal_p_mw, res.withdrawal_q_mvar, res.v_pu, slots=[0])
    assert ac.max_v_error_pu is not None and 0 < ac.max_v_error_pu < 0.03
    assert kkt_ok(prob, res.solution)


@pytest.mark.parametrize(("name", "formulation"), [("case118", "dc"), ("case33bw", "dc"),
                                                   ("case33bw", "copperplate"), ("kerber_dorfnetz", "copperplate")])
def test_dc_and_copper_plate_balance_the_load(name: str, formulation: str) -> None:
    _, view = _grid(name)
    prof = _profiles(name, slots=2)
    res = DispatchProblem(view, prof, slot_seconds=3600, wholesale_eur_per_mwh=60.0, formulation=formulation).solve()
    # lossless: the substation supplies exactly the net load (shunt conductances aside)
    assert res.slack_p_mw.sum(axis=0) == pytest.approx(prof.net_withdrawal_mw().sum(axis=0), rel=1e-3)


def test_branch_flow_on_a_meshed_net_names_the_formulation_to_use() -> None:
    _, view = _grid("case118")
    with pytest.raises(InputError, match="--formulation dc") as err:
        DispatchProblem(view, _profiles("case118", slots=1), slot_seconds=3600, wholesale_eur_per_mwh=60.0).solve()
    assert err.value.field == "formulation"


def test_dlmp_components_add_up_with_losses_voltage_and_congestion() -> None:
    # kerber at 1.3x the evening peak overloads its transformer; case33bw at 1.5x hits 0.90 pu.
    for name, load, binding in (("kerber_dorfnetz", 1.3, "congestion"), ("case33bw", 1.5, "voltage")):
        _, view = _grid(name)
        prob = DispatchProblem(view, _profiles(name, load=load), slot_seconds=3600, wholesale_eur_per_mwh=60.0,
                               devices=Devices(batteries=(Battery("b", int(view.bus_of_node[-1]), 0.2, 0.05, 0.05, 0.1),)))
        res = prob.solve()
        total = sum(res.components.values())
        assert np.max(np.abs(total - res.dlmp_eur_per_mwh)) < 1e-5
        assert res.components["energy"] == pytest.approx(np.full_like(total, 60.0))
        assert np.max(np.abs(res.components["losses"])) > 0.1  # losses are priced
        assert np.max(np.abs(res.components[binding])) > 1.0


def test_lindistflow_prices_have_no_loss_component_and_add_up() -> None:
    _, view = _grid("case33bw")
    prob = DispatchProblem(view, _profiles("case33bw", load=1.5), slot_seconds=3600, wholesale_eur_per_mwh=60.0,
                           formulation="lindistflow")
    res = prob.solve()
    assert np.max(np.abs(res.components["losses"])) < 1e-9
    assert np.max(np.abs(sum(res.components.values()) - res.dlmp_eur_per_mwh)) < 1e-6


def test_soft_limits_report_where_when_and_how_much() -> None:
    _, view = _grid("case33bw")
    res = DispatchProblem(view, _profiles("case33bw", load=2.0), slot_seconds=3600,
                          wholesale_eur_per_mwh=60.0).solve()
    assert res.violations, "a grid loaded twice over must violate its voltage limits"
    worst = max((v for v in res.violations if v.kind == "v_min"), key=lambda v: v.amount)  # lines overload too
    assert worst.kind == "v_min" and worst.element == "bus 17"
    assert res.v_pu is not None
    assert 0.9 - res.v_pu[17, worst.slot] == pytest.approx(worst.amount, abs=1e-6)


def test_battery_charges_cheap_and_discharges_expensive() -> None:
    _, view = _grid("case33bw")
    prices = np.array([20.0, 20.0, 200.0, 200.0])
    bat = Battery("b", 17, energy_mwh=0.4, p_charge_mw=0.2, p_discharge_mw=0.2, soc_initial_mwh=0.0,
                  soc_final_min_mwh=0.0, eta_charge=0.9, eta_discharge=0.9)
    prob = DispatchProblem(view, _profiles("case33bw", load=0.5), slot_seconds=3600, wholesale_eur_per_mwh=prices,
                           devices=Devices(batteries=(bat,)))
    res = prob.solve()
    x = res.solution.x
    ch = x[prob.model.blocks["bat_ch"].idx()][0]
    dis = x[prob.model.blocks["bat_dis"].idx()][0]
    soc = x[prob.model.blocks["bat_soc"].idx()][0]
    assert ch[:2] == pytest.approx([0.2, 0.2], abs=1e-5)
    assert dis[2:].sum() == pytest.approx(0.4 * 0.9 * 0.9, abs=1e-4)
    assert soc.max() <= 0.4 + 1e-6 and soc[-1] == pytest.approx(0.0, abs=1e-5)


def test_shiftable_load_and_ev_keep_their_energy_at_any_slot_length() -> None:
    _, view = _grid("case33bw")
    for slot_s, slots in ((900, 16), (1800, 8), (3600, 4)):
        prices = np.linspace(100, 10, slots)  # cheapest at the end
        dev = Devices(shiftable=(ShiftableLoad("s", 10, energy_mwh=0.1, p_max_mw=0.1, start_slot=0, end_slot=slots),),
                      evs=(EVCharger("e", 20, energy_mwh=0.02, p_max_mw=0.011, arrival_slot=0,
                                     departure_slot=slots, eta=1.0),))
        prob = DispatchProblem(view, _profiles("case33bw", slots=slots, slot_s=slot_s, load=0.5), slot_seconds=slot_s,
                               wholesale_eur_per_mwh=prices, devices=dev)
        x = prob.solve().solution.x
        h = slot_s / 3600
        shift = x[prob.model.blocks["shift_p"].idx()][0]
        ev = x[prob.model.blocks["ev_p"].idx()][0]
        assert shift.sum() * h == pytest.approx(0.1, abs=1e-6)
        assert ev.sum() * h == pytest.approx(0.02, abs=1e-6)
        assert shift[-1] == pytest.approx(0.1, abs=1e-5)  # the cheapest slot is used first


def test_pv_is_curtailed_when_energy_has_a_negative_price() -> None:
    _, view = _grid("case33bw")
    pv = CurtailablePV("pv", 25, available_mw=(0.3, 0.3), cost_eur_per_mwh=0.0)
    prob = DispatchProblem(view, _profiles("case33bw", slots=2), slot_seconds=3600,
                           wholesale_eur_per_mwh=[50.0, -20.0], devices=Devices(pv=(pv,)), formulation="lindistflow")
    curt = prob.solve().solution.x[prob.model.blocks["pv_curtail"].idx()][0]
    assert curt == pytest.approx([0.0, 0.3], abs=1e-5)


def test_socp_reports_an_inexact_relaxation_under_negative_prices() -> None:
    # With a negative energy price, burning power in fictitious losses pays: the relaxation
    # is no longer exact, and the result says so.
    _, view = _grid("case33bw")
    exact = DispatchProblem(view, _profiles("case33bw", slots=2), slot_seconds=3600, wholesale_eur_per_mwh=50.0)
    inexact = DispatchProblem(view, _profiles("case33bw", slots=2), slot_seconds=3600,
                              wholesale_eur_per_mwh=[50.0, -20.0])
    gap_exact = exact.solve().relaxation_gap_mw
    gap_inexact = inexact.solve().relaxation_gap_mw
    assert gap_exact is not None and gap_exact < 1e-5
    assert gap_inexact is not None and gap_inexact > 1e-3


def test_an_infeasible_problem_raises_solver_error_with_its_status() -> None:
    _, view = _grid("case33bw")
    bat = Battery("b", 5, energy_mwh=1.0, p_charge_mw=0.01, p_discharge_mw=0.01, soc_initial_mwh=0.0,
                  soc_final_min_mwh=1.0)  # cannot reach 1 MWh at 10 kW in 4 hours
    prob = DispatchProblem(view, _profiles("case33bw"), slot_seconds=3600, wholesale_eur_per_mwh=60.0,
                           devices=Devices(batteries=(bat,)))
    with pytest.raises(SolverError) as err:
        prob.solve()
    assert "infeasible" in err.value.status


def test_bad_device_and_profile_input_is_named() -> None:
    _, view = _grid("case33bw")
    with pytest.raises(InputError, match="eta_charge"):
        Battery("b", 5, 1.0, 0.1, 0.1, 0.0, eta_charge=1.5)
    with pytest.raises(InputError, match="bus 999"):
        DispatchProblem(view, _profiles("case33bw"), slot_seconds=3600, wholesale_eur_per_mwh=60.0,
                        devices=Devices(batteries=(Battery("b", 999, 1.0, 0.1, 0.1, 0.0),)))
    with pytest.raises(InputError, match="wholesale"):
        DispatchProblem(view, _profiles("case33bw"), slot_seconds=3600, wholesale_eur_per_mwh=float("nan"))


@pytest.mark.parametrize("name", ["kerber_dorfnetz", "mv_oberrhein"])
def test_thermal_violations_match_pandapower_loading(name: str) -> None:
    # Overloaded transformers: the OPF's thermal slack says by how much, pandapower's AC loading agrees
    # (terminal currents of the pi model, in front of an off-nominal tap on mv_oberrhein).
    net, view = _grid(name)
    prof = _profiles(name, slots=2, start_s=18 * 3600, load=1.3)
    res = DispatchProblem(view, prof, slot_seconds=3600, wholesale_eur_per_mwh=60.0).solve()
    thermal = [v for v in res.violations if v.kind == "thermal"]
    assert thermal
    ac = validate_ac(net, view, res.withdrawal_p_mw, res.withdrawal_q_mvar, res.v_pu)
    assert max(v.amount for v in thermal) == pytest.approx(ac.max_loading_percent - 100.0, abs=0.1)


def test_a_grid_on_a_far_too_large_power_base_is_rebased_with_the_same_results() -> None:
    # LV feeders often come on a 100 MVA base (ieee_european_lv): loads of 1e-4 pu cost Clarabel
    # three times the iterations, so the model works on a base near the load; prices and dispatch
    # must not change, and the duals stay per unit of the grid's own base (the certificate's).
    _, view = _grid("case33bw")
    big = view.rebased(view.base_mva * 1000)
    assert big.model_hash() != view.model_hash()
    own = DispatchProblem(view, _profiles("case33bw", load=1.5), slot_seconds=3600, wholesale_eur_per_mwh=60.0)
    # lines overload at 1.5x: the thermal penalty is per pu^2 of the grid's base, the same physical one here
    far = DispatchProblem(big, _profiles("case33bw", load=1.5), slot_seconds=3600, wholesale_eur_per_mwh=60.0,
                          penalty_i_eur=PENALTY_I_EUR * 1000**2)
    assert own.base == far.base == view.base_mva and far.price_base == big.base_mva
    a, b = own.solve(), far.solve()
    assert b.solution.objective == pytest.approx(a.solution.objective, rel=1e-7)
    np.testing.assert_allclose(b.dlmp_eur_per_mwh, a.dlmp_eur_per_mwh, rtol=1e-5, atol=1e-3)  # as direct vs cvxpy
    assert b.v_pu is not None and a.v_pu is not None
    np.testing.assert_allclose(b.v_pu, a.v_pu, atol=1e-7)
    z = far.model.group("balance_p")
    assert np.allclose(b.dlmp_eur_per_mwh, (-b.solution.z[z.name] / big.base_mva).reshape(4, -1).T)
    assert kkt_ok(far, b.solution)


def test_independent_slots_are_solved_apart_and_coupled_ones_together() -> None:
    # without devices every slot is its own problem; a battery couples them all
    _, view = _grid("case33bw")
    for devices, parts in ((None, 4), (Devices(batteries=(Battery("b", 17, 0.4, 0.2, 0.2, 0.1),)), 1)):
        prob = DispatchProblem(view, _profiles("case33bw"), slot_seconds=3600, wholesale_eur_per_mwh=60.0,
                               devices=devices)
        prob.build()
        _, a, _, cone, _ = prob.model._stacked()
        assert prob.model.components(a, cone)[0] == parts
        res = prob.solve()
        whole_problem = DispatchProblem(view, _profiles("case33bw"), slot_seconds=3600, wholesale_eur_per_mwh=60.0,
                                        devices=devices)
        whole_problem.model.solver_options.update(tol_feas=1e-10, tol_gap_abs=1e-10, tol_gap_rel=1e-10)
        whole = whole_problem.solve(backend="cvxpy")  # one problem, tight tolerances
        assert res.solution.objective == pytest.approx(whole.solution.objective, rel=1e-6)  # the certificate gap
        assert kkt_ok(prob, res.solution)


def test_lazy_thermal_cones_give_the_optimum_of_the_whole_problem() -> None:
    # kerber at 1.3x overloads its transformer: some thermal cones bind, most are left out of the
    # solve (zero duals); the result is that of the problem with every cone (cvxpy), KKT included.
    _, view = _grid("kerber_dorfnetz")
    lazy = DispatchProblem(view, _profiles("kerber_dorfnetz", load=1.3), slot_seconds=3600, wholesale_eur_per_mwh=60.0)
    whole = DispatchProblem(view, _profiles("kerber_dorfnetz", load=1.3), slot_seconds=3600, wholesale_eur_per_mwh=60.0)
    a, b = lazy.solve(), whole.solve(backend="cvxpy")
    z = a.solution.z["thermal"].reshape(-1, 4)
    assert 0 < np.count_nonzero(np.any(z != 0, axis=1)) < len(z) / 2
    assert a.solution.objective == pytest.approx(b.solution.objective, rel=1e-6)
    np.testing.assert_allclose(a.dlmp_eur_per_mwh, b.dlmp_eur_per_mwh, rtol=1e-5, atol=1e-3)
    assert np.max(np.abs(a.components["congestion"])) > 1.0
    assert kkt_ok(lazy, a.solution)


def test_soft_limit_slacks_left_out_first_still_give_the_soft_optimum() -> None:
    # The direct backend first solves with hard limits (slacks fixed at 0) and adds a slack where the
    # limit's dual reaches the penalty: twice the load must still violate v_min, with the optimum and
    # prices of the problem with every slack (cvxpy), KKT included; at normal load no slack is used and
    # the slacks' bound duals are their reduced costs.
    _, view = _grid("case33bw")
    for load, violated in ((2.0, True), (1.0, False)):
        lazy = DispatchProblem(view, _profiles("case33bw", load=load), slot_seconds=3600, wholesale_eur_per_mwh=60.0)
        whole = DispatchProblem(view, _profiles("case33bw", load=load), slot_seconds=3600, wholesale_eur_per_mwh=60.0)
        a, b = lazy.solve(), whole.solve(backend="cvxpy")
        assert bool(a.violations) is violated
        assert [(v.kind, v.element, v.slot) for v in a.violations] == [(v.kind, v.element, v.slot) for v in b.violations]
        assert a.solution.objective == pytest.approx(b.solution.objective, rel=1e-6)
        np.testing.assert_allclose(a.dlmp_eur_per_mwh, b.dlmp_eur_per_mwh, rtol=1e-5, atol=1e-3)
        assert kkt_ok(lazy, a.solution)
        if not violated:  # every slack left out: its bound's dual is its reduced cost, positive
            assert np.all(a.solution.z["slack_v_min.lower"] > 0)


def test_an_offer_left_out_as_far_out_of_the_money_is_taken_when_prices_call_for_it() -> None:
    # Offers costing more than twice their energy at the wholesale price start out of the solve (fixed at
    # 0); at twice the load the limits' penalties lift the far end's price above 500 EUR/MWh, so the offer
    # at 500 there must come back in and run at its maximum, the one at 1e6 EUR/MWh stays at 0: the
    # optimum and prices of the whole problem (cvxpy), KKT included.
    _, view = _grid("case33bw")
    results = []
    for backend in ("direct", "cvxpy"):
        prob = DispatchProblem(view, _profiles("case33bw", load=2.0), slot_seconds=3600, wholesale_eur_per_mwh=60.0)
        idx = add_offers(prob, view, (17, 17), 0.2, [[500.0], [1e6]])
        res = prob.solve(backend=backend)
        results.append((prob, res, res.solution.x[idx]))
    (lazy, a, xa), (_, b, xb) = results
    assert lazy.model.group("offer_x.upper").lazy  # both started out of the solve
    np.testing.assert_allclose(xa[0], 0.2, atol=1e-6)
    np.testing.assert_allclose(xa[1], 0.0, atol=1e-6)
    np.testing.assert_allclose(xa, xb, atol=1e-5)
    assert a.solution.objective == pytest.approx(b.solution.objective, rel=1e-6)
    np.testing.assert_allclose(a.dlmp_eur_per_mwh, b.dlmp_eur_per_mwh, rtol=1e-5, atol=1e-3)
    assert kkt_ok(lazy, a.solution)


def test_an_upper_voltage_limit_left_out_is_added_when_injections_reach_it() -> None:
    # v_max rows start out of the solve where the base state is far below them; an injection at the far
    # end that is paid to run pushes bus 17 up to its limit (lines without a current limit here): the row
    # must come back in and bind, with the optimum and prices of the whole problem (cvxpy), KKT included.
    _, full = _grid("case33bw")
    view = dataclasses.replace(full, i_max_pu=np.full(full.n_branch, np.inf))
    results = []
    for backend in ("direct", "cvxpy"):
        prob = DispatchProblem(view, _profiles("case33bw", load=0.5), slot_seconds=3600, wholesale_eur_per_mwh=60.0)
        add_offers(prob, view, (17,), 30.0, -100.0)
        res = prob.solve(backend=backend)
        results.append((prob, res))
    (lazy, a), (_, b) = results
    v_max = lazy.model.group("v_max")
    assert v_max.lazy and v_max.lazy_start is not None and not np.any(v_max.lazy_start)  # all left out at first
    assert a.v_pu is not None and np.max(a.v_pu) == pytest.approx(1.1, abs=1e-6)
    assert np.any(a.solution.z["v_max"] > 1e-3)
    assert a.solution.objective == pytest.approx(b.solution.objective, rel=1e-6)
    np.testing.assert_allclose(a.dlmp_eur_per_mwh, b.dlmp_eur_per_mwh, rtol=1e-5, atol=1e-3)
    assert kkt_ok(lazy, a.solution)
