"""An ENCRYPTED round end to end on anvil and case33bw, checked by the auditor.

Providers seal their signed offers to the round key; after gate closure the oracle opens the
ciphertexts and reveals the offers, clears the round with the real engine, commits, and publishes
the round key; `flexgrid audit verify` then opens every ciphertext itself. An oracle that keeps a
valid sealed offer out of the round (never reveals it) is caught, although the chain's order
accumulator and input hash are consistent with what it revealed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexgrid.chain.indexer import EventIndexer, round_events, round_orders
from flexgrid.chain.node import AnvilNode, revert_to, snapshot
from flexgrid.cli.main import app
from flexgrid.grid import build_view, load_net
from flexgrid.oracle.service import Oracle, OracleSettings, Stage
from flexgrid.store import init_db, make_engine
from flexgrid.trading import Direction, FlexOffer, FlexRequest, PricingRule, SealMode
from flexgrid.trading.sealing import (
    RoundKeyPair,
    commitments_from_events,
    open_commitments,
    revealable,
    seal_offer,
)
from tests.audit.test_verify import GRID, SLOT_S, SLOTS
from tests.conftest import MarketEnv

pytestmark = [pytest.mark.chain, pytest.mark.xdist_group("sealed-audit")]

SEALED = ((0, 17, 120.0, 110.0), (1, 16, 90.0, 95.0), (2, 15, 80.0, 140.0),
          (3, 500, 50.0, 90.0),  # no bus 500: revealed, then dropped by the oracle with its reason
          (4, 12, 40.0, 100.0))  # its ciphertext is damaged: reported, not revealed
DAMAGED = 4


@pytest.fixture
def chain(market_env: MarketEnv) -> Iterator[MarketEnv]:
    snap = snapshot(market_env.w3)
    try:
        yield market_env
    finally:
        revert_to(market_env.w3, snap)


def _sealed_round(env: MarketEnv, out: Path, *, withhold: bool) -> tuple[int, str]:
    op, oracle = env.client(), env.client(env.oracle)
    op.set_dso(GRID, env.dso.address)
    net = load_net(GRID)
    view = build_view(net, GRID)
    key = RoundKeyPair.generate()
    now = env.now_s()
    rc = op.create_round(env.round_config(
        grid_id=GRID, grid_model_hash=view.model_hash(), slot_start_s=(now // 86_400 + 1) * 86_400 + 17 * 3600,
        slot_seconds=SLOT_S, slot_count=SLOTS, gate_closure_s=now + 1800, pricing_rule=PricingRule.PAY_AS_BID,
        seal_mode=SealMode.ENCRYPTED, reveal_s=600, encryption_key=key.public_key, price_cap_eur_per_mwh=400.0,
    ))
    rc = op.round_config(rc.round_id, grid_id=GRID)
    env.client(env.dso).submit_request(FlexRequest(
        round_id=rc.round_id, bus=14, direction=Direction.UP, slots=tuple(range(SLOTS)), kw=(200.0,) * SLOTS,
        price_cap_eur_per_mwh=250.0))
    for i, bus, max_kw, price in SEALED:
        provider = env.providers[i]
        offer = FlexOffer(provider=provider.address, round_id=rc.round_id, bus=bus, asset_id="0x" + f"{i + 1:02x}" * 32,
                          direction=Direction.UP, slots=tuple(range(SLOTS)), min_kw=(0.0,) * SLOTS,
                          max_kw=(max_kw,) * SLOTS, price_eur_per_mwh=price, nonce=rc.round_id << 64,
                          expiry_s=rc.gate_closure_s + 3600)
        sealed = seal_offer(offer.sign(provider, env.deployment.domain), key.public_key)
        ciphertext = sealed.ciphertext[:-1] + bytes([sealed.ciphertext[-1] ^ 1]) if i == DAMAGED else sealed.ciphertext
        env.client(provider).commit_offer(rc.round_id, sealed.commitment, ciphertext)
    env.time_travel(rc.gate_closure_s)

    # the oracle: open the ciphertexts from the chain's events and reveal them
    engine = make_engine(f"sqlite:///{out / 'oracle.db'}")
    init_db(engine)
    indexer = EventIndexer(env.w3, env.deployment, engine)
    indexer.run_once()
    committed = commitments_from_events(round_events(engine, env.deployment, rc.round_id, "OfferCommitted"))
    opened = open_commitments(committed, key.secret_key, round_id=rc.round_id, domain=env.deployment.domain)
    assert [o.ok for o in opened] == [i != DAMAGED for i, *_ in SEALED]
    offers, salts = revealable(opened)
    if withhold:  # a dishonest oracle keeps the cheapest offer out of the round
        offers, salts = offers[:1] + offers[2:], salts[:1] + salts[2:]
    oracle.reveal_offers(offers, salts)
    indexer.run_once()
    env.deployment.save(out / "deployment.json")
    env.time_travel(op.deadlines(rc.round_id)["reveal_end_s"])
    # the oracle service clears what was revealed, commits and publishes
    service = Oracle(env.w3, env.deployment, env.oracle, make_engine(f"sqlite:///{out / 'service.db'}"),
                     OracleSettings(results_dir=out / "results"))
    [outcome] = service.run_once()
    assert outcome.stage == Stage.PUBLISHED, outcome.detail
    assert len(round_orders(engine, env.deployment, rc.round_id).offers) == len(offers)
    return rc.round_id, key.secret_key


def _audit(url: str, out: Path, round_id: int, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", "verify", "--round", str(round_id), "--deployment",
                                      str(out / "deployment.json"), "--rpc-url", url, *extra])
    return result.exit_code, result.output


def test_sealed_round_verifies_once_the_key_is_published(chain: MarketEnv, anvil: AnvilNode, tmp_path: Path) -> None:
    round_id, secret = _sealed_round(chain, tmp_path, withhold=False)
    code, output = _audit(anvil.url, tmp_path, round_id)
    assert code == 1 and "the round key has not been published" in output  # before the key: not checkable
    chain.client(chain.oracle).publish_round_key(round_id, secret)
    code, output = _audit(anvil.url, tmp_path, round_id)
    assert code == 0, output
    assert f"round {round_id}: VERIFIED" in output
    code, output = _audit(anvil.url, tmp_path, round_id, "--json")
    [sealed] = [f for f in json.loads(output)["findings"] if f["check"] == "sealed"]
    assert sealed["ok"]
    [damaged] = [d for d in sealed["details"] if d.startswith("rejected")]  # reported with its commitment
    assert "does not decrypt with the round key" in damaged


def test_sealed_offer_the_oracle_never_revealed_is_caught(chain: MarketEnv, anvil: AnvilNode, tmp_path: Path) -> None:
    round_id, secret = _sealed_round(chain, tmp_path, withhold=True)
    chain.client(chain.oracle).publish_round_key(round_id, secret)
    code, output = _audit(anvil.url, tmp_path, round_id)
    assert code == 1
    assert "that was never revealed" in output
    assert "sealed offer" in output and "is not among the orders used by the clearing" in output
