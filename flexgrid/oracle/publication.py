"""The oracle's publication of a clearing result: one canonical JSON file per round and its tables.

Where
-----
`<results_dir>/<chain_id>-<market lower-case hex>/round-<round_id>.json`. The URI committed on
chain (`ClearingCommitted.uri`) is `<results_uri>/<chain_id>-<market>/round-<round_id>.json`, where
`results_uri` defaults to the `file://` URI of `results_dir`. The file is written once the result
is committed on chain, atomically (temporary file, then rename), and never changes afterwards:
two honest oracles write byte-identical files (nothing oracle-specific is in it).

Bytes
-----
UTF-8 JSON, keys sorted, no whitespace (`json.dumps(doc, sort_keys=True, separators=(",", ":"))`),
floats in Python's shortest round-trip form. `publication_hash` = keccak256 of the bytes.

Content (top-level keys; every hex value is `0x` lower case, every quantity in its on-chain
integer encoding unless its name has another unit)
---------------------------------------------------------------------------------------------
- `format`: `"flexgrid-clearing-publication/1"`.
- `chainId`, `market`, `roundId`, `gridId` (the built-in net's name, e.g. `"case33bw"`, when the
  round's on-chain grid id is keccak256 of one; else the on-chain bytes32 grid id itself),
  `gridModelHash` (equal to the round's on-chain `gridModelHash`, checked by the oracle).
- `gridModel` (only when the grid model is not a built-in network: uploaded by a DSO through the
  API, or a file of `flexgrid oracle run --grid-models DIR`): `{"file", "gridModelHash"}`. `file`
  is the name of the pandapower JSON of the net, published in the same folder as this document
  (`grid-model-<hash>.json`, written before it and never changed; the text the oracle loaded,
  unchanged). `flexgrid.store.grid_models.model_from_json(text)` reads it back and re-hashes it:
  the auditor checks that hash against the chain's, never the name or the key.
- `round`: the round's configuration as read from chain (`RoundConfig.model_dump(mode="json")`).
- `orderAccumulator`, `orderCount`: the round's accumulator over *every* order the chain accepted
  (docs/contracts.md), as recomputed by the oracle from the events and checked against
  `roundStatus`.
- `inputs`: exactly `flexgrid.trading.canonical.canonical_inputs(...)` of the orders USED (the
  accepted orders minus `dropped`); `inputHash` = keccak256 of its canonical JSON (the value
  committed on chain).
- `dropped`: orders the chain accepted but the oracle did not use, each
  `{"orderHash", "kind" ("request"|"offer"|"p2p"), "participant", "txHash", "reason"}`, sorted by
  order hash. An auditor re-checks each reason; `inputs` ∪ `dropped` = the accumulator's orders.
- `signatures`: `{orderHash: "0x…65-byte signature"}` for every offer and P2P order, as found in
  the calldata of the transaction that submitted or revealed it; `signatureChecks`:
  `{orderHash: "ecdsa" | "erc1271" | "contract-only"}` (`contract-only`: the transaction was sent
  through another contract, so its calldata could not be decoded; the market checked it at intake).
- `clearing`: `{"formulation", "pricingRule" (int), "fundedOnly" (bool: offers bought only for
  requests that pay for them, `clear_market(funded_only=...)`), "wholesaleEurPerMwh" (list per slot),
  "objectiveEur", "mipGap", "relaxationGapMw", "budgetBalanceEur", "notes"}`.
- `trades`: the leaves of the trade root in the engine's order, each
  `{"roundId", "participant", "orderHash", "slot", "powerW", "priceMicroPerMwh", "paymentMicro"}`;
  `tradeRoot` (OpenZeppelin StandardMerkleTree root of them); `totalPayoutMicro` (Σ positive
  payments, committed on chain).
- `funding`: `{"payeeMicro", "payerMicro", "unfundedMicro", "ok"}`: payee leaves must be covered
  by payer leaves (else claims revert with `RoundUnderfunded`); `ok = false` is reported, not fixed.
- `certificate`: the optimality certificate (`Certificate.to_json()` parsed) and
  `certificateHash` (its keccak256, committed on chain); `null`/zero hash when none.
- `dlmp`: `{"busOfNode": [...], "eurPerMwh": [[node × slot]]}`.
- `ac`: `{"before": report, "after": report}` where a report is `{"vMinPu", "vMaxPu",
  "maxLoadingPercent", "maxVErrorPu", "flags"}`: the AC power flow without any flexibility and
  with the cleared result.
- `risk`: `{"ok", "newViolations": [...], "worsened": [...], "margins": {"voltageLowPu",
  "voltageHighPu", "thermalPercent"}, "method", "forecastMargin": {"slot", "beforePercent",
  "afterPercent", "method"}, "n1": {"before": n1, "after": n1} | {"error"}}`
  (flexgrid.oracle.risk_check; the forecast margin is the uniform base-load increase the most
  loaded slot takes without an AC violation; an `n1` is `{"outages", "outagesWithViolations",
  "flexNeededKw", "eensMwhPerYr"}` of that slot with tie-switch restoration).
- `sealed`: `null` unless the round is ENCRYPTED; then, once the reveal window is over,
  `{"opened": bool (the oracle had the round's secret key), "commitments": [...], "counts":
  {"used", "dropped", "rejected"}, "rejected": [{"commitment", "provider", "reason"}],
  "unmatchedCiphertexts": [{"commitment", "provider", "reason"}]}`. `commitments` has one entry per
  `OfferCommitted` event, sorted by commitment: `{"commitment", "provider", "ciphertext"
  ("calldata" | "api" (received off chain through the API) | "none"), "status" ("used" |
  "dropped" | "rejected"), "sealedBy" ("encryption": the oracle opened its ciphertext and revealed
  it; "commit-reveal": its bidder revealed it with the salt; "unknown": revealed, but this oracle
  has not the round key to tell), "orderHash", "reason" (dropped and
  rejected), "ciphertextProblem" (a ciphertext that does not open, of an offer revealed by its
  bidder all the same)}`. `rejected` repeats the rejected entries (never revealed: no ciphertext
  anywhere, or one that does not open or does not match its commitment, with the reason).
  `unmatchedCiphertexts`: ciphertexts received through the API that match no commitment of the
  round (another round, another sender, or a commitment whose calldata carries one).
- `sealedCiphertexts` (ENCRYPTED rounds only): `{commitment: "0x…ciphertext"}` for every ciphertext
  received off chain and matched to a commitment without a calldata ciphertext
  (`flexgrid.oracle.ciphertexts`): with the round key published after the commit, the auditor
  opens them as it opens the calldata ones.

Tables (SQLModel, created by `flexgrid.store.init_db`)
-----------------------------------------------------
`ClearingPublicationRecord` (`clearing_publication`, one row per chain, market and round),
`PublishedTrade` (`clearing_trade`, one row per leaf) and `DroppedOrderRecord`
(`oracle_dropped_order`). They hold only what is on chain or in the file, so deleting the
database and calling `reindex_publications` after the event indexer gives the same rows.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from eth_utils import keccak
from sqlalchemy import BigInteger, Column, Text, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, delete, select
from web3 import Web3

from flexgrid.errors import InputError
from flexgrid.trading.models import Trade
from flexgrid.trading.units import micro_to_eur_per_mwh

FORMAT = "flexgrid-clearing-publication/1"


# -- the file ------------------------------------------------------------------------------------


def publication_bytes(doc: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a publication (sorted keys, no whitespace, UTF-8)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def publication_hash(doc: Mapping[str, Any]) -> str:
    return "0x" + bytes(keccak(publication_bytes(doc))).hex()


def relative_path(chain_id: int, market: str, round_id: int) -> str:
    """`<chain_id>-<market>/round-<round_id>.json` (market in lower-case hex)."""
    return f"{chain_id}-{market.lower()}/round-{round_id}.json"


def publication_path(results_dir: Path, chain_id: int, market: str, round_id: int) -> Path:
    return Path(results_dir) / relative_path(chain_id, market, round_id)


def publication_uri(results_uri: str, chain_id: int, market: str, round_id: int) -> str:
    return results_uri.rstrip("/") + "/" + relative_path(chain_id, market, round_id)


def default_results_uri(results_dir: Path) -> str:
    return Path(results_dir).resolve().as_uri()


def write_publication(path: Path, doc: Mapping[str, Any]) -> None:
    """Write `doc` to `path` atomically (a reader sees the old file or the whole new one)."""
    _write_atomic(path, publication_bytes(doc))


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def grid_model_path(folder: Path, grid_model_hash: str) -> Path:
    """`<folder>/grid-model-<hash>.json`: a non-built-in grid model published beside the results."""
    return Path(folder) / f"grid-model-{grid_model_hash.lower()}.json"


def write_grid_model(path: Path, net_json: str) -> None:
    """Write a grid model's pandapower JSON text atomically (as `write_publication`)."""
    _write_atomic(path, net_json.encode("utf-8"))


