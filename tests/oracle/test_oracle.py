"""The oracle service in-process on a real anvil: read, verify, clear, check, commit, publish."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from flexgrid.audit.verify import gather_evidence, verify_round
from flexgrid.chain.market import MarketClient
from flexgrid.grid import build_view, load_net, synthetic_profiles
from flexgrid.market import clear_market
from flexgrid.oracle.publication import load_publication, publication_path, published_round, published_trades
from flexgrid.oracle.service import Oracle, OracleSettings, RoundOutcome, Stage
from flexgrid.store import init_db, make_engine
from flexgrid.store.tables import OrderRecord
from flexgrid.trading import FlexOffer, P2POrder, RoundState, Side
from flexgrid.trading.canonical import input_hash
from tests.conftest import MarketEnv
from tests.oracle.helpers import GRID, close_round, mine, open_round, reveal

pytestmark = pytest.mark.chain


def _engine(tmp_path: Path, name: str = "oracle") -> Engine:
    return make_engine(f"sqlite:///{tmp_path / f'{name}.db'}")


def _oracle(env: MarketEnv, tmp_path: Path, account=None, name: str = "oracle") -> Oracle:  # type: ignore[no-untyped-def]
    return Oracle(
        env.w3,
        env.deployment,
        account or env.oracle,
        _engine(tmp_path, name),
        OracleSettings(results_dir=tmp_path / f"{name}-results"),
    )


def test_oracle_commits_the_clearing_of_the_chain_orders_and_publishes_it(market: MarketEnv, tmp_path: Path) -> None:
    r = open_round(market, offer_buses=(17, 16, 999))  # bus 999 does not exist in case33bw
    close_round(market, r)
    oracle = _oracle(market, tmp_path)

    [outcome] = mine(oracle.run_once(), r.round_id)

    assert outcome.stage == Stage.PUBLISHED, outcome.detail
    client = MarketClient(market.w3, market.deployment)
    status = client.round_status(r.round_id)
    assert status.state == RoundState.COMMITTED
    # the same round cleared by hand from the orders we sent, without the unknown-bus offer
    assert r.request is not None
    valid = [s.order.model_copy(update={"order_id": s.order_hash}) for s in r.offers[:2]]
    valid_offers = [o for o in valid if isinstance(o, FlexOffer)]
    net = load_net(GRID)
    view = build_view(net, GRID)
    cfg = r.config.model_copy(update={"grid_id": GRID})
    profiles = synthetic_profiles(net, view, slot_start_s=cfg.slot_start_s, slot_seconds=cfg.slot_seconds,
                                  slot_count=cfg.slot_count)
    expected = clear_market(net, profiles, cfg, [r.request, *valid], view=view, funded_only=True)
    assert status["tradeRoot"] == expected.merkle_root
    doc = load_publication(publication_path(tmp_path / "oracle-results", market.deployment.chain_id,
                                            market.deployment.market, r.round_id))
    assert doc["tradeRoot"] == expected.merkle_root
    assert doc["inputHash"] == input_hash(round_id=r.round_id, domain=market.deployment.domain,
                                          grid_model_hash=cfg.grid_model_hash, requests=[r.request], offers=valid_offers, p2p=[])
    assert doc["certificateHash"] == expected.certificate_hash
    # the invalid order is reported with its reason, never silently dropped
    [dropped] = doc["dropped"]
    assert dropped["orderHash"] == r.offers[2].order_hash
    assert "999" in dropped["reason"]
    assert doc["signatureChecks"] == {s.order_hash: "ecdsa" for s in r.offers}  # dropped for its bus only
    assert doc["risk"]["ok"] and doc["funding"]["ok"]
    margin = doc["risk"]["forecastMargin"]  # UP flexibility at the feeder's end leaves more room
    assert margin["afterPercent"] >= margin["beforePercent"] > 0
    n1 = doc["risk"]["n1"]  # every single outage of case33bw's lines, with its ties, before and after
    assert n1["before"]["outages"] == n1["after"]["outages"] == 32
    assert n1["after"]["flexNeededKw"] <= n1["before"]["flexNeededKw"]
    row = published_round(oracle.engine, market.deployment.chain_id, market.deployment.market, r.round_id)
    assert row is not None and row.trade_root == expected.merkle_root and row.orders_dropped == 1
    trades = published_trades(oracle.engine, market.deployment.chain_id, market.deployment.market, r.round_id)
    assert [t.order_hash for t in trades] == [t.order_id for t in expected.trades]
    # the auditor, from the chain and the publication alone (re-running the clearing), agrees
    auditor_db = _engine(tmp_path, "auditor")
    init_db(auditor_db)
    audit = verify_round(gather_evidence(market.w3, market.deployment, auditor_db, r.round_id), doc, resolve=True)
    assert audit.ok, [f.to_dict() for f in audit.failures]
    # a second pass does nothing more
    assert mine(oracle.run_once(), r.round_id) == []
    assert oracle.process(r.round_id).stage == Stage.PUBLISHED


def test_oracle_refuses_a_round_whose_grid_model_hash_differs(market: MarketEnv, tmp_path: Path) -> None:
    r = open_round(market, grid_model_hash="0x" + "ab" * 32)
    close_round(market, r)
    oracle = _oracle(market, tmp_path)

    [outcome] = mine(oracle.run_once(), r.round_id)

    assert outcome.stage == Stage.REFUSED
    assert "grid-model hash" in outcome.detail and "0x" + "ab" * 32 in outcome.detail
    assert MarketClient(market.w3, market.deployment).round_state(r.round_id) == RoundState.CLOSED


def test_oracle_waits_for_gate_closure(market: MarketEnv, tmp_path: Path) -> None:
    r = open_round(market)
    assert mine(_oracle(market, tmp_path).run_once(), r.round_id) == []


def test_sealed_round_is_cleared_after_the_reveal_window_from_the_revealed_offers(
    market: MarketEnv, tmp_path: Path
) -> None:
    r = open_round(market, sealed=True, offer_buses=(17, 16))
    reveal(market, r)
    oracle = _oracle(market, tmp_path)
    assert mine(oracle.run_once(), r.round_id) == []  # inside the reveal window: not yet

    close_round(market, r)
    [outcome] = mine(oracle.run_once(), r.round_id)

    assert outcome.stage == Stage.PUBLISHED, outcome.detail
    doc = load_publication(publication_path(tmp_path / "oracle-results", market.deployment.chain_id,
                                            market.deployment.market, r.round_id))
    # both revealed offers were used, their signatures found in the revealOffers calldata
    assert sorted(o["orderHash"] for o in doc["inputs"]["offers"]) == sorted(s.order_hash for s in r.offers)
    assert doc["signatureChecks"] == {s.order_hash: "ecdsa" for s in r.offers}
    assert doc["signatures"] == {s.order_hash: s.signature.lower() for s in r.offers}
    assert MarketClient(market.w3, market.deployment).round_status(r.round_id)["tradeRoot"] == doc["tradeRoot"]


def test_offers_without_a_paying_request_are_not_bought(market: MarketEnv, tmp_path: Path) -> None:
    # cheaper than the wholesale price, so a proactive clearing would buy them, but on chain
    # nobody escrowed the money: the oracle clears with funded_only and commits nothing
    r = open_round(market, with_request=False, offer_buses=(17,), offer_price_eur_per_mwh=20.0)
    close_round(market, r)
    [outcome] = mine(_oracle(market, tmp_path).run_once(), r.round_id)
    assert outcome.stage == Stage.REFUSED
    assert "accepted nothing" in outcome.detail
    assert MarketClient(market.w3, market.deployment).round_state(r.round_id) == RoundState.CLOSED


def test_p2p_orders_are_read_with_their_calldata_signatures_and_cleared(market: MarketEnv, tmp_path: Path) -> None:
    r = open_round(market, offer_buses=(17,))
    buyer, seller = market.providers[3], market.providers[4]
    signed = [
        P2POrder(trader=trader.address, round_id=r.round_id, bus=bus, side=side, slot=slot, kw=40.0,
                 limit_price_eur_per_mwh=price, nonce=(r.round_id << 64) | slot,
                 expiry_s=r.config.gate_closure_s).sign(trader, market.deployment.domain)
        for trader, bus, side, price in ((buyer, 30, Side.BUY, 150.0), (seller, 3, Side.SELL, 40.0))
        for slot in (0, 1)
    ]
    market.client(market.providers[5]).submit_p2p_orders(signed)
    close_round(market, r)

    [outcome] = mine(_oracle(market, tmp_path).run_once(), r.round_id)

    assert outcome.stage == Stage.PUBLISHED, outcome.detail
    doc = load_publication(publication_path(tmp_path / "oracle-results", market.deployment.chain_id,
                                            market.deployment.market, r.round_id))
    assert sorted(o["orderHash"] for o in doc["inputs"]["p2p"]) == sorted(s.order_hash for s in signed)
    assert all(doc["signatureChecks"][s.order_hash] == "ecdsa" for s in signed)
    p2p_leaves = [t for t in doc["trades"] if t["orderHash"] in {s.order_hash for s in signed}]
    assert {t["participant"] for t in p2p_leaves} == {buyer.address.lower(), seller.address.lower()}
    assert doc["funding"]["ok"]


def test_a_commit_whose_nonce_was_taken_by_another_transaction_is_rebuilt_and_sent_once(
    market: MarketEnv, tmp_path: Path
) -> None:
    r = open_round(market)
    close_round(market, r)
    oracle = _oracle(market, tmp_path)
    cp = oracle.checkpoint(r.round_id)
    oracle.indexer.run_once()
    oracle._read_and_solve(cp)
    nonce = market.w3.eth.get_transaction_count(market.oracle.address)
    assert oracle._prepare_commit(cp)  # signed and stored, as a kill at `before_send` leaves it
    market.client(market.oracle).approve_market()  # the same account spends that nonce elsewhere

    outcome = oracle.process(r.round_id)

    assert outcome.stage == Stage.PUBLISHED, outcome.detail
    assert MarketClient(market.w3, market.deployment).round_status(r.round_id)["tradeRoot"] == cp.trade_root
    assert market.w3.eth.get_transaction_count(market.oracle.address) == nonce + 2  # approve + one commit


def test_an_index_that_misses_an_accepted_order_is_caught_by_the_accumulator(market: MarketEnv, tmp_path: Path) -> None:
    r = open_round(market)
    close_round(market, r)
    oracle = _oracle(market, tmp_path)
    oracle.indexer.run_once()
    with Session(oracle.engine) as session:  # lose one order from the index
        session.delete(session.exec(select(OrderRecord).where(OrderRecord.order_hash == r.offers[1].order_hash)).one())
        session.commit()

    [outcome] = oracle.run_once(r.round_id)

    assert outcome.stage == Stage.NEW and "accumulator" in outcome.detail and "re-index" in outcome.detail
    assert MarketClient(market.w3, market.deployment).round_state(r.round_id) == RoundState.CLOSED


def test_the_service_loop_clears_a_round_that_closes_while_it_runs(market: MarketEnv, tmp_path: Path) -> None:
    r = open_round(market)
    oracle = _oracle(market, tmp_path)
    stop = threading.Event()
    seen: list[str] = []

    def on_outcome(outcome: RoundOutcome) -> None:
        if outcome.round_id == r.round_id:
            seen.append(outcome.stage)
            if outcome.stage in (Stage.PUBLISHED, Stage.REFUSED):
                stop.set()

    loop = threading.Thread(target=oracle.run, kwargs={"poll_interval_s": 0.05, "stop": stop, "on_outcome": on_outcome})
    loop.start()
    close_round(market, r)  # gate closure passes while the loop polls
    loop.join(timeout=120)
    stop.set()

    assert not loop.is_alive()
    assert seen == [Stage.PUBLISHED]
    assert MarketClient(market.w3, market.deployment).round_state(r.round_id) == RoundState.COMMITTED
