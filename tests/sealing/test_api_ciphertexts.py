"""Encrypted offers sent through the HTTP API: the ciphertext off chain, its commitment on chain.

A real API server (its own anvil and demo market) takes each provider's wallet-signed
`commitOffer`; one provider sends its ciphertext beside an empty-ciphertext transaction, so only
the commitment (the hash) goes on chain and the API's database keeps the ciphertext. The oracle
(its own database, reading the API's ciphertext store) opens it in the reveal window, reveals it,
clears the round with it, commits, and publishes it with the result; the auditor, with only the
chain and the publication, opens every ciphertext and verifies the round.

In the same round: a ciphertext in calldata (also used), a commit-reveal bid (no ciphertext,
revealed by its bidder: used, not "rejected"), a commitment whose ciphertext never arrived, and one
sent with a ciphertext that does not match its commitment (both reported by commitment, not used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from sqlmodel import Session, col, select
from web3 import Web3

from flexgrid.audit.verify import AuditReport, gather_evidence, verify_round
from flexgrid.chain.market import MarketClient
from flexgrid.chain.node import time_travel
from flexgrid.oracle.ciphertexts import SealedCiphertext
from flexgrid.oracle.publication import load_publication, publication_path
from flexgrid.oracle.service import Oracle, OracleSettings, Stage
from flexgrid.store import init_db, make_engine
from flexgrid.trading import Direction, FlexOffer, FlexRequest, RoundConfig, SealMode
from flexgrid.trading.sealing import RoundKeyPair, SealedOffer, seal_offer
from frontend_api.core.seed import demo_round_config
from frontend_api.wallet import signed_offer_body
from tests.api.conftest import Api
from tests.api.wallet import bearer

pytestmark = [pytest.mark.chain, pytest.mark.xdist_group("sealed-api")]

# name -> (provider index, bus, max kW, price EUR/MWh)
BIDS = {"api": (0, 17, 80.0, 100.0), "calldata": (1, 16, 80.0, 110.0), "commit-reveal": (2, 15, 80.0, 120.0),
        "missing": (3, 12, 50.0, 90.0), "mismatched": (4, 13, 50.0, 95.0)}
SLOTS = 4


@dataclass
class ApiRound:
    round_id: int
    sealed: dict[str, SealedOffer]
    doc: dict[str, Any]
    audit: AuditReport
    audit_without_api_ciphertexts: AuditReport
    evidence: Any
    log: list[str]
    refused_both: Any  # the API's answer to a ciphertext sent in calldata and beside it
    stored: list[SealedCiphertext]

    def entry(self, name: str) -> dict[str, Any]:
        c = self.sealed[name].commitment.lower()
        return next(e for e in self.doc["sealed"]["commitments"] if e["commitment"] == c)


def _commit_through_api(api: Api, account: LocalAccount, round_id: int, commitment: str, calldata: bytes,
                        ciphertext: bytes | None) -> Any:
    """The bidder's wallet signs commitOffer; the API relays it (and keeps `ciphertext` off chain)."""
    w3 = api.service.w3
    fn = api.service.client.market.functions.commitOffer(round_id, bytes.fromhex(commitment[2:]), calldata)
    tx = fn.build_transaction({"from": account.address, "chainId": api.demo.deployment.chain_id,
                               "nonce": w3.eth.get_transaction_count(account.address), "gas": 300_000})
    raw = account.sign_transaction(dict(tx)).raw_transaction  # type: ignore[arg-type]
    body: dict[str, Any] = {"raw_transaction": "0x" + bytes(raw).hex()}
    if ciphertext is not None:
        body["ciphertext"] = "0x" + ciphertext.hex()
    with api.client() as c:
        return c.post("/prosumer/commitments", json=body, headers=bearer(api.token(account)))


