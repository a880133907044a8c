"""`flexgrid audit ...`: what an auditor runs against a deployment."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flexgrid.cli.options import DeploymentFile, RpcUrl, TableJsonOpt

if TYPE_CHECKING:
    from sqlalchemy import Engine


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
    deployment_file: DeploymentFile,
    rpc_url: RpcUrl = None,
    source_root: Annotated[
        Path | None, typer.Option("--sources", help="folder holding contracts/ and node_modules/ (default: this checkout)")
    ] = None,
    solc: Annotated[Path | None, typer.Option("--solc", help="solc binary (default: the project's solc-js shim)")] = None,
    as_json: TableJsonOpt = False,
) -> None:
    """Recompile the published sources with py-solc-x and compare them with the deployed code."""
    from web3 import Web3

    from flexgrid.audit.source import audit_deployment, repo_root
    from flexgrid.chain.artifacts import ARTIFACTS_DIR
    from flexgrid.chain.deploy import Deployment

    deployment = Deployment.load(deployment_file)
    w3 = _connect(rpc_url)
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
    deployment_file: DeploymentFile,
    rpc_url: RpcUrl = None,
    resolve: Annotated[bool, typer.Option("--resolve", help="also re-run the clearing and compare")] = False,
    publication: Annotated[
        Path | None, typer.Option("--publication", help="the published result (default: the URI committed on chain)")
    ] = None,
    grid_model: Annotated[
        Path | None,
        typer.Option("--grid-model", help="pandapower JSON of the round's grid model (default: the built-in "
                     "network with the round's hash, else the model published beside the result)"),
    ] = None,
    metering: Annotated[
        Path | None,
        typer.Option("--metering", help="metering readings JSON (default: the file at the committed metering URI)"),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="database URL of the event index (default: $FLEXGRID_HOME/index/<chain id>-<market>.db, "
            "kept between runs: each run reads only the blocks added since the last)",
        ),
    ] = None,
    fresh_index: Annotated[
        bool, typer.Option("--fresh-index", help="index the whole chain into a throw-away database instead")
    ] = False,
    as_json: TableJsonOpt = False,
) -> None:
    """Re-verify a round's committed clearing from chain data, the grid model and the published result."""
    from flexgrid.audit.verify import audit_round, load_round_publication, readings_from_json
    from flexgrid.chain.deploy import Deployment
    from flexgrid.chain.indexer import EventIndexer
    from flexgrid.errors import FlexGridError

    if db is not None and fresh_index:
        raise typer.BadParameter("--db and --fresh-index exclude each other", param_hint="--fresh-index")
    deployment = Deployment.load(deployment_file)
    w3 = _connect(rpc_url)
    doc = None
    if publication is not None:
        doc = load_round_publication(str(publication))
        if doc is None:
            raise typer.BadParameter(f"no publication at {publication}", param_hint="--publication")
    grid_json = None
    if grid_model is not None:
        try:
            grid_json = grid_model.read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {grid_model}: {exc}", param_hint="--grid-model") from exc
    readings = None
    if metering is not None:
        try:
            readings = readings_from_json(json.loads(metering.read_text()), round_id)
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"cannot read metering readings from {metering}: {exc}",
                                     param_hint="--metering") from exc
    with _event_index(deployment, db, fresh=fresh_index) as (engine, where):
        try:
            indexed = EventIndexer(w3, deployment, engine).run_once()
            report = audit_round(w3, deployment, engine, round_id, resolve=resolve, publication=doc,
                                 metering_readings=readings, grid_model_json=grid_json,
                                 publication_source=str(publication) if publication is not None else None)
        except FlexGridError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from exc
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(f"event index {where}: blocks {indexed.from_block}..{indexed.to_block} read, "
                   f"{indexed.events_added} events added"
                   + (f", {indexed.reorged_blocks} reorganised blocks dropped" if indexed.reorged_blocks else ""))
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


def _connect(rpc_url: str | None) -> Any:
    """A web3 client of the chain to audit; a clear usage error without one."""
    from web3 import Web3

    if rpc_url is None:
        raise typer.BadParameter("no chain to audit: pass --rpc-url or set FLEXGRID_RPC_URL", param_hint="--rpc-url")
    return Web3(Web3.HTTPProvider(rpc_url))


@contextmanager
def _event_index(deployment: Any, db: str | None, *, fresh: bool) -> Iterator[tuple[Engine, str]]:
    """The engine of the event index to audit with, and where it is (for the user).

    By default a SQLite file per chain and market under $FLEXGRID_HOME/index, kept between runs (the
    indexer reads on from its cursor and undoes reorgs), used by one audit at a time (a file lock);
    `db` names another database; `fresh` indexes into a temporary file deleted afterwards.
    """
    import tempfile

    import fasteners

    from flexgrid.store import chain_index_path, init_db, make_engine

    with contextlib.ExitStack() as stack:
        if db is not None:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                where = make_url(db).render_as_string(hide_password=True)
            except ArgumentError as exc:
                raise typer.BadParameter(f"{db!r} is not a database URL: {exc}", param_hint="--db") from exc
            url = db
        else:
            if fresh:
                path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flexgrid-audit-"))) / "index.db"
                where = "(temporary)"
            else:
                path = chain_index_path(deployment.chain_id, deployment.market)
                path.parent.mkdir(parents=True, exist_ok=True)
                where = str(path)
                lock = fasteners.InterProcessLock(str(path) + ".lock")
                stack.enter_context(lock)
            url = f"sqlite:///{path}"
        engine = make_engine(url)
        stack.callback(engine.dispose)
        init_db(engine)
        yield engine, where


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
