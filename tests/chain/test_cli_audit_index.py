"""`flexgrid audit verify` keeps its event index between runs ($FLEXGRID_HOME/index/<chain id>-<market>.db)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlmodel import Session, func, select
from typer.testing import CliRunner

from flexgrid.cli.main import app
from flexgrid.store import ChainEvent, IndexerCursor, chain_index_path, make_engine
from tests.conftest import MarketEnv

pytestmark = pytest.mark.chain


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXGRID_HOME", str(tmp_path / "home"))


READ = re.compile(r"event index (\S+): blocks (\d+)\.\.(\d+) read, (\d+) events added")


def _audit(market: MarketEnv, tmp_path: Path, round_id: int, *extra: str) -> tuple[int, int, int, str]:
    """Run `audit verify` on a round without a committed result; (first block, last block, events, where)."""
    deployment_file = tmp_path / "deployment.json"
    market.deployment.save(deployment_file)
    rpc_url = market.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    result = CliRunner().invoke(
        app,
        ["audit", "verify", "--round", str(round_id), "--deployment", str(deployment_file), *extra],
        env={"FLEXGRID_RPC_URL": rpc_url},
    )
    assert result.exit_code == 1, result.output  # nothing committed: NOT VERIFIED, not a crash
    assert f"round {round_id}: NOT VERIFIED" in result.output
    found = READ.search(result.output)
    assert found, result.output
    return int(found[2]), int(found[3]), int(found[4]), found[1]


def test_a_second_audit_reads_only_the_new_blocks(market: MarketEnv, tmp_path: Path) -> None:
    first = market.client().create_round(market.round_config())
    start, end, events, where = _audit(market, tmp_path, first.round_id)
    path = chain_index_path(market.deployment.chain_id, market.deployment.market)
    assert where == str(path) and path.parent == tmp_path / "home" / "index"
    assert start == market.deployment.block_number and events > 0

    again = _audit(market, tmp_path, first.round_id)
    assert again[:3] == (end + 1, end, 0)  # nothing new on chain: nothing read

    second = market.client().create_round(market.round_config())
    start2, end2, events2, _ = _audit(market, tmp_path, second.round_id)
    assert start2 == end + 1 and end2 == int(market.w3.eth.block_number)
    assert events2 == 1  # the second RoundCreated only
    engine = make_engine(f"sqlite:///{path}")
    try:
        with Session(engine) as session:
            cursor = session.get(IndexerCursor, f"{market.deployment.chain_id}:{market.deployment.market}")
            assert cursor is not None and cursor.last_block == end2
            assert session.exec(select(func.count()).select_from(ChainEvent)).one() == events + events2
    finally:
        engine.dispose()


def test_fresh_index_reads_the_whole_chain_and_keeps_nothing(market: MarketEnv, tmp_path: Path) -> None:
    cfg = market.client().create_round(market.round_config())
    start, _, events, where = _audit(market, tmp_path, cfg.round_id, "--fresh-index")
    assert where == "(temporary)" and start == market.deployment.block_number and events > 0
    assert not (tmp_path / "home" / "index").exists()
    start_again, _, events_again, _ = _audit(market, tmp_path, cfg.round_id, "--fresh-index")
    assert (start_again, events_again) == (start, events)


def test_another_database_by_url(market: MarketEnv, tmp_path: Path) -> None:
    cfg = market.client().create_round(market.round_config())
    url = f"sqlite:///{tmp_path / 'mine.db'}"
    start, _, events, where = _audit(market, tmp_path, cfg.round_id, "--db", url)
    assert start == market.deployment.block_number
    assert where == url and (tmp_path / "mine.db").exists() and events > 0
    deployment_file = tmp_path / "deployment.json"
    for extra in (["--db", url, "--fresh-index"], ["--db", "not a url"]):
        result = CliRunner().invoke(
            app,
            ["audit", "verify", "--round", str(cfg.round_id), "--deployment", str(deployment_file), *extra],
            env={"FLEXGRID_RPC_URL": market.w3.provider.endpoint_uri},  # type: ignore[attr-defined]
        )
        assert result.exit_code == 2, result.output  # a usage error, named
        assert "--db" in result.output or "--fresh-index" in result.output
