"""The API's event indexer in a process of its own, and the engine for re-derivable writes.

Indexing is CPU work in Python (formatting and decoding logs, building the order models, writing
rows); in the API process it competes with request handling for the one interpreter lock, so under
load every read waited behind it. `IndexerProcess` runs `flexgrid.chain.indexer.EventIndexer` in a
child process on the same chain and database; the API reads how far it got from the database.

SQLite has one writer at a time and, in its default `synchronous=FULL`, every commit waits for an
fsync (~3.5 ms here) while holding the lock; a request's commit then waits behind the indexer's
and the relayer's, and SQLite's busy handler sleeps in steps of up to 100 ms. What the indexer
and the relayer write can be rebuilt from the chain (the index; the relay status, which a retry
re-checks on chain), so they commit with `synchronous=NORMAL` (WAL: consistent after any crash,
the last commits may need redoing after a power loss); accepted orders keep `FULL`."""

from __future__ import annotations

import logging
import multiprocessing
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from flexgrid.chain.deploy import Deployment
from flexgrid.store.tables import IndexerCursor

log = logging.getLogger("flexgrid.api")


def rederivable_engine(url: str) -> Engine:
    """An engine on `url` for writes that can be rebuilt from the chain (SQLite: synchronous=NORMAL)."""
    from flexgrid.store.db import make_engine

    engine = make_engine(url)
    if engine.url.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _normal(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


def _run(rpc_url: str, deployment_json: str, db_url: str, interval_s: float, stop: Any) -> None:
    from web3 import HTTPProvider, Web3

    from flexgrid.chain.indexer import EventIndexer

    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 60}))
    indexer = EventIndexer(w3, Deployment.model_validate_json(deployment_json), rederivable_engine(db_url))
    while not stop.is_set():
        try:
            indexer.run_once()
        except Exception:  # retried at the next tick
            log.exception("indexing failed")
        stop.wait(interval_s)


class IndexerProcess:
    """A child process indexing `deployment`'s events from `rpc_url` into `db_url` every `interval_s`."""

    def __init__(self, rpc_url: str, deployment: Deployment, db_url: str, interval_s: float) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads and sockets
        self._stop = ctx.Event()
        self._process = ctx.Process(target=_run, name="flexgrid-indexer", daemon=True,
                                    args=(rpc_url, deployment.model_dump_json(), db_url, interval_s, self._stop))

    def start(self) -> None:
        self._process.start()

    def alive(self) -> bool:
        return self._process.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)


def indexed_block(engine: Engine, key: str) -> int:
    """The last block the indexer of `key` ("<chain id>:<market>") finished (-1: none yet)."""
    with Session(engine) as session:
        cursor = session.get(IndexerCursor, key)
        return -1 if cursor is None else int(cursor.last_block)


def wait_indexed(engine: Engine, key: str, block: int, timeout_s: float = 60.0) -> bool:
    """Wait until the indexer has read `block`; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while indexed_block(engine, key) < block:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


__all__ = ["IndexerProcess", "indexed_block", "rederivable_engine", "wait_indexed"]
