"""Private data encrypted at rest in a real SQLite file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from flexgrid.store import make_engine
from flexgrid.store.encryption import (
    DATA_KEY_ENV,
    DataCipher,
    DataKeyError,
    PrivateRecord,
    get_private,
    key_id,
    load_data_key,
    put_private,
)

METERING = {"series_kw": [12.345, 11.75, 0.0, 9.5], "meter": "MTR-SECRET-4711", "baseline": "same-slot-average"}
ASSET = {"capacity_kwh": 13.5, "soc_min": 0.1, "owner_name": "Ada Lovelace"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLEXGRID_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(DATA_KEY_ENV, raising=False)
    return tmp_path / "home"


def _engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    PrivateRecord.metadata.create_all(engine, tables=[PrivateRecord.__table__])  # type: ignore[attr-defined]
    return engine


def _raw_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))  # the file and its WAL


def test_private_data_is_not_in_the_database_file_and_reads_back(home: Path, tmp_path: Path) -> None:
    db = tmp_path / "flexgrid.db"
    engine = _engine(db)
    with Session(engine) as s:
        put_private(s, kind="metering", owner="0xabc", round_id=3, ref="0x01", data=METERING)
        put_private(s, kind="asset", owner="0xabc", ref="battery-17", data=ASSET)
        s.commit()
    with Session(engine) as s:
        (metering,) = get_private(s, kind="metering", owner="0xabc", round_id=3)
        (asset,) = get_private(s, kind="asset", ref="battery-17")
        assert metering.data == METERING and asset.data == ASSET
    engine.dispose()
    raw = _raw_bytes(db)
    assert b"0xabc" in raw  # the index columns are plain (sanity check that we read the right file)
    for secret in (b"MTR-SECRET-4711", b"12.345", b"Ada Lovelace", b"capacity_kwh", b"series_kw"):
        assert secret not in raw
    key_file = home / "data.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_reading_with_another_key_is_a_clear_error(home: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "flexgrid.db"
    engine = _engine(db)
    with Session(engine) as s:
        put_private(s, kind="metering", owner="0xabc", data=METERING)
        s.commit()
    written_with = key_id(load_data_key())
    other = os.urandom(32)
    monkeypatch.setenv(DATA_KEY_ENV, other.hex())
    with Session(engine) as s, pytest.raises(DataKeyError) as info:
        get_private(s, kind="metering")
    assert written_with in str(info.value) and key_id(other) in str(info.value)
    assert "another data key" in str(info.value)


def test_the_key_from_the_environment_is_used_and_a_malformed_one_is_refused(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = os.urandom(32)
    monkeypatch.setenv(DATA_KEY_ENV, "0x" + key.hex())
    assert load_data_key() == key
    assert not (home / "data.key").exists()
    monkeypatch.setenv(DATA_KEY_ENV, "not-a-key")
    with pytest.raises(DataKeyError, match=DATA_KEY_ENV):
        load_data_key()


def test_a_key_file_others_can_read_is_refused(home: Path) -> None:
    load_data_key()
    (home / "data.key").chmod(0o644)
    with pytest.raises(DataKeyError, match="chmod 600"):
        load_data_key()


def test_a_value_moved_to_another_column_or_altered_does_not_decrypt(home: Path, tmp_path: Path) -> None:
    cipher = DataCipher(load_data_key())
    blob = cipher.encrypt(b'{"kw":1}', "private_record.data")
    assert cipher.decrypt(blob, "private_record.data") == b'{"kw":1}'
    with pytest.raises(DataKeyError, match="altered or belongs to another column"):
        cipher.decrypt(blob, "asset.params")
    engine = _engine(tmp_path / "flexgrid.db")
    with Session(engine) as s:
        put_private(s, kind="asset", owner="0xabc", data=ASSET)
        s.commit()
    with engine.begin() as conn:  # flip one byte of the stored ciphertext
        stored = conn.execute(text("SELECT data FROM private_record")).scalar_one()
        altered = bytes(stored[:-1]) + bytes([stored[-1] ^ 1])
        conn.execute(text("UPDATE private_record SET data = :d"), {"d": altered})
    with Session(engine) as s, pytest.raises(DataKeyError, match="altered"):
        get_private(s, kind="asset")


def test_a_round_key_is_kept_encrypted_until_it_is_published(home: Path, tmp_path: Path) -> None:
    from flexgrid.store.encryption import load_round_key, save_round_key

    secret = "0x" + os.urandom(32).hex()
    market = "0x" + "ab" * 20
    db = tmp_path / "oracle.db"
    engine = _engine(db)
    with Session(engine) as s:
        assert load_round_key(s, market=market, round_id=5) is None
        save_round_key(s, market=market, round_id=5, secret_key=secret)
        s.commit()
    with Session(engine) as s:
        assert load_round_key(s, market=market.upper().replace("0X", "0x"), round_id=5) == secret
        assert load_round_key(s, market=market, round_id=6) is None
    engine.dispose()
    raw = _raw_bytes(db)
    assert secret[2:].encode() not in raw and bytes.fromhex(secret[2:]) not in raw
