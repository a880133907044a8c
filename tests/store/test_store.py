"""The store: SQLite by default, FLEXGRID_DATABASE_URL overrides, sessions commit or roll back."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from flexgrid.store import IndexerCursor, database_url, init_db, make_engine, session_scope


def test_default_database_is_a_sqlite_file_in_flexgrid_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FLEXGRID_DATABASE_URL", raising=False)
    monkeypatch.setenv("FLEXGRID_HOME", str(tmp_path / "home"))
    assert database_url() == f"sqlite:///{tmp_path / 'home' / 'flexgrid.db'}"
    engine = make_engine()
    init_db(engine)
    assert (tmp_path / "home" / "flexgrid.db").is_file()


def test_database_url_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("FLEXGRID_DATABASE_URL", url)
    assert database_url() == url


def test_session_scope_commits_and_rolls_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    init_db(engine)
    with session_scope(engine) as session:
        session.add(IndexerCursor(key="1:0xabc", chain_id=1, last_block=10))
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        session.add(IndexerCursor(key="1:0xdef", chain_id=1, last_block=11))
        raise RuntimeError("boom")
    with session_scope(engine) as session:
        keys = [c.key for c in session.exec(select(IndexerCursor)).all()]
    assert keys == ["1:0xabc"]
