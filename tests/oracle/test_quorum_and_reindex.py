"""Two independent oracles with a quorum of two reach the same result; the database rebuilt from
the chain (and the published files) equals the one the oracle filled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select
from web3 import Web3

from flexgrid.chain.indexer import EventIndexer
from flexgrid.chain.market import MarketClient
from flexgrid.oracle.publication import (
    ClearingPublicationRecord,
    DroppedOrderRecord,
    PublishedTrade,
    publication_path,
)
from flexgrid.oracle.service import Oracle, OracleSettings, Stage, reindex_publications
from flexgrid.store import init_db, make_engine
from flexgrid.store.tables import ChainEvent, IndexerCursor, OrderRecord
from flexgrid.trading import RoundState
from tests.conftest import MarketEnv
from tests.oracle.helpers import close_round, mine, open_round

pytestmark = pytest.mark.chain


def _oracle(env: MarketEnv, account: LocalAccount, folder: Path) -> Oracle:
    return Oracle(env.w3, env.deployment, account, make_engine(f"sqlite:///{folder / 'oracle.db'}"),
                  OracleSettings(results_dir=folder / "results"))


def test_two_oracles_with_quorum_two_commit_the_same_result(market: MarketEnv, tmp_path: Path) -> None:
    second = market.providers[3]  # not used by the round's offers
    market.client().grant_oracle(second.address)
    r = open_round(market, quorum=2)
    close_round(market, r)
    a = _oracle(market, market.oracle, tmp_path / "a")
    b = _oracle(market, second, tmp_path / "b")
    client = MarketClient(market.w3, market.deployment)

    [first] = mine(a.run_once(), r.round_id)
    assert first.stage == Stage.VOTED  # one vote of two: not committed yet
    assert client.round_state(r.round_id) == RoundState.CLOSED
    [other] = mine(b.run_once(), r.round_id)
    assert other.stage == Stage.PUBLISHED
    [again] = mine(a.run_once(), r.round_id)  # the first oracle publishes once the quorum is reached
    assert again.stage == Stage.PUBLISHED

    status = client.round_status(r.round_id)
    assert status.state == RoundState.COMMITTED and status["votes"] == 2
    assert first.trade_root == other.trade_root == status["tradeRoot"]
    files = [publication_path(tmp_path / x / "results", market.deployment.chain_id, market.deployment.market,
                              r.round_id).read_bytes() for x in ("a", "b")]
    assert files[0] == files[1]  # byte-identical publications: inputs, trades, certificate, checks
    market_contract = market.w3.eth.contract(address=Web3.to_checksum_address(market.deployment.market),
                                             abi=client.market.abi)
    votes = [e["args"] for e in market_contract.events.ClearingVoted().get_logs(from_block=market.deployment.block_number)
             if int(e["args"]["roundId"]) == r.round_id]
    assert sorted(v["oracle"] for v in votes) == sorted([market.oracle.address, second.address])
    assert votes[0]["resultHash"] == votes[1]["resultHash"]
    assert client.has_voted(r.round_id, market.oracle.address) and client.has_voted(r.round_id, second.address)


# IndexedBlock is left out: it records the block hashes at the ends of the indexer's past
# batches (for reorg detection), so it depends on when the indexer ran, not on the chain's data.
TABLES: tuple[type[SQLModel], ...] = (
    ChainEvent, OrderRecord, IndexerCursor, ClearingPublicationRecord, PublishedTrade, DroppedOrderRecord,
)


def _dump(engine: Engine) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with Session(engine) as session:
        for table in TABLES:
            rows: list[Any] = list(session.exec(select(table)).all())
            out[table.__name__] = sorted(
                json.dumps(row.model_dump(exclude={"id"}), sort_keys=True, default=str) for row in rows
            )
    return out


def test_deleting_the_database_and_reindexing_gives_the_same_tables(market: MarketEnv, tmp_path: Path) -> None:
    r = open_round(market, offer_buses=(17, 999))
    close_round(market, r)
    oracle = _oracle(market, market.oracle, tmp_path)
    [outcome] = mine(oracle.run_once(), r.round_id)
    assert outcome.stage == Stage.PUBLISHED
    oracle.indexer.run_once()  # up to the head, like the rebuild below
    before = _dump(oracle.engine)
    assert len(before["PublishedTrade"]) > 0 and len(before["DroppedOrderRecord"]) == 1
    oracle.engine.dispose()
    (tmp_path / "oracle.db").unlink()

    engine = make_engine(f"sqlite:///{tmp_path / 'rebuilt.db'}")
    init_db(engine)
    EventIndexer(market.w3, market.deployment, engine).run_once()
    # the files of this oracle only (other test modules may leave committed rounds on this chain)
    assert reindex_publications(market.w3, market.deployment, engine, results_dir=tmp_path / "results") == 1

    assert _dump(engine) == before
