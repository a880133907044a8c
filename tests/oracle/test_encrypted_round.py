"""An ENCRYPTED round run by the oracle service alone: it opens the ciphertexts committed on chain
with the round's secret key, reveals them in the reveal window, clears, commits, publishes, and
then publishes the round key; a damaged ciphertext is reported, never silently dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
from web3 import Web3

from flexgrid.audit.verify import gather_evidence, verify_round
from flexgrid.chain.market import MarketClient
from flexgrid.oracle.publication import load_publication, publication_path
from flexgrid.oracle.service import Oracle, OracleSettings, Stage
from flexgrid.store import init_db, make_engine
from flexgrid.trading import Direction, FlexOffer, FlexRequest, PricingRule, RoundState, SealMode
from flexgrid.trading.sealing import RoundKeyPair, seal_offer
from tests.conftest import MarketEnv
from tests.oracle.helpers import GRID, SLOTS, grid_hash, mine

pytestmark = pytest.mark.chain


def test_oracle_opens_reveals_clears_and_publishes_the_key_of_an_encrypted_round(
    market: MarketEnv, tmp_path: Path
) -> None:
    op = market.client()
    op.set_dso(GRID, market.dso.address)
    key = RoundKeyPair.generate()
    rc = op.create_round(market.round_config(
        grid_id=GRID, grid_model_hash=grid_hash(), slot_count=SLOTS, pricing_rule=PricingRule.PAY_AS_BID,
        seal_mode=SealMode.ENCRYPTED, reveal_s=600, encryption_key=key.public_key))
    market.client(market.dso).submit_request(FlexRequest(
        round_id=rc.round_id, bus=14, direction=Direction.UP, slots=tuple(range(SLOTS)), kw=(150.0,) * SLOTS,
        price_cap_eur_per_mwh=300.0))
    sealed = []
    for i, bus in enumerate((17, 16, 15)):
        provider = market.providers[i]
        offer = FlexOffer(provider=provider.address, round_id=rc.round_id, bus=bus,
                          asset_id="0x" + Web3.keccak(text=f"asset-{i}").hex().removeprefix("0x"),
                          direction=Direction.UP, slots=tuple(range(SLOTS)), min_kw=(0.0,) * SLOTS,
                          max_kw=(80.0,) * SLOTS, price_eur_per_mwh=100.0 + 10 * i, nonce=rc.round_id << 64,
                          expiry_s=rc.gate_closure_s + 3600)
        s = seal_offer(offer.sign(provider, market.deployment.domain), key.public_key)
        ciphertext = s.ciphertext if i < 2 else s.ciphertext[:-1] + bytes([s.ciphertext[-1] ^ 1])  # the 3rd is damaged
        market.client(provider).commit_offer(rc.round_id, s.commitment, ciphertext)
        sealed.append(s)
    oracle = Oracle(market.w3, market.deployment, market.oracle, make_engine(f"sqlite:///{tmp_path / 'o.db'}"),
                    OracleSettings(results_dir=tmp_path / "results", round_secrets={rc.round_id: key.secret_key}))
    client = MarketClient(market.w3, market.deployment)

    market.time_travel(rc.gate_closure_s)
    [first] = mine(oracle.run_once(), rc.round_id)  # in the reveal window: open and reveal
    assert "revealed 2 sealed offers" in first.detail
    assert [client.commitment_info(rc.round_id, s.commitment)[1] for s in sealed] == [True, True, False]
    [again] = mine(oracle.run_once(), rc.round_id)  # nothing left to reveal, nothing sent twice
    assert "revealed 0 sealed offers" in again.detail

    market.time_travel(client.deadlines(rc.round_id)["reveal_end_s"])
    [done] = mine(oracle.run_once(), rc.round_id)

    assert done.stage == Stage.PUBLISHED, done.detail
    assert client.round_state(rc.round_id) == RoundState.COMMITTED
    doc = load_publication(publication_path(tmp_path / "results", market.deployment.chain_id,
                                            market.deployment.market, rc.round_id))
    assert sorted(o["orderHash"] for o in doc["inputs"]["offers"]) == sorted(s.order_hash for s in sealed[:2])
    [rejected] = doc["sealed"]["rejected"]
    assert rejected["commitment"] == sealed[2].commitment.lower() and rejected["reason"]
    market_contract = market.w3.eth.contract(address=Web3.to_checksum_address(market.deployment.market),
                                             abi=client.market.abi)
    [published] = [e for e in market_contract.events.RoundKeyPublished().get_logs(from_block=market.deployment.block_number)
                   if int(e["args"]["roundId"]) == rc.round_id]
    assert "0x" + bytes(published["args"]["secretKey"]).hex() == key.secret_key
    auditor_db = make_engine(f"sqlite:///{tmp_path / 'auditor.db'}")
    init_db(auditor_db)
    audit = verify_round(gather_evidence(market.w3, market.deployment, auditor_db, rc.round_id), doc)
    assert audit.ok, [f.to_dict() for f in audit.failures]
