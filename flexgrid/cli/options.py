"""Options and error exit shared by the grid commands (`flexgrid monitor`, `flexgrid risk`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

NetArg = Annotated[str, typer.Argument(help="built-in net name (case33bw, cigre_mv, kerber_dorfnetz, …) or a file")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]
PlotsOpt = Annotated[Path | None, typer.Option("--plots", help="write PNG figures into this folder")]


def fail(exc: Exception) -> typer.Exit:
    """Print the error on stderr and return the exit (code 2) for the caller to raise."""
    Console(stderr=True).print(f"[red]error:[/] {exc}")
    return typer.Exit(code=2)
