"""The API's connection to the chain and the database, and its background workers.

`FlexGridService` holds the web3 client, the deployment, the database engine and the relayer
account; `start()` runs the batch relayer and the event indexer in threads, `stop()` ends them.
Roles are always read from the on-chain registry (briefly cached), never from a request."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from web3 import Web3

from flexgrid.chain.deploy import Deployment
from flexgrid.chain.indexer import EventIndexer
from flexgrid.chain.market import MarketClient, grid_id_hash
from flexgrid.chain.node import ChainConnection, chain_time_s
from flexgrid.errors import ChainError, ContractRevert
from flexgrid.store.db import init_db
from flexgrid.store.tables import OrderRecord
from flexgrid.trading import RoundConfig, RoundState
from flexgrid.trading.eip712 import SignedOrder
from frontend_api.core.config import Settings
from frontend_api.models import ApiOrder

log = logging.getLogger("flexgrid.api")
SEQ_BITS = 64


@dataclass(frozen=True)
class Roles:
    """What an address may do, as the registry says."""

    address: str
    operator: bool = False
    oracle: bool = False
    provider: bool = False
    dso_grids: tuple[str, ...] = ()

    def names(self) -> list[str]:
        out = [n for n in ("operator", "oracle", "provider") if getattr(self, n)]
        if self.dso_grids:
            out.append("dso")
        return out


@dataclass
class RelayStats:
    batches: int = 0
    offers_relayed: int = 0
    offers_failed: int = 0
    retries: int = 0
    last_error: str | None = None


@dataclass
class FlexGridService:
    """Everything a request handler needs besides the request."""

    settings: Settings
    w3: Web3
    deployment: Deployment
    engine: Engine
    relayer: LocalAccount
    connection: ChainConnection | None = None
    demo_round_id: int | None = None
    extra_grids: tuple[str, ...] = ()
    stats: RelayStats = field(default_factory=RelayStats)

    def __post_init__(self) -> None:
        init_db(self.engine)
        self.client = MarketClient(self.w3, self.deployment)
        self.relay_client = MarketClient(self.w3, self.deployment, self.relayer)
        self._role_cache: dict[str, tuple[float, Roles]] = {}
        self._round_cache: dict[int, RoundConfig] = {}
        self._time_cache: tuple[float, int] = (0.0, 0)
        self._provider_cache: dict[str, tuple[float, bool]] = {}
        self._state_cache: dict[int, tuple[float, RoundState]] = {}
        self._view_cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._pending_seq: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._queue: list[str] = []
        self._queue_cv = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.indexer = EventIndexer(self.w3, self.deployment, self.engine)
        self._index_lock = threading.Lock()
        self.indexed_block = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        with Session(self.engine) as session:
            queued = session.exec(select(ApiOrder.order_hash).where(ApiOrder.status == "queued")
                                  .order_by(col(ApiOrder.created_at))).all()
        with self._queue_cv:
            self._queue.extend(queued)  # orders accepted before a restart are relayed now
        for target, name in ((self._relay_loop, "relayer"), (self._index_loop, "indexer")):
            thread = threading.Thread(target=target, name=f"flexgrid-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with self._queue_cv:
            self._queue_cv.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        if self.connection is not None:
            self.connection.close()

    # -- chain reads -----------------------------------------------------------------------------

    @property
    def grids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.settings.grids, *self.extra_grids)))

    def roles(self, address: str) -> Roles:
        address = Web3.to_checksum_address(address)
        now = time.monotonic()
        cached = self._role_cache.get(address)
        if cached is not None and now - cached[0] < self.settings.role_cache_s:
            return cached[1]
        reg = self.client.registry.functions
        roles = Roles(
            address=address,
            operator=bool(reg.isOperator(address).call()),
            oracle=bool(reg.isOracle(address).call()),
            provider=bool(reg.isProvider(address).call()),
            dso_grids=tuple(g for g in self.grids if reg.dsoOf(grid_id_hash(g)).call() == address),
        )
        self._role_cache[address] = (now, roles)
        return roles

    def is_provider(self, address: str) -> bool:
        """The registry's `isProvider`, cached like the roles (the hot path of offer submission)."""
        address = Web3.to_checksum_address(address)
        now = time.monotonic()
        cached = self._role_cache.get(address)
        if cached is not None and now - cached[0] < self.settings.role_cache_s:
            return cached[1].provider
        hit = self._provider_cache.get(address)
        if hit is not None and now - hit[0] < self.settings.role_cache_s:
            return hit[1]
        value = bool(self.client.registry.functions.isProvider(address).call())
        self._provider_cache[address] = (now, value)
        return value

    def _cached(self, key: tuple[Any, ...], read: Callable[[], Any], ttl_s: float = 0.5) -> Any:
        now = time.monotonic()
        hit = self._view_cache.get(key)
        if hit is None or now - hit[0] > ttl_s:
            hit = (now, read())
            self._view_cache[key] = hit
        return hit[1]

    def round_count(self) -> int:
        """Rounds on chain, read at most every half second."""
        return int(self._cached(("round_count",), self.client.round_count))

    def deadlines(self, round_id: int) -> dict[str, int]:
        return dict(self._cached(("deadlines", round_id), lambda: self.client.deadlines(round_id)))

    def head_block(self) -> int:
        return int(self._cached(("block",), lambda: self.w3.eth.block_number))

    def round_state(self, round_id: int) -> RoundState:
        """The round's state, read at most every half second."""
        now = time.monotonic()
        hit = self._state_cache.get(round_id)
        if hit is None or now - hit[0] > 0.5:
            hit = (now, self.client.round_state(round_id))
            self._state_cache[round_id] = hit
        return hit[1]

    def forget_roles(self, address: str | None = None) -> None:
        if address is None:
            self._role_cache.clear()
            self._provider_cache.clear()
            self._state_cache.clear()
            self._view_cache.clear()
        else:
            self._role_cache.pop(Web3.to_checksum_address(address), None)
            self._provider_cache.pop(Web3.to_checksum_address(address), None)

    def grid_of_hash(self, grid_hash: str) -> str:
        for g in self.grids:
            if grid_id_hash(g).hex() == grid_hash.lower().removeprefix("0x"):
                return g
        return grid_hash

    def round_config(self, round_id: int) -> RoundConfig:
        """A round's configuration (it never changes once created)."""
        if round_id not in self._round_cache:
            count = self.client.round_count()  # not cached: a round created a moment ago exists
            if not 1 <= round_id <= count:
                from frontend_api.core.problems import Problem

                raise Problem(404, "Not found", f"round {round_id} does not exist (rounds 1..{count})",
                              field="round_id", reason="no such round")
            config = self.client.round_config(round_id)
            self._round_cache[round_id] = config.model_copy(update={"grid_id": self.grid_of_hash(config.grid_id_hash)})
        return self._round_cache[round_id]

    def chain_now_s(self) -> int:
        now = time.monotonic()
        if now - self._time_cache[0] > 0.5:
            self._time_cache = (now, chain_time_s(self.w3))
        return self._time_cache[1]

    # -- signed orders ---------------------------------------------------------------------------

    def reserve_nonce(self, owner: str, nonce: int) -> None:
        """Check that `nonce` is the next unused one of `owner` under its key (counting orders the
        API has accepted and not relayed yet) and reserve it."""
        from frontend_api.core.problems import Problem

        key, seq = nonce >> SEQ_BITS, nonce & ((1 << SEQ_BITS) - 1)
        with self._lock:
            expected = self._pending_seq.get((owner, key))
            if expected is None:
                expected = self.client.nonce(owner, key) & ((1 << SEQ_BITS) - 1)
            if seq != expected:
                raise Problem(422, "Invalid input", f"nonce: sequence {seq} under key {key} is not the next one ({expected})",
                              field="nonce", reason=f"expected sequence {expected} under key {key}")
            self._pending_seq[(owner, key)] = seq + 1

    def release_nonce(self, owner: str, nonce: int) -> None:
        with self._lock:
            self._pending_seq.pop((owner, nonce >> SEQ_BITS), None)

    def enqueue(self, order_hash: str) -> None:
        with self._queue_cv:
            self._queue.append(order_hash)
            if len(self._queue) == 1 or len(self._queue) >= self.settings.batch_size:
                self._queue_cv.notify_all()

    def queue_length(self) -> int:
        with self._queue_cv:
            return len(self._queue)

    # -- the batch relayer -----------------------------------------------------------------------

    def _take_batch(self) -> list[str]:
        with self._queue_cv:
            while not self._queue and not self._stop.is_set():
                self._queue_cv.wait(0.5)
            deadline = time.monotonic() + self.settings.batch_interval_s  # from the first waiting order
            while len(self._queue) < self.settings.batch_size and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._queue_cv.wait(left)
            batch = self._queue[: self.settings.batch_size]
            del self._queue[: len(batch)]
            return batch

    def _relay_loop(self) -> None:
        while not self._stop.is_set():
            batch = self._take_batch()
            if not batch:
                continue
            attempt = 0
            while not self._stop.is_set():
                try:
                    self.relay_batch(batch)
                    break
                except ChainError as exc:  # node unreachable or tx not mined: retry the same orders
                    attempt += 1
                    self.stats.retries += 1
                    self.stats.last_error = str(exc)
                    log.warning("relay of %d orders failed (attempt %d): %s", len(batch), attempt, exc)
                    self._stop.wait(min(5.0, 0.2 * 2 ** min(attempt, 5)))
                except Exception as exc:  # keep relaying; the orders stay queued in the DB
                    attempt += 1
                    self.stats.retries += 1
                    self.stats.last_error = repr(exc)
                    log.exception("relay failed")
                    self._stop.wait(min(5.0, 0.2 * 2 ** min(attempt, 5)))

    def _load(self, session: Session, hashes: Sequence[str]) -> list[ApiOrder]:
        rows = session.exec(select(ApiOrder).where(col(ApiOrder.order_hash).in_(list(hashes)))).all()
        by_hash = {r.order_hash: r for r in rows}
        return [by_hash[h] for h in hashes if h in by_hash and by_hash[h].status == "queued"]

    def relay_batch(self, hashes: Sequence[str]) -> None:
        """Send queued orders in one transaction. Orders whose keyed nonce is already used on chain
        (a previous attempt that was mined after all) are not sent again; a batch the contract
        refuses is split until each refused order is found and marked failed."""
        mask = (1 << SEQ_BITS) - 1
        with Session(self.engine, expire_on_commit=False) as session:
            rows = self._load(session, hashes)
        # Only a retried order can have landed already: its keyed nonce is then used on chain.
        used = {r.order_hash for r in rows
                if r.attempts > 0 and (self.client.nonce(r.owner, int(r.nonce_key)) & mask) > r.nonce_seq}
        if used:
            self._catch_up_index()  # before this session writes: SQLite has one writer
        with Session(self.engine, expire_on_commit=False) as session:
            todo: list[ApiOrder] = []
            for row in rows:
                row.attempts += 1
                if row.order_hash in used:
                    landed = session.exec(select(OrderRecord.tx_hash)
                                          .where(OrderRecord.order_hash == row.order_hash)).first()
                    if landed is not None:
                        row.status, row.tx_hash = "relayed", landed
                    else:
                        row.status, row.error = "failed", "its nonce was used by another order"
                        self.release_nonce(row.owner, int(row.nonce_key) << SEQ_BITS)
                else:
                    todo.append(row)
                session.add(row)
            session.commit()
            for kind in ("offer", "p2p"):
                group = [r for r in todo if r.kind == kind]
                if group:
                    self._send(session, group)
            session.commit()

    def _send(self, session: Session, rows: list[ApiOrder]) -> None:
        signed = [SignedOrder.from_dict(json.loads(r.signed_json)) for r in rows]
        try:
            if rows[0].kind == "offer":
                result = self.relay_client.submit_offers(signed)
            else:
                result = self.relay_client.submit_p2p_orders(signed)
        except ContractRevert as exc:
            if len(rows) == 1:
                row = rows[0]
                row.status, row.error = "failed", f"{exc.error_name}{exc.args_!r}"
                self.release_nonce(row.owner, int(row.nonce_key) << SEQ_BITS)
                self.stats.offers_failed += 1
                session.add(row)
                session.commit()
                return
            half = len(rows) // 2
            self._send(session, rows[:half])
            self._send(session, rows[half:])
            return
        now = datetime.now(UTC)
        for row in rows:
            row.status, row.tx_hash, row.relayed_at = "relayed", result.tx_hash, now
            session.add(row)
        session.commit()
        self.stats.batches += 1
        self.stats.offers_relayed += len(rows)

    # -- the event indexer -----------------------------------------------------------------------

    def _catch_up_index(self) -> None:
        with self._index_lock:
            report = self.indexer.run_once()
            self.indexed_block = report.to_block

    def _index_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._catch_up_index()
            except Exception:  # the indexer retries at the next tick
                log.exception("indexing failed")
            self._stop.wait(self.settings.index_interval_s)


def relayer_account(settings: Settings, fallback: Callable[[], LocalAccount]) -> LocalAccount:
    if settings.relayer_key:
        account: LocalAccount = Account.from_key(settings.relayer_key)
        return account
    return fallback()


def to_jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value
