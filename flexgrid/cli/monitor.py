"""`flexgrid monitor ...`: state estimation and meter placement on a net by name or file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flexgrid.cli.options import JsonOpt, NetArg, PlotsOpt, grid_model, print_plots
from flexgrid.cli.options import fail as _fail

monitor_app = typer.Typer(help="Grid monitoring: state estimation and meter placement.", no_args_is_help=True)



def _parse_buses(text: str | None, field: str) -> list[int] | None:
    from flexgrid.errors import InputError

    if text is None or text.strip() in ("", "auto"):
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(field, f"expected comma-separated bus numbers, got {text!r}") from None


def _parse_meters(text: str | None) -> list[tuple[int, str]] | None:
    """ "5,12:voltage,1:voltage+flow+load" -> [(5, "voltage+flow"), (12, "voltage"), ...]."""
    from flexgrid.errors import InputError
    from flexgrid.monitoring import BAD_DATA_METER_TYPES

    if text is None or text.strip() in ("", "auto"):
        return None
    names = [t.name for t in BAD_DATA_METER_TYPES]
    out: list[tuple[int, str]] = []
    for token in (x.strip() for x in text.split(",") if x.strip()):
        bus_text, _, type_name = token.partition(":")
        type_name = type_name or "voltage+flow"
        if type_name not in names:
            raise InputError("--meters", f"{token!r}: meter type must be one of {', '.join(names)}")
        try:
            out.append((int(bus_text), type_name))
        except ValueError:
            raise InputError("--meters", f"expected BUS or BUS:TYPE, comma-separated, got {token!r}") from None
    return out


def _bad_data_rows(report: Any) -> list[dict[str, Any]]:
    return [{"channel": c.label, "status": c.status, "redundancy": c.redundancy,
             "found_probability": c.found_probability, "partner": c.partner,
             "partner_correlation": c.partner_correlation, "message": c.explain(report.gross_error_sigma)}
            for c in report.channels]


def _print_bad_data(console: Console, report: Any) -> None:
    table = Table(title=f"Bad data: can a {report.gross_error_sigma:g}σ error in each meter channel be found? "
                        f"(required {report.required_probability:.0%})")
    for col in ("channel", "status", "redundancy", "found", "confused with"):
        table.add_column(col, justify="right" if col in ("redundancy", "found") else "left")
    for c in report.channels:
        partner = f"{c.partner} ({c.partner_correlation:.2f})" if c.partner else ""
        table.add_row(c.label, c.status, f"{c.redundancy:.2f}", f"{c.found_probability:.0%}", partner)
    console.print(table)
    for message in report.messages():
        console.print(message)
    if report.all_detectable:
        console.print("every meter channel is bad-data detectable")
    else:
        console.print("for a metering where every channel is: flexgrid monitor place-meters NET --bad-data-detectable")


@monitor_app.command("estimate")
def estimate_cmd(
    net: NetArg,
    meters: Annotated[
        str | None, typer.Option("--meters", help="metered buses, BUS or BUS:TYPE (voltage, voltage+flow = default, voltage+flow+load), e.g. 5,12:voltage,1:voltage+flow+load (default: 3 voltage+flow meters placed automatically)")
    ] = None,
    pseudo_sigma: Annotated[float, typer.Option("--pseudo-sigma", help="σ of pseudo-measurements, share of the forecast")] = 0.3,
    load_scale: Annotated[float, typer.Option("--load-scale", help="forecast load = net load × this")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="seed of the simulated truth and meter noise")] = 0,
    trials: Annotated[int, typer.Option("--trials", help="also run this many seeded trials and report accuracy")] = 0,
    gross_error: Annotated[float | None, typer.Option("--gross-error", help="add a gross error of this many σ to the voltage meter of the first metered bus")] = None,
    gross_error_channel: Annotated[str | None, typer.Option("--gross-error-channel", help="put the --gross-error on this channel instead, e.g. 'substation: P line 0'")] = None,
    as_json: JsonOpt = False,
    plots: PlotsOpt = None,
) -> None:
    """Estimate the state from the substation meter, a few meters and pseudo-measurements.

    The truth is simulated (loads drawn around the forecast with σ = --pseudo-sigma), so the
    estimate, its ±2σ band and the error can be shown against it."""
    import numpy as np

    from flexgrid.errors import InputError
    from flexgrid.monitoring import (
        BAD_DATA_METER_TYPES,
        MeasurementSet,
        PseudoConfig,
        bad_data_redundancy,
        best_k_meters,
        check_observability,
        estimate,
        meter_channels,
        pseudo_measurements,
        run_trials,
        sample_injections,
        simulate_readings,
        solve_batch,
        substation_meters,
    )

    try:
        _, model = grid_model(net)
        cfg = PseudoConfig(load_sigma_rel=pseudo_sigma)
        placed = _parse_meters(meters)
        if placed is None:
            auto = best_k_meters(model, min(3, model.n_bus - 1), pseudo=cfg, exhaustive=False, load_scale=load_scale)[0]
            placed = [(b, "voltage+flow") for b in auto]
        buses = [b for b, _ in placed]
        types = {t.name: t for t in BAD_DATA_METER_TYPES}
        # channels are labelled "bus 5: V" (the type is in the --meters given)
        subs = substation_meters(model)
        meter_list = [*subs, *(replace(types[t].at(b), name="") for b, t in placed)]
        channels = meter_channels(model, meter_list)
        redundancy = bad_data_redundancy(model, meter_list, pseudo=cfg, load_scale=load_scale)
        rng = np.random.default_rng(seed)
        s_true = sample_injections(model, 1, rng, load_sigma_rel=pseudo_sigma, gen_sigma_rel=cfg.gen_sigma_rel, load_scale=load_scale)
        truth = solve_batch(model, s_true).v[:, 0]
        ps = pseudo_measurements(model, load_scale * model.load_p_pu, load_scale * model.load_q_pu,
                                 model.gen_p_pu, model.gen_q_pu, cfg)
        ms = MeasurementSet.concat([simulate_readings(model, channels, truth, rng), ps])
        if gross_error is not None:
            if gross_error_channel is not None:
                if gross_error_channel not in channels.labels:
                    raise InputError("--gross-error-channel",
                                     f"{gross_error_channel!r} is not a channel; channels: {', '.join(channels.labels)}")
                i = channels.labels.index(gross_error_channel)
            else:
                i = channels.labels.index(f"bus {buses[0]}: V") if buses else 0
            ms = ms.with_value(i, ms.value[i] + gross_error * ms.sigma[i])
        obs = check_observability(model, ms)
        meters_only = check_observability(model, MeasurementSet.concat([simulate_readings(model, channels, truth, rng)]))
        est = estimate(model, ms)
        stats: dict[str, float] = {}
        if trials > 0:
            stats = run_trials(model, meter_list, trials, seed, pseudo=cfg, load_scale=load_scale,
                               gross_error_sigma=15.0).summary()
    except InputError as exc:
        raise _fail(exc) from None
    vm_true = np.abs(truth)
    err = np.abs(est.vm_pu - vm_true)
    result: dict[str, Any] = {
        "net": net,
        "meters": [*(m.bus for m in subs), *buses],
        "converged": est.converged,
        "iterations": est.iterations,
        "chi2": {"objective": est.objective, "threshold": est.chi2_threshold, "dof": est.dof},
        "removed_bad_data": list(est.removed),
        "bad_data_channels": _bad_data_rows(redundancy),
        "bad_data_detectable": redundancy.all_detectable,
        "observable": obs.observable,
        "unobservable_with_meters_only": {str(b): meters_only.reasons[b] for b in meters_only.unobservable_buses},
        "max_error_pu": float(err.max()),
        "rmse_pu": float(np.sqrt(np.mean(err**2))),
        "buses": [
            {"bus": int(b), "vm_true_pu": float(t), "vm_est_pu": float(e), "vm_std_pu": float(s)}
            for b, t, e, s in zip(model.bus_ids, vm_true, est.vm_pu, est.vm_std_pu, strict=True)
        ],
        "trials": stats,
    }
    if plots is not None:
        from flexgrid.monitoring import plots as figs

        plots.mkdir(parents=True, exist_ok=True)
        result["plots"] = [str(figs.voltage_profile(
            plots / f"{Path(net).stem}_estimate.png", [int(b) for b in model.bus_ids], est.vm_pu, est.vm_std_pu,
            vm_true, f"State estimate of {net} (meters at {buses})", metered=buses,
        ))]
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console = Console()
    table = Table(title=f"State estimate of {net}: substation + meters at {buses}, pseudo σ {pseudo_sigma:.0%}")
    for col in ("bus", "V true (pu)", "V est (pu)", "σ (pu)", "|error| (pu)", "within 2σ"):
        table.add_column(col, justify="right")
    for b, t, e, s in zip(model.bus_ids, vm_true, est.vm_pu, est.vm_std_pu, strict=True):
        table.add_row(str(b), f"{t:.4f}", f"{e:.4f}", f"{s:.4f}", f"{abs(e - t):.4f}", "yes" if abs(e - t) <= 2 * s else "no")
    console.print(table)
    console.print(f"max error {err.max():.4f} pu, RMSE {np.sqrt(np.mean(err**2)):.4f} pu; "
                  f"chi-square {est.objective:.1f} (threshold {est.chi2_threshold:.1f}); removed: {list(est.removed) or 'none'}")
    _print_bad_data(console, redundancy)
    if meters_only.unobservable_buses:
        console.print(f"meters alone leave {len(meters_only.unobservable_buses)} buses unobservable "
                      f"(e.g. bus {meters_only.unobservable_buses[0]}: {meters_only.reasons[meters_only.unobservable_buses[0]]}); "
                      f"pseudo-measurements make the grid {'observable' if obs.observable else 'NOT observable'}")
    if stats:
        t2 = Table(title=f"{trials} seeded trials")
        t2.add_column("figure")
        t2.add_column("value", justify="right")
        for k, v in stats.items():
            t2.add_row(k, f"{v:.4f}")
        console.print(t2)
    print_plots(console, result)


@monitor_app.command("place-meters")
def place_meters_cmd(
    net: NetArg,
    tolerance: Annotated[float, typer.Option("--tolerance", help="voltage error target (pu)")] = 0.01,
    probability: Annotated[float, typer.Option("--probability", help="probability of staying within the target")] = 0.95,
    pseudo_sigma: Annotated[float, typer.Option("--pseudo-sigma", help="σ of pseudo-measurements, share of the forecast")] = 0.5,
    candidates: Annotated[str | None, typer.Option("--candidates", help="candidate buses, e.g. 3,6,9 (default: all)")] = None,
    robust: Annotated[bool, typer.Option("--robust", help="the target must hold with any one meter failed")] = False,
    method: Annotated[str, typer.Option("--method", help="greedy (with the cost-accuracy curve) or milp (HiGHS)")] = "greedy",
    extra_steps: Annotated[int, typer.Option("--extra-steps", help="continue the cost-accuracy curve past the target")] = 3,
    compare_exhaustive: Annotated[int, typer.Option("--compare-exhaustive", help="compare greedy with exhaustive search for 1..K meters")] = 0,
    bad_data_detectable: Annotated[bool, typer.Option("--bad-data-detectable", help="add meters (also the voltage+flow+load type) until a gross error in any meter channel can be found and removed")] = False,
    gross_error_sigma: Annotated[float, typer.Option("--gross-error-sigma", help="size of the gross error for the bad-data check, in σ")] = 15.0,
    as_json: JsonOpt = False,
    plots: PlotsOpt = None,
) -> None:
    """Cheapest meter set meeting the accuracy target, with the cost-accuracy curve, and for the
    meters chosen (substation included) which channels a gross error can be found in."""
    from flexgrid.errors import InputError
    from flexgrid.monitoring import (
        BAD_DATA_METER_TYPES,
        DEFAULT_METER_TYPES,
        PseudoConfig,
        bad_data_redundancy,
        best_k_meters,
        greedy_placement,
        milp_placement,
        substation_meters,
    )

    try:
        _, model = grid_model(net)
        cfg = PseudoConfig(load_sigma_rel=pseudo_sigma)
        cand = _parse_buses(candidates, "--candidates")
        types = BAD_DATA_METER_TYPES if bad_data_detectable else DEFAULT_METER_TYPES
        if method == "greedy":
            placement = greedy_placement(
                model, candidate_buses=cand, tolerance_pu=tolerance, meter_types=types,
                probability=probability, robust=robust, pseudo=cfg, continue_after_target=extra_steps,
                bad_data_detectable=bad_data_detectable, gross_error_sigma=gross_error_sigma,
            )
        elif method == "milp":
            placement = milp_placement(model, candidate_buses=cand, tolerance_pu=tolerance, meter_types=types,
                                       probability=probability, pseudo=cfg, robust=robust,
                                       bad_data_detectable=bad_data_detectable, gross_error_sigma=gross_error_sigma)
        else:
            raise InputError("--method", f"must be greedy or milp, got {method!r}")
        redundancy = placement.bad_data or bad_data_redundancy(
            model, [*substation_meters(model), *placement.as_meters(types)], pseudo=cfg, gross_error_sigma=gross_error_sigma)
        comparison = []
        for k in range(1, compare_exhaustive + 1):
            exact = best_k_meters(model, k, pseudo=cfg)
            greedy = best_k_meters(model, k, pseudo=cfg, exhaustive=False)
            comparison.append({"k": k, "exhaustive_buses": list(exact[0]), "exhaustive_sigma_pu": exact[1],
                               "greedy_buses": list(greedy[0]), "greedy_sigma_pu": greedy[1],
                               "ratio": greedy[1] / exact[1]})
    except InputError as exc:
        raise _fail(exc) from None
    result: dict[str, Any] = {
        "net": net,
        "method": method,
        "meters": [{"bus": b, "type": t} for b, t in placement.meters],
        "cost_eur": placement.cost_eur,
        "error_bound_pu": placement.error_bound_pu,
        "meets_target": placement.meets_target,
        "robust": placement.robust,
        "bad_data_detectable": redundancy.all_detectable,
        "bad_data_channels": _bad_data_rows(redundancy),
        "curve": [{"cost_eur": p.cost_eur, "error_bound_pu": p.error_bound_pu, "worst_bus": p.worst_bus,
                   "meters": [{"bus": b, "type": t} for b, t in p.meters]} for p in placement.curve],
        "exhaustive_comparison": comparison,
    }
    if plots is not None:
        from flexgrid.monitoring import plots as figs

        plots.mkdir(parents=True, exist_ok=True)
        result["plots"] = [str(figs.cost_accuracy(
            plots / f"{Path(net).stem}_cost_accuracy.png", [p.cost_eur for p in placement.curve],
            [p.error_bound_pu for p in placement.curve], tolerance, f"Cost-accuracy curve, {net}",
        ))]
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console = Console()
    table = Table(title=f"Meter placement on {net}: every bus within {tolerance:.1%} with ≥{probability:.0%} probability"
                  + (" (robust to one failed meter)" if robust else ""))
    for col in ("step", "added meters", "cost (EUR)", "95 % error bound (pu)", "worst bus"):
        table.add_column(col, justify="right")
    previous: set[tuple[int, str]] = set()
    for i, p in enumerate(placement.curve):
        new = [m for m in p.meters if m not in previous]
        previous = set(p.meters)
        added = ", ".join(f"{t} at bus {b}" for b, t in new) if new else "substation only"
        table.add_row(str(i), added, f"{p.cost_eur:,.0f}", f"{p.error_bound_pu:.4f}", str(p.worst_bus))
    console.print(table)
    verdict = "meets" if placement.meets_target else "does NOT meet"
    console.print(f"chosen: {placement.meters or 'no extra meter'} for {placement.cost_eur:,.0f} EUR, {verdict} the target "
                  f"(bound {placement.error_bound_pu:.4f} pu)" + (
                      "; meters added for bad-data redundancy included" if bad_data_detectable else ""))
    _print_bad_data(console, redundancy)
    if comparison:
        t2 = Table(title="Greedy (+swap) vs exhaustive search, worst-bus σ")
        for col in ("k", "exhaustive", "σ (pu)", "greedy", "σ (pu)", "ratio"):
            t2.add_column(col, justify="right")
        for c in comparison:
            t2.add_row(str(c["k"]), str(c["exhaustive_buses"]), f"{c['exhaustive_sigma_pu']:.5f}", str(c["greedy_buses"]),
                       f"{c['greedy_sigma_pu']:.5f}", f"{c['ratio']:.3f}")
        console.print(t2)
    print_plots(console, result)


def register(app: typer.Typer) -> None:
    app.add_typer(monitor_app, name="monitor")
