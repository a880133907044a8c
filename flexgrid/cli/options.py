"""Options shared by several commands, each written once: the grid commands' (`flexgrid monitor`,
`flexgrid risk`) and the chain commands' (`flexgrid chain`, `flexgrid oracle`, `flexgrid audit`);
and the grid commands' error exit."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    import pandapower as pp

    from flexgrid.monitoring import NetworkModel

NetArg = Annotated[str, typer.Argument(help="built-in net name (case33bw, cigre_mv, kerber_dorfnetz, …) or a file")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]
PlotsOpt = Annotated[Path | None, typer.Option("--plots", help="write PNG figures into this folder")]
VollOpt = Annotated[float, typer.Option("--voll", help="value of lost load (EUR/MWh)")]

RpcUrl = Annotated[
    str | None, typer.Option("--rpc-url", envvar="FLEXGRID_RPC_URL", help="JSON-RPC endpoint of the chain")
]
DeploymentFile = Annotated[Path, typer.Option("--deployment", help="deployment JSON written by `chain deploy`")]
DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", envvar="FLEXGRID_DATABASE_URL", help="SQLAlchemy URL")
]
TableJsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def fail(exc: Exception) -> typer.Exit:
    """Print the error on stderr and return the exit (code 2) for the caller to raise."""
    Console(stderr=True).print(f"[red]error:[/] {exc}")
    return typer.Exit(code=2)


def grid_model(net: str) -> tuple[pp.pandapowerNet, NetworkModel]:
    """The pandapower net `net` names (built-in name or file) and its array model; a bad name or
    file raises the InputError of `load_net` / `build_model`."""
    from flexgrid.grid import load_net
    from flexgrid.monitoring import build_model

    pnet = load_net(net)
    return pnet, build_model(pnet, net)


def print_plots(console: Console, result: dict[str, Any]) -> None:
    """One line per figure the command wrote (`result["plots"]`)."""
    for p in result.get("plots", []):
        console.print(f"plot: {p}")
