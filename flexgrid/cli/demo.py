"""`flexgrid demo`: one market round end to end (see `flexgrid.demo`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def demo(
    rpc_url: Annotated[
        str | None,
        typer.Option("--rpc-url", envvar="FLEXGRID_RPC_URL", help="use this chain instead of starting anvil"),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="where the deployment and results are written")] = Path(
        ".flexgrid/demo"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Deploy the contracts on a chain (its own anvil by default) and run one market round:
    register, request, signed offers, grid-aware clearing, commit, metering, settlement."""
    from flexgrid.chain.node import connect
    from flexgrid.demo import run_demo

    console = Console(quiet=as_json)
    with connect(rpc_url) as conn:
        where = "its own anvil at " + conn.url if conn.managed else rpc_url
        console.print(f"[bold]FlexGrid demo[/] on {where} (chain id {conn.w3.eth.chain_id})")
        report = run_demo(conn, out_dir=out_dir, log=console.print)
    if as_json:
        typer.echo(json.dumps(asdict(report), default=str, indent=2))
        return

    offers = Table(title="Offers (signed with EIP-712, relayed in one transaction)")
    for col in ("provider", "bus", "max kW", "EUR/MWh", "min activation"):
        offers.add_column(col)
    for o in report.offers:
        offers.add_row(o["provider"], str(o["bus"]), f"{o['max_kw']:.0f}", f"{o['price_eur_per_mwh']:.0f}",
                       f"{o['min_activation']:.0%}")
    console.print(offers)

    accepted: dict[str, list[float]] = {}
    for a in report.accepted:
        accepted.setdefault(a["provider"], [0.0] * 8)[a["slot"]] += a["kw"]
    table = Table(title="Accepted flexibility per slot (kW), cleared over case33bw with the SOCP OPF")
    table.add_column("provider")
    for s in range(8):
        table.add_column(f"s{s}", justify="right")
    for name, kws in sorted(accepted.items()):
        table.add_row(name, *(f"{k:.0f}" for k in kws))
    console.print(table)

    settle = Table(title="Settlement (pulled from escrow by Merkle proof, then withdrawn)")
    for col in ("participant", "accepted kWh", "withdrawn fEUR"):
        settle.add_column(col, justify="right" if col != "participant" else "left")
    for row in report.settlement:
        settle.add_row(row["who"], f"{row['accepted_kwh']:.1f}", f"{row['withdrawn_eur']:.2f}")
    console.print(settle)
    ac = report.ac_max_voltage_error_pu
    console.print(
        f"Clearing: {report.trades} leaves, objective {report.objective_eur:.2f} EUR, "
        f"AC check max |V_opf - V_ac| = {ac if ac is None else f'{ac:.2e}'} pu, "
        f"{report.violations_after} limit violation(s) left"
    )
    console.print(f"Root {report.merkle_root}\nInput hash {report.input_hash}\nCertificate {report.certificate_hash}")
    ok = report.escrowed_micro == report.paid_out_micro + report.returned_micro and report.market_balance_after_micro == 0
    console.print(
        f"Escrow conservation: {report.escrowed_micro / 1e6:.2f} escrowed = {report.paid_out_micro / 1e6:.2f} paid "
        f"+ {report.returned_micro / 1e6:.2f} returned: " + ("[green]holds[/]" if ok else "[red]BROKEN[/]")
    )
    console.print(f"Deployment and result written to {out_dir}/")
    if not ok:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
