"""SQLModel tables of FlexGrid's index of the chain.

The chain is the source of truth; these tables are its index. An event is stored once, keyed by
(chain id, transaction hash, log index). Orders are also kept decoded, as the trading models'
JSON (user units), so the oracle and the API can read a round's orders without a node.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# Integers that can exceed 2^31 (chain ids, block numbers, round ids) are BIGINT in PostgreSQL.


class ChainEvent(SQLModel, table=True):
    """One decoded contract event."""

    __tablename__ = "chain_event"
    __table_args__ = (UniqueConstraint("chain_id", "tx_hash", "log_index", name="uq_event_tx_log"),)

    id: int | None = Field(default=None, primary_key=True)
    chain_id: int = Field(index=True, sa_type=BigInteger)
    contract: str = Field(index=True)  # checksummed address of the emitting contract
    contract_name: str  # FlexMarket, FlexRegistry, FlexToken
    event: str = Field(index=True)  # event name, e.g. FlexOfferSubmitted
    tx_hash: str = Field(index=True)
    log_index: int
    block_number: int = Field(index=True, sa_type=BigInteger)
    block_hash: str
    round_id: int | None = Field(default=None, index=True, sa_type=BigInteger)
    order_hash: str | None = Field(default=None, index=True)
    account: str | None = Field(default=None, index=True)  # the first indexed address, if any
    args_json: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON of the event args


class OrderRecord(SQLModel, table=True):
    """An order accepted on chain, decoded into its trading model."""

    __tablename__ = "order_record"
    __table_args__ = (UniqueConstraint("chain_id", "market", "order_hash", name="uq_order_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    chain_id: int = Field(index=True, sa_type=BigInteger)
    market: str
    order_hash: str = Field(index=True)  # EIP-712 digest, or bytes32(requestId) for a request
    kind: str = Field(index=True)  # "request", "offer" or "p2p"
    round_id: int = Field(index=True, sa_type=BigInteger)
    participant: str = Field(index=True)
    model_json: str = Field(sa_column=Column(Text, nullable=False))  # FlexRequest/FlexOffer/P2POrder JSON
    tx_hash: str
    log_index: int
    block_number: int = Field(index=True, sa_type=BigInteger)


class IndexedBlock(SQLModel, table=True):
    """Hash of a block the indexer read (blocks with events and the cursor), to detect reorgs."""

    __tablename__ = "indexed_block"
    __table_args__ = (UniqueConstraint("chain_id", "block_number", name="uq_indexed_block"),)

    id: int | None = Field(default=None, primary_key=True)
    chain_id: int = Field(index=True, sa_type=BigInteger)
    block_number: int = Field(index=True, sa_type=BigInteger)
    block_hash: str


class IndexerCursor(SQLModel, table=True):
    """How far the indexer of one deployment got."""

    __tablename__ = "indexer_cursor"

    key: str = Field(primary_key=True)  # "<chain id>:<market address>"
    chain_id: int = Field(sa_type=BigInteger)
    last_block: int = Field(sa_type=BigInteger)  # last block fully indexed (-1: none)
    last_block_hash: str = ""


__all__ = ["ChainEvent", "IndexedBlock", "IndexerCursor", "OrderRecord"]
