"""Monte Carlo risk and risk-based FlexRequests, checked against pandapower and fresh scenarios."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest

from flexgrid.errors import InputError
from flexgrid.grid import load_net
from flexgrid.monitoring.network import NetworkModel
from flexgrid.monitoring.powerflow import solve_batch
from flexgrid.monitoring.simulation import sample_injections
from flexgrid.risk.probabilistic import Uncertainty, probabilistic_risk, var_cvar
from flexgrid.risk.requests import RiskPricing, risk_flex_requests, slot_scales
from flexgrid.trading import Direction, FlexRequest

EVENING_PEAK = (18, 19)  # hours of the shipped daily shape where case33bw comes close to 0.9 pu


def test_batched_scenarios_agree_with_pandapower_runpp(case33bw: NetworkModel) -> None:
    rng = np.random.default_rng(12)
    s = sample_injections(case33bw, 2000, rng, load_sigma_rel=0.2, correlation=0.3)
    flow = solve_batch(case33bw, s)
    assert flow.converged.all()
    net = load_net("case33bw")
    for k in rng.choice(2000, size=8, replace=False):
        for li, row in net.load.iterrows():
            pos = case33bw.bus_position(int(row.bus))
            net.load.at[li, "p_mw"] = -s[pos, k].real * case33bw.base_mva
            net.load.at[li, "q_mvar"] = -s[pos, k].imag * case33bw.base_mva
        pp.runpp(net, numba=False)
        ref = net.res_bus.vm_pu.loc[case33bw.bus_ids].to_numpy()
        assert np.max(np.abs(flow.vm_pu[:, k] - ref)) < 1e-6


def test_monte_carlo_report_is_seeded_and_consistent(case33bw: NetworkModel) -> None:
    a = probabilistic_risk(case33bw, n_scenarios=2000, seed=3)
    b = probabilistic_risk(case33bw, n_scenarios=2000, seed=3)
    assert a.any_violation_prob == b.any_violation_prob
    assert np.array_equal(a.shortfall_kw, b.shortfall_kw)
    # violations happen at the far ends of case33bw's feeders, never at the substation
    assert a.any_violation_prob > 0.05
    worst = int(a.bus_ids[np.argmax(a.bus_violation_prob)])
    assert worst in (17, 32)
    assert a.bus_violation_prob[0] == 0
    lo, hi = a.bus_violation_ci
    assert np.all(lo <= a.bus_violation_prob) and np.all(a.bus_violation_prob <= hi)
    assert a.any_violation_ci[0] <= a.any_violation_prob <= a.any_violation_ci[1]
    # shortfall only where there is a violation; VaR <= CVaR, both inside their intervals
    assert np.all((a.shortfall_kw > 0) == ((a.min_vm_pu < 0.9) | (a.max_loading > 1.0)))  # voltage or thermal
    assert 0 <= a.var_kw <= a.cvar_kw
    assert a.var_ci_kw[0] <= a.var_kw <= a.var_ci_kw[1]
    assert a.cvar_ci_kw[0] <= a.cvar_kw <= a.cvar_ci_kw[1]


def test_var_and_cvar_of_a_known_sample() -> None:
    x = np.arange(1, 101, dtype=float)  # 1..100
    var, cvar = var_cvar(x, 0.95)
    assert var == 96.0
    assert cvar == pytest.approx(96 + (1 + 2 + 3 + 4) / 100 / 0.05)


def test_cigre_mv_thermal_and_voltage_risk(cigre_mv: NetworkModel) -> None:
    r = probabilistic_risk(cigre_mv, n_scenarios=2000, seed=1, load_scale=0.8)
    assert 0 < r.any_violation_prob < 1
    assert r.branch_violation_prob.max() > 0  # a transformer or line overloads in some scenarios
    assert np.isfinite(r.cvar_kw)


@pytest.mark.parametrize("net_name", ["case33bw", "kerber_dorfnetz"])
def test_risk_requests_keep_violations_within_epsilon_out_of_sample(
    net_name: str, case33bw: NetworkModel, kerber: NetworkModel
) -> None:
    model = case33bw if net_name == "case33bw" else kerber
    load, pv = slot_scales(0, 3600, 24)
    slots = (15, *EVENING_PEAK)
    eps = 0.05
    plan = risk_flex_requests(
        model, round_id=7, load_scale=load[list(slots)], gen_scale=pv[list(slots)], slots=slots,
        slot_seconds=3600, epsilon=eps, seed=1,
    )
    by_slot = {s.slot: s for s in plan.slots}
    assert by_slot[15].violation_prob_before <= eps and not by_slot[15].flex_kw
    for slot in EVENING_PEAK:
        s = by_slot[slot]
        assert s.violation_prob_before > eps
        assert s.violation_prob_after <= eps
        assert s.violation_prob_out_of_sample <= eps
        assert not s.unresolved
    requests = plan.flex_requests()
    assert requests and all(isinstance(r, FlexRequest) for r in requests)
    for rr in plan.requests:
        r = rr.request
        assert r.direction == Direction.UP and r.round_id == 7
        assert set(r.slots) <= set(EVENING_PEAK)
        assert r.price_cap_eur_per_mwh > 0
        # the cap is the avoided risk cost per MWh, and the premium is part of it
        assert r.price_cap_eur_per_mwh == pytest.approx(
            min(rr.avoided_cost_eur / rr.energy_mwh, 10_000), rel=1e-3
        )
        assert 0 < rr.risk_premium_eur_per_mwh <= rr.expected_value_eur_per_mwh + rr.risk_premium_eur_per_mwh


def test_no_requests_when_the_grid_is_safe(case33bw: NetworkModel) -> None:
    plan = risk_flex_requests(case33bw, round_id=1, load_scale=[0.5, 0.6], n_scenarios=500, n_out_of_sample=500)
    assert plan.requests == ()
    assert all(s.violation_prob_out_of_sample == 0 for s in plan.slots)


def test_bad_risk_inputs_get_typed_errors(case33bw: NetworkModel) -> None:
    with pytest.raises(InputError) as exc:
        risk_flex_requests(case33bw, round_id=1, load_scale=[1.0], epsilon=0.7)
    assert exc.value.field == "epsilon"
    with pytest.raises(InputError) as exc:
        risk_flex_requests(case33bw, round_id=1, load_scale=[1.0, float("nan")])
    assert exc.value.field == "load_scale"
    with pytest.raises(InputError) as exc:
        risk_flex_requests(case33bw, round_id=1, load_scale=[1.0, 1.0], slots=[3, 3])
    assert exc.value.field == "slots"
    with pytest.raises(InputError) as exc:
        Uncertainty(correlation=1.5)
    assert exc.value.field == "uncertainty.correlation"
    with pytest.raises(InputError) as exc:
        RiskPricing(voll_eur_per_mwh=-1)
    assert exc.value.field == "pricing.voll_eur_per_mwh"
    with pytest.raises(InputError) as exc:
        probabilistic_risk(case33bw, n_scenarios=10)
    assert exc.value.field == "n_scenarios"


def test_requests_for_a_demo_round_pass_the_trading_validation(case33bw: NetworkModel) -> None:
    """8 x 15 min from 17:00 UTC with a 400 EUR/MWh round cap: the requests are valid orders of
    the round (slots inside it, cap not above the round's) and the clipped price is explained."""
    from flexgrid.trading import PricingRule, RoundConfig, SealMode, validate_for_round

    start = 1_796_083_200 + 17 * 3600  # 2026-12-01 17:00 UTC
    config = RoundConfig(
        round_id=3, grid_id="case33bw", grid_model_hash="0x" + "11" * 32, slot_start_s=start,
        slot_seconds=900, slot_count=8, gate_closure_s=start - 3600, pricing_rule=PricingRule.PAY_AS_BID,
        seal_mode=SealMode.OPEN, dispute_window_s=3600, price_cap_eur_per_mwh=400.0, tolerance_bps=500,
        penalty_bps=2000, bid_deposit_eur=0.0,
    )
    load, pv = slot_scales(config.slot_start_s, config.slot_seconds, config.slot_count)
    plan = risk_flex_requests(
        case33bw, round_id=config.round_id, load_scale=load, gen_scale=pv, slot_seconds=config.slot_seconds,
        epsilon=0.05, dso="0x" + "ab" * 20, pricing=RiskPricing(max_price_eur_per_mwh=config.price_cap_eur_per_mwh),
        n_scenarios=1000, n_out_of_sample=2000,
    )
    assert plan.requests
    for rr in plan.requests:
        validate_for_round(rr.request, config, now_s=start - 7200)
        assert rr.request.price_cap_eur_per_mwh == 400.0
        assert rr.avoided_cost_eur / rr.energy_mwh > 400.0  # the uncapped value, for the explanation


def test_probabilistic_risk_on_mv_oberrhein_with_two_external_grids(mv_oberrhein: NetworkModel) -> None:
    from flexgrid.risk import probabilistic_risk

    report = probabilistic_risk(mv_oberrhein, n_scenarios=500, seed=1)
    assert report.bus_violation_prob[mv_oberrhein.slacks].sum() == 0.0  # the external grids hold their voltage
    assert 0.0 <= report.any_violation_prob <= 1.0
    assert report.min_vm_pu.min() > 0.8
