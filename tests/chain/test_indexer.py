"""The event indexer against a real anvil: events land once, confirmations are honoured, reorgs undone."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from flexgrid.chain.indexer import EventIndexer, round_events, round_orders
from flexgrid.chain.node import mine, revert_to, snapshot
from flexgrid.store import ChainEvent, init_db, make_engine
from flexgrid.trading import Direction, FlexOffer, FlexRequest, RoundConfig
from tests.chain.test_market import make_p2p, make_request
from tests.conftest import MarketEnv

pytestmark = pytest.mark.chain


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'index.db'}")
    init_db(engine)
    return engine


def _count(engine: Engine, event: str | None = None) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(ChainEvent)
        if event:
            query = query.where(ChainEvent.event == event)
        return int(session.exec(query).one())


def _round_with_orders(
    market: MarketEnv, offers: int = 3
) -> tuple[RoundConfig, FlexRequest, list[FlexOffer]]:
    op = market.client()
    cfg = op.create_round(market.round_config())
    request = market.client(market.dso).submit_request(
        make_request(
            cfg.round_id,
            bus=4,
            direction=Direction.DOWN,
            slots=(1, 2),
            kw=(12.5, 7.25),
            price_cap_eur_per_mwh=250.5,
        )
    )
    made = []
    for i in range(offers):
        provider = market.providers[i]
        offer = FlexOffer(
            provider=provider.address,
            round_id=cfg.round_id,
            bus=4,
            asset_id="0x" + f"{i:064x}",
            direction=Direction.DOWN,
            slots=(1, 2),
            min_kw=(1.0, 0.0),
            max_kw=(5.5, 6.0),
            price_eur_per_mwh=99.125,
            exclusive_group="0x" + "00" * 31 + "01",
            min_activation=0.2,
            nonce=cfg.round_id << 64,
            expiry_s=market.now_s() + 1000,
        )
        op.submit_offer(offer.sign(provider, market.deployment.domain))
        made.append(offer.model_copy(update={"order_id": offer.digest(market.deployment.domain)}))
    return cfg, request, made


def test_events_land_once_and_orders_decode_to_the_models(market: MarketEnv, engine: Engine) -> None:
    cfg, request, offers = _round_with_orders(market)
    indexer = EventIndexer(market.w3, market.deployment, engine)
    first = indexer.run_once()
    assert first.events_added > 0 and first.orders_added == 4
    assert _count(engine, "FlexOfferSubmitted") == 3
    assert _count(engine, "RoundCreated") >= 1
    total = _count(engine)

    again = indexer.run_once()
    assert (again.events_added, again.orders_added) == (0, 0)
    # A fresh indexer on the same database (a restart) adds nothing either.
    assert EventIndexer(market.w3, market.deployment, engine).run_once().events_added == 0
    assert _count(engine) == total

    orders = round_orders(engine, market.deployment, cfg.round_id)
    assert orders.requests == [request]
    assert orders.offers == offers
    assert orders.p2p == []
    created = round_events(engine, market.deployment, cfg.round_id, "RoundCreated")
    assert created[0]["args"]["config"]["slotCount"] == cfg.slot_count


def test_confirmations_hold_back_recent_blocks(market: MarketEnv, engine: Engine) -> None:
    indexer = EventIndexer(market.w3, market.deployment, engine, confirmations=3)
    mine(market.w3, 3)  # the set-up transactions are now 3 blocks deep
    indexer.run_once()
    before = _count(engine, "FlexOfferSubmitted")
    _round_with_orders(market, offers=1)  # request, round and offer: three blocks
    assert indexer.run_once().events_added == 0
    assert _count(engine, "FlexOfferSubmitted") == before
    mine(market.w3, 3)
    indexer.run_once()
    assert _count(engine, "FlexOfferSubmitted") == before + 1


def test_reorg_drops_events_of_orphaned_blocks(market: MarketEnv, engine: Engine) -> None:
    indexer = EventIndexer(market.w3, market.deployment, engine)
    indexer.run_once()
    base = _count(engine)
    fork_point = snapshot(market.w3)
    cfg, _, _ = _round_with_orders(market, offers=2)
    indexer.run_once()
    assert _count(engine, "FlexOfferSubmitted") >= 2
    # The chain drops those blocks and grows a different branch of the same height and more.
    revert_to(market.w3, fork_point)
    market.client().create_round(market.round_config(slot_count=8))
    mine(market.w3, 6)
    report = indexer.run_once()
    assert report.reorged_blocks > 0
    assert round_orders(engine, market.deployment, cfg.round_id).offers == []
    assert _count(engine) == base + 1  # only the new branch's RoundCreated
    created = round_events(engine, market.deployment, cfg.round_id, "RoundCreated")
    assert created[0]["args"]["config"]["slotCount"] == 8


def test_anvil_reorg_of_the_last_blocks_is_undone(market: MarketEnv, engine: Engine) -> None:
    indexer = EventIndexer(market.w3, market.deployment, engine)
    cfg, _, offers = _round_with_orders(market, offers=3)  # the last three blocks hold one offer each
    indexer.run_once()
    assert len(round_orders(engine, market.deployment, cfg.round_id).offers) == 3
    # anvil replaces the last two blocks by empty ones: two offers leave the chain.
    market.w3.provider.make_request("anvil_reorg", [2, []])  # type: ignore[arg-type]
    report = indexer.run_once()
    assert report.reorged_blocks >= 1
    on_chain = {e["args"]["orderHash"] for e in _chain_offer_events(market, cfg.round_id)}
    indexed = {o.order_id for o in round_orders(engine, market.deployment, cfg.round_id).offers}
    assert indexed == on_chain
    assert offers[0].order_id in indexed and offers[2].order_id not in indexed


def _chain_offer_events(market: MarketEnv, round_id: int) -> list[dict[str, dict[str, str]]]:
    market_contract = market.client().market
    logs = market_contract.events.FlexOfferSubmitted().get_logs(
        from_block=market.deployment.block_number, argument_filters={"roundId": round_id}
    )
    return [{"args": {"orderHash": "0x" + bytes(log["args"]["orderHash"]).hex()}} for log in logs]


def test_follow_indexes_new_blocks_until_stopped(market: MarketEnv, engine: Engine) -> None:
    import threading

    indexer = EventIndexer(market.w3, market.deployment, engine)
    indexer.run_once()
    stop = threading.Event()
    reports = []

    def on_report(report: object) -> None:
        reports.append(report)
        if _count(engine, "FlexOfferSubmitted") >= 1:
            stop.set()

    _round_with_orders(market, offers=1)
    worker = threading.Thread(
        target=indexer.follow, kwargs=dict(poll_interval_s=0.05, stop=stop, on_report=on_report)
    )
    worker.start()
    worker.join(timeout=30)
    alive = worker.is_alive()
    stop.set()
    assert not alive
    assert _count(engine, "FlexOfferSubmitted") == 1


def test_indexed_orders_rebuild_the_contracts_order_accumulator(market: MarketEnv, engine: Engine) -> None:
    from flexgrid.chain.indexer import accepted_order_hashes
    from flexgrid.trading import Side
    from flexgrid.trading.canonical import order_accumulator

    cfg, _, _ = _round_with_orders(market, offers=2)
    trader = market.providers[4]
    order = make_p2p(
        market, cfg.round_id, 4, bus=4, side=Side.SELL, slot=0, kw=2.0, limit_price_eur_per_mwh=50.0
    )
    market.client().submit_p2p_orders([order.sign(trader, market.deployment.domain)])
    EventIndexer(market.w3, market.deployment, engine).run_once()
    hashes = accepted_order_hashes(engine, market.deployment, cfg.round_id)
    status = market.client().round_status(cfg.round_id)
    assert len(hashes) == status["orderCount"] == 4
    assert order_accumulator(cfg.round_id, hashes) == status["orderAccumulator"]
    assert order_accumulator(cfg.round_id, hashes[::-1]) != status["orderAccumulator"]


def test_orders_read_straight_from_chain_equal_the_indexed_ones(market: MarketEnv, engine: Engine) -> None:
    from flexgrid.chain.indexer import read_round_orders

    cfg, request, offers = _round_with_orders(market, offers=3)
    other, _, _ = _round_with_orders(market, offers=1)  # another round's orders are left out
    EventIndexer(market.w3, market.deployment, engine).run_once()
    from_chain = read_round_orders(market.w3, market.deployment, cfg.round_id)
    assert from_chain == round_orders(engine, market.deployment, cfg.round_id)
    assert from_chain.requests == [request] and from_chain.offers == offers
    assert len(read_round_orders(market.w3, market.deployment, other.round_id).offers) == 1


def test_anvil_rollback_below_the_cursor_is_undone(market: MarketEnv, engine: Engine) -> None:
    indexer = EventIndexer(market.w3, market.deployment, engine)
    cfg, _, offers = _round_with_orders(market, offers=2)
    indexer.run_once()
    # The chain loses its last block (the second offer) and is now shorter than the cursor.
    market.w3.provider.make_request("anvil_rollback", [1])  # type: ignore[arg-type]
    report = indexer.run_once()
    assert report.reorged_blocks >= 1
    assert [o.order_id for o in round_orders(engine, market.deployment, cfg.round_id).offers] == [
        offers[0].order_id
    ]


def _created_at(deployer: str, nonce: int) -> str:
    """The address of the contract `deployer` creates with `nonce` (CREATE)."""
    import rlp
    from eth_utils import keccak, to_checksum_address

    return str(to_checksum_address(keccak(rlp.encode([bytes.fromhex(deployer[2:]), nonce]))[12:]))


def test_a_restarted_chain_under_the_same_id_replaces_the_whole_index(
    market: MarketEnv, engine: Engine
) -> None:
    """A new anvil (same chain id, same deployer, so the same contract addresses) deployed at a later
    block: nothing indexed from the old chain survives, not even events below the new deployment."""
    from flexgrid.chain.deploy import deploy
    from flexgrid.chain.node import AnvilNode

    _round_with_orders(market, offers=1)
    EventIndexer(market.w3, market.deployment, engine).run_once()
    assert _count(engine) > 0
    with AnvilNode() as other:
        w3 = other.web3()
        mine(w3, int(market.w3.eth.block_number) + 5)  # the old chain's events all lie below
        deployer = other.dev_accounts()[0]
        assert deployer.address == market.deployment.deployer
        nonce = next(n for n in range(10_000) if _created_at(deployer.address, n) == market.deployment.token)
        w3.provider.make_request("anvil_setNonce", [deployer.address, hex(nonce)])  # type: ignore[arg-type]
        fresh = deploy(w3, deployer)
        assert fresh.market == market.deployment.market
        assert fresh.block_number > int(market.w3.eth.block_number)
        report = EventIndexer(w3, fresh, engine).run_once()
        assert report.reorged_blocks > 0
        with Session(engine) as session:
            blocks = session.exec(select(ChainEvent.block_number)).all()
        assert blocks and min(blocks) >= fresh.block_number  # only the new deployment's events
