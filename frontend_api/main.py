"""The FastAPI application: `create_app(settings)` or `create_app(service=...)` (tests)."""

from __future__ import annotations

import gc
import logging
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel

from flexgrid.chain.deploy import Deployment
from flexgrid.chain.node import ChainConnection, connect
from flexgrid.errors import InputError
from flexgrid.store.db import database_url, make_engine
from frontend_api.api.routes import auditor, auth, bulk, dso, events, operator, prosumer
from frontend_api.core import problems
from frontend_api.core.auth import SiweAuth
from frontend_api.core.config import Settings, load_settings
from frontend_api.core.idempotency import IdempotencyMiddleware, IdempotencyStore
from frontend_api.core.readcache import ReadCache
from frontend_api.core.service import FlexGridService, relayer_account

log = logging.getLogger("flexgrid.api")

DESCRIPTION = """Grid-aware flexibility trading. Sign in with your wallet (EIP-4361: GET /auth/nonce, then
POST /auth/login), then use the routes of your role; every order is EIP-712 signed by its owner.
Every POST accepts an `Idempotency-Key` header. Errors are RFC 9457 problem documents."""


def build_service(settings: Settings) -> FlexGridService:
    """Connect to the configured chain, or start an anvil and seed a demo market."""
    from frontend_api.core.seed import seed_demo_market

    conn: ChainConnection = connect(settings.rpc_url)
    try:
        accounts = conn.dev_accounts() if conn.managed or not settings.relayer_key else []
        if settings.rpc_url is None:
            demo = seed_demo_market(conn.w3, accounts)
            deployment, round_id = demo.deployment, demo.round_id
            db_url = settings.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='flexgrid-serve-')}/api.db"
        else:
            if settings.deployment_file is None:
                raise InputError("deployment_file", "joining a chain (FLEXGRID_RPC_URL) needs FLEXGRID_DEPLOYMENT_FILE "
                                 "or --deployment")
            deployment = Deployment.load(settings.deployment_file)
            deployment.check_code(conn.w3)
            round_id = None
            db_url = settings.database_url or database_url()
        relayer = relayer_account(settings, lambda: accounts[4] if len(accounts) > 4 else accounts[0])
        return FlexGridService(settings=settings, w3=conn.w3, deployment=deployment, engine=make_engine(db_url),
                               relayer=relayer, connection=conn, demo_round_id=round_id)
    except BaseException:
        conn.close()
        raise


class HealthOut(BaseModel):
    chain_id: int
    market: str
    registry: str
    token: str
    block: int
    indexed_block: int
    relayer: str
    queued: int
    batches: int
    offers_relayed: int
    offers_failed: int
    retries: int
    demo_round_id: int | None


def create_app(settings: Settings | None = None, *, service: FlexGridService | None = None,
               gc_freeze: bool = False) -> FastAPI:
    """`gc_freeze`: once started, move every object built so far (imports, web3, the service) to
    the garbage collector's permanent generation, so its full collections under load do not walk
    them again (for a server process of its own, as `flexgrid serve`)."""
    settings = settings or (service.settings if service else load_settings())
    holder: dict[str, FlexGridService] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = service or build_service(settings)
        holder["service"] = svc
        app.state.service = svc
        app.state.auth = SiweAuth(settings.public_url, svc.deployment.chain_id,
                                  nonce_ttl_s=settings.nonce_ttl_s, session_ttl_s=settings.session_ttl_s)
        svc.start()
        if gc_freeze:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            svc.stop()

    app = FastAPIOffline(title="FlexGrid API", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    problems.install(app)
    app.add_middleware(IdempotencyMiddleware, store=IdempotencyStore(settings.idempotency_ttl_s))
    app.add_middleware(ReadCache, ttl_s=settings.read_cache_s)  # outermost: a hit skips everything else
    for module in (auth, prosumer, bulk, dso, operator, auditor, events):
        app.include_router(module.router)

    @app.get("/health", response_model=HealthOut, tags=["meta"], summary="Chain, indexer and relayer status")
    def health() -> HealthOut:
        svc = holder["service"]
        s = svc.stats
        return HealthOut(chain_id=svc.deployment.chain_id, market=svc.deployment.market,
                         registry=svc.deployment.registry, token=svc.deployment.token, block=svc.head_block(),
                         indexed_block=svc.indexed_block, relayer=str(svc.relayer.address), queued=svc.queue_length(),
                         batches=s.batches, offers_relayed=s.offers_relayed, offers_failed=s.offers_failed,
                         retries=s.retries, demo_round_id=svc.demo_round_id)

    return app


__all__ = ["Path", "build_service", "create_app"]
