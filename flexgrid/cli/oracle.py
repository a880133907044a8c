"""`flexgrid oracle run`: the clearing oracle service."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flexgrid.cli.options import DatabaseUrl, DeploymentFile, RpcUrl

console = Console()
oracle_app = typer.Typer(help="The clearing oracle: clear closed rounds, commit, publish.", no_args_is_help=True)


@oracle_app.command("run")
def run_cmd(
    deployment_file: DeploymentFile,
    rpc_url: RpcUrl = None,
    key: Annotated[
        str, typer.Option("--key", help="name of the environment variable holding the oracle's private key")
    ] = "FLEXGRID_ORACLE_KEY",
    once: Annotated[bool, typer.Option("--once", help="one pass over the due rounds, then exit")] = False,
    round_id: Annotated[int | None, typer.Option("--round", help="work on this round only (implies --once)")] = None,
    database_url: DatabaseUrl = None,
    results_dir: Annotated[
        Path | None, typer.Option("--results-dir", help="publication folder (default $FLEXGRID_HOME/results)")
    ] = None,
    results_uri: Annotated[
        str | None, typer.Option("--results-uri", help="public base URI of the results folder (default file://)")
    ] = None,
    round_keys: Annotated[
        Path | None,
        typer.Option("--round-keys", help="folder of ENCRYPTED rounds' secret keys (round-<id>.key, 0x hex)"),
    ] = None,
    ciphertexts_db: Annotated[
        str | None,
        typer.Option("--ciphertexts-db-url", help="database where the API stores sealed-offer ciphertexts sent "
                     "off chain (default: --database-url, which the API shares by default)"),
    ] = None,
    grid_models: Annotated[
        Path | None,
        typer.Option("--grid-models", help="folder of pandapower JSON grid models (any file name: each is "
                     "matched to a round by its grid-model hash)"),
    ] = None,
    grid_models_db: Annotated[
        str | None,
        typer.Option("--grid-models-db-url", help="database where the API stores the grid models DSOs upload "
                     "(default: --ciphertexts-db-url, else --database-url)"),
    ] = None,
    formulation: Annotated[str, typer.Option(help="socp, lindistflow, dc or copperplate (not sensitivity: its certificate cannot be audited)")] = "socp",
    wholesale: Annotated[float, typer.Option("--wholesale-eur-per-mwh", help="energy price at the substation")] = 60.0,
    poll_s: Annotated[float, typer.Option(help="seconds between passes without --once")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="print each round's outcome as JSON")] = False,
) -> None:
    """Watch the chain; clear every round past gate closure (and past its reveal window), commit the
    result and publish it. Crash-safe: a restart resumes each round from its checkpoint.

    A round's grid model is found by the grid-model hash the chain records: a built-in network, a
    model a DSO uploaded through the API, or a file of --grid-models; it is published beside the
    result when it is not a built-in. A hash that matches nothing refuses the round.

    Test hook: FLEXGRID_ORACLE_CRASH_AT=<checkpoint> kills the process at that checkpoint."""
    from eth_account import Account

    from flexgrid.chain.deploy import Deployment
    from flexgrid.chain.node import connect
    from flexgrid.errors import FlexGridError
    from flexgrid.oracle.service import CRASH_ENV, Oracle, OracleSettings
    from flexgrid.store import make_engine
    from flexgrid.store.db import flexgrid_home

    if rpc_url is None:
        console.print("[red]--rpc-url (or FLEXGRID_RPC_URL) is needed: the oracle watches an existing chain[/]")
        raise typer.Exit(2)
    private_key = os.environ.get(key)
    if not private_key:
        console.print(f"[red]--key: the environment variable {key} holding the oracle's private key is not set[/]")
        raise typer.Exit(2)
    try:
        account = Account.from_key(private_key)
        deployment = Deployment.load(deployment_file)
        settings = OracleSettings(
            results_dir=results_dir or flexgrid_home() / "results",
            results_uri=results_uri,
            formulation=formulation,
            wholesale_eur_per_mwh=wholesale,
            crash_at=os.environ.get(CRASH_ENV) or None,
            round_keys_dir=round_keys,
            ciphertexts_db_url=ciphertexts_db,
            grid_models_db_url=grid_models_db,
            grid_models_dir=grid_models,
        )
        if grid_models is not None and not grid_models.is_dir():
            raise ValueError(f"--grid-models: {grid_models} is not a directory")
    except (FlexGridError, ValueError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc

    def log(message: str) -> None:
        if not as_json:
            console.print(message, highlight=False)

    with connect(rpc_url) as chain:
        deployment.check_code(chain.w3)
        oracle = Oracle(chain.w3, deployment, account, make_engine(database_url), settings, log=log)
        if not oracle.client.is_oracle(account.address):
            console.print(f"[red]{account.address} does not hold ORACLE_ROLE on this deployment[/]")
            raise typer.Exit(2)
        if once or round_id is not None:
            outcomes = oracle.run_once(round_id)
            for o in outcomes:
                if as_json:
                    typer.echo(json.dumps({"round": o.round_id, "stage": o.stage, "tradeRoot": o.trade_root,
                                           "detail": o.detail}))
                else:
                    console.print(f"round {o.round_id}: [bold]{o.stage}[/] {o.detail}", highlight=False)
            if any(o.stage == "refused" for o in outcomes):
                raise typer.Exit(1)
            return
        try:
            oracle.run(poll_interval_s=poll_s)
        except KeyboardInterrupt:
            console.print("oracle stopped")


def register(app: typer.Typer) -> None:
    app.add_typer(oracle_app, name="oracle")