@pytest.fixture(scope="module")
def api_round(api: Api, tmp_path_factory: pytest.TempPathFactory) -> ApiRound:
    w3, demo, deployment = api.service.w3, api.demo, api.demo.deployment
    key = RoundKeyPair.generate()
    base = demo_round_config(w3, api.service.round_config(demo.round_id).grid_model_hash, slot_count=SLOTS)
    rc = MarketClient(w3, deployment, demo.operator).create_round(RoundConfig.model_validate(
        {**base.model_dump(), "seal_mode": SealMode.ENCRYPTED, "encryption_key": key.public_key, "reveal_s": 1800,
         "bid_deposit_eur": 1.0}))
    rid = rc.round_id
    MarketClient(w3, deployment, demo.dso).submit_request(FlexRequest(
        round_id=rid, bus=14, direction=Direction.UP, slots=tuple(range(SLOTS)), kw=(150.0,) * SLOTS,
        price_cap_eur_per_mwh=300.0))
    sealed: dict[str, SealedOffer] = {}
    for name, (i, bus, kw, price) in BIDS.items():
        provider = demo.providers[i]
        offer = FlexOffer(provider=provider.address, round_id=rid, bus=bus,
                          asset_id="0x" + Web3.keccak(text=f"{name}-asset").hex().removeprefix("0x"),
                          direction=Direction.UP, slots=tuple(range(SLOTS)), min_kw=(0.0,) * SLOTS,
                          max_kw=(kw,) * SLOTS, price_eur_per_mwh=price, nonce=rid << 64,
                          expiry_s=rc.gate_closure_s + 10_000)
        sealed[name] = seal_offer(offer.sign(provider, deployment.domain), key.public_key)

    def send(name: str, calldata: bytes, beside: bytes | None) -> Any:
        r = _commit_through_api(api, demo.providers[BIDS[name][0]], rid, sealed[name].commitment, calldata, beside)
        return r

    refused_both = send("api", sealed["api"].ciphertext, sealed["api"].ciphertext)  # both places: refused
    reverted = _commit_through_api(api, demo.providers[0], rid, "0x" + "00" * 32, b"", sealed["api"].ciphertext)
    assert "UnknownCommitment" in reverted.text, reverted.text  # refused by the market: its ciphertext goes
    assert send("api", b"", sealed["api"].ciphertext).status_code == 200  # only its hash on chain
    assert send("calldata", sealed["calldata"].ciphertext, None).status_code == 200
    assert send("commit-reveal", b"", None).status_code == 200
    assert send("missing", b"", None).status_code == 200  # the ciphertext never arrives
    other = seal_offer(sealed["mismatched"].signed, key.public_key)  # same offer, another salt
    assert send("mismatched", b"", other.ciphertext).status_code == 200
    with Session(api.service.engine) as s:
        stored = list(s.exec(select(SealedCiphertext).where(SealedCiphertext.round_id == rid)
                             .order_by(col(SealedCiphertext.id))).all())

    tmp = tmp_path_factory.mktemp("oracle")
    log: list[str] = []
    oracle = Oracle(w3, deployment, demo.oracle, make_engine(f"sqlite:///{tmp / 'oracle.db'}"),
                    OracleSettings(results_dir=tmp / "results", round_secrets={rid: key.secret_key},
                                   ciphertexts_db_url=str(api.service.engine.url)), log=log.append)
    time_travel(w3, rc.gate_closure_s)
    [first] = oracle.run_once(rid)  # the reveal window: opens and reveals
    assert "revealed 2 sealed offers" in first.detail, first.detail
    cr = sealed["commit-reveal"]
    assert isinstance(cr.signed.order, FlexOffer)
    with api.client() as c:  # the commit-reveal bidder reveals its own offer with its salt
        r = c.post("/prosumer/reveals", headers=bearer(api.token(demo.providers[BIDS["commit-reveal"][0]])),
                   json={"offers": [signed_offer_body(demo.providers[BIDS["commit-reveal"][0]], deployment,
                                                       cr.signed.order)],
                         "salts": [cr.salt]})
        assert r.status_code == 200, r.text
    time_travel(w3, MarketClient(w3, deployment).deadlines(rid)["reveal_end_s"])
    [done] = oracle.run_once(rid)
    assert done.stage == Stage.PUBLISHED, done.detail
    doc = load_publication(publication_path(tmp / "results", deployment.chain_id, deployment.market, rid))
    auditor_db = make_engine(f"sqlite:///{tmp / 'auditor.db'}")  # the auditor: chain + publication only
    init_db(auditor_db)
    evidence = gather_evidence(w3, deployment, auditor_db, rid)
    return ApiRound(rid, sealed, doc, verify_round(evidence, doc),
                    verify_round(evidence, {**doc, "sealedCiphertexts": {}}), evidence, log, refused_both, stored)