def published_grid_model(source: str | Path, doc: Mapping[str, Any]) -> str | None:
    """The pandapower JSON text of the grid model a publication names in `gridModel.file`, read
    from the folder of the publication at `source` (a path or a `file://` URI); None when the
    publication names none. `InputError` (field `gridModel`) when it names one that is not there."""
    entry = doc.get("gridModel")
    if not entry:
        return None
    name = str(entry.get("file", "")) if isinstance(entry, Mapping) else ""
    if not name or Path(name).name != name:
        raise InputError("gridModel", f"the publication names the grid model file {name!r}, not a file name")
    text = str(source)
    base = Path(unquote(urlparse(text).path)) if text.startswith("file://") else Path(text)
    path = base.parent / name
    if not path.is_file():
        raise InputError("gridModel", f"the grid model {name} the publication names is not at {path}")
    return path.read_text(encoding="utf-8")


def load_publication(path_or_uri: str | Path) -> dict[str, Any]:
    """Read a publication from a path or a `file://` URI; checks its format tag."""
    text = str(path_or_uri)
    path = Path(unquote(urlparse(text).path)) if text.startswith("file://") else Path(text)
    if not path.is_file():
        raise InputError("uri", f"no publication at {text}")
    doc: dict[str, Any] = json.loads(path.read_bytes())
    if doc.get("format") != FORMAT:
        raise InputError("format", f"{text} is not a {FORMAT} document (format {doc.get('format')!r})")
    return doc


