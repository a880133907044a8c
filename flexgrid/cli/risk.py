"""`flexgrid risk ...`: N-1 with restoration, probabilistic risk, and risk-based FlexRequests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flexgrid.cli.options import JsonOpt, NetArg, PlotsOpt, VollOpt, grid_model, print_plots
from flexgrid.cli.options import fail as _fail

risk_app = typer.Typer(help="Grid risk: N-1 with restoration, Monte Carlo risk, FlexRequests.", no_args_is_help=True)



@risk_app.command("n1")
def n1_cmd(
    net: NetArg,
    load_scale: Annotated[float, typer.Option("--load-scale", help="loads = net loads × this")] = 1.0,
    failure_rate: Annotated[float, typer.Option("--failure-rate", help="line failures per km and year")] = 0.1,
    repair_h: Annotated[float, typer.Option("--repair-h", help="line repair time (h)")] = 5.0,
    switching_h: Annotated[float, typer.Option("--switching-h", help="time to switch a tie (h)")] = 1.0,
    voll: VollOpt = 10_000.0,
    as_json: JsonOpt = False,
    plots: PlotsOpt = None,
) -> None:
    """Every single line/transformer outage: load cut, tie-switch restoration, violations, EENS."""
    import numpy as np

    from flexgrid.errors import InputError
    from flexgrid.risk import ReliabilityData, n_minus_1

    try:
        pnet, model = grid_model(net)
        rel = ReliabilityData(line_failure_rate_per_km_yr=failure_rate, line_repair_time_h=repair_h,
                              switching_time_h=switching_h, voll_eur_per_mwh=voll)
        report = n_minus_1(model, model.s_injection_pu(load_scale), rel)
    except InputError as exc:
        raise _fail(exc) from None
    result: dict[str, Any] = {
        "net": net,
        "reliability": rel.__dict__,
        "eens_mwh_per_yr": report.eens_mwh_per_yr,
        "eens_with_flex_mwh_per_yr": report.eens_with_flex_mwh_per_yr,
        "expected_cost_eur_per_yr": report.expected_cost_eur_per_yr,
        "base_violations": list(report.base_violations),
        "outages": [
            {
                "branch": o.branch, "cut_buses": list(o.cut_buses), "cut_load_kw": o.cut_load_kw,
                "restoration": o.restoration, "unserved_load_kw": o.unserved_load_kw,
                "violations": list(o.violations), "flex_needed_kw": o.flex_needed_kw,
                "eens_mwh_per_yr": o.eens_mwh_per_yr, "eens_with_flex_mwh_per_yr": o.eens_with_flex_mwh_per_yr,
                "options": [{"tie": t.tie, "feasible": t.feasible, "min_vm_pu": t.min_vm_pu,
                             "max_loading_percent": t.max_loading_percent, "flex_needed_kw": t.flex_needed_kw}
                            for t in o.options],
            }
            for o in report.outages
        ],
    }
    if plots is not None:
        from flexgrid.monitoring import plots as figs

        plots.mkdir(parents=True, exist_ok=True)
        bus_val = np.zeros(model.n_bus)
        for o in report.outages:  # EENS each bus suffers, summed over outages (share by load)
            for b in o.cut_buses:
                pos = model.bus_position(b)
                share = model.load_p_pu[pos] / max(model.load_p_pu[[model.bus_position(c) for c in o.cut_buses]].sum(), 1e-12)
                bus_val[pos] += o.eens_mwh_per_yr * share
        br_val = np.zeros(model.n_branch)
        for o in report.outages:
            k = int(np.flatnonzero((model.branch_element == o.element) & (np.array(model.branch_kind) == o.kind))[0])
            br_val[k] = o.eens_mwh_per_yr
        result["plots"] = [str(figs.risk_map(
            plots / f"{Path(net).stem}_n1_risk_map.png", pnet, model, bus_val, br_val,
            f"N-1 risk map of {net}: EENS {report.eens_mwh_per_yr:.2f} MWh/yr", "EENS (MWh/yr)",
        ))]
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=float))
        return
    console = Console()
    table = Table(title=f"N-1 with restoration on {net} (λ {failure_rate}/km·yr, repair {repair_h} h, switching {switching_h} h)")
    for col in ("outage", "cut buses", "cut kW", "restored by", "violations", "flex kW", "EENS MWh/yr", "with flex"):
        table.add_column(col, justify="right")
    for o in report.outages:
        table.add_row(
            o.branch, str(len(o.cut_buses)), f"{o.cut_load_kw:,.0f}", o.restoration or "-",
            str(len(o.violations)), f"{o.flex_needed_kw:,.0f}" if np.isfinite(o.flex_needed_kw) else "∞",
            f"{o.eens_mwh_per_yr:.3f}", f"{o.eens_with_flex_mwh_per_yr:.3f}",
        )
    console.print(table)
    console.print(f"EENS {report.eens_mwh_per_yr:.2f} MWh/yr (with flexibility {report.eens_with_flex_mwh_per_yr:.2f}); "
                  f"expected cost {report.expected_cost_eur_per_yr:,.0f} EUR/yr at VoLL {voll:,.0f} EUR/MWh; "
                  f"restorable share {report.restorable_share():.0%}")
    if report.base_violations:
        console.print(f"base case already violates: {', '.join(report.base_violations[:5])}"
                      + (" …" if len(report.base_violations) > 5 else ""))
    print_plots(console, result)


@risk_app.command("probabilistic")
def probabilistic_cmd(
    net: NetArg,
    scenarios: Annotated[int, typer.Option("--scenarios", help="Monte Carlo scenarios")] = 2000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    load_scale: Annotated[float, typer.Option("--load-scale", help="forecast loads = net loads × this")] = 1.0,
    gen_scale: Annotated[float, typer.Option("--gen-scale", help="forecast PV = net sgen × this")] = 1.0,
    load_sigma: Annotated[float, typer.Option("--load-sigma", help="σ of load forecast errors (share)")] = 0.2,
    pv_sigma: Annotated[float, typer.Option("--pv-sigma", help="σ of PV forecast errors (share)")] = 0.3,
    correlation: Annotated[float, typer.Option("--correlation", help="share of the error common to all buses")] = 0.3,
    alpha: Annotated[float, typer.Option("--alpha", help="VaR/CVaR level")] = 0.95,
    as_json: JsonOpt = False,
    plots: PlotsOpt = None,
) -> None:
    """Violation probabilities per bus and line, VaR and CVaR of the shortfall, with intervals."""
    import numpy as np

    from flexgrid.errors import InputError
    from flexgrid.risk import Uncertainty, probabilistic_risk

    try:
        pnet, model = grid_model(net)
        unc = Uncertainty(load_sigma_rel=load_sigma, gen_sigma_rel=pv_sigma, correlation=correlation)
        r = probabilistic_risk(model, n_scenarios=scenarios, seed=seed, uncertainty=unc,
                               load_scale=load_scale, gen_scale=gen_scale, alpha=alpha)
    except InputError as exc:
        raise _fail(exc) from None
    result: dict[str, Any] = {
        "net": net, "scenarios": scenarios, "seed": seed, "seconds": r.seconds,
        "any_violation_prob": r.any_violation_prob, "any_violation_ci": list(r.any_violation_ci),
        "expected_shortfall_kw": r.expected_shortfall_kw,
        "var_kw": r.var_kw, "var_ci_kw": list(r.var_ci_kw), "cvar_kw": r.cvar_kw, "cvar_ci_kw": list(r.cvar_ci_kw),
        "alpha": alpha,
        "buses": [{"bus": int(b), "violation_prob": float(p), "ci": [float(lo), float(hi)]}
                  for b, p, lo, hi in zip(r.bus_ids, r.bus_violation_prob, *r.bus_violation_ci, strict=True) if p > 0],
        "branches": [{"branch": n, "violation_prob": float(p), "ci": [float(lo), float(hi)]}
                     for n, p, lo, hi in zip(r.branch_names, r.branch_violation_prob, *r.branch_violation_ci, strict=True) if p > 0],
    }
    if plots is not None:
        from flexgrid.monitoring import plots as figs

        plots.mkdir(parents=True, exist_ok=True)
        result["plots"] = [
            str(figs.risk_map(plots / f"{Path(net).stem}_risk_map.png", pnet, model, r.bus_violation_prob,
                              r.branch_violation_prob, f"Violation probability, {net} ({scenarios} scenarios)",
                              "probability of a violation")),
            str(figs.histogram(plots / f"{Path(net).stem}_shortfall.png", r.shortfall_kw,
                               {f"VaR{alpha:.0%}": r.var_kw, f"CVaR{alpha:.0%}": r.cvar_kw},
                               f"Shortfall per scenario, {net}", "flexibility needed (kW)")),
        ]
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console = Console()
    table = Table(title=f"Violation probability on {net} ({scenarios} scenarios, seed {seed}, {r.seconds:.2f} s)")
    for col in ("element", "probability", "95 % interval"):
        table.add_column(col, justify="right")
    order = np.argsort(-r.bus_violation_prob)
    for i in order[:15]:
        if r.bus_violation_prob[i] > 0:
            table.add_row(f"bus {r.bus_ids[i]}", f"{r.bus_violation_prob[i]:.3f}",
                          f"[{r.bus_violation_ci[0][i]:.3f}, {r.bus_violation_ci[1][i]:.3f}]")
    for i in np.argsort(-r.branch_violation_prob)[:10]:
        if r.branch_violation_prob[i] > 0:
            table.add_row(r.branch_names[i], f"{r.branch_violation_prob[i]:.3f}",
                          f"[{r.branch_violation_ci[0][i]:.3f}, {r.branch_violation_ci[1][i]:.3f}]")
    console.print(table)
    console.print(
        f"any violation: {r.any_violation_prob:.3f} [{r.any_violation_ci[0]:.3f}, {r.any_violation_ci[1]:.3f}]; "
        f"shortfall: mean {r.expected_shortfall_kw:.1f} kW, VaR{alpha:.0%} {r.var_kw:.1f} kW "
        f"[{r.var_ci_kw[0]:.1f}, {r.var_ci_kw[1]:.1f}], CVaR{alpha:.0%} {r.cvar_kw:.1f} kW "
        f"[{r.cvar_ci_kw[0]:.1f}, {r.cvar_ci_kw[1]:.1f}]"
    )
    print_plots(console, result)


@risk_app.command("requests")
def requests_cmd(
    net: NetArg,
    round_id: Annotated[int, typer.Option("--round-id", help="market round the requests are for")] = 1,
    slot_start_s: Annotated[int, typer.Option("--slot-start-s", help="start of slot 0 (unix s; the daily shape is UTC)")] = 0,
    slot_seconds: Annotated[int, typer.Option("--slot-seconds")] = 3600,
    slot_count: Annotated[int, typer.Option("--slot-count")] = 24,
    epsilon: Annotated[float, typer.Option("--epsilon", help="risk appetite: allowed violation probability")] = 0.05,
    scenarios: Annotated[int, typer.Option("--scenarios", help="Monte Carlo scenarios per slot")] = 2000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    load_scale: Annotated[float, typer.Option("--load-scale", help="extra factor on the daily load shape")] = 1.0,
    voll: VollOpt = 10_000.0,
    cvar_cost: Annotated[float, typer.Option("--cvar-cost", help="EUR per MWh of CVaR removed")] = 2_000.0,
    dso: Annotated[str | None, typer.Option("--dso", help="the DSO's address, written into the requests")] = None,
    as_json: JsonOpt = False,
    plots: PlotsOpt = None,
) -> None:
    """FlexRequests (per bus and slot) that keep the violation probability within ε."""
    from flexgrid.errors import InputError
    from flexgrid.risk import RiskPricing, risk_flex_requests, slot_scales

    try:
        pnet, model = grid_model(net)
        load, pv = slot_scales(slot_start_s, slot_seconds, slot_count)
        plan = risk_flex_requests(
            model, round_id=round_id, load_scale=load * load_scale, gen_scale=pv, slot_seconds=slot_seconds,
            epsilon=epsilon, n_scenarios=scenarios, seed=seed, dso=dso,
            pricing=RiskPricing(voll_eur_per_mwh=voll, cvar_cost_eur_per_mwh=cvar_cost),
        )
    except InputError as exc:
        raise _fail(exc) from None
    result: dict[str, Any] = {
        "net": net, "epsilon": epsilon, "scenarios": scenarios,
        "requests": [
            {**r.request.model_dump(mode="json"), "energy_mwh": r.energy_mwh, "avoided_cost_eur": r.avoided_cost_eur,
             "expected_value_eur_per_mwh": r.expected_value_eur_per_mwh,
             "risk_premium_eur_per_mwh": r.risk_premium_eur_per_mwh}
            for r in plan.requests
        ],
        "slots": [
            {"slot": s.slot, "violation_prob_before": s.violation_prob_before,
             "violation_prob_after": s.violation_prob_after,
             "violation_prob_out_of_sample": s.violation_prob_out_of_sample,
             "out_of_sample_ci": list(s.out_of_sample_ci),
             "flex_kw": [{"bus": b, "direction": "UP" if d == 0 else "DOWN", "kw": kw} for (b, d), kw in s.flex_kw.items()],
             "eens_before_mwh": s.eens_before_mwh, "eens_after_mwh": s.eens_after_mwh,
             "cvar_before_mwh": s.cvar_before_mwh, "cvar_after_mwh": s.cvar_after_mwh,
             "unresolved": s.unresolved}
            for s in plan.slots
        ],
    }
    if plots is not None:
        import numpy as np

        from flexgrid.monitoring import plots as figs

        plots.mkdir(parents=True, exist_ok=True)
        bus_val = np.zeros(model.n_bus)
        for r in plan.requests:
            bus_val[model.bus_position(r.request.bus)] += sum(r.request.kw)
        result["plots"] = [str(figs.risk_map(
            plots / f"{Path(net).stem}_requests_map.png", pnet, model, bus_val, np.zeros(model.n_branch),
            f"Requested flexibility on {net} (ε = {epsilon})", "kW requested (sum over slots)",
        ))]
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console = Console()
    t1 = Table(title=f"Violation probability per slot on {net} (ε = {epsilon}, {scenarios} scenarios per slot)")
    for col in ("slot", "before", "after (AC)", "out of sample", "flex (bus: kW)", "EENS before→after MWh"):
        t1.add_column(col, justify="right")
    for s in plan.slots:
        flex = ", ".join(f"{b}{'↑' if d == 0 else '↓'}: {kw:.0f}" for (b, d), kw in s.flex_kw.items()) or "-"
        t1.add_row(str(s.slot), f"{s.violation_prob_before:.3f}", f"{s.violation_prob_after:.3f}",
                   f"{s.violation_prob_out_of_sample:.3f}" + (" ✗" if s.unresolved else ""), flex,
                   f"{s.eens_before_mwh:.4f}→{s.eens_after_mwh:.4f}")
    console.print(t1)
    t2 = Table(title=f"FlexRequests for round {round_id}")
    for col in ("order id", "bus", "direction", "slots", "kW", "price cap EUR/MWh", "of which risk premium"):
        t2.add_column(col, justify="right")
    for r in plan.requests:
        q = r.request
        t2.add_row(q.order_id or "", str(q.bus), q.direction.name, ",".join(map(str, q.slots)),
                   ",".join(f"{k:.1f}" for k in q.kw), f"{q.price_cap_eur_per_mwh:,.2f}", f"{r.risk_premium_eur_per_mwh:,.2f}")
    console.print(t2)
    print_plots(console, result)


def register(app: typer.Typer) -> None:
    app.add_typer(risk_app, name="risk")
