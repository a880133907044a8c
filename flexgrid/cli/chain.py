"""`flexgrid chain ...`: run a local node, deploy the contracts, index events, read a round."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flexgrid.cli.options import DatabaseUrl, DeploymentFile, RpcUrl

console = Console()
chain_app = typer.Typer(help="The chain: local node, deployment, event index.", no_args_is_help=True)


@chain_app.command("node")
def node(
    chain_id: Annotated[int, typer.Option(help="chain id of the node")] = 31337,
    accounts: Annotated[int, typer.Option(help="number of funded accounts")] = 10,
) -> None:
    """Run a local anvil on a free loopback port until Ctrl-C; prints its URL and dev accounts."""
    from flexgrid.chain.node import AnvilNode

    with AnvilNode(chain_id=chain_id, accounts=accounts) as anvil:
        console.print(f"anvil listening on [bold]{anvil.url}[/] (chain id {chain_id})")
        console.print(f"export FLEXGRID_RPC_URL={anvil.url}")
        for i, account in enumerate(anvil.dev_accounts()):
            console.print(f"  {i}: {account.address}  key {account.key.hex()}")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            console.print("stopping anvil")


@chain_app.command("deploy")
def deploy_cmd(
    out: Annotated[Path, typer.Option("--out", help="where to write the deployment JSON")] = Path(
        "deployment.json"
    ),
    rpc_url: RpcUrl = None,
    operator: Annotated[str | None, typer.Option(help="operator address (default: the deployer)")] = None,
) -> None:
    """Deploy FlexToken, FlexRegistry and FlexMarket; the deployer is FLEXGRID_PRIVATE_KEY's account
    or the node's first dev account."""
    from eth_account import Account

    from flexgrid.chain.deploy import deploy
    from flexgrid.chain.node import connect

    if rpc_url is None:
        console.print(
            "[red]--rpc-url (or FLEXGRID_RPC_URL) is needed: a deployment on a throw-away anvil "
            "would vanish when this command ends. Start one with `flexgrid chain node`.[/]"
        )
        raise typer.Exit(2)
    with connect(rpc_url) as chain:
        key = os.environ.get("FLEXGRID_PRIVATE_KEY")
        accounts = [Account.from_key(key)] if key else chain.dev_accounts()
        if not accounts:
            console.print("[red]no deployer: set FLEXGRID_PRIVATE_KEY (or FLEXGRID_MNEMONIC)[/]")
            raise typer.Exit(2)
        deployment = deploy(chain.w3, accounts[0], operator=operator)
    deployment.save(out)
    console.print(
        f"deployed on chain {deployment.chain_id}: market {deployment.market}, "
        f"registry {deployment.registry}, token {deployment.token}; written to {out}"
    )


@chain_app.command("index")
def index_cmd(
    deployment_file: DeploymentFile,
    rpc_url: RpcUrl = None,
    database_url: DatabaseUrl = None,
    confirmations: Annotated[int, typer.Option(help="only index blocks this deep")] = 0,
    follow: Annotated[bool, typer.Option("--follow", help="keep indexing new blocks until Ctrl-C")] = False,
    poll_s: Annotated[float, typer.Option(help="seconds between polls with --follow")] = 2.0,
) -> None:
    """Index the deployment's events into the database (idempotent; handles reorgs)."""
    from flexgrid.chain.deploy import Deployment
    from flexgrid.chain.indexer import EventIndexer, IndexerReport
    from flexgrid.chain.node import connect
    from flexgrid.store import init_db, make_engine

    deployment = Deployment.load(deployment_file)
    engine = make_engine(database_url)
    init_db(engine)
    with connect(rpc_url) as chain:
        deployment.check_code(chain.w3)
        indexer = EventIndexer(chain.w3, deployment, engine, confirmations=confirmations)

        def show(report: IndexerReport) -> None:
            console.print(
                f"blocks {report.from_block}..{report.to_block}: {report.events_added} events, "
                f"{report.orders_added} orders added"
                + (f", {report.reorged_blocks} reorged blocks dropped" if report.reorged_blocks else "")
            )

        if follow:
            try:
                indexer.follow(poll_interval_s=poll_s, on_report=show)
            except KeyboardInterrupt:
                return
        else:
            show(indexer.run_once())


@chain_app.command("round")
def round_cmd(
    round_id: Annotated[int, typer.Argument(help="the round id")],
    deployment_file: DeploymentFile,
    rpc_url: RpcUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show a round's configuration, state and money as the chain holds them."""
    from flexgrid.chain.deploy import Deployment
    from flexgrid.chain.market import MarketClient
    from flexgrid.chain.node import connect

    deployment = Deployment.load(deployment_file)
    with connect(rpc_url) as chain:
        client = MarketClient(chain.w3, deployment)
        config = client.round_config(round_id)
        status = client.round_status(round_id)
        deadlines = client.deadlines(round_id)
    config_json = config.model_dump(mode="json")
    data = {
        "round_id": round_id,
        "state": status.state.name,
        "config": config_json,
        "status": {
            k: (str(v) if isinstance(v, int) and abs(v) > 2**53 else v) for k, v in status.values.items()
        },
        "deadlines": deadlines,
    }
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    console.print(f"round {round_id}: [bold]{status.state.name}[/]")
    for key, value in config_json.items():
        console.print(f"  {key}: {value}")
    for key, value in deadlines.items():
        console.print(f"  {key}: {value}")
    console.print(
        f"  orders: {status['orderCount']}, pot: {status['pot'] / 1e6} EUR, paid: {status['paid'] / 1e6} EUR"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(chain_app, name="chain")
