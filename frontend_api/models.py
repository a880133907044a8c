"""Tables of the API (SQLModel), kept with the chain index in the same database. The uploaded grid
models' table (`UploadedGridModel`) is defined in `flexgrid.store.grid_models`: the oracle reads it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Text
from sqlmodel import Field, SQLModel

from flexgrid.store.grid_models import UploadedGridModel as UploadedGridModel


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
