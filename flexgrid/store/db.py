"""Database engine and sessions: a SQLite file by default, any SQLAlchemy URL by `FLEXGRID_DATABASE_URL`.

The default file is `$FLEXGRID_HOME/flexgrid.db` (`FLEXGRID_HOME` defaults to `~/.flexgrid`).
PostgreSQL works by URL (`postgresql+psycopg://user:pass@host/db`, with a driver installed).
`chain_index_path` names the per-deployment event index an auditor keeps between runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, event
from sqlmodel import Session, SQLModel, create_engine

import flexgrid.store.tables  # noqa: F401  (registers the tables with SQLModel.metadata)
from flexgrid.errors import InputError


def flexgrid_home() -> Path:
    """Folder for FlexGrid's local files (`FLEXGRID_HOME`, default `~/.flexgrid`)."""
    return Path(os.environ.get("FLEXGRID_HOME") or Path.home() / ".flexgrid")


def database_url() -> str:
    """`FLEXGRID_DATABASE_URL`, else a SQLite file in `flexgrid_home()`."""
    url = os.environ.get("FLEXGRID_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{flexgrid_home() / 'flexgrid.db'}"


def chain_index_path(chain_id: int, market: str) -> Path:
    """SQLite file of one deployment's event index: `$FLEXGRID_HOME/index/<chain id>-<market>.db`.

    Kept between runs, so the indexer reads on from its cursor; keyed by chain id and market address
    (lower case), so deployments never share a file.
    """
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id <= 0:
        raise InputError("chain_id", f"must be a positive integer, got {chain_id!r}")
    if not (isinstance(market, str) and re.fullmatch(r"0x[0-9a-fA-F]{40}", market)):
        raise InputError("market", f"{market!r} is not a contract address (0x + 40 hex digits)")
    return flexgrid_home() / "index" / f"{chain_id}-{market.lower()}.db"


def make_engine(url: str | None = None, *, echo: bool = False) -> Engine:
    """An engine for `url` (default `database_url()`); creates the SQLite folder if needed."""
    url = url or database_url()
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"check_same_thread": False} if url.startswith("sqlite") else {}
    engine = create_engine(url, echo=echo, connect_args=connect_args)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

    return engine


def init_db(engine: Engine) -> None:
    """Create every table registered with SQLModel (FlexGrid's and any other module's)."""
    SQLModel.metadata.create_all(engine)


def session_factory(engine: Engine) -> Callable[[], Session]:
    """A callable returning new sessions on `engine` (objects stay usable after commit)."""

    def make() -> Session:
        return Session(engine, expire_on_commit=False)

    return make


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


__all__ = ["chain_index_path", "database_url", "flexgrid_home", "init_db", "make_engine", "session_factory", "session_scope"]