def trade_json(trade: Trade) -> dict[str, Any]:
    """A trade leaf in its on-chain integer encoding."""
    return {
        "roundId": trade.round_id,
        "participant": trade.participant.lower(),
        "orderHash": trade.order_id.lower(),
        "slot": trade.slot,
        "powerW": trade.power_w,
        "priceMicroPerMwh": trade.price_micro_per_mwh,
        "paymentMicro": trade.payment_micro,
    }


def trades_from_publication(doc: Mapping[str, Any]) -> list[Trade]:
    """The publication's trade leaves as `Trade` models (their `TradeTree` root is `tradeRoot`)."""
    return [
        Trade(
            round_id=int(t["roundId"]),
            participant=str(Web3.to_checksum_address(t["participant"])),
            order_id=str(t["orderHash"]),
            slot=int(t["slot"]),
            kw=int(t["powerW"]) / 1000,
            price_eur_per_mwh=micro_to_eur_per_mwh(int(t["priceMicroPerMwh"])),
            payment_eur=int(t["paymentMicro"]) / 1_000_000,
        )
        for t in doc["trades"]
    ]


# -- the tables ----------------------------------------------------------------------------------


class ClearingPublicationRecord(SQLModel, table=True):
    """One committed and published clearing result."""

    __tablename__ = "clearing_publication"
    __table_args__ = (UniqueConstraint("chain_id", "market", "round_id", name="uq_publication_round"),)

    id: int | None = Field(default=None, primary_key=True)
    chain_id: int = Field(index=True, sa_type=BigInteger)
    market: str = Field(index=True)  # checksummed FlexMarket address
    round_id: int = Field(index=True, sa_type=BigInteger)
    grid_id: str
    grid_model_hash: str
    trade_root: str
    input_hash: str
    certificate_hash: str
    total_payout_micro: int = Field(sa_type=BigInteger)  # token base units (int64: up to 9.2e12 EUR)
    order_accumulator: str
    order_count: int
    orders_used: int
    orders_dropped: int
    trade_count: int
    uri: str  # as committed on chain
    publication_hash: str  # keccak256 of the file's bytes
    commit_tx_hash: str  # the transaction that emitted ClearingCommitted
    commit_block: int = Field(sa_type=BigInteger)
    objective_eur: float
    formulation: str
    pricing_rule: int
    funding_ok: bool
    risk_ok: bool
    ac_v_min_pu: float | None = None
    ac_max_loading_percent: float | None = None
    summary_json: str = Field(sa_column=Column(Text, nullable=False))  # clearing, funding, ac, risk


class PublishedTrade(SQLModel, table=True):
    """One leaf of a committed trade root."""

    __tablename__ = "clearing_trade"
    __table_args__ = (UniqueConstraint("chain_id", "market", "round_id", "leaf_index", name="uq_trade_leaf"),)

    id: int | None = Field(default=None, primary_key=True)
    chain_id: int = Field(index=True, sa_type=BigInteger)
    market: str = Field(index=True)
    round_id: int = Field(index=True, sa_type=BigInteger)
    leaf_index: int
    participant: str = Field(index=True)  # checksummed
    order_hash: str = Field(index=True)
    slot: int
    power_w: int = Field(sa_type=BigInteger)
    price_micro_per_mwh: int = Field(sa_type=BigInteger)
    payment_micro: int = Field(sa_type=BigInteger)


class DroppedOrderRecord(SQLModel, table=True):
    """An order the chain accepted and the oracle did not use, with the reason."""

    __tablename__ = "oracle_dropped_order"
    __table_args__ = (UniqueConstraint("chain_id", "market", "round_id", "order_hash", name="uq_dropped_order"),)

    id: int | None = Field(default=None, primary_key=True)
    chain_id: int = Field(index=True, sa_type=BigInteger)
    market: str = Field(index=True)
    round_id: int = Field(index=True, sa_type=BigInteger)
    order_hash: str
    kind: str
    participant: str
    tx_hash: str
    reason: str = Field(sa_column=Column(Text, nullable=False))


