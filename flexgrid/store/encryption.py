"""Private off-chain data encrypted at rest: metering data, asset parameters.

The chain holds only hashes and roots; what stays off chain and is private is stored encrypted
with an AEAD (ChaCha20-Poly1305, from the `cryptography` package) under one data key:

- `FLEXGRID_DATA_KEY` (64 hex digits, `0x` optional, or URL-safe base64 of 32 bytes), else
- the key file `$FLEXGRID_HOME/data.key`, created on first use with permissions 0600 (a key file
  that group or others can read is refused).

A stored value is `0x01 ‖ key id (4 bytes) ‖ nonce (12 bytes) ‖ ciphertext ‖ tag`, with the
column's context (table and column name) as associated data, so a value copied into another
column does not decrypt. The key id (the first 4 bytes of SHA-256 of the key) lets a wrong key be
named as such instead of "corrupt data".

`EncryptedJSON` is an SQLAlchemy column type that does this transparently for JSON values;
`PrivateRecord` is a table of such values (kind `metering` or `asset`, owner, round).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from sqlalchemy import BigInteger, Column, Dialect, LargeBinary
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel, col, select

from flexgrid.errors import FlexGridError
from flexgrid.store.db import flexgrid_home

DATA_KEY_ENV = "FLEXGRID_DATA_KEY"
KEY_FILE_NAME = "data.key"
FORMAT_VERSION = 1
_KEY_BYTES = 32
_NONCE_BYTES = 12
_KEY_ID_BYTES = 4
_HEADER = 1 + _KEY_ID_BYTES + _NONCE_BYTES


class DataKeyError(FlexGridError):
    """The data key is missing, malformed or not the one the data was encrypted with."""


def _parse_key(text: str, source: str) -> bytes:
    value = text.strip()
    hex_part = value.removeprefix("0x")
    if len(hex_part) == 2 * _KEY_BYTES:
        try:
            return bytes.fromhex(hex_part)
        except ValueError:
            pass
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _KEY_BYTES:
        raise DataKeyError(
            f"{source}: a data key is 32 bytes as 64 hex digits or URL-safe base64 "
            f"(generate one with `python -c \"import secrets; print(secrets.token_hex(32))\"`)"
        )
    return raw


def load_data_key(home: Path | None = None, *, create: bool = True) -> bytes:
    """The data key: `FLEXGRID_DATA_KEY`, else the key file in `home` (default `flexgrid_home()`),
    created with permissions 0600 when absent and `create` is true."""
    env = os.environ.get(DATA_KEY_ENV)
    if env:
        return _parse_key(env, DATA_KEY_ENV)
    path = (home or flexgrid_home()) / KEY_FILE_NAME
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise DataKeyError(f"{path}: the data key file is readable by others (mode {mode:o}); chmod 600 it")
        return _parse_key(path.read_text(), str(path))
    if not create:
        raise DataKeyError(f"no data key: set {DATA_KEY_ENV} or create {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(_KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def key_id(key: bytes) -> str:
    """The first 4 bytes of SHA-256 of a key, hex: names a key without revealing it."""
    return hashlib.sha256(key).digest()[:_KEY_ID_BYTES].hex()


class DataCipher:
    """AEAD encryption of private values under one data key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise DataKeyError(f"a data key is {_KEY_BYTES} bytes, got {len(key)}")
        self._aead = ChaCha20Poly1305(key)
        self._key_id = bytes.fromhex(key_id(key))

    @property
    def key_id(self) -> str:
        return self._key_id.hex()

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        body = self._aead.encrypt(nonce, plaintext, context.encode("utf-8"))
        return bytes([FORMAT_VERSION]) + self._key_id + nonce + body

    def decrypt(self, blob: bytes, context: str) -> bytes:
        if len(blob) < _HEADER + 16 or blob[0] != FORMAT_VERSION:
            raise DataKeyError(f"{context}: the stored value is not FlexGrid-encrypted data")
        stored_id = blob[1 : 1 + _KEY_ID_BYTES]
        if stored_id != self._key_id:
            raise DataKeyError(
                f"{context}: encrypted with another data key (key id {stored_id.hex()}, this key is "
                f"{self.key_id}); set {DATA_KEY_ENV} or the key file to the key the data was written with"
            )
        nonce = blob[1 + _KEY_ID_BYTES : _HEADER]
        try:
            return self._aead.decrypt(nonce, blob[_HEADER:], context.encode("utf-8"))
        except InvalidTag as exc:
            raise DataKeyError(f"{context}: the stored value was altered or belongs to another column") from exc


