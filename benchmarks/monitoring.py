"""Monitoring and risk benchmark (`make bench`): prints tables and writes benchmarks/results/monitoring.md.

1. State estimation, case33bw and kerber_dorfnetz: time per snapshot and per 96-slot day of
   FlexGrid's WLS against pandapower's own `estimate` on the same measurements; the accuracy,
   uncertainty and bad-data figures of 100 seeded trials; a 15σ error in any real meter channel of a
   bad-data detectable placement (case33bw, cigre_mv), and the channel check of the accuracy metering.
   N-1 and Monte Carlo also on mv_oberrhein (two external grids).
2. N-1: all single outages with tie-switch search (FlexGrid) against pandapower's contingency
   analysis (`run_contingency`, no restoration) and a `runpp` loop doing the same tie search.
3. Monte Carlo: scenarios per second of the batched power flow against a loop of `runpp`, and
   the out-of-sample violation rate of the risk-based FlexRequests.
4. Meter placement: greedy (+ swap) against exhaustive search for 1..3 meters.

Usage: python benchmarks/monitoring.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

warnings.filterwarnings("ignore")
logging.getLogger("pandapower").setLevel(logging.ERROR)
OUT = Path(__file__).resolve().parent / "results" / "monitoring.md"
LINES: list[str] = []


def emit(text: str = "") -> None:
    print(text, flush=True)
    LINES.append(text)


def table(headers: list[str], rows: list[list[str]]) -> None:
    emit("| " + " | ".join(headers) + " |")
    emit("|" + "|".join("---" for _ in headers) + "|")
    for r in rows:
        emit("| " + " | ".join(r) + " |")
    emit()


def _meters(name: str, model, net):  # type: ignore[no-untyped-def]
    from flexgrid.monitoring import Meter, substation_meter

    if name == "case33bw":
        buses = [5, 12, 29]
    elif name == "cigre_mv":
        buses = [4, 7, 13]  # the exhaustive best three (section 4)
    else:
        buses = [int(net.load.bus.iloc[i]) for i in (10, 30, 50)]
    return [substation_meter(model), *(Meter(bus=b) for b in buses)]


def bench_estimation(quick: bool) -> None:
    import pandapower as pp
    from pandapower.estimation import estimate as pp_estimate

    from flexgrid.grid import daily_shapes, load_net
    from flexgrid.monitoring import (
        Kind,
        MeasurementSet,
        Source,
        build_model,
        estimate_series,
        meter_channels,
        pseudo_measurements,
        run_trials,
        simulate_readings,
        solve_batch,
    )

    emit("## 1. State estimation")
    emit()
    emit("Substation meter + 3 meters (voltage and P/Q flow of the feeding line; σ_V = 0.001 pu, "
         "σ_flow = 1 %), pseudo-loads at σ = 30 %, zero-injection buses exact.")
    emit()
    timing_rows = []
    acc_rows = []
    load_shape, _ = daily_shapes()
    for name in ("case33bw", "kerber_dorfnetz", "cigre_mv"):
        net = load_net(name)
        model = build_model(net, name)
        meters = _meters(name, model, net)
        channels = meter_channels(model, meters)
        rng = np.random.default_rng(1)
        truths = solve_batch(model, (-(model.load_p_pu + 1j * model.load_q_pu)[:, None] * load_shape[None, :]).astype(np.complex128))
        sets = []
        for t in range(96):
            ps = pseudo_measurements(model, load_shape[t] * model.load_p_pu, load_shape[t] * model.load_q_pu)
            sets.append(MeasurementSet.concat([simulate_readings(model, channels, truths.v[:, t], rng), ps]))
        estimate_series(model, sets[:2])  # warm-up
        t0 = time.perf_counter()
        day = estimate_series(model, sets)
        ours_day = time.perf_counter() - t0
        worst = max(float(np.max(np.abs(e.vm_pu - truths.vm_pu[:, t]))) for t, e in enumerate(day))
        # pandapower's estimate on the same measurements, a few slots, extrapolated to the day
        n_pp = 3 if quick else 8
        pp_times = []
        pp_diff = 0.0
        # pandapower keeps the charging of a line behind an open switch; the model opens it entirely
        ties_out = copy.deepcopy(net)
        open_sw = ties_out.switch[(ties_out.switch.et == "l") & ~ties_out.switch.closed.astype(bool)]
        for si, row in open_sw.iterrows():
            ties_out.line.at[row.element, "in_service"] = False
            ties_out.switch.at[si, "closed"] = True
        for t in range(0, 96, 96 // n_pp)[:n_pp]:
            pnet = copy.deepcopy(ties_out)
            # pandapower's solver needs zero-injection measurements less extreme than ours (1e-6 pu)
            ms = sets[t]
            ms = MeasurementSet(ms.kind, ms.element, ms.value,
                                np.where(ms.source == Source.VIRTUAL, 1e-4, ms.sigma), ms.source, ms.labels)
            base = model.base_mva
            for kind, el, val, sd in zip(ms.kind, ms.element, ms.value, ms.sigma, strict=True):
                if kind == Kind.V:
                    pp.create_measurement(pnet, "v", "bus", val, sd, int(model.bus_ids[el]))
                elif kind in (Kind.P_INJ, Kind.Q_INJ):
                    pp.create_measurement(pnet, "p" if kind == Kind.P_INJ else "q", "bus", -val * base, sd * base,
                                          int(model.bus_ids[el]))
                else:
                    etype = model.branch_kind[el]
                    side = "from" if etype == "line" else "hv"
                    pp.create_measurement(pnet, "p" if kind == Kind.P_FLOW else "q", etype, val * base, sd * base,
                                          int(model.branch_element[el]), side=side)
            t0 = time.perf_counter()
            ok = pp_estimate(pnet, init="flat", zero_injection=None)
            pp_times.append(time.perf_counter() - t0)
            if ok["success"]:
                ours = estimate_series(model, [ms], bad_data=False)[0]
                pp_diff = max(pp_diff, float(np.max(np.abs(pnet.res_bus_est.vm_pu.loc[model.bus_ids].to_numpy() - ours.vm_pu))))
        pp_snap = float(np.median(pp_times[1:] if len(pp_times) > 1 else pp_times))
        timing_rows.append([
            name, str(model.n_bus), f"{1e3 * ours_day / 96:.2f}", f"{ours_day:.2f}", f"{1e3 * pp_snap:.1f}",
            f"{96 * pp_snap:.1f}", f"{pp_snap / (ours_day / 96):.0f}x", f"{pp_diff:.1e}", f"{worst:.4f}",
        ])
        n_trials = 40 if quick else 100
        res = run_trials(model, meters, n_trials, seed=2026, gross_error_sigma=15.0)
        stats = res.summary()
        n_gross = int(np.sum(res.gross_channel >= 0))
        acc_rows.append([
            name, str(n_trials), f"{stats['worst_error_p95_pu']:.4f}", f"{stats['rmse_pu']:.4f}",
            f"{stats['forecast_rmse_pu']:.4f}", f"{stats['better_than_forecast_share']:.0%}",
            f"{stats['coverage_2sigma']:.1%}",
            f"{stats['gross_detected_share']:.0%} of {n_gross}" if n_gross else "no channel qualifies",
            f"{stats['gross_rmse_ratio']:.2f}" if n_gross else "-", f"{stats['detectable_channel_share']:.0%}",
        ])
    table(["net", "buses", "ours ms/snapshot", "ours s/day (96)", "pandapower ms/snapshot",
           "pandapower s/day (extrap.)", "speed-up", "max |ΔV| vs pandapower (pu)", "day worst error (pu)"], timing_rows)
    emit("Issue targets on case33bw: worst-bus p95 ≤ 0.0065 pu, RMSE ≤ 0.0021 pu, better than the forecast "
         "power flow in ≥ 95 % of trials, ±2σ coverage 90–98 %, a 15σ gross error removed in ≥ 95 % of trials "
         "with error after removal ≤ 1.5× clean. The gross error is put on a random meter channel that is "
         "detectable (minimal detectable error at 99 % power ≤ 15σ) and identifiable (residual correlation "
         "< 0.9 with every removable measurement); the last column is the share of meter channels that "
         "qualify. The others are, with these meters, too weakly redundant for any estimator to see or to "
         "single out a 15σ error (flows of 1 % accuracy checked only against 30 % pseudo-loads).")
    emit()
    table(["net", "trials", "worst-bus p95 (pu)", "RMSE (pu)", "forecast PF RMSE (pu)", "better than forecast",
           "±2σ coverage", "gross error removed (trials with a qualifying channel)", "RMSE after / clean",
           "detectable channels"], acc_rows)
    bench_bad_data(quick)


def bench_bad_data(quick: bool) -> None:
    from flexgrid.grid import load_net
    from flexgrid.monitoring import (
        BAD_DATA_METER_TYPES,
        PseudoConfig,
        bad_data_redundancy,
        build_model,
        greedy_placement,
        run_trials,
        substation_meter,
    )

    emit("### Bad data on every real meter channel")
    emit()
    emit("Channel check of the accuracy metering above (`bad_data_redundancy`, 15σ, 98 % required; "
         "`flexgrid monitor estimate NET --meters ...` prints it):")
    emit()
    rows = []
    for name in ("case33bw", "kerber_dorfnetz", "cigre_mv"):
        net = load_net(name)
        model = build_model(net, name)
        report = bad_data_redundancy(model, _meters(name, model, net))
        count = {st: len(report.with_status(st)) for st in ("detectable", "unidentifiable", "undetectable", "critical")}
        rows.append([name, str(len(report.channels)), *(str(v) for v in count.values())])
    table(["net", "meter channels", "detectable", "critical pair (unidentifiable)", "too weakly checked",
           "critical"], rows)
    n_trials = 100 if quick else 500
    emit(f"Bad-data detectable placement (`greedy_placement(..., meter_types=BAD_DATA_METER_TYPES, "
         f"bad_data_detectable=True)`, pseudo-loads σ = 30 %; `flexgrid monitor place-meters NET "
         f"--bad-data-detectable`) and {n_trials} seeded trials, each with a 15σ error (random sign) in a "
         "uniformly drawn channel of any real meter of the placement, the substation's included "
         "(population: all of them; pseudo-measurements are forecasts, not meters). Meter types: voltage "
         "1,500 EUR, voltage + flow 4,000 EUR, voltage + flow + load 5,500 EUR.")
    emit()
    rows = []
    for name in ("case33bw", "cigre_mv"):
        model = build_model(load_net(name), name)
        t0 = time.perf_counter()
        placement = greedy_placement(model, pseudo=PseudoConfig(), meter_types=BAD_DATA_METER_TYPES,
                                     bad_data_detectable=True)
        t_place = time.perf_counter() - t0
        assert placement.bad_data is not None
        meters = [substation_meter(model), *placement.as_meters(BAD_DATA_METER_TYPES)]
        t0 = time.perf_counter()
        trials = run_trials(model, meters, n_trials, seed=2026, gross_error_sigma=15.0, detectable_only=False)
        t_trials = time.perf_counter() - t0
        stats = trials.summary()
        worst = min(c.found_probability for c in placement.bad_data.channels)
        rows.append([
            name, str(list(placement.meters)), f"{placement.cost_eur:,.0f}", str(len(placement.bad_data.channels)),
            "yes" if placement.bad_data_detectable else "NO", f"{worst:.1%}", f"{t_place:.1f}", str(n_trials),
            f"{stats['gross_detected_share']:.1%}", f"{stats['gross_rmse_ratio']:.2f}", f"{t_trials:.1f}",
        ])
    table(["net", "meters (bus, type)", "cost EUR", "meter channels", "all detectable", "lowest predicted found",
           "placement s", "trials", "gross error found and removed", "RMSE after / clean", "trials s"], rows)


def bench_n1(quick: bool) -> None:
    import pandapower as pp
    from pandapower.contingency import run_contingency

    from flexgrid.grid import load_net
    from flexgrid.monitoring import build_model
    from flexgrid.risk import n_minus_1

    emit("## 2. N-1 with restoration")
    emit()
    rows = []
    for name in ("case33bw", "cigre_mv", "kerber_dorfnetz", "mv_oberrhein"):
        net = load_net(name)
        model = build_model(net, name)
        n_minus_1(model)  # warm-up
        reps = 1 if name == "mv_oberrhein" else 3
        t0 = time.perf_counter()
        for _ in range(reps):
            report = n_minus_1(model)
        ours = (time.perf_counter() - t0) / reps
        # pandapower's contingency analysis of the same outages (no restoration)
        pnet = copy.deepcopy(net)
        pp.runpp(pnet)  # warm-up (numba compilation)
        lines = [int(e) for k, e in zip(model.branch_kind, model.branch_element, strict=True) if k == "line"
                 and model.base_status[list(model.branch_element).index(e)]]
        cases = {"line": {"index": lines}}
        for tab in ("line", "trafo"):
            if len(pnet[tab]) and "max_loading_percent" not in pnet[tab].columns:
                pnet[tab]["max_loading_percent"] = 100.0
        if len(pnet.trafo):
            cases["trafo"] = {"index": [int(i) for i in pnet.trafo.index]}
        t0 = time.perf_counter()
        try:
            run_contingency(pnet, cases)
            pp_cont = f"{time.perf_counter() - t0:.2f}"
        except Exception as exc:  # pandapower may refuse islanding outages; report why
            pp_cont = f"failed ({type(exc).__name__})"
        # a runpp loop doing FlexGrid's tie search
        ties = [int(model.branch_element[k]) for k in np.flatnonzero(model.is_tie)]
        n_pf = 0
        t0 = time.perf_counter()
        budget = 20 if quick else 60
        for o in report.outages:
            for opt in o.options:
                if n_pf >= budget:
                    break
                tnet = copy.deepcopy(net)
                if o.kind == "line":
                    tnet.line.at[o.element, "in_service"] = False
                else:
                    tnet.trafo.at[o.element, "in_service"] = False
                tie = int(opt.tie.split()[1])
                tnet.line.at[tie, "in_service"] = True
                if len(tnet.switch):
                    sw = tnet.switch[(tnet.switch.et == "l") & (tnet.switch.element == tie)]
                    tnet.switch.loc[sw.index, "closed"] = True
                with contextlib.suppress(Exception):  # a collapsed restoration still cost the attempt
                    pp.runpp(tnet)
                n_pf += 1
        per_pf = (time.perf_counter() - t0) / max(n_pf, 1)
        n_options = sum(len(o.options) for o in report.outages)
        loop_total = per_pf * (n_options + len(report.outages))
        rows.append([
            name, str(len(report.outages)), str(len(ties)), str(n_options), f"{ours:.3f}", pp_cont,
            f"{loop_total:.2f} (extrap. from {n_pf})", f"{report.eens_mwh_per_yr:.2f}",
            f"{report.eens_with_flex_mwh_per_yr:.2f}", f"{report.restorable_share():.0%}",
        ])
    table(["net", "outages", "ties", "restorations tried", "FlexGrid s (with tie search)",
           "pandapower run_contingency s (no restoration)", "runpp loop s (same search)", "EENS MWh/yr",
           "EENS with flex", "restorable"], rows)
    emit("Reliability defaults: 0.1 failures/km·yr (lines), 0.015/yr (transformers), repair 5 h (line) / 24 h "
         "(transformer), switching 1 h, VoLL 10,000 EUR/MWh. Issue target: all single outages of case33bw "
         "with tie-switch search in ≤ 2 s. mv_oberrhein has two external grids (two HV/MV substations).")
    emit()


def bench_monte_carlo(quick: bool) -> None:
    import pandapower as pp

    from flexgrid.grid import load_net
    from flexgrid.monitoring import build_model, sample_injections, solve_batch
    from flexgrid.risk import probabilistic_risk, risk_flex_requests, slot_scales

    emit("## 3. Monte Carlo risk")
    emit()
    rows = []
    for name in ("case33bw", "cigre_mv", "kerber_dorfnetz", "mv_oberrhein"):
        net = load_net(name)
        model = build_model(net, name)
        k = 2000
        s = sample_injections(model, k, np.random.default_rng(0), load_sigma_rel=0.2, correlation=0.3)
        solve_batch(model, s[:, :10])
        t0 = time.perf_counter()
        flow = solve_batch(model, s)
        ours = time.perf_counter() - t0
        n_loop = 20 if quick else 50
        pnet = copy.deepcopy(net)
        pp.runpp(pnet)  # warm-up (numba compilation)
        rng2 = np.random.default_rng(1)
        p0 = pnet.load.p_mw.to_numpy().copy()
        q0 = pnet.load.q_mvar.to_numpy().copy()
        t0 = time.perf_counter()
        for _ in range(n_loop):
            f = 1 + 0.2 * rng2.standard_normal(p0.size)
            pnet.load["p_mw"] = p0 * f
            pnet.load["q_mvar"] = q0 * f
            pp.runpp(pnet)
        loop = (time.perf_counter() - t0) / n_loop
        r = probabilistic_risk(model, n_scenarios=k, seed=0)
        rows.append([
            name, str(k), f"{ours:.3f}", f"{k / ours:,.0f}", f"{1 / loop:,.0f}", f"{loop * k / ours:.0f}x",
            f"{flow.converged.mean():.0%}", f"{r.any_violation_prob:.3f} [{r.any_violation_ci[0]:.3f}, {r.any_violation_ci[1]:.3f}]",
            f"{r.var_kw:.0f} [{r.var_ci_kw[0]:.0f}, {r.var_ci_kw[1]:.0f}]",
            f"{r.cvar_kw:.0f} [{r.cvar_ci_kw[0]:.0f}, {r.cvar_ci_kw[1]:.0f}]",
        ])
    table(["net", "scenarios", "batched AC PF s", "scenarios/s (ours)", "scenarios/s (runpp loop)", "speed-up",
           "converged", "P(any violation) [95 % CI]", "VaR95 shortfall kW [CI]", "CVaR95 kW [CI]"], rows)
    emit("Forecast errors: loads σ = 20 %, PV σ = 30 %, correlation 0.3 (stated defaults). The batched flow is "
         "exact AC (tests compare it with runpp to 1e-6 pu). pandapower's cigre_mv has no voltage limits; with the "
         "assumed 0.95-1.05 pu its nominal load already sits at 0.947 pu, hence the high probability there. "
         "case33bw has line ratings since the grid's commit 1062e42: at nominal load its substation line "
         "(line 0) is overloaded in 58 % of scenarios, the voltage limits are violated in 11 %.")
    emit()
    emit("### Risk-based FlexRequests (ε = 5 %, 2,000 scenarios per slot, 4,000 fresh scenarios out of sample)")
    emit()
    rows = []
    for name in ("case33bw", "kerber_dorfnetz"):
        model = build_model(load_net(name), name)
        load, pv = slot_scales(0, 3600, 24)
        t0 = time.perf_counter()
        plan = risk_flex_requests(model, round_id=1, load_scale=load, gen_scale=pv, slot_seconds=3600, epsilon=0.05)
        dt = time.perf_counter() - t0
        need = [s for s in plan.slots if s.violation_prob_before > 0.05]
        rows.append([
            name, "24 × 1 h", f"{dt:.1f}", str(len(need)),
            f"{max((s.violation_prob_before for s in plan.slots), default=0):.3f}",
            f"{plan.max_out_of_sample_violation():.3f}",
            "; ".join(f"bus {r.request.bus} {r.request.direction.name} slots {list(r.request.slots)} "
                      f"max {max(r.request.kw):.0f} kW cap {r.request.price_cap_eur_per_mwh:,.0f} "
                      f"(premium {r.risk_premium_eur_per_mwh:,.0f}) EUR/MWh" for r in plan.requests) or "none",
        ])
    table(["net", "slots", "s", "slots above ε", "max P(violation) before", "max out-of-sample after",
           "requests"], rows)


def bench_placement(quick: bool) -> None:
    from flexgrid.grid import load_net
    from flexgrid.monitoring import PseudoConfig, best_k_meters, build_model, greedy_placement, milp_placement

    emit("## 4. Meter placement")
    emit()
    rows = []
    cfg = PseudoConfig(load_sigma_rel=0.5)
    for name in ("case33bw", "cigre_mv"):
        model = build_model(load_net(name), name)
        for k in (1, 2, 3):
            t0 = time.perf_counter()
            exact = best_k_meters(model, k, pseudo=cfg)
            t_ex = time.perf_counter() - t0
            t0 = time.perf_counter()
            greedy = best_k_meters(model, k, pseudo=cfg, exhaustive=False)
            t_gr = time.perf_counter() - t0
            rows.append([name, str(k), str(list(exact[0])), f"{exact[1]:.5f}", f"{t_ex:.2f}", str(list(greedy[0])),
                         f"{greedy[1]:.5f}", f"{t_gr:.2f}", f"{greedy[1] / exact[1]:.3f}"])
    table(["net", "meters", "exhaustive buses", "worst σ (pu)", "s", "greedy+swap buses", "worst σ (pu)", "s",
           "ratio"], rows)
    rows = []
    for name in ("case33bw", "cigre_mv", "kerber_dorfnetz"):
        model = build_model(load_net(name), name)
        for tol in (0.01, 0.005):
            for method, robust in (("greedy", False), ("milp", False), ("greedy", True), ("milp", True)):
                if quick and robust and tol < 0.01:
                    continue
                t0 = time.perf_counter()
                if method == "milp":
                    p = milp_placement(model, pseudo=cfg, tolerance_pu=tol, robust=robust)
                else:
                    p = greedy_placement(model, pseudo=cfg, robust=robust, tolerance_pu=tol)
                rows.append([name, f"{tol:.1%}", method, "yes" if robust else "no", str(list(p.meters)),
                             f"{p.cost_eur:,.0f}", f"{p.curve[0].error_bound_pu:.4f}", f"{p.error_bound_pu:.4f}",
                             "yes" if p.meets_target else "NO", f"{time.perf_counter() - t0:.2f}"])
    emit("Target: every bus within the tolerance (1 % as in the issue, and 0.5 %) with ≥ 95 % probability, "
         "pseudo-loads at σ = 50 %; meters: voltage 1,500 EUR, voltage + flow 4,000 EUR. The MILP (HiGHS) "
         "runs at most 20 s in total; robust = the target holds with any one meter failed.")
    emit()
    table(["net", "tolerance", "method", "robust to one failure", "meters (bus, type)", "cost EUR",
           "bound, substation only (pu)", "bound (pu)", "meets", "s"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer trials and loops")
    args = parser.parse_args()
    emit("# Monitoring and risk benchmark")
    emit()
    emit(f"Python {platform.python_version()}, {platform.machine()}, {sys.platform}; one BLAS thread for both "
         "FlexGrid and pandapower (small dense matrices; threads only add waiting on a shared machine). The "
         "machine (2 cores) is shared with other jobs: wall-clock figures vary by up to 3x between runs, "
         "the ratios against pandapower in the same run less so.")
    emit()
    with threadpool_limits(limits=1, user_api="blas"):
        bench_estimation(args.quick)
        bench_n1(args.quick)
        bench_monte_carlo(args.quick)
        bench_placement(args.quick)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(LINES) + "\n")
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