def store_publication(
    engine: Engine,
    doc: Mapping[str, Any],
    *,
    uri: str,
    commit_tx_hash: str,
    commit_block: int,
) -> ClearingPublicationRecord:
    """Insert (or replace) the rows of one publication; idempotent."""
    chain_id, round_id = int(doc["chainId"]), int(doc["roundId"])
    market = str(Web3.to_checksum_address(doc["market"]))
    ac_after = (doc.get("ac") or {}).get("after") or {}
    record = ClearingPublicationRecord(
        chain_id=chain_id,
        market=market,
        round_id=round_id,
        grid_id=str(doc["gridId"]),
        grid_model_hash=str(doc["gridModelHash"]),
        trade_root=str(doc["tradeRoot"]),
        input_hash=str(doc["inputHash"]),
        certificate_hash=str(doc["certificateHash"]),
        total_payout_micro=int(doc["totalPayoutMicro"]),
        order_accumulator=str(doc["orderAccumulator"]),
        order_count=int(doc["orderCount"]),
        orders_used=sum(len(doc["inputs"][k]) for k in ("requests", "offers", "p2p")),
        orders_dropped=len(doc["dropped"]),
        trade_count=len(doc["trades"]),
        uri=uri,
        publication_hash=publication_hash(doc),
        commit_tx_hash=commit_tx_hash,
        commit_block=commit_block,
        objective_eur=float(doc["clearing"]["objectiveEur"]),
        formulation=str(doc["clearing"]["formulation"]),
        pricing_rule=int(doc["clearing"]["pricingRule"]),
        funding_ok=bool(doc["funding"]["ok"]),
        risk_ok=bool(doc["risk"]["ok"]),
        ac_v_min_pu=ac_after.get("vMinPu"),
        ac_max_loading_percent=ac_after.get("maxLoadingPercent"),
        summary_json=json.dumps(
            {k: doc[k] for k in ("clearing", "funding", "ac", "risk")}, sort_keys=True, separators=(",", ":")
        ),
    )
    with Session(engine, expire_on_commit=False) as session:
        for table in (ClearingPublicationRecord, PublishedTrade, DroppedOrderRecord):
            session.exec(
                delete(table)
                .where(col(table.chain_id) == chain_id)
                .where(col(table.market) == market)
                .where(col(table.round_id) == round_id)
            )
        session.add(record)
        for i, t in enumerate(doc["trades"]):
            session.add(
                PublishedTrade(
                    chain_id=chain_id,
                    market=market,
                    round_id=round_id,
                    leaf_index=i,
                    participant=str(Web3.to_checksum_address(t["participant"])),
                    order_hash=str(t["orderHash"]),
                    slot=int(t["slot"]),
                    power_w=int(t["powerW"]),
                    price_micro_per_mwh=int(t["priceMicroPerMwh"]),
                    payment_micro=int(t["paymentMicro"]),
                )
            )
        for d in doc["dropped"]:
            session.add(
                DroppedOrderRecord(
                    chain_id=chain_id,
                    market=market,
                    round_id=round_id,
                    order_hash=str(d["orderHash"]),
                    kind=str(d["kind"]),
                    participant=str(d["participant"]),
                    tx_hash=str(d["txHash"]),
                    reason=str(d["reason"]),
                )
            )
        session.commit()
    return record


def published_round(engine: Engine, chain_id: int, market: str, round_id: int) -> ClearingPublicationRecord | None:
    """The publication row of a round, if any."""
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(
            select(ClearingPublicationRecord)
            .where(ClearingPublicationRecord.chain_id == chain_id)
            .where(ClearingPublicationRecord.market == str(Web3.to_checksum_address(market)))
            .where(ClearingPublicationRecord.round_id == round_id)
        ).first()


def published_trades(engine: Engine, chain_id: int, market: str, round_id: int) -> Sequence[PublishedTrade]:
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(
            select(PublishedTrade)
            .where(PublishedTrade.chain_id == chain_id)
            .where(PublishedTrade.market == str(Web3.to_checksum_address(market)))
            .where(PublishedTrade.round_id == round_id)
            .order_by(col(PublishedTrade.leaf_index))
        ).all()


__all__ = [
    "FORMAT",
    "ClearingPublicationRecord",
    "DroppedOrderRecord",
    "PublishedTrade",
    "default_results_uri",
    "grid_model_path",
    "load_publication",
    "publication_bytes",
    "publication_hash",
    "publication_path",
    "publication_uri",
    "published_grid_model",
    "published_round",
    "published_trades",
    "relative_path",
    "store_publication",
    "trade_json",
    "trades_from_publication",
    "write_grid_model",
    "write_publication",
]
