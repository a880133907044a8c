"""`flexgrid serve`: the HTTP API (see frontend_api/ and README "HTTP API")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    rpc_url: Annotated[str | None, typer.Option("--rpc-url", envvar="FLEXGRID_RPC_URL",
                                                help="join this chain instead of starting anvil")] = None,
    deployment: Annotated[Path | None, typer.Option("--deployment", envvar="FLEXGRID_DEPLOYMENT_FILE",
                                                    help="deployment JSON of the contracts on --rpc-url")] = None,
    public_url: Annotated[str | None, typer.Option("--public-url", envvar="FLEXGRID_PUBLIC_URL",
                                                   help="URL wallets sign in to (default http://HOST:PORT)")] = None,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", envvar="FLEXGRID_ACCESS_LOG",
                                             help="log every request (a line on stdout each: costs CPU under "
                                             "load)")] = False,
    http: Annotated[str, typer.Option(help="HTTP parser: auto (httptools if installed), httptools or h11")] = "auto",
    loop: Annotated[str, typer.Option(help="event loop: auto (uvloop if installed), uvloop or asyncio")] = "auto",
    gc_freeze: Annotated[bool, typer.Option("--gc-freeze/--no-gc-freeze", envvar="FLEXGRID_GC_FREEZE",
                                            help="move the objects built at start-up out of the garbage "
                                            "collector's reach (shorter GC pauses)")] = True,
) -> None:
    """Serve the HTTP API. Without an RPC URL it starts its own anvil, deploys the contracts and
    seeds a demo market (an OPEN round on case33bw); OpenAPI at /openapi.json, docs at /docs."""
    import uvicorn

    from frontend_api.core.config import load_settings
    from frontend_api.main import create_app

    overrides: dict[str, object] = {"public_url": public_url or f"http://{host}:{port}"}
    if rpc_url:
        overrides["rpc_url"] = rpc_url
    if deployment:
        overrides["deployment_file"] = deployment
    settings = load_settings(**overrides)
    typer.echo(f"FlexGrid API on http://{host}:{port} (docs at /docs); "
               + ("joining " + settings.rpc_url if settings.rpc_url else "starting anvil and a demo market"))
    uvicorn.run(create_app(settings, gc_freeze=gc_freeze), host=host, port=port, log_level="info",
                access_log=access_log, http=http, loop=loop, timeout_keep_alive=30)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