def test_an_encrypted_offer_sent_through_the_api_is_cleared_and_audited(api_round: ApiRound) -> None:
    r, doc = api_round, api_round.doc
    api_offer = r.sealed["api"]
    assert r.refused_both.status_code == 422 and r.refused_both.json()["field"] == "ciphertext"
    assert [(s.commitment, s.ciphertext) for s in r.stored] == [  # only the accepted one is kept, by its hash
        (api_offer.commitment.lower(), "0x" + api_offer.ciphertext.hex()),
        (r.sealed["mismatched"].commitment.lower(), r.stored[1].ciphertext)]
    used = {o["orderHash"] for o in doc["inputs"]["offers"]}
    assert used == {r.sealed[n].order_hash for n in ("api", "calldata", "commit-reveal")}
    assert any(t["orderHash"] == api_offer.order_hash for t in doc["trades"])  # the cheapest: bought
    assert doc["sealedCiphertexts"][api_offer.commitment.lower()] == "0x" + api_offer.ciphertext.hex()
    assert {k: (r.entry(k)["status"], r.entry(k).get("sealedBy"), r.entry(k)["ciphertext"])
            for k in ("api", "calldata", "commit-reveal")} == {
        "api": ("used", "encryption", "api"), "calldata": ("used", "encryption", "calldata"),
        "commit-reveal": ("used", "commit-reveal", "none")}
    assert r.audit.ok, [f.to_dict() for f in r.audit.failures]
    [sealed_check] = [f for f in r.audit.findings if f.check == "sealed"]
    assert any(d.startswith(f"commit-reveal commitment {r.sealed['commit-reveal'].commitment}")
               for d in sealed_check.details)
    # a publication without the API's ciphertexts cannot be checked: the auditor says so
    [missing] = [f for f in r.audit_without_api_ciphertexts.failures if f.check == "sealed"]
    assert any(api_offer.commitment.lower() in d and "sealedCiphertexts" in d for d in missing.details)


def test_a_commitment_without_ciphertext_or_with_a_mismatched_one_is_reported_by_its_hash(
    api_round: ApiRound,
) -> None:
    r = api_round
    rejected = {x["commitment"]: x["reason"] for x in r.doc["sealed"]["rejected"]}
    missing, mismatched = (r.sealed[n].commitment.lower() for n in ("missing", "mismatched"))
    assert set(rejected) == {missing, mismatched}  # the commit-reveal bid is not among them
    assert "no ciphertext" in rejected[missing] and "not revealed by its bidder" in rejected[missing]
    assert "not the committed hash" in rejected[mismatched]
    assert r.doc["sealed"]["counts"] == {"used": 3, "dropped": 0, "rejected": 2}
    assert any(missing in line and "rejected" in line for line in r.log)
    assert not any(r.sealed["commit-reveal"].commitment.lower() in line and "rejected" in line for line in r.log)
    [sealed_check] = [f for f in r.audit.findings if f.check == "sealed"]
    assert {d.split()[2].lower() for d in sealed_check.details if d.startswith("rejected")} == {missing, mismatched}
    # an oracle that leaves the commitment out of its report is caught
    hidden = {**r.doc, "sealed": {**r.doc["sealed"], "commitments": [
        x for x in r.doc["sealed"]["commitments"] if x["commitment"] != missing]}}
    [caught] = [f for f in verify_round(r.evidence, hidden).failures if f.check == "sealed"]
    assert any(missing in d and "missing from the oracle's sealed.commitments" in d for d in caught.details)
