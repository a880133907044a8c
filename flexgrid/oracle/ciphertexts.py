"""Sealed-offer ciphertexts received off chain (through the HTTP API), kept for the oracle.

In an ENCRYPTED round a bidder sends `commitOffer(roundId, commitment, ciphertext)`. The
ciphertext may travel in that calldata, or through the API: then the transaction carries an empty
`ciphertext` and the API stores the bytes here, keyed by the commitment (the hash recorded on
chain), before it relays the transaction. The oracle reads them from this table (the database it
shares with the API), matches them to the `OfferCommitted` events by commitment, opens them with
the round key (`flexgrid.trading.sealing`: the commitment binds the order hash, provider and salt
inside the ciphertext, so a ciphertext stored under another commitment does not match and is
reported), and publishes the ones it matched as `sealedCiphertexts` next to the result, since the
auditor has only the chain and the publication.

`check_ciphertext` is pure; `store_ciphertext`, `forget_ciphertext` and `off_chain_ciphertexts`
do the database I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eth_utils import keccak
from sqlalchemy import BigInteger, Column, Text, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from flexgrid.errors import InputError
from flexgrid.trading.models import RoundConfig, SealMode
from flexgrid.trading.sealing import SEAL_VERSION

MAX_CIPHERTEXT_BYTES = 64 * 1024
MIN_CIPHERTEXT_BYTES = 1 + 32 + 16  # version, ephemeral public key, AEAD tag


class SealedCiphertext(SQLModel, table=True):
    """One ciphertext received off chain for one commitment of an ENCRYPTED round."""

    __tablename__ = "sealed_ciphertext"
    __table_args__ = (UniqueConstraint("chain_id", "market", "commitment", name="uq_sealed_ciphertext"),)

    id: int | None = Field(default=None, primary_key=True)
    chain_id: int = Field(index=True, sa_type=BigInteger)
    market: str = Field(index=True)  # lower-case hex
    round_id: int = Field(index=True, sa_type=BigInteger)
    commitment: str = Field(index=True)  # 0x lower-case hex, the hash recorded on chain
    provider: str  # checksummed sender of the commitOffer transaction
    ciphertext: str = Field(sa_column=Column(Text, nullable=False))  # 0x hex
    ciphertext_hash: str  # keccak256 of the ciphertext bytes
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def _hex32(value: Any, field_name: str) -> str:
    raw = value if isinstance(value, bytes | bytearray) else None
    if raw is None:
        try:
            raw = bytes.fromhex(str(value).removeprefix("0x"))
        except ValueError:
            raise InputError(field_name, f"{value!r} is not hex") from None
    if len(raw) != 32:
        raise InputError(field_name, f"must be 32 bytes, got {len(raw)}")
    return "0x" + bytes(raw).hex()


def check_ciphertext(ciphertext_hex: str, config: RoundConfig, calldata_ciphertext: bytes) -> bytes:
    """The ciphertext bytes of an off-chain submission for a `commitOffer` in round `config`,
    or `InputError` naming the field: the round must be ENCRYPTED, the transaction's own
    `ciphertext` argument empty (one place or the other, not both), the bytes a sealed offer's
    shape (version byte, ephemeral key, tag; at most 64 KiB). Whether it opens and matches its
    commitment only the round key can tell: the oracle checks that after gate closure."""
    if config.seal_mode != SealMode.ENCRYPTED:
        raise InputError("ciphertext", f"round {config.round_id} is {config.seal_mode.name}: only ENCRYPTED "
                         "rounds take ciphertexts")
    if calldata_ciphertext:
        raise InputError("ciphertext", "the commitOffer transaction already carries a ciphertext: send it "
                         "in the calldata or here, not both")
    try:
        raw = bytes.fromhex(ciphertext_hex.removeprefix("0x"))
    except ValueError:
        raise InputError("ciphertext", "is not hex") from None
    if not MIN_CIPHERTEXT_BYTES <= len(raw) <= MAX_CIPHERTEXT_BYTES:
        raise InputError("ciphertext", f"{len(raw)} bytes: a sealed offer has between {MIN_CIPHERTEXT_BYTES} "
                         f"and {MAX_CIPHERTEXT_BYTES} bytes")
    if raw[0] != SEAL_VERSION:
        raise InputError("ciphertext", f"unknown sealing version {raw[0]} (expected {SEAL_VERSION})")
    return raw


def store_ciphertext(
    session: Session,
    *,
    chain_id: int,
    market: str,
    round_id: int,
    commitment: str | bytes,
    provider: str,
    ciphertext: bytes,
) -> SealedCiphertext:
    """Add the ciphertext of `commitment` to `session` (the caller commits). The same bytes sent
    again are accepted once; other bytes for a stored commitment are refused (`InputError`)."""
    c = _hex32(commitment, "commitment")
    existing = session.exec(
        select(SealedCiphertext)
        .where(SealedCiphertext.chain_id == chain_id)
        .where(SealedCiphertext.market == market.lower())
        .where(SealedCiphertext.commitment == c)
    ).first()
    digest = "0x" + bytes(keccak(ciphertext)).hex()
    if existing is not None:
        if existing.ciphertext_hash == digest and existing.provider == provider:
            return existing
        raise InputError("commitment", f"a different ciphertext is already stored for commitment {c}")
    row = SealedCiphertext(chain_id=chain_id, market=market.lower(), round_id=round_id, commitment=c,
                           provider=provider, ciphertext="0x" + ciphertext.hex(), ciphertext_hash=digest)
    session.add(row)
    return row


def forget_ciphertext(session: Session, row: SealedCiphertext) -> None:
    """Remove a stored ciphertext whose commitOffer was not mined (the caller commits)."""
    stored = session.get(SealedCiphertext, row.id)
    if stored is not None:
        session.delete(stored)


@dataclass(frozen=True)
class OffChainCiphertext:
    commitment: str
    provider: str
    ciphertext: str  # 0x hex


def off_chain_ciphertexts(engine: Engine, chain_id: int, market: str, round_id: int) -> list[OffChainCiphertext]:
    """The ciphertexts received off chain for `round_id`, by commitment order."""
    SQLModel.metadata.create_all(engine, tables=[SealedCiphertext.__table__])  # type: ignore[attr-defined]
    with Session(engine) as session:
        rows = session.exec(
            select(SealedCiphertext)
            .where(SealedCiphertext.chain_id == chain_id)
            .where(SealedCiphertext.market == market.lower())
            .where(SealedCiphertext.round_id == round_id)
            .order_by(col(SealedCiphertext.commitment))
        ).all()
    return [OffChainCiphertext(r.commitment, r.provider, r.ciphertext) for r in rows]


def match_off_chain(
    events: Sequence[Mapping[str, Any]], received: Sequence[OffChainCiphertext]
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Match off-chain ciphertexts to a round's `OfferCommitted` events by commitment.

    Returns (commitment -> ciphertext hex for the commitments whose calldata carries none, and
    the ciphertexts not used, each `{"commitment", "provider", "reason"}`): one for a commitment
    not on chain in this round, one sent by another account than the committer, one for a
    commitment whose calldata already carries a ciphertext. Pure."""
    on_chain: dict[str, tuple[str, bool]] = {}
    for e in events:
        args = e.get("args", e)
        c = _hex32(args["commitment"], "commitment")
        raw = args.get("ciphertext") or "0x"
        has_calldata = raw not in ("0x", b"", "")
        on_chain[c] = (str(args["provider"]), has_calldata)
    matched: dict[str, str] = {}
    unmatched: list[dict[str, str]] = []
    for r in received:
        c = r.commitment.lower()
        reason = None
        if c not in on_chain:
            reason = "received through the API, but no such commitment was committed on chain in this round"
        elif on_chain[c][0].lower() != r.provider.lower():
            reason = f"received from {r.provider}, but the commitment was committed by {on_chain[c][0]}"
        elif on_chain[c][1]:
            reason = "the commitOffer calldata carries a ciphertext already: that one is used"
        if reason is None:
            matched[c] = r.ciphertext
        else:
            unmatched.append({"commitment": c, "provider": r.provider.lower(), "reason": reason})
    return matched, unmatched


__all__ = [
    "MAX_CIPHERTEXT_BYTES",
    "OffChainCiphertext",
    "SealedCiphertext",
    "check_ciphertext",
    "forget_ciphertext",
    "match_off_chain",
    "off_chain_ciphertexts",
    "store_ciphertext",
]
