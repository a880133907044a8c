"""The store and the indexer on a real PostgreSQL server, chosen by FLEXGRID_DATABASE_URL."""

from __future__ import annotations

import pytest
from sqlmodel import Session, func, select

from flexgrid.chain.indexer import EventIndexer, round_orders
from flexgrid.store import ChainEvent, init_db, make_engine
from tests.chain.test_market import make_request
from tests.conftest import MarketEnv

pytestmark = pytest.mark.chain


def test_indexer_writes_to_postgresql_by_url(
    market: MarketEnv, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEXGRID_DATABASE_URL", postgres_url)
    engine = make_engine()
    assert engine.dialect.name == "postgresql"
    init_db(engine)
    cfg = market.client().create_round(market.round_config())
    request = market.client(market.dso).submit_request(
        make_request(cfg.round_id, kw=(3.5,), price_cap_eur_per_mwh=42.0)
    )
    indexer = EventIndexer(market.w3, market.deployment, engine)
    assert indexer.run_once().orders_added == 1
    assert indexer.run_once().events_added == 0
    assert round_orders(engine, market.deployment, cfg.round_id).requests == [request]
    with Session(engine) as session:
        count = session.exec(
            select(func.count()).select_from(ChainEvent).where(ChainEvent.round_id == cfg.round_id)
        )
        assert count.one() == 2  # RoundCreated, FlexRequestSubmitted
