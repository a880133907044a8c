"""Event indexer: the FlexGrid contracts' events into SQLModel tables (`flexgrid.store`).

Each event is stored once, keyed by (chain id, transaction hash, log index), so re-running adds
nothing. Only blocks at least `confirmations` deep are read. Before reading on, the indexer checks
that the last block it read is still on the chain; after a reorg it drops what it stored from the
orphaned blocks and reads the new ones.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_abi import decode as abi_decode
from sqlalchemy import Engine, insert, update
from sqlmodel import Session, col, delete, select
from sqlmodel.sql.expression import SelectOfScalar
from web3 import Web3
from web3.types import RPCEndpoint

from flexgrid.chain.abicodec import (
    Decode,
    Unsupported,
    checksum,
    decoder,
    parse,
    topic_holds_hash,
    word_decoder,
)
from flexgrid.chain.artifacts import abi_signature, abi_type, load_artifact
from flexgrid.chain.deploy import Deployment
from flexgrid.chain.market import offer_from_struct, p2p_from_struct, request_from_struct
from flexgrid.errors import ChainError
from flexgrid.store.tables import ChainEvent, IndexedBlock, IndexerCursor, OrderRecord
from flexgrid.trading.models import FlexOffer, FlexRequest, P2POrder, request_order_hash

SelectT = TypeVar("SelectT", bound=SelectOfScalar[Any])

CONTRACTS = {"market": "FlexMarket", "registry": "FlexRegistry", "token": "FlexToken"}


def jsonable(value: Any, param: dict[str, Any] | None = None) -> Any:
    """A decoded ABI value as JSON-able data: structs as dicts by component name, bytes as hex."""
    kind = str(param["type"]) if param else ""
    if kind.startswith("tuple") and kind.endswith("]"):
        inner = {**param, "type": kind[: kind.rindex("[")]} if param else None
        return [jsonable(v, inner) for v in value]
    if kind == "tuple" and param is not None:
        components = param["components"]
        if isinstance(value, dict) or hasattr(value, "items"):
            return {c["name"]: jsonable(value[c["name"]], c) for c in components}
        return {c["name"]: jsonable(v, c) for c, v in zip(components, value, strict=True)}
    if kind.endswith("]"):
        inner = {"type": kind[: kind.rindex("[")]}
        return [jsonable(v, inner) for v in value]
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if kind == "address":
        return str(Web3.to_checksum_address(value))
    return value


def _struct(args: dict[str, Any], key: str) -> dict[str, Any]:
    """A struct argument from stored JSON, with hex bytes turned back into bytes for the decoders."""
    out = {}
    for k, v in dict(args[key]).items():
        out[k] = bytes.fromhex(v[2:]) if isinstance(v, str) and len(v) == 66 and k != "provider" else v
    return out


def _as_bytes(value: Any) -> bytes:
    """A log field as bytes: raw JSON-RPC gives `0x` hex strings, web3 gives HexBytes."""
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


class _LogDecoder:
    """Decodes one event's logs into JSON-able args (structs as dicts by component name, bytes as
    `0x` hex, addresses checksummed). A decoder built from the event's ABI reads the words directly
    (eth-abi and then `jsonable` took ~0.3 ms per offer event); anything it does not take (a value
    out of range, a type it does not know) goes through eth-abi, which raises on malformed data."""

    def __init__(self, item: dict[str, Any]) -> None:
        self.inputs = list(item["inputs"])
        self.indexed = [p for p in self.inputs if p.get("indexed")]
        self.data_params = [p for p in self.inputs if not p.get("indexed")]
        self.data_types = [abi_type(p) for p in self.data_params]
        self.names = [str(p["name"]) for p in self.inputs]
        self._fast: list[tuple[str, Decode, int]] | None
        self._topics: list[tuple[str, Decode | None]] = []
        try:
            self._fast = []
            offset = 0
            for p in self.data_params:
                t = parse(p)
                self._fast.append((str(p["name"]), decoder(t), offset))
                offset += t.head_size
            for p in self.indexed:  # a reference type's topic holds only its hash
                self._topics.append((str(p["name"]), None if topic_holds_hash(p) else word_decoder(parse(p))))
        except Unsupported:
            self._fast = None

    def decode(self, log: Any) -> dict[str, Any]:
        if self._fast is not None:
            try:
                return self._decode_fast(log)
            except (ValueError, IndexError):  # Unsupported is a ValueError
                pass
        return self._decode_abi(log)

    def _decode_fast(self, log: Any) -> dict[str, Any]:
        assert self._fast is not None
        values: dict[str, Any] = {}
        topics = [_as_bytes(t) for t in list(log["topics"])[1:]]
        if len(topics) != len(self._topics):
            raise Unsupported("topics")
        for (name, word), topic in zip(self._topics, topics, strict=True):
            values[name] = "0x" + topic.hex() if word is None else word(topic, 0)  # dynamic: only its hash
        data = _as_bytes(log["data"])
        for name, decode, offset in self._fast:
            values[name] = decode(data, offset)
        return {name: values[name] for name in self.names}

    def _decode_abi(self, log: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for param, topic in zip(self.indexed, list(log["topics"])[1:], strict=True):
            if topic_holds_hash(param):
                values[param["name"]] = "0x" + _as_bytes(topic).hex()  # only the hash is in the topic
            else:
                values[param["name"]] = jsonable(abi_decode([abi_type(param)], _as_bytes(topic))[0], param)
        decoded = abi_decode(self.data_types, _as_bytes(log["data"])) if self.data_types else ()
        for param, value in zip(self.data_params, decoded, strict=True):
            values[param["name"]] = jsonable(value, param)
        return {p["name"]: values[p["name"]] for p in self.inputs}


@dataclass(frozen=True)
class IndexerReport:
    """What one `run_once` did."""

    from_block: int
    to_block: int  # last block read (from_block - 1 when nothing was read)
    events_added: int
    orders_added: int
    reorged_blocks: int  # stored blocks dropped because they left the chain


class EventIndexer:
    """Indexes the events of one deployment into the database behind `engine`."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        engine: Engine,
        *,
        confirmations: int = 0,
        batch_blocks: int = 2000,
    ) -> None:
        if confirmations < 0:
            raise ValueError("confirmations must not be negative")
        self.w3 = w3
        self.deployment = deployment
        self.engine = engine
        self.confirmations = confirmations
        self.batch_blocks = batch_blocks
        self.key = f"{deployment.chain_id}:{deployment.market}"
        self._events: dict[bytes, tuple[str, str, dict[str, Any], Any]] = {}
        self._addresses: dict[str, str] = {}
        for attr, name in CONTRACTS.items():
            address = Web3.to_checksum_address(getattr(deployment, attr))
            self._addresses[str(address)] = name
            abi = load_artifact(name).abi
            for item in abi:
                if item.get("type") == "event" and not item.get("anonymous"):
                    topic = bytes(Web3.keccak(text=abi_signature(item)))
                    self._events[topic + bytes.fromhex(address[2:])] = (
                        name,
                        str(item["name"]),
                        item,
                        _LogDecoder(item),
                    )

    # -- cursor and reorgs -----------------------------------------------------------------------

    def _cursor(self, session: Session) -> IndexerCursor:
        cursor = session.get(IndexerCursor, self.key)
        if cursor is None:
            cursor = IndexerCursor(
                key=self.key, chain_id=self.deployment.chain_id, last_block=self.deployment.block_number - 1
            )
            session.add(cursor)
        return cursor

    def _block_hash(self, number: int) -> str | None:
        try:
            block = self.w3.eth.get_block(number)
        except Exception:  # the block does not exist (any more)
            return None
        return "0x" + bytes(block["hash"]).hex()

    def _handle_reorg(self, session: Session, cursor: IndexerCursor) -> int:
        """Roll the cursor back to the last stored block still on the chain; return blocks dropped."""
        if not cursor.last_block_hash or self._block_hash(cursor.last_block) == cursor.last_block_hash:
            return 0
        stored = session.exec(
            select(IndexedBlock)
            .where(IndexedBlock.chain_id == self.deployment.chain_id)
            .where(IndexedBlock.block_number <= cursor.last_block)
            .order_by(col(IndexedBlock.block_number).desc())
        ).all()
        ancestor, ancestor_hash = self.deployment.block_number - 1, ""
        # With no stored block left on the chain (another chain under the same id, e.g. a restarted
        # anvil, possibly with the contracts deployed at a later block), nothing stored is kept.
        keep_up_to = -1
        for block in stored:
            if self._block_hash(block.block_number) == block.block_hash:
                ancestor, ancestor_hash = block.block_number, block.block_hash
                keep_up_to = ancestor
                break
        dropped = cursor.last_block - keep_up_to
        chain_id = self.deployment.chain_id
        session.exec(
            delete(ChainEvent)
            .where(col(ChainEvent.chain_id) == chain_id)
            .where(col(ChainEvent.block_number) > keep_up_to)
        )
        session.exec(
            delete(OrderRecord)
            .where(col(OrderRecord.chain_id) == chain_id)
            .where(col(OrderRecord.block_number) > keep_up_to)
        )
        session.exec(
            delete(IndexedBlock)
            .where(col(IndexedBlock.chain_id) == chain_id)
            .where(col(IndexedBlock.block_number) > keep_up_to)
        )
        cursor.last_block, cursor.last_block_hash = ancestor, ancestor_hash
        return dropped

    # -- reading ---------------------------------------------------------------------------------

    def run_once(self) -> IndexerReport:
        """Read every confirmed block not read yet; returns what was added."""
        head = int(self.w3.eth.block_number)
        target = head - self.confirmations
        events_added = orders_added = 0
        with Session(self.engine, expire_on_commit=False) as session:
            cursor = self._cursor(session)
            dropped = self._handle_reorg(session, cursor)
            session.commit()
            start = cursor.last_block + 1
            block = start
            while block <= target:
                end = min(block + self.batch_blocks - 1, target)
                logs = self._get_logs(block, end)
                e, o = self._store_logs(session, logs)
                events_added += e
                orders_added += o
                end_hash = self._block_hash(end)
                if end_hash is None:
                    raise ChainError(f"block {end} vanished while indexing")
                cursor.last_block, cursor.last_block_hash = end, end_hash
                self._remember_block(session, end, end_hash)
                session.add(cursor)
                session.commit()
                block = end + 1
            return IndexerReport(
                from_block=start,
                to_block=max(cursor.last_block, start - 1),
                events_added=events_added,
                orders_added=orders_added,
                reorged_blocks=dropped,
            )

    def follow(
        self,
        *,
        poll_interval_s: float = 2.0,
        stop: threading.Event | None = None,
        on_report: Callable[[IndexerReport], None] | None = None,
    ) -> None:
        """Index new blocks every `poll_interval_s` until `stop` is set (or forever)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            report = self.run_once()
            if on_report is not None:
                on_report(report)
            stop.wait(poll_interval_s)

    def _get_logs(self, from_block: int, to_block: int) -> list[dict[str, Any]]:
        """The deployment's logs of a block range as raw JSON-RPC dicts (hex strings): web3's log
        formatters cost more than decoding them."""
        params = [{"fromBlock": hex(from_block), "toBlock": hex(to_block), "address": list(self._addresses)}]
        try:
            answer = self.w3.provider.make_request(RPCEndpoint("eth_getLogs"), params)
        except Exception as exc:
            raise ChainError(f"eth_getLogs {from_block}..{to_block}: {exc}") from exc
        if answer.get("error") or answer.get("result") is None:
            raise ChainError(f"eth_getLogs {from_block}..{to_block}: {answer.get('error')}")
        return list(answer["result"])

    def _remember_block(self, session: Session, number: int, block_hash: str) -> None:
        self._remember_blocks(session, {number: block_hash})

    def _remember_blocks(self, session: Session, blocks: dict[int, str]) -> None:
        if not blocks:
            return
        chain_id = self.deployment.chain_id
        stored = dict(
            session.exec(
                select(IndexedBlock.block_number, IndexedBlock.block_hash)
                .where(IndexedBlock.chain_id == chain_id)
                .where(col(IndexedBlock.block_number).in_(list(blocks)))
            ).all()
        )
        new = [{"chain_id": chain_id, "block_number": n, "block_hash": h} for n, h in blocks.items() if n not in stored]
        if new:
            session.execute(insert(IndexedBlock), new)
        for number, block_hash in blocks.items():
            if number in stored and stored[number] != block_hash:
                session.execute(
                    update(IndexedBlock)
                    .where(col(IndexedBlock.chain_id) == chain_id)
                    .where(col(IndexedBlock.block_number) == number)
                    .values(block_hash=block_hash)
                )

    def _store_logs(self, session: Session, logs: Iterable[Any]) -> tuple[int, int]:
        """Decode `logs` (raw JSON-RPC dicts or web3's) and insert their events and orders with one
        multi-row insert per table (the ORM's unit of work cost ~0.3 ms per row)."""
        chain_id = self.deployment.chain_id
        rows = list(logs)
        tx_hashes = {_hex32(log["transactionHash"]) for log in rows}
        existing = set()
        if tx_hashes:
            for tx_hash, log_index in session.exec(
                select(ChainEvent.tx_hash, ChainEvent.log_index)
                .where(ChainEvent.chain_id == chain_id)
                .where(col(ChainEvent.tx_hash).in_(tx_hashes))
            ).all():
                existing.add((tx_hash, log_index))
        events: list[dict[str, Any]] = []
        orders: list[dict[str, Any]] = []
        blocks: dict[int, str] = {}
        for log in rows:
            if not log["topics"]:
                continue
            address = checksum(log["address"] if isinstance(log["address"], str) else str(log["address"]))
            entry = self._events.get(_as_bytes(log["topics"][0]) + bytes.fromhex(address[2:]))
            if entry is None:
                continue
            tx_hash = _hex32(log["transactionHash"])
            log_index = _int(log["logIndex"])
            if (tx_hash, log_index) in existing:
                continue
            contract_name, event_name, abi_item, event = entry
            args = event.decode(log)
            block_number = _int(log["blockNumber"])
            block_hash = _hex32(log["blockHash"])
            order = order_from_event(event_name, args)
            order_hash = args.get("orderHash")
            if event_name == "FlexRequestSubmitted":
                order_hash = request_order_hash(int(args["requestId"]))
            account = next(
                (args[p["name"]] for p in abi_item["inputs"] if p.get("indexed") and p["type"] == "address"),
                None,
            )
            events.append(
                {
                    "chain_id": chain_id,
                    "contract": address,
                    "contract_name": contract_name,
                    "event": event_name,
                    "tx_hash": tx_hash,
                    "log_index": log_index,
                    "block_number": block_number,
                    "block_hash": block_hash,
                    "round_id": int(args["roundId"]) if "roundId" in args else None,
                    "order_hash": order_hash if isinstance(order_hash, str) else None,
                    "account": account,
                    "args_json": json.dumps(args, sort_keys=True, separators=(",", ":")),
                }
            )
            blocks[block_number] = block_hash
            if order is not None:
                kind, participant, model = order
                orders.append(
                    {
                        "chain_id": chain_id,
                        "market": self.deployment.market,
                        "order_hash": str(model.order_id),
                        "kind": kind,
                        "round_id": model.round_id,
                        "participant": participant,
                        "model_json": model.model_dump_json(),
                        "tx_hash": tx_hash,
                        "log_index": log_index,
                        "block_number": block_number,
                    }
                )
            existing.add((tx_hash, log_index))
        if events:
            session.execute(insert(ChainEvent), events)
        if orders:
            session.execute(insert(OrderRecord), orders)
        self._remember_blocks(session, blocks)
        return len(events), len(orders)


def _hex32(value: Any) -> str:
    return value.lower() if isinstance(value, str) else "0x" + bytes(value).hex()


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def order_from_event(
    event_name: str, args: dict[str, Any]
) -> tuple[str, str, FlexRequest | FlexOffer | P2POrder] | None:
    """(kind, participant, model) of an order event's decoded (JSON-able) args; None for other events."""
    if event_name == "FlexRequestSubmitted":
        request = request_from_struct(int(args["requestId"]), args["dso"], dict(args["request"]))
        return "request", str(args["dso"]), request
    if event_name == "FlexOfferSubmitted":
        offer = offer_from_struct(_struct(args, "offer"), args["orderHash"])
        return "offer", offer.provider, offer
    if event_name == "P2POrderSubmitted":
        order = p2p_from_struct(_struct(args, "order"), args["orderHash"])
        return "p2p", order.trader, order
    return None


@dataclass(frozen=True)
class RoundOrders:
    """The orders of one round as indexed from chain, each with its order hash as `order_id`."""

    requests: list[FlexRequest]
    offers: list[FlexOffer]
    p2p: list[P2POrder]


def _in_acceptance_order(query: SelectT, deployment: Deployment, round_id: int) -> SelectT:
    """`query` over OrderRecord restricted to one round of one market, in acceptance order."""
    return (
        query.where(OrderRecord.chain_id == deployment.chain_id)
        .where(OrderRecord.market == deployment.market)
        .where(OrderRecord.round_id == round_id)
        .order_by(col(OrderRecord.block_number), col(OrderRecord.log_index))
    )


def order_records(engine: Engine, deployment: Deployment, round_id: int) -> list[OrderRecord]:
    """The indexed order rows of `round_id` (run the indexer first), in acceptance order."""
    with Session(engine) as session:
        return list(session.exec(_in_acceptance_order(select(OrderRecord), deployment, round_id)).all())


def round_orders(engine: Engine, deployment: Deployment, round_id: int) -> RoundOrders:
    """The indexed orders of `round_id` (run the indexer first), in acceptance order."""
    rows = order_records(engine, deployment, round_id)
    requests = [FlexRequest.model_validate_json(r.model_json) for r in rows if r.kind == "request"]
    offers = [FlexOffer.model_validate_json(r.model_json) for r in rows if r.kind == "offer"]
    p2p = [P2POrder.model_validate_json(r.model_json) for r in rows if r.kind == "p2p"]
    return RoundOrders(requests=requests, offers=offers, p2p=p2p)


ORDER_EVENTS = ("FlexRequestSubmitted", "FlexOfferSubmitted", "P2POrderSubmitted")


def read_round_orders(
    w3: Web3, deployment: Deployment, round_id: int, *, from_block: int | None = None
) -> RoundOrders:
    """The orders of `round_id` read straight from the chain's events (no database), in acceptance
    order: what an oracle or auditor rebuilds the clearing inputs from."""
    abi = load_artifact("FlexMarket").abi
    decoders: dict[bytes, tuple[str, _LogDecoder]] = {}
    for item in abi:
        if item.get("type") == "event" and item["name"] in ORDER_EVENTS:
            decoders[bytes(Web3.keccak(text=abi_signature(item)))] = (str(item["name"]), _LogDecoder(item))
    logs = w3.eth.get_logs(
        {
            "fromBlock": deployment.block_number if from_block is None else from_block,
            "toBlock": "latest",
            "address": Web3.to_checksum_address(deployment.market),
            "topics": [["0x" + t.hex() for t in decoders], "0x" + round_id.to_bytes(32, "big").hex()],
        }
    )
    requests: list[FlexRequest] = []
    offers: list[FlexOffer] = []
    p2p: list[P2POrder] = []
    for log in sorted(logs, key=lambda log: (int(log["blockNumber"]), int(log["logIndex"]))):
        name, decoder = decoders[bytes(log["topics"][0])]
        order = order_from_event(name, decoder.decode(log))
        if order is None:
            continue
        model = order[2]
        if isinstance(model, FlexRequest):
            requests.append(model)
        elif isinstance(model, FlexOffer):
            offers.append(model)
        else:
            p2p.append(model)
    return RoundOrders(requests=requests, offers=offers, p2p=p2p)


def accepted_order_hashes(engine: Engine, deployment: Deployment, round_id: int) -> list[str]:
    """Order hashes of the round's accepted orders in acceptance order (input of the accumulator)."""
    with Session(engine) as session:
        rows = session.exec(_in_acceptance_order(select(OrderRecord.order_hash), deployment, round_id)).all()
    return [str(h) for h in rows]


def round_events(
    engine: Engine, deployment: Deployment, round_id: int, event: str | None = None
) -> list[dict[str, Any]]:
    """Indexed events of `round_id` (optionally one event name): name, block, tx, log index, args."""
    with Session(engine) as session:
        query = (
            select(ChainEvent)
            .where(ChainEvent.chain_id == deployment.chain_id)
            .where(ChainEvent.round_id == round_id)
            .order_by(col(ChainEvent.block_number), col(ChainEvent.log_index))
        )
        if event is not None:
            query = query.where(ChainEvent.event == event)
        rows = session.exec(query).all()
    return [
        {
            "event": r.event,
            "block_number": r.block_number,
            "tx_hash": r.tx_hash,
            "log_index": r.log_index,
            "args": json.loads(r.args_json),
        }
        for r in rows
    ]


__all__ = [
    "EventIndexer",
    "IndexerReport",
    "RoundOrders",
    "accepted_order_hashes",
    "jsonable",
    "order_records",
    "round_events",
    "round_orders",
]
