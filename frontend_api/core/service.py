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
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from web3 import Web3
from web3.types import RPCEndpoint

from flexgrid.chain.deploy import Deployment
from flexgrid.chain.indexer import EventIndexer
from flexgrid.chain.market import MarketClient, grid_id_hash, offer_struct, p2p_struct
from flexgrid.chain.node import ChainConnection
from flexgrid.chain.transact import CallEncoder, TxSender, _send_lock
from flexgrid.errors import ChainError, ContractRevert, FlexGridError, InputError
from flexgrid.store.db import init_db
from flexgrid.store.tables import OrderRecord
from flexgrid.trading import FlexOffer, P2POrder, RoundConfig, RoundState, SealMode
from flexgrid.trading.eip712 import SignedOrder
from flexgrid.trading.models import validate_for_round
from frontend_api.core.config import Settings
from frontend_api.core.indexing import IndexerProcess, indexed_block, rederivable_engine, wait_indexed
from frontend_api.core.intake import check_signed
from frontend_api.models import ApiOrder

log = logging.getLogger("flexgrid.api")
SEQ_BITS = 64
WRITE_BATCH = 5000  # rows per intake transaction at most
RELAY_QUEUE_BATCHES = 8  # accepted orders waiting for the relayer, in batches, before intake waits
TX_BASE_GAS = 100_000  # a batch transaction's gas besides its orders
_ROUND_STATE = bytes(keccak(text="roundState(uint256)"))[:4].hex()
_IS_PROVIDER = bytes(keccak(text="isProvider(address)"))[:4].hex()


@dataclass
class _Pending:
    """A checked order waiting for the intake writer; `done` is True once stored, False when
    another request stored the same order first."""

    row: ApiOrder
    done: Future[bool] = field(default_factory=Future)