@lru_cache(maxsize=8)
def _cipher_for(env_value: str | None, home: str) -> DataCipher:
    return DataCipher(load_data_key(Path(home)))


def default_cipher() -> DataCipher:
    """The cipher of the current `FLEXGRID_DATA_KEY` / key file (read when first needed, not at import)."""
    return _cipher_for(os.environ.get(DATA_KEY_ENV) or None, str(flexgrid_home()))


class EncryptedJSON(TypeDecorator[Any]):
    """A column holding any JSON value, encrypted at rest (stored as binary).

    `context` (for example `"private_record.data"`) is bound as associated data. `cipher` is a
    callable returning the `DataCipher` to use (default: `default_cipher`, resolved per use).
    """

    impl = LargeBinary
    cache_ok = True

    def __init__(self, context: str, cipher: Callable[[], DataCipher] | None = None) -> None:
        super().__init__()
        self.context = context
        self.cipher = cipher or default_cipher

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        plaintext = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
        return self.cipher().encrypt(plaintext, self.context)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(self.cipher().decrypt(bytes(value), self.context))


class PrivateRecord(SQLModel, table=True):
    """Private off-chain data of one participant: metering series, asset parameters."""

    __tablename__ = "private_record"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)  # "metering", "asset", ...
    owner: str = Field(index=True)  # the participant's address
    round_id: int | None = Field(default=None, index=True, sa_type=BigInteger)
    ref: str = Field(default="", index=True)  # asset id, order hash, ...
    data: Any = Field(sa_column=Column(EncryptedJSON("private_record.data"), nullable=False))
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def put_private(
    session: Session, *, kind: str, owner: str, data: Any, round_id: int | None = None, ref: str = ""
) -> PrivateRecord:
    """Store one private value (encrypted when the session flushes)."""
    record = PrivateRecord(kind=kind, owner=owner, round_id=round_id, ref=ref, data=data)
    session.add(record)
    return record


def get_private(
    session: Session, *, kind: str, owner: str | None = None, round_id: int | None = None, ref: str | None = None
) -> list[PrivateRecord]:
    """Private values of a kind, optionally for one owner, round and reference, oldest first."""
    query = select(PrivateRecord).where(PrivateRecord.kind == kind)
    if owner is not None:
        query = query.where(PrivateRecord.owner == owner)
    if round_id is not None:
        query = query.where(PrivateRecord.round_id == round_id)
    if ref is not None:
        query = query.where(PrivateRecord.ref == ref)
    return list(session.exec(query.order_by(col(PrivateRecord.id))).all())


ROUND_KEY_KIND = "round-key"


def save_round_key(session: Session, *, market: str, round_id: int, secret_key: str) -> PrivateRecord:
    """Keep an ENCRYPTED round's X25519 secret key (`0x` hex) until it is published on chain."""
    for old in get_private(session, kind=ROUND_KEY_KIND, owner=market.lower(), round_id=round_id):
        session.delete(old)
    return put_private(session, kind=ROUND_KEY_KIND, owner=market.lower(), round_id=round_id,
                       data={"secret_key": secret_key})


def load_round_key(session: Session, *, market: str, round_id: int) -> str | None:
    """The stored secret key of a round, or None."""
    found = get_private(session, kind=ROUND_KEY_KIND, owner=market.lower(), round_id=round_id)
    return str(found[-1].data["secret_key"]) if found else None


__all__ = [
    "DATA_KEY_ENV",
    "KEY_FILE_NAME",
    "ROUND_KEY_KIND",
    "DataCipher",
    "DataKeyError",
    "EncryptedJSON",
    "PrivateRecord",
    "default_cipher",
    "get_private",
    "key_id",
    "load_data_key",
    "load_round_key",
    "put_private",
    "save_round_key",
]
