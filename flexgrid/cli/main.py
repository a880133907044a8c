"""The `flexgrid` command. Each area adds its commands in its own module under `flexgrid.cli`
and is registered here."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="flexgrid",
    help="FlexGrid: grid-aware flexibility trading on an Ethereum ledger.",
    no_args_is_help=True,
    add_completion=False,
)


def _register() -> None:
    # Imported here so that `flexgrid --help` stays fast and each area owns its module.
    import importlib

    for module in ("demo", "audit", "clear", "monitor", "risk", "chain", "oracle", "serve"):
        try:
            mod = importlib.import_module(f"flexgrid.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"flexgrid.cli.{module}":
                continue  # that area has not landed yet
            raise
        mod.register(app)


_register()

if __name__ == "__main__":
    app()
