"""Database engine and sessions: a SQLite file by default, any SQLAlchemy URL by `FLEXGRID_DATABASE_URL`.

The default file is `$FLEXGRID_HOME/flexgrid.db` (`FLEXGRID_HOME` defaults to `~/.flexgrid`).
PostgreSQL works by URL (`postgresql+psycopg://user:pass@host/db`, with a driver installed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, event
from sqlmodel import Session, SQLModel, create_engine

import flexgrid.store.tables  # noqa: F401  (registers the tables with SQLModel.metadata)


def flexgrid_home() -> Path:
    """Folder for FlexGrid's local files (`FLEXGRID_HOME`, default `~/.flexgrid`)."""
    return Path(os.environ.get("FLEXGRID_HOME") or Path.home() / ".flexgrid")


def database_url() -> str:
    """`FLEXGRID_DATABASE_URL`, else a SQLite file in `flexgrid_home()`."""
    url = os.environ.get("FLEXGRID_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{flexgrid_home() / 'flexgrid.db'}"


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


__all__ = ["database_url", "flexgrid_home", "init_db", "make_engine", "session_factory", "session_scope"]
