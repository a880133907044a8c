"""`flexgrid demo`: the whole market day end to end (see `flexgrid.demo.run_day`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table


def _fmt(v: Any) -> str:
    return f"{v:,.4f}" if isinstance(v, float) else str(v)


def _fmt_pct(v: Any) -> str:
    return f"{v:.1f}" if isinstance(v, float | int) else str(v)


def summary_table(summary: dict[str, Any]) -> Table:
    """The day's summary as one rich table."""
    t = Table(title=f"FlexGrid market day on {summary['settings']['net']}: round {summary['round_id']}, "
                    f"{summary['settings']['slots']} x 15 min, {summary['settings']['prosumers']} prosumers")
    t.add_column("what")
    t.add_column("value", justify="right")
    o = summary["orders"]
    t.add_row("DSO requests (from the risk service)", str(o.get("requests", 0)))
    t.add_row("offers (encrypted / commit-reveal)",
              f"{o.get('offers', 0)} ({o.get('encrypted', 0)} / {o.get('commit_reveal', 0)})")
    t.add_row("offers accepted", str(summary["accepted_offers"]))
    t.add_row("volume bought (kWh)", f"{summary['accepted_kwh']:.1f}")
    t.add_row(f"cost (fEUR, {summary.get('pricing', 'pay-as-bid')})", f"{summary['cost_eur']:.2f}")
    b, a = summary["before"], summary["after"]
    t.add_row("worst line loading over the day, before -> after (%)",
              f"{_fmt_pct(b.get('max_loading_percent'))} -> {_fmt_pct(a.get('max_loading_percent'))}"
              f" (line {b.get('worst_line')} -> line {a.get('worst_line')})")
    t.add_row("lowest voltage over the day, before -> after (pu)",
              f"{_fmt(b.get('v_min_pu'))} -> {_fmt(a.get('v_min_pu'))}"
              f" (bus {b.get('worst_bus')} -> bus {a.get('worst_bus')})")
    if "slot" in b:
        t.add_row(f"most congested slot {b['slot']}: loading, lowest voltage",
                  f"{_fmt_pct(b.get('max_loading_percent_slot'))} -> {_fmt_pct(a.get('max_loading_percent_slot'))} %, "
                  f"{_fmt(b.get('v_min_pu_slot'))} -> {_fmt(a.get('v_min_pu_slot'))} pu")
    t.add_row("slots congested / below 0.95 pu, before -> after",
              f"{b.get('congested_slots')} -> {a.get('congested_slots')} / "
              f"{b.get('low_voltage_slots')} -> {a.get('low_voltage_slots')}")
    r = summary.get("after_with_catch_up") or {}
    if r:
        t.add_row(f"after, with the {r['caught_up_kwh']:.0f} kWh the assets catch up later (rebound, not cleared)",
                  f"{_fmt_pct(r.get('max_loading_percent'))} %, {_fmt(r.get('v_min_pu'))} pu, "
                  f"{r.get('congested_slots')} / {r.get('low_voltage_slots')} slots")
    t.add_row("escrowed = paid + returned (fEUR)",
              f"{summary['escrowed_micro'] / 1e6:.2f} = {summary['paid_out_micro'] / 1e6:.2f} + "
              f"{summary['returned_micro'] / 1e6:.2f}; market holds {summary['market_balance_after_micro']}")
    u = summary.get("under_deliverer") or {}
    if u:
        t.add_row("under-deliverer (delivers 50 %)",
                  f"{u['who']}: accepted {u['accepted_value_eur']:.2f}, paid {u['withdrawn_eur']:.2f} fEUR")
    p2p = summary.get("p2p") or {}
    if p2p:
        t.add_row("P2P round", p2p.get("summary", ""))
    for step, secs in summary["time_s"].items():
        t.add_row(f"{step}", f"{secs:.1f} s, {summary['gas'].get(step, 0):,} gas")
    verdict = "[green]VERIFIED[/]" if summary["audit_ok"] else "[red]FAILED[/]: " + "; ".join(summary["audit_problems"])
    t.add_row("audit verdict", verdict)
    return t


def demo(
    rpc_url: Annotated[
        str | None,
        typer.Option("--rpc-url", envvar="FLEXGRID_RPC_URL", help="use this chain instead of starting anvil"),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="where the deployment, results, plots and databases go")] = Path(
        ".flexgrid/demo"
    ),
    net: Annotated[str, typer.Option("--net", help="built-in grid")] = "case33bw",
    prosumers: Annotated[int, typer.Option("--prosumers", min=1, help="prosumers with their own wallets")] = 50,
    slots: Annotated[int, typer.Option("--slots", min=1, max=96, help="15-min slots from midnight")] = 96,
    seed: Annotated[int, typer.Option("--seed", help="seed of the assets and the metering")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """The whole market day on its own anvil and SQLite: risk-based DSO requests, sealed offers from
    the prosumers' assets, the oracle's clearing, metering, settlement, and the audit."""
    from flexgrid.chain.node import connect
    from flexgrid.demo import DAY_STEPS, DaySettings, day_summary, run_day

    console = Console(quiet=as_json, stderr=False)
    settings = DaySettings(net=net, prosumers=prosumers, slots=slots, seed=seed)
    with connect(rpc_url) as conn:
        where = "its own anvil at " + conn.url if conn.managed else rpc_url
        console.print(f"[bold]FlexGrid demo[/] on {where} (chain id {conn.w3.eth.chain_id})")
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            task = progress.add_task("market day", total=DAY_STEPS)

            def log(msg: str) -> None:
                if msg.startswith("[bold]"):
                    if progress.tasks[0].description != "market day":
                        progress.advance(task)
                    progress.update(task, description=msg)
                progress.console.print(msg)

            report = run_day(conn, out_dir=out_dir, settings=settings, log=log)
            progress.update(task, completed=DAY_STEPS)
    summary = day_summary(report)
    if as_json:
        typer.echo(json.dumps(summary, default=str, indent=2))
    else:
        console.print(summary_table(summary))
        for note in report.notes:
            console.print(f"Note: {note}")
        console.print(f"Plots, publication, metering and databases in {out_dir}/: " + ", ".join(
            Path(p).name for p in report.plots))
    ok = report.audit_ok and report.market_balance_after_micro == 0 and \
        report.escrowed_micro == report.paid_out_micro + report.returned_micro
    if not ok:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
