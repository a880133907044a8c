"""Offers sealed by encryption to the round key, on a real anvil with the real FlexMarket.

seal -> commitOffer with the ciphertext -> gate closure -> the oracle decrypts and reveals ->
commit -> publishRoundKey -> anyone decrypts every ciphertext from the indexed events and checks
that the offers used are exactly the sealed ones; tampered and wrongly keyed ciphertexts are
reported with their commitments.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flexgrid.chain.indexer import EventIndexer, round_events
from flexgrid.errors import ContractRevert, InputError
from flexgrid.store import init_db, make_engine
from flexgrid.trading import ClearingResult, Direction, FlexRequest, SealMode, Trade
from flexgrid.trading.merkle import TradeTree
from flexgrid.trading.sealing import (
    OpenedCommitment,
    RoundKeyPair,
    SealError,
    check_sealed_round,
    commitments_from_events,
    decrypt_sealed,
    open_commitments,
    public_key_of,
    revealable,
    seal_offer,
)
from tests.chain.test_market import make_offer
from tests.conftest import MarketEnv

pytestmark = pytest.mark.chain


def _tamper(ciphertext: bytes) -> bytes:
    body = bytearray(ciphertext)
    body[40] ^= 0x01  # one bit of the encrypted offer
    return bytes(body)


def test_sealed_offers_are_decrypted_revealed_and_checked_by_anyone_after_the_key_is_published(
    market: MarketEnv, tmp_path: Path
) -> None:
    op, oracle = market.client(), market.client(market.oracle)
    key = RoundKeyPair.generate()
    cfg = op.create_round(
        market.round_config(seal_mode=SealMode.ENCRYPTED, reveal_s=600, encryption_key=key.public_key)
    )
    assert op.round_config(cfg.round_id).encryption_key == key.public_key
    domain = market.deployment.domain
    expiry = cfg.gate_closure_s + 10_000
    good_a, good_b, tampered, wrong_key = (
        seal_offer(make_offer(market, cfg.round_id, i, expiry_s=expiry).sign(market.providers[i], domain),
                   RoundKeyPair.generate().public_key if i == 3 else key.public_key)
        for i in range(4)
    )
    for i, sealed in enumerate((good_a, good_b, tampered, wrong_key)):
        ciphertext = _tamper(sealed.ciphertext) if sealed is tampered else sealed.ciphertext
        market.client(market.providers[i]).commit_offer(cfg.round_id, sealed.commitment, ciphertext)
    request = market.client(market.dso).submit_request(
        FlexRequest(round_id=cfg.round_id, bus=7, direction=Direction.UP, slots=(0,), kw=(100.0,),
                    price_cap_eur_per_mwh=200.0)
    )

    engine = make_engine(f"sqlite:///{tmp_path / 'index.db'}")
    init_db(engine)
    indexer = EventIndexer(market.w3, market.deployment, engine)
    indexer.run_once()
    committed = commitments_from_events(round_events(engine, market.deployment, cfg.round_id, "OfferCommitted"))
    assert [c.commitment for c in committed] == [s.commitment for s in (good_a, good_b, tampered, wrong_key)]

    # gate closure: the oracle opens the ciphertexts with the round's secret key and reveals the good ones
    market.time_travel(cfg.gate_closure_s)
    opened = open_commitments(committed, key.secret_key, round_id=cfg.round_id, domain=domain)
    assert [o.ok for o in opened] == [True, True, False, False]
    assert opened[0].order_hash == good_a.order_hash and opened[1].salt == good_b.salt
    for bad in opened[2:]:
        assert "does not decrypt with the round key" in str(bad.problem)
    offers, salts = revealable(opened)
    oracle.reveal_offers(offers, salts)

    # after the reveal window the oracle commits a result that uses only offer A, then publishes the key
    market.time_travel(op.deadlines(cfg.round_id)["reveal_end_s"])
    trade = Trade(round_id=cfg.round_id, participant=market.providers[0].address, order_id=good_a.order_hash,
                  slot=0, kw=50.0, price_eur_per_mwh=100.0, payment_eur=1.25)
    tree = TradeTree([trade])
    oracle.commit_clearing(ClearingResult(round_id=cfg.round_id, trades=(trade,), merkle_root=tree.root,
                                          input_hash="0x" + "11" * 32, certificate_hash="0x" + "22" * 32))
    oracle.publish_round_key(cfg.round_id, key.secret_key)

    # anyone: the key from the chain, every ciphertext opened again, compared with reveals and inputs
    indexer.run_once()
    (published,) = round_events(engine, market.deployment, cfg.round_id, "RoundKeyPublished")
    secret = published["args"]["secretKey"]
    assert public_key_of(secret) == op.round_config(cfg.round_id).encryption_key
    reopened = open_commitments(committed, secret, round_id=cfg.round_id, domain=domain)
    revealed = {e["args"]["commitment"]: e["args"]["orderHash"]
                for e in round_events(engine, market.deployment, cfg.round_id, "OfferRevealed")}
    assert set(revealed.values()) == {good_a.order_hash, good_b.order_hash}
    used = [good_a.order_hash, good_b.order_hash]
    check = check_sealed_round(reopened, revealed, used)
    assert check.ok, check.problems  # the offers used are exactly the valid sealed ones
    assert len(check.rejected) == 2  # the two bad ciphertexts are reported, each named by its commitment
    assert any(tampered.commitment in p and "does not decrypt" in p for p in check.rejected)
    assert any(wrong_key.commitment in p and "does not decrypt" in p for p in check.rejected)
    assert request.order_id is not None

    # a clearing that left out sealed offer B is caught as well
    dropped = check_sealed_round(reopened, revealed, [good_a.order_hash])
    assert any(good_b.order_hash in p and "not among the orders used" in p for p in dropped.problems)


def test_the_round_key_is_published_only_after_the_commit(market: MarketEnv) -> None:
    op = market.client()
    key = RoundKeyPair.generate()
    cfg = op.create_round(
        market.round_config(seal_mode=SealMode.ENCRYPTED, reveal_s=600, encryption_key=key.public_key)
    )
    with pytest.raises(ContractRevert) as info:
        market.client(market.oracle).publish_round_key(cfg.round_id, key.secret_key)
    assert info.value.error_name == "WrongRoundState"


def test_wrong_key_round_or_market_does_not_open_a_ciphertext(market: MarketEnv) -> None:
    key = RoundKeyPair.generate()
    domain = market.deployment.domain
    signed = make_offer(market, 7).sign(market.providers[0], domain)
    sealed = seal_offer(signed, key.public_key)
    plaintext = decrypt_sealed(sealed.ciphertext, key.secret_key, round_id=7, market=domain.verifying_contract)
    assert signed.signature.lower().encode() in plaintext
    with pytest.raises(SealError, match="does not decrypt"):
        decrypt_sealed(sealed.ciphertext, RoundKeyPair.generate().secret_key, round_id=7,
                       market=domain.verifying_contract)
    with pytest.raises(SealError, match="does not decrypt"):  # replayed into another round
        decrypt_sealed(sealed.ciphertext, key.secret_key, round_id=8, market=domain.verifying_contract)
    with pytest.raises(SealError, match="does not decrypt"):  # or another market
        decrypt_sealed(sealed.ciphertext, key.secret_key, round_id=7, market=market.deployment.token)
    with pytest.raises(SealError, match="too short"):
        decrypt_sealed(sealed.ciphertext[:20], key.secret_key, round_id=7, market=domain.verifying_contract)


def test_ciphertext_of_another_providers_offer_is_reported_as_not_matching_its_commitment(
    market: MarketEnv,
) -> None:
    from flexgrid.trading.sealing import SealedCommitment

    key = RoundKeyPair.generate()
    domain = market.deployment.domain
    a = seal_offer(make_offer(market, 7, 0).sign(market.providers[0], domain), key.public_key)
    b = seal_offer(make_offer(market, 7, 1).sign(market.providers[1], domain), key.public_key)
    # provider B commits under its own commitment but ships A's ciphertext (copying a rival's bid)
    (copied,) = open_commitments(
        [SealedCommitment(commitment=b.commitment, provider=market.providers[1].address, ciphertext=a.ciphertext)],
        key.secret_key, round_id=7, domain=domain,
    )
    assert isinstance(copied, OpenedCommitment) and not copied.ok
    assert "is not the committer" in str(copied.problem)
    # the right provider, the wrong salt: the commitment does not match
    (mismatch,) = open_commitments(
        [SealedCommitment(commitment=b.commitment, provider=market.providers[0].address, ciphertext=a.ciphertext)],
        key.secret_key, round_id=7, domain=domain,
    )
    assert "commitment is" in str(mismatch.problem)


def test_sealing_refuses_a_round_without_a_key_and_a_bad_signature() -> None:
    from eth_account import Account

    from flexgrid.trading import FlexOffer
    from flexgrid.trading.eip712 import Eip712Domain, SignedOrder

    account = Account.create()
    domain = Eip712Domain(chain_id=31337, verifying_contract="0x" + "12" * 20)
    offer = FlexOffer(provider=account.address, round_id=1, bus=3, asset_id="0x" + "01" * 32,
                      direction=Direction.UP, slots=(0,), min_kw=(0.0,), max_kw=(10.0,),
                      price_eur_per_mwh=50.0, nonce=1 << 64, expiry_s=2_000_000_000)
    signed = offer.sign(account, domain)
    with pytest.raises(InputError, match="round_public_key"):
        seal_offer(signed, "0x" + "00" * 32)
    forged = SignedOrder(order=offer, domain=domain, signature="0x" + "11" * 65)
    with pytest.raises(InputError):
        seal_offer(forged, RoundKeyPair.generate().public_key)


def test_a_ciphertext_sent_through_the_api_is_opened_from_the_publication() -> None:
    from eth_account import Account

    from flexgrid.trading import FlexOffer
    from flexgrid.trading.eip712 import Eip712Domain

    account = Account.create()
    domain = Eip712Domain(chain_id=31337, verifying_contract="0x" + "12" * 20)
    offer = FlexOffer(provider=account.address, round_id=4, bus=3, asset_id="0x" + "01" * 32,
                      direction=Direction.UP, slots=(0,), min_kw=(0.0,), max_kw=(10.0,),
                      price_eur_per_mwh=50.0, nonce=4 << 64, expiry_s=2_000_000_000)
    key = RoundKeyPair.generate()
    sealed = seal_offer(offer.sign(account, domain), key.public_key)
    event = {"event": "OfferCommitted", "block_number": 9, "tx_hash": "0xab",
             "args": {"commitment": sealed.commitment, "provider": account.address, "ciphertext": "0x"}}
    (missing,) = open_commitments(commitments_from_events([event]), key.secret_key, round_id=4, domain=domain)
    assert missing.problem == "no ciphertext was sent with the commitment"
    via_api = commitments_from_events([event], {sealed.commitment: "0x" + sealed.ciphertext.hex()})
    (opened,) = open_commitments(via_api, key.secret_key, round_id=4, domain=domain)
    assert opened.ok and opened.order_hash == sealed.order_hash and via_api[0].block_number == 9


def test_off_chain_ciphertexts_are_matched_by_commitment_and_the_others_reported() -> None:
    from flexgrid.oracle.ciphertexts import OffChainCiphertext, check_ciphertext, match_off_chain
    from flexgrid.trading import PricingRule, RoundConfig

    alice, bob = "0x" + "aa" * 20, "0x" + "bb" * 20
    c1, c2, c3, c4 = ("0x" + f"{i:064x}" for i in range(1, 5))
    events = [{"event": "OfferCommitted", "args": {"commitment": c1, "provider": alice, "ciphertext": "0x"}},
              {"event": "OfferCommitted", "args": {"commitment": c2, "provider": alice, "ciphertext": "0x01ff"}},
              {"event": "OfferCommitted", "args": {"commitment": c3, "provider": bob, "ciphertext": "0x"}}]
    received = [OffChainCiphertext(c1, alice, "0x0101"), OffChainCiphertext(c2, alice, "0x0102"),
                OffChainCiphertext(c3, alice, "0x0103"), OffChainCiphertext(c4, alice, "0x0104")]
    matched, unmatched = match_off_chain(events, received)
    assert matched == {c1: "0x0101"}
    reasons = {u["commitment"]: u["reason"] for u in unmatched}
    assert "calldata carries a ciphertext" in reasons[c2]
    assert "committed by" in reasons[c3] and bob in reasons[c3]
    assert "no such commitment" in reasons[c4]

    key = RoundKeyPair.generate()
    config = RoundConfig(round_id=1, grid_id="case33bw", grid_model_hash="0x" + "11" * 32, slot_start_s=3600,
                         slot_seconds=900, slot_count=1, gate_closure_s=1800, seal_mode=SealMode.ENCRYPTED,
                         reveal_s=600, encryption_key=key.public_key, pricing_rule=PricingRule.PAY_AS_BID,
                         dispute_window_s=3600, price_cap_eur_per_mwh=400.0, tolerance_bps=500, penalty_bps=2000,
                         bid_deposit_eur=1.0, clearing_s=3600, settlement_s=86_400, dispute_bond_eur=50.0)
    shaped = "0x01" + "00" * 60
    assert check_ciphertext(shaped, config, b"") == bytes.fromhex(shaped[2:])
    for text, calldata, says in (("0x01" + "00" * 60, b"\x01", "not both"), ("0x0100", b"", "bytes"),
                                 ("0x02" + "00" * 60, b"", "version"), ("zz", b"", "not hex")):
        with pytest.raises(InputError, match=says) as err:
            check_ciphertext(text, config, calldata)
        assert err.value.field == "ciphertext"
    commit_reveal = config.model_copy(update={"seal_mode": SealMode.COMMIT_REVEAL})
    with pytest.raises(InputError, match="only ENCRYPTED"):
        check_ciphertext(shaped, commit_reveal, b"")
