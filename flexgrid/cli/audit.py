"""`flexgrid audit ...`: what an auditor runs against a deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table


def deployment_addresses(w3: Any, deployment: Any) -> dict[str, str]:
    """The addresses to verify: the deployment's, plus the settlement module FlexMarket created."""
    addresses = {role: str(getattr(deployment, role)) for role in ("token", "registry", "market")}
    abi = [{"type": "function", "name": "settlementModule", "stateMutability": "view", "inputs": [],
            "outputs": [{"name": "", "type": "address"}]}]
    market = w3.eth.contract(address=deployment.market, abi=abi)
    addresses["settlement"] = str(market.functions.settlementModule().call())
    return addresses


audit_app = typer.Typer(help="Audit a FlexGrid deployment from the chain alone.", no_args_is_help=True)


@audit_app.command("contracts")
def audit_contracts(
    deployment_file: Annotated[Path, typer.Option("--deployment", help="deployment JSON written at deploy time")],
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", envvar="FLEXGRID_RPC_URL", help="JSON-RPC endpoint of the chain")
    ] = None,
    source_root: Annotated[
        Path | None, typer.Option("--sources", help="folder holding contracts/ and node_modules/ (default: this checkout)")
    ] = None,
    solc: Annotated[Path | None, typer.Option("--solc", help="solc binary (default: the project's solc-js shim)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Recompile the published sources with py-solc-x and compare them with the deployed code."""
    from web3 import Web3

    from flexgrid.audit.source import audit_deployment, repo_root
    from flexgrid.chain.artifacts import ARTIFACTS_DIR
    from flexgrid.chain.deploy import Deployment

    deployment = Deployment.load(deployment_file)
    if rpc_url is None:
        raise typer.BadParameter("no chain to audit: pass --rpc-url or set FLEXGRID_RPC_URL", param_hint="--rpc-url")
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    root = source_root or repo_root()
    addresses = deployment_addresses(w3, deployment)
    code_at = {a: bytes(w3.eth.get_code(Web3.to_checksum_address(a))) for a in addresses.values()}
    artifacts = {p.stem: json.loads(p.read_text()) for p in ARTIFACTS_DIR.glob("*.json")}
    checks = audit_deployment(code_at, addresses, artifacts, root, solc or root / "tools" / "solc")
    if as_json:
        typer.echo(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        table = Table(title=f"Source verification, chain {deployment.chain_id}")
        for col in ("contract", "address", "verified", "detail"):
            table.add_column(col)
        for c in checks:
            table.add_row(c.contract, c.address, "[green]yes[/]" if c.verified else "[red]NO[/]", c.detail)
        Console().print(table)
    if not all(c.verified for c in checks):
        raise typer.Exit(code=1)


@audit_app.command("verify")
def audit_verify(
    round_id: Annotated[int, typer.Option("--round", help="the round to verify")],
    deployment_file: Annotated[Path, typer.Option("--deployment", help="deployment JSON written at deploy time")],
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", envvar="FLEXGRID_RPC_URL", help="JSON-RPC endpoint of the chain")
    ] = None,
    resolve: Annotated[bool, typer.Option("--resolve", help="also re-run the clearing and compare")] = False,
    publication: Annotated[
        Path | None, typer.Option("--publication", help="the published result (default: the URI committed on chain)")
    ] = None,
    metering: Annotated[
        Path | None,
        typer.Option("--metering", help="metering readings JSON (default: the file at the committed metering URI)"),
    ] = None,
    db: Annotated[
        str | None, typer.Option("--db", help="database URL to index into (default: a temporary SQLite file)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Re-verify a round's committed clearing from chain data, the grid model and the published result."""
    import tempfile

    from web3 import Web3

    from flexgrid.audit.verify import audit_round, load_round_publication, readings_from_json
    from flexgrid.chain.deploy import Deployment
    from flexgrid.errors import FlexGridError
    from flexgrid.store import init_db, make_engine

    deployment = Deployment.load(deployment_file)
    if rpc_url is None:
        raise typer.BadParameter("no chain to audit: pass --rpc-url or set FLEXGRID_RPC_URL", param_hint="--rpc-url")
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    doc = None
    if publication is not None:
        doc = load_round_publication(str(publication))
        if doc is None:
            raise typer.BadParameter(f"no publication at {publication}", param_hint="--publication")
    readings = None
    if metering is not None:
        try:
            readings = readings_from_json(json.loads(metering.read_text()), round_id)
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"cannot read metering readings from {metering}: {exc}",
                                     param_hint="--metering") from exc
    with tempfile.TemporaryDirectory(prefix="flexgrid-audit-") as tmp:
        engine = make_engine(db or f"sqlite:///{Path(tmp) / 'index.db'}")
        init_db(engine)
        try:
            report = audit_round(w3, deployment, engine, round_id, resolve=resolve, publication=doc,
                                 metering_readings=readings)
        except FlexGridError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        finally:
            engine.dispose()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=f"Audit of round {round_id}, chain {deployment.chain_id}")
        for col in ("check", "result", "detail"):
            table.add_column(col)
        for f in report.findings:
            table.add_row(f.check, "[green]ok[/]" if f.ok else "[red]MISMATCH[/]", "\n".join(f.details))
        Console(width=160).print(table)
        verdict = "VERIFIED" if report.ok else f"NOT VERIFIED ({len(report.problems())} mismatches)"
        typer.echo(f"round {round_id}: {verdict}")
        for line in report.problems():
            typer.echo(f"  - {line}")
    if not report.ok:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