def _duplicate(order_hash: str) -> Exception:
    from frontend_api.core.problems import Problem

    return Problem(409, "Duplicate order", f"order {order_hash} was already submitted",
                   field="order", reason="already submitted", order_hash=order_hash)


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
        self._provider_cache: dict[str, tuple[float, bool]] = {}
        self._view_cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._refresh_locks: dict[tuple[Any, ...], threading.Lock] = {}
        self._pending_seq: dict[tuple[str, int], int] = {}
        url = self.engine.url
        self._status_engine = (rederivable_engine(url.render_as_string(hide_password=False))
                               if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
                               else self.engine)  # relay status: re-checked on chain by a retry
        self._abi_calls: dict[str, CallEncoder] = {}
        self._signed: dict[str, SignedOrder] = {}  # accepted and not relayed yet: not parsed again to relay
        self._lock = threading.Lock()
        self._queue: list[str] = []
        self._queue_cv = threading.Condition()
        self._write_queue: list[_Pending] = []
        self._write_cv = threading.Condition()
        self._writer_running = False
        self._block_gas_limit: int | None = None
        self._chain_id: int | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.indexer = EventIndexer(self.w3, self.deployment, self.engine)
        self._index_lock = threading.Lock()
        self._indexed_block = 0
        self._indexer_process: IndexerProcess | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        with Session(self.engine) as session:
            queued = session.exec(select(ApiOrder.order_hash).where(ApiOrder.status == "queued")
                                  .order_by(col(ApiOrder.created_at))).all()
        with self._queue_cv:
            self._queue.extend(queued)  # orders accepted before a restart are relayed now
        self._stop.clear()
        self._writer_running = True
        loops: list[tuple[Callable[[], None], str]] = [(self._write_loop, "intake-writer"), (self._relay_loop, "relayer")]
        rpc_url = getattr(self.w3.provider, "endpoint_uri", None)
        db_url = self.engine.url.render_as_string(hide_password=False)
        if self.settings.indexer_process and rpc_url and self.engine.url.database not in (None, "", ":memory:"):
            self._indexer_process = IndexerProcess(str(rpc_url), self.deployment, db_url, self.settings.index_interval_s)
            self._indexer_process.start()
        else:
            loops.append((self._index_loop, "indexer"))
        for target, name in loops:
            thread = threading.Thread(target=target, name=f"flexgrid-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with self._queue_cv:
            self._queue_cv.notify_all()
        with self._write_cv:
            self._write_cv.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        self._writer_running = False
        if self._indexer_process is not None:
            self._indexer_process.stop()
            self._indexer_process = None
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
        data = "0x" + _IS_PROVIDER + "00" * 12 + address[2:].lower()  # raw eth_call: web3's costs ~5 ms of CPU
        value = int(self._rpc("eth_call", [{"to": self.deployment.registry, "data": data}, "latest"]), 16) == 1
        self._provider_cache[address] = (now, value)
        return value

    def _cached(self, key: tuple[Any, ...], read: Callable[[], Any], ttl_s: float = 0.5) -> Any:
        """`read()`, at most every `ttl_s` seconds. Once a value is cached, one thread refreshes it
        when it is stale while the others keep answering with the last one (under load every
        request thread used to miss at once and call the node at the same time)."""
        hit = self._view_cache.get(key)
        if hit is not None and time.monotonic() - hit[0] <= ttl_s:
            return hit[1]
        with self._lock:
            refresh = self._refresh_locks.setdefault(key, threading.Lock())
        if not refresh.acquire(blocking=hit is None):
            return hit[1] if hit is not None else read()  # another thread is refreshing it
        try:
            hit = self._view_cache.get(key)
            if hit is None or time.monotonic() - hit[0] > ttl_s:
                hit = (time.monotonic(), read())
                self._view_cache[key] = hit
            return hit[1]
        finally:
            refresh.release()

    def round_count(self) -> int:
        """Rounds on chain, read at most every half second."""
        return int(self._cached(("round_count",), self.client.round_count))

    def deadlines(self, round_id: int) -> dict[str, int]:
        return dict(self._cached(("deadlines", round_id), lambda: self.client.deadlines(round_id)))

    def head_block(self) -> int:
        return int(self._cached(("block",), lambda: self.w3.eth.block_number))

    def round_state(self, round_id: int) -> RoundState:
        """The round's state, read at most every half second (a raw `eth_call`: web3's contract
        call spent ~5 ms of CPU in validation and formatting)."""

        def read() -> RoundState:
            data = "0x" + _ROUND_STATE + round_id.to_bytes(32, "big").hex()
            answer = self._rpc("eth_call", [{"to": self.deployment.market, "data": data}, "latest"])
            return RoundState(int(answer, 16))

        return RoundState(self._cached(("round_state", round_id), read))

    def forget_roles(self, address: str | None = None) -> None:
        if address is None:
            self._role_cache.clear()
            self._provider_cache.clear()
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
        """Timestamp of the latest block, read at most every half second."""

        def read() -> int:
            return int(self._rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)

        return int(self._cached(("chain_time",), read))

    # -- signed orders: checks, then one database transaction for many requests ------------------

    def check_order(self, signed: SignedOrder, signer: str) -> str:
        """Check a signed order as the contract will (domain, signature, owner, round open, slots,
        price, expiry); return its order hash. Raises `Problem` or `InputError` naming the field."""
        from frontend_api.core.problems import Problem

        order = signed.order
        assert isinstance(order, FlexOffer | P2POrder)
        signed.domain.check_matches(self.deployment.domain)  # SignatureError names what differs
        order_hash = check_signed(order, signed.domain, signed.signature_bytes)
        owner = order.signer
        if owner != signer:
            name = "provider" if isinstance(order, FlexOffer) else "trader"
            raise Problem(403, "Forbidden", f"{name}: the order is signed for {owner}, the signed-in wallet is {signer}",
                          field=name, reason="not the signed-in address")
        config = self.round_config(order.round_id)
        if isinstance(order, FlexOffer) and config.seal_mode != SealMode.OPEN:
            raise InputError("round_id", f"round {order.round_id} is {config.seal_mode.name}: commit, then reveal")
        state = self.round_state(order.round_id)
        now = self.chain_now_s()
        if state != RoundState.OPEN or now >= config.gate_closure_s:
            raise InputError("round_id", f"round {order.round_id} is not open for orders "
                             f"({state.name}, gate closure {config.gate_closure_s}, chain time {now})")
        validate_for_round(order, config, now_s=now)
        return order_hash

    def accept_orders(self, items: Sequence[SignedOrder], signer: str) -> list[ApiOrder | Exception]:
        """Check signed orders, store the good ones and queue them for relaying; one result per
        order, in order: the stored row, or the error that refused it (`Problem`, `InputError`).

        Rows of concurrent requests are written by one writer thread in one transaction (group
        commit); this returns once they are committed, so an accepted order is never lost and a
        refused one is never stored. A database failure raises (nothing of the request is stored)."""
        from frontend_api.core.problems import Problem

        self._wait_for_relay_room()
        results: list[ApiOrder | Exception | None] = [None] * len(items)
        checked: list[tuple[int, str, SignedOrder]] = []
        for i, signed in enumerate(items):
            try:
                checked.append((i, self.check_order(signed, signer), signed))
            except (Problem, FlexGridError) as exc:
                results[i] = exc
        known = self._stored_hashes([h for _, h, _ in checked])
        pending: list[tuple[int, _Pending]] = []
        for i, order_hash, signed in checked:
            order = signed.order
            assert isinstance(order, FlexOffer | P2POrder)
            if order_hash in known:
                results[i] = _duplicate(order_hash)
                continue
            try:
                self.reserve_nonce(order.signer, order.nonce)
            except Problem as exc:
                results[i] = exc
                continue
            known.add(order_hash)
            row = ApiOrder(order_hash=order_hash, kind="offer" if isinstance(order, FlexOffer) else "p2p",
                           owner=order.signer, round_id=order.round_id, nonce_key=str(order.nonce >> SEQ_BITS),
                           nonce_seq=order.nonce & ((1 << SEQ_BITS) - 1), signed_json=json.dumps(signed.to_dict()))
            pending.append((i, _Pending(row)))
            self._signed[order_hash] = signed
        self._write([p for _, p in pending])
        error: BaseException | None = None
        for i, p in pending:
            try:
                stored = p.done.result(timeout=120)
            except BaseException as exc:  # the transaction failed: nothing of it is stored
                self.release_nonce(p.row.owner, int(p.row.nonce_key) << SEQ_BITS)
                self._signed.pop(p.row.order_hash, None)
                error = error or exc
                continue
            results[i] = p.row if stored else _duplicate(p.row.order_hash)
        if error is not None:
            raise error
        return [r for r in results if r is not None]

    def _wait_for_relay_room(self, timeout_s: float = 30.0) -> None:
        """Backpressure: while more than RELAY_QUEUE_BATCHES batches wait for the relayer, new
        orders wait (at most `timeout_s`, then they are taken anyway). Intake and relaying share
        the process's interpreter lock; unchecked, intake outran the relayer and the queue (and
        the end-to-end latency) grew for as long as the load lasted."""
        limit = RELAY_QUEUE_BATCHES * self.settings.batch_size
        deadline = time.monotonic() + timeout_s
        with self._queue_cv:
            while len(self._queue) >= limit and self._writer_running and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._queue_cv.wait(min(left, 0.5))

    def accept_order(self, signed: SignedOrder, signer: str) -> ApiOrder:
        """`accept_orders` for one order: the stored row, or raises the error that refused it."""
        result = self.accept_orders([signed], signer)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def _stored_hashes(self, hashes: Sequence[str]) -> set[str]:
        if not hashes:
            return set()
        with Session(self.engine) as session:
            return set(session.exec(select(ApiOrder.order_hash).where(col(ApiOrder.order_hash).in_(list(hashes)))).all())

    def _write(self, pending: list[_Pending]) -> None:
        if not pending:
            return
        if not self._writer_running:
            self._write_batch(pending)
            return
        with self._write_cv:
            self._write_queue.extend(pending)
            self._write_cv.notify()

    def _write_loop(self) -> None:
        while True:
            with self._write_cv:
                while not self._write_queue and not self._stop.is_set():
                    self._write_cv.wait(0.5)
                if not self._write_queue:
                    return
                batch = self._write_queue[:WRITE_BATCH]
                del self._write_queue[: len(batch)]
            self._write_batch(batch)

    def _write_batch(self, batch: list[_Pending]) -> None:
        """One transaction for the rows of many requests; duplicates (a race between two requests
        with the same order) are not written and answered as such."""
        fresh: list[_Pending] = []
        try:
            existing = self._stored_hashes([p.row.order_hash for p in batch])
            for p in batch:
                if p.row.order_hash not in existing:
                    existing.add(p.row.order_hash)
                    fresh.append(p)
            if fresh:
                with Session(self.engine) as session:
                    session.execute(insert(ApiOrder), [p.row.model_dump() for p in fresh])
                    session.commit()
        except BaseException as exc:
            for p in batch:
                p.done.set_exception(exc)
            return
        self.enqueue_many([p.row.order_hash for p in fresh])
        for p in batch:
            p.done.set_result(any(p is f for f in fresh))

    def reserve_nonce(self, owner: str, nonce: int) -> None:
        """Check that `nonce` is the next unused one of `owner` under its key (counting orders the
        API has accepted and not relayed yet) and reserve it."""
        from frontend_api.core.problems import Problem

        key, seq = nonce >> SEQ_BITS, nonce & ((1 << SEQ_BITS) - 1)
        on_chain = None
        if (owner, key) not in self._pending_seq:  # first use: read the chain outside the lock
            on_chain = self.client.nonce(owner, key) & ((1 << SEQ_BITS) - 1)
        with self._lock:
            expected = self._pending_seq.get((owner, key), on_chain)
            if expected is None:  # released meanwhile
                expected = self.client.nonce(owner, key) & ((1 << SEQ_BITS) - 1)
            if seq != expected:
                raise Problem(422, "Invalid input", f"nonce: sequence {seq} under key {key} is not the next one ({expected})",
                              field="nonce", reason=f"expected sequence {expected} under key {key}")
            self._pending_seq[(owner, key)] = seq + 1

    def release_nonce(self, owner: str, nonce: int) -> None:
        with self._lock:
            self._pending_seq.pop((owner, nonce >> SEQ_BITS), None)

    def enqueue(self, order_hash: str) -> None:
        self.enqueue_many([order_hash])

    def enqueue_many(self, order_hashes: Sequence[str]) -> None:
        if not order_hashes:
            return
        with self._queue_cv:
            was_empty = not self._queue
            self._queue.extend(order_hashes)
            if was_empty or len(self._queue) >= self.settings.batch_size:
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
            self._queue_cv.notify_all()  # intake waiting for room (backpressure)
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
        """Send queued orders in as few transactions as the block gas limit allows.

        A retry never loses or doubles an order: orders whose earlier transaction was mined (its
        answer was lost) are marked relayed by that transaction; orders whose keyed nonce is used on
        chain are looked up in the index; only the rest are sent again. A transaction the contract
        refuses is split until each refused order is found and marked failed."""
        mask = (1 << SEQ_BITS) - 1
        with Session(self.engine, expire_on_commit=False) as session:
            rows = self._load(session, hashes)
        if not rows:
            return
        landed: dict[str, str] = {}  # order hash -> the transaction that carried it
        for tx_hash in {r.tx_hash for r in rows if r.tx_hash}:
            receipt = self._receipt(tx_hash)
            if receipt is not None and int(receipt["status"], 16) == 1:
                landed.update({r.order_hash: tx_hash for r in rows if r.tx_hash == tx_hash})
        rest = [r for r in rows if r.order_hash not in landed]
        # Only a retried order can have landed already: its keyed nonce is then used on chain.
        used = {r.order_hash for r in rest
                if r.attempts > 0 and (self.client.nonce(r.owner, int(r.nonce_key)) & mask) > r.nonce_seq}
        failed: list[ApiOrder] = []
        if used:
            self._catch_up_index()
            with Session(self.engine) as session:
                found = dict(session.exec(select(OrderRecord.order_hash, OrderRecord.tx_hash)
                                          .where(col(OrderRecord.order_hash).in_(list(used)))).all())
            landed.update(found)
            failed = [r for r in rest if r.order_hash in used and r.order_hash not in found]
        by_tx: dict[str, list[str]] = {}
        for order_hash, tx_hash in landed.items():
            by_tx.setdefault(tx_hash, []).append(order_hash)
        for tx_hash, group_hashes in by_tx.items():
            self._update(group_hashes, status="relayed", tx_hash=tx_hash, relayed_at=datetime.now(UTC))
        for order_hash in [*landed, *(r.order_hash for r in failed)]:
            self._signed.pop(order_hash, None)
        if failed:
            self._update([r.order_hash for r in failed], status="failed", error="its nonce was used by another order")
            for r in failed:
                self.release_nonce(r.owner, int(r.nonce_key) << SEQ_BITS)
        todo = [r for r in rest if r.order_hash not in used]
        if not todo:
            return
        for kind in ("offer", "p2p"):
            group = [r for r in todo if r.kind == kind]
            for chunk in self._gas_chunks(group):
                self._send(chunk)

    def _update(self, hashes: Sequence[str], **values: Any) -> None:
        table = ApiOrder.__table__  # type: ignore[attr-defined]  # Core: the ORM bulk update cost more than SQLite
        with self._status_engine.begin() as conn:
            conn.execute(update(table).where(table.c.order_hash.in_(list(hashes))).values(**values))

    def _gas_bound(self, row: ApiOrder) -> int:
        """An upper bound of the gas one order adds to a batch (measured: ~25k + 3k per slot for
        an offer, ~20k more when it is the owner's first order under its nonce key)."""
        if row.kind != "offer":
            return 80_000
        signed = self._signed.get(row.order_hash)
        if signed is not None and isinstance(signed.order, FlexOffer):
            slots = len(signed.order.slots)
        else:
            slots = len(json.loads(row.signed_json)["order"]["slots"])
        return 50_000 + 4_000 * slots

    def _max_tx_gas(self) -> int:
        if self._block_gas_limit is None:
            self._block_gas_limit = int(self.w3.eth.get_block("latest")["gasLimit"])
        return int(self._block_gas_limit * 0.9)

    def _gas_chunks(self, rows: list[ApiOrder]) -> list[list[ApiOrder]]:
        limit = self._max_tx_gas() - TX_BASE_GAS
        chunks: list[list[ApiOrder]] = []
        used = limit
        for row in rows:
            gas = self._gas_bound(row)
            if used + gas > limit:
                chunks.append([])
                used = 0
            chunks[-1].append(row)
            used += gas
        return chunks

    def _rpc(self, method: str, params: list[Any]) -> Any:
        """A raw JSON-RPC call (no result formatters: a receipt of 400 logs is formatted in ~0.2 s)."""
        try:
            answer = self.w3.provider.make_request(RPCEndpoint(method), params)
        except Exception as exc:
            raise ChainError(f"{method}: {exc}") from exc
        if answer.get("error"):
            raise ChainError(f"{method}: {answer['error']}")
        return answer.get("result")

    def _receipt(self, tx_hash: str) -> dict[str, Any] | None:
        receipt = self._rpc("eth_getTransactionReceipt", [tx_hash])
        return dict(receipt) if receipt else None

    def _wait_receipt(self, tx_hash: str, timeout_s: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            receipt = self._receipt(tx_hash)
            if receipt is not None:
                return receipt
            if time.monotonic() > deadline:
                raise ChainError(f"transaction {tx_hash} not mined within {timeout_s:.0f} s")
            time.sleep(0.01)

    def _broadcast(self, raw: bytes, tx_hash: str) -> str:
        self._rpc("eth_sendRawTransaction", ["0x" + raw.hex()])
        return tx_hash

    def _send(self, rows: list[ApiOrder]) -> None:
        signed = [self._signed.get(r.order_hash) or SignedOrder.from_dict(json.loads(r.signed_json)) for r in rows]
        if len(rows) == 1:  # one order: eth_estimateGas first, so a refusal costs no gas
            self._update([rows[0].order_hash], attempts=rows[0].attempts + 1)  # from now on it may land
            try:
                result = (self.relay_client.submit_offers(signed) if rows[0].kind == "offer"
                          else self.relay_client.submit_p2p_orders(signed))
            except ContractRevert as exc:
                self._fail(rows[0], f"{exc.error_name}{exc.args_!r}")
                return
            self._relayed(rows, result.tx_hash)
            return
        sigs = [s.signature_bytes for s in signed]
        if rows[0].kind == "offer":
            args: list[Any] = [[offer_struct(s.order) for s in signed if isinstance(s.order, FlexOffer)], sigs]
            data = self._calldata("submitOffers", args)
        else:
            args = [[p2p_struct(s.order) for s in signed if isinstance(s.order, P2POrder)], sigs]
            data = self._calldata("submitP2POrders", args)
        gas = min(self._max_tx_gas(), TX_BASE_GAS + sum(self._gas_bound(r) for r in rows))
        tx_hash = self._prepare_and_send(rows, data, gas)
        receipt = self._wait_receipt(tx_hash)
        if int(receipt["status"], 16) == 1:
            self._relayed(rows, tx_hash)
            return
        try:  # replay the call to learn why; either way the halves are sent again
            TxSender(self.w3, self.relayer)._raise_replayed_revert(
                {"from": self.relayer.address, "to": self.deployment.market, "data": data},
                int(receipt["blockNumber"], 16))
        except ContractRevert as exc:
            log.info("a batch of %d orders was refused (%s): splitting it", len(rows), exc.error_name)
        half = len(rows) // 2
        self._send(rows[:half])
        self._send(rows[half:])

    def _calldata(self, name: str, args: list[Any]) -> str:
        """ABI-encoded call of the market's `name` (structs as dicts by component name), with an
        encoder built once from the ABI: web3's `encode_abi` took ~5 s for 400 offers, eth-abi's
        generic encoder ~1 ms per offer under load."""
        if name not in self._abi_calls:
            item = next(i for i in self.client.market.abi if i.get("type") == "function" and i.get("name") == name)
            self._abi_calls[name] = CallEncoder(dict(item))
        return "0x" + self._abi_calls[name].encode(args).hex()

    def _prepare_and_send(self, rows: list[ApiOrder], data: str, gas: int) -> str:
        """Record the transaction's hash on its orders before sending it, so that a retry after a
        lost answer finds it; then send."""
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        tx: dict[str, Any] = {"to": self.deployment.market, "data": data, "gas": gas, "value": 0,
                              "gasPrice": int(self._rpc("eth_gasPrice", []), 16), "chainId": self._chain_id}
        with _send_lock(str(self.relayer.address)):
            tx["nonce"] = int(self._rpc("eth_getTransactionCount", [self.relayer.address, "pending"]), 16)
            raw = bytes(self.relayer.sign_transaction(tx).raw_transaction)
            tx_hash = "0x" + bytes(keccak(raw)).hex()
            self._update([r.order_hash for r in rows], tx_hash=tx_hash, attempts=max(r.attempts for r in rows) + 1)
            return self._broadcast(raw, tx_hash)

    def _relayed(self, rows: list[ApiOrder], tx_hash: str) -> None:
        self._update([r.order_hash for r in rows], status="relayed", tx_hash=tx_hash, relayed_at=datetime.now(UTC))
        for r in rows:
            self._signed.pop(r.order_hash, None)
        self.stats.batches += 1
        self.stats.offers_relayed += len(rows)

    def _fail(self, row: ApiOrder, error: str) -> None:
        self._update([row.order_hash], status="failed", error=error)
        self._signed.pop(row.order_hash, None)
        self.release_nonce(row.owner, int(row.nonce_key) << SEQ_BITS)
        self.stats.offers_failed += 1

    # -- the event indexer -----------------------------------------------------------------------

    @property
    def indexed_block(self) -> int:
        """The last block whose events are in the database."""
        if self._indexer_process is None:
            return self._indexed_block
        return int(self._cached(("indexed_block",), lambda: indexed_block(self.engine, self.indexer.key), 0.25))

    def _catch_up_index(self) -> None:
        """Return once the events up to the chain's head are in the database."""
        if self._indexer_process is not None:
            head = int(self.w3.eth.block_number)
            if not wait_indexed(self.engine, self.indexer.key, head):
                raise ChainError(f"the indexer has not reached block {head} within a minute")
            return
        with self._index_lock:
            report = self.indexer.run_once()
            self._indexed_block = report.to_block

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
