"""Tables of the API (SQLModel), kept with the chain index in the same database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Text
from sqlmodel import Field, SQLModel


class ApiOrder(SQLModel, table=True):
    """A signed order accepted by the API; `status` follows it to the chain.

    queued → relayed (in a mined transaction) → indexed (its event is in the database);
    or failed (the contract refused it; `error` says why)."""

    __tablename__ = "api_order"

    order_hash: str = Field(primary_key=True)
    kind: str = Field(index=True)  # "offer" or "p2p"
    owner: str = Field(index=True)  # checksummed signer
    round_id: int = Field(index=True, sa_type=BigInteger)
    nonce_key: str  # decimal, the keyed nonce's key
    nonce_seq: int = Field(sa_type=BigInteger)
    status: str = Field(index=True, default="queued")
    signed_json: str = Field(sa_column=Column(Text, nullable=False))
    tx_hash: str | None = None
    error: str | None = None
    attempts: int = 0
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    relayed_at: datetime | None = None


class GridChoice(SQLModel, table=True):
    """The grid model a DSO chose for its grid id."""

    __tablename__ = "api_grid_choice"

    grid_id: str = Field(primary_key=True)
    dso: str = Field(index=True)
    model: str  # a built-in network name
    grid_model_hash: str
    chosen_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class UploadedGridModel(SQLModel, table=True):
    """A grid model a DSO uploaded (pandapower JSON or MATPOWER), kept as the canonical pandapower
    JSON of the net as loaded; identified by its grid-model hash (the one rounds record on chain)."""

    __tablename__ = "api_grid_model"

    grid_model_hash: str = Field(primary_key=True)
    name: str
    source_format: str  # "pandapower" or "matpower"
    uploaded_by: str = Field(index=True)  # checksummed DSO address
    buses: int
    nodes: int
    branches: int
    radial: bool
    radial_reason: str
    net_json: str = Field(sa_column=Column(Text, nullable=False))
    content_sha256: str = Field(index=True)  # of the file as uploaded (format and text)
    uploaded_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
