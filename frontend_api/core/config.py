"""Settings of the HTTP API (pydantic-settings): environment variables `FLEXGRID_*`, else the
settings file named by `FLEXGRID_SETTINGS_FILE` (dotenv format, same names), else defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the chain and the database are, and how the API behaves."""

    model_config = SettingsConfigDict(env_prefix="FLEXGRID_", extra="ignore")

    rpc_url: str | None = Field(default=None, description="JSON-RPC URL of the chain; none: start an own anvil and seed a demo market")
    deployment_file: Path | None = Field(default=None, description="deployment JSON (flexgrid chain deploy --out) when joining a chain")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite under FLEXGRID_HOME")
    relayer_key: str | None = Field(default=None, description="private key of the account that relays signed orders (default: a dev account)")
    public_url: str = Field(default="http://127.0.0.1:8000", description="the URL wallets sign in to (SIWE domain and URI)")
    grids: tuple[str, ...] = Field(
        default=("case33bw", "cigre_mv", "cigre_lv", "kerber_dorfnetz", "mv_oberrhein", "test-grid"),
        description="grid ids whose DSO is looked up in the registry at sign-in",
    )
    nonce_ttl_s: float = 300.0
    session_ttl_s: float = 3600.0
    role_cache_s: float = 2.0
    batch_size: int = Field(default=400, description="orders per relay transaction at most (also bounded by "
                            "the block gas limit)")
    batch_interval_s: float = 0.25
    index_interval_s: float = 0.25
    indexer_process: bool = Field(default=True, description="index chain events in a child process (else a thread of "
                                  "the API process, competing with requests for the interpreter)")
    sse_poll_s: float = 0.5
    read_cache_s: float = Field(default=0.25, description="anonymous GETs of /auditor/* and /health are answered from "
                                "a cache this old at most (0: off)")
    idempotency_ttl_s: float = 86_400.0
    max_page_size: int = 500


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and the settings file, then `overrides`."""
    env_file = os.environ.get("FLEXGRID_SETTINGS_FILE")
    if env_file:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    return Settings(**overrides)
