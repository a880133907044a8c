"""Whole flows through the API on one server, in the order a market day runs them: a DSO uploads
its grid model; a prosumer's documented session; two prosumers' P2P orders; a sealed round
(commit, reveal after gate closure) cleared and committed by the real oracle, then audited
through the auditor endpoints and settled. Wallets are eth-account keys signing EIP-4361
messages, EIP-712 typed data and transactions as a browser wallet would.

The module moves the chain's clock (sealed round), so the flows on the demo round come first."""

from __future__ import annotations

import json
import runpy
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandapower as pp
import pytest
from eth_account.signers.local import LocalAccount
from sqlmodel import Session, select

from flexgrid.chain.market import MarketClient, commitment
from flexgrid.chain.node import time_travel
from flexgrid.grid import build_view, load_net
from flexgrid.oracle.service import Oracle, OracleSettings, Stage
from flexgrid.store.db import make_engine
from flexgrid.trading import Direction, FlexOffer, P2POrder, SealMode, Side, Trade
from flexgrid.trading.eip712 import SignedOrder
from flexgrid.trading.merkle import MeteringTree, trade_leaf_hash, verify_proof
from frontend_api.api import grid_models
from frontend_api.core.seed import demo_round_config
from frontend_api.models import UploadedGridModel
from frontend_api.wallet import signed_order_body
from tests.api.conftest import Api, wait_for
from tests.api.wallet import bearer
from tests.grid.test_grid import MATPOWER_CASE3

pytestmark = [pytest.mark.chain, pytest.mark.xdist_group("api")]
ROOT = Path(__file__).resolve().parents[2]


def send_signed(c: httpx.Client, wallet: LocalAccount, prepared: httpx.Response, endpoint: str,
                token: str) -> dict[str, Any]:
    """Sign an API-prepared transaction with the wallet and relay it through `endpoint`."""
    assert prepared.status_code == 200, prepared.text
    raw = wallet.sign_transaction(prepared.json()["transaction"]).raw_transaction
    sent = c.post(endpoint, json={"raw_transaction": "0x" + bytes(raw).hex()}, headers=bearer(token))
    assert sent.status_code == 200, sent.text
    out: dict[str, Any] = sent.json()
    return out


def next_nonce(c: httpx.Client, token: str, key: int) -> int:
    r = c.get(f"/prosumer/nonces/{key}", headers=bearer(token))
    assert r.status_code == 200, r.text
    return int(r.json()["next_nonce"])


# -- the DSO's grid model ---------------------------------------------------------------------------


def _net_json(net: pp.pandapowerNet) -> str:
    return str(pp.to_json(net))


def _upload(c: httpx.Client, token: str, content: str, *, fmt: str = "pandapower", name: str = "feeder",
            **extra: Any) -> httpx.Response:
    return c.post("/dso/grid-models", json={"name": name, "format": fmt, "content": content, **extra},
                  headers=bearer(token))


def test_dso_uploads_a_grid_model_and_uses_it_for_its_grid_and_validation(api: Api, tmp_path: Path) -> None:
    net = load_net("case33bw")
    net.line.loc[5, "r_ohm_per_km"] *= 1.2  # the DSO's own data: not the built-in case
    path = tmp_path / "feeder.json"
    pp.to_json(net, str(path))
    expected = build_view(load_net(path), "feeder").model_hash()  # what flexgrid clear --net feeder.json hashes
    token = api.token(api.demo.dso)
    with api.client() as c:
        first = _upload(c, token, path.read_text(), name="feeder 7")
        again = _upload(c, token, path.read_text(), name="feeder 7 (again)")
        retry = c.post("/dso/grid-models", json={"name": "m", "format": "matpower", "content": MATPOWER_CASE3},
                       headers={**bearer(token), "Idempotency-Key": "upload-case3"})
        replay = c.post("/dso/grid-models", json={"name": "m", "format": "matpower", "content": MATPOWER_CASE3},
                        headers={**bearer(token), "Idempotency-Key": "upload-case3"})
        listed = c.get("/dso/grid-models", headers=bearer(token)).json()
        chosen = c.post("/dso/grid-model", json={"grid_id": "case33bw", "model": expected}, headers=bearer(token))
        grids = {g["grid_id"]: g for g in c.get("/dso/grids", params={"mine": True}, headers=bearer(token))
                 .json()["items"]}
        validated = c.post("/dso/validate", headers=bearer(token), json={
            "model": expected, "slot_start_s": 1_700_000_000, "slot_count": 1,
            "trades": [{"bus": 17, "slot": 0, "kw": 20.0, "direction": 0}]})
        foreign = c.post("/dso/validate", headers=bearer(token), json={
            "model": "0x" + "12" * 32, "slot_start_s": 1_700_000_000, "slot_count": 1, "trades": []})
        c.post("/dso/grid-model", json={"grid_id": "case33bw", "model": "case33bw"}, headers=bearer(token))
        published = c.get(f"/auditor/grid-models/{expected}")  # anyone, no sign-in
        unknown = c.get("/auditor/grid-models/0x" + "34" * 32)
    assert first.status_code == 201, first.text
    model = first.json()
    assert model["grid_model_hash"] == expected != build_view(load_net("case33bw")).model_hash()
    assert (model["buses"], model["nodes"], model["radial"], model["format"]) == (33, 33, True, "pandapower")
    assert model["uploaded_by"] == api.demo.dso.address
    assert again.status_code == 200 and again.json()["grid_model_hash"] == expected  # nothing new stored
    assert retry.status_code == 201 and retry.json()["buses"] == 3 and retry.json()["format"] == "matpower"
    assert replay.status_code == 201 and replay.headers.get("idempotent-replayed") == "true"
    assert replay.json() == retry.json()
    assert listed["total"] == 2 and {m["grid_model_hash"] for m in listed["items"]} == {
        expected, retry.json()["grid_model_hash"]}
    assert chosen.status_code == 200 and grids["case33bw"]["grid_model_hash"] == expected
    assert validated.status_code == 200 and validated.json()["ok"] is True, validated.text
    assert foreign.status_code == 422 and foreign.json()["field"] == "model"
    assert published.status_code == 200 and published.json()["uploaded_by"] == api.demo.dso.address
    republished = pp.from_json_string(json.dumps(published.json()["net"]))
    assert build_view(republished).model_hash() == expected  # an auditor recomputes the recorded hash
    assert unknown.status_code == 404 and unknown.json()["field"] == "grid_model_hash"


def _meshed() -> str:
    net = load_net("case33bw")
    net.line["in_service"] = True  # case33bw's five tie lines closed: loops
    return _net_json(net)


def _no_slack() -> str:
    net = load_net("case33bw")
    net.ext_grid["in_service"] = False
    return _net_json(net)


BAD_UPLOADS: list[tuple[str, str, str]] = [
    ("not json", '{"bus": [1, 2', "is not JSON"),
    ("matpower nonsense", "function mpc = nothing\nmpc.bus = [1 2;\n", "cannot be read as a matpower net"),
    ("a JSON list", "[1, 2, 3]", "must be a pandapower net"),
    ("deeply nested", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("foreign type", '{"_module": "os", "_class": "system", "_object": "true"}', "names the type os.system"),
    ("meshed", "MESHED", "is not radial"),
    ("no slack", "NO_SLACK", "no in-service external grid"),
]


@pytest.mark.parametrize(("case", "content", "reason"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_a_bad_grid_model_names_the_field_and_stores_nothing(api: Api, case: str, content: str, reason: str) -> None:
    content = {"MESHED": _meshed, "NO_SLACK": _no_slack}.get(content, lambda: content)()
    fmt = "matpower" if case.startswith("matpower") else "pandapower"
    with Session(api.service.engine) as s:
        before = len(s.exec(select(UploadedGridModel)).all())
    with api.client() as c:
        r = _upload(c, api.token(api.demo.dso), content, fmt=fmt)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["field"] == "content" and reason in problem["reason"], problem
    assert "Traceback" not in r.text and "/tmp/" not in r.text
    with Session(api.service.engine) as s:
        assert len(s.exec(select(UploadedGridModel)).all()) == before


def test_grid_model_limits_size_and_bus_count(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    token = api.token(api.demo.dso)
    with api.client() as c:
        too_long = _upload(c, token, " " * (grid_models.MAX_UPLOAD_CHARS + 1))
        monkeypatch.setattr(grid_models, "MAX_BUSES", 10)  # the server runs in this process
        too_many = _upload(c, token, _net_json(load_net("case33bw")))
        meshed_kept = _upload(c, token, _meshed(), require_radial=False)
    assert too_long.status_code == 422 and too_long.json()["field"] == "content"
    assert too_many.status_code == 422 and "33 buses, at most 10" in too_many.json()["reason"]
    assert meshed_kept.status_code == 422  # still 33 buses
    monkeypatch.undo()
    with api.client() as c:
        meshed = _upload(c, token, _meshed(), require_radial=False)
    assert meshed.status_code == 201 and meshed.json()["radial"] is False
    assert "closes a loop" in meshed.json()["radial_reason"]


# -- a prosumer's documented session ----------------------------------------------------------------


def test_the_documented_python_session_signs_in_submits_and_sees_the_offer_on_chain(
        api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    prosumer = api.demo.providers[0]
    market = MarketClient(api.service.w3, api.demo.deployment)
    before = market.nonce(prosumer.address, api.demo.round_id)
    script = runpy.run_path(str(ROOT / "examples" / "api_session.py"), run_name="api_session")  # its main()
    code = script["main"](["--url", api.url, "--key", "0x" + bytes(prosumer.key).hex()])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert "roles on chain: ['provider']" in out.out
    order_hash = out.out.split("offer ")[1].split()[0]
    assert "on chain: block" in out.out
    assert market.nonce(prosumer.address, api.demo.round_id) == before + 1
    with api.client() as c:
        orders = c.get(f"/auditor/rounds/{api.demo.round_id}/orders", params={"kind": "offer"}).json()["items"]
    [on_chain] = [o for o in orders if o["order_hash"] == order_hash]
    assert on_chain["participant"] == prosumer.address and on_chain["order"]["max_kw"] == [25.0, 25.0]


def test_the_readme_session_works_as_printed(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("A prosumer signs in, submits an offer and sees it on chain")[1]
    code = block.split("```python\n")[1].split("```")[0]
    assert "http://127.0.0.1:8000" in code
    compiled = compile(code.replace("http://127.0.0.1:8000", api.url), "README.md", "exec")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            exec(compiled, {})
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)  # its polling loop has no timeout of its own
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the README session did not finish in 120 s"
    assert not errors, errors
    assert capsys.readouterr().out.split() == ["['provider']", "True"]


# -- P2P orders ---------------------------------------------------------------------------------


def test_two_prosumers_p2p_orders_are_relayed_and_visible_on_chain(api: Api) -> None:
    seller, buyer = api.demo.providers[1], api.demo.providers[2]
    rid, gate = api.demo.round_id, api.service.round_config(api.demo.round_id).gate_closure_s
    market = MarketClient(api.service.w3, api.demo.deployment)
    hashes: dict[str, str] = {}
    with api.client() as c:
        for trader, side, bus, price in ((seller, Side.SELL, 3, 40.0), (buyer, Side.BUY, 30, 150.0)):
            token = api.token(trader)
            order = P2POrder(trader=trader.address, round_id=rid, bus=bus, side=side, slot=1, kw=40.0,
                             limit_price_eur_per_mwh=price, nonce=next_nonce(c, token, rid), expiry_s=gate)
            body = signed_order_body(trader, order, api.demo.deployment.domain)
            r = c.post("/prosumer/p2p-orders", json=body, headers=bearer(token))
            assert r.status_code == 202, r.text
            assert r.json()["kind"] == "p2p" and r.json()["owner"] == trader.address
            hashes[trader.address] = r.json()["order_hash"]
            assert market.hash_p2p_order(order) == r.json()["order_hash"]  # the contract's own digest

        for trader in (seller, buyer):
            wait_for(lambda t=trader: c.get(f"/prosumer/orders/{hashes[t.address]}",  # type: ignore[misc]
                                            headers=bearer(api.token(t))).json()["status"] == "indexed")
        on_chain = c.get(f"/auditor/rounds/{rid}/orders", params={"kind": "p2p"}).json()["items"]
        dso_view = c.get("/dso/orders", params={"round_id": rid, "kind": "p2p"},
                         headers=bearer(api.token(api.demo.dso))).json()["items"]
        mine = c.get("/prosumer/orders", params={"kind": "p2p"}, headers=bearer(api.token(buyer))).json()
    by_hash = {o["order_hash"]: o for o in on_chain}
    assert {by_hash[h]["participant"] for h in hashes.values()} == {seller.address, buyer.address}
    assert by_hash[hashes[buyer.address]]["order"]["side"] == int(Side.BUY)
    assert set(hashes.values()) <= {o["order_hash"] for o in dso_view}
    assert [o["order_hash"] for o in mine["items"]] == [hashes[buyer.address]]
    escrow, _charged = market.escrow_of_micro(rid, buyer.address)
    assert escrow > 0  # the buy order's value is escrowed from the buyer's tokens
    # the events themselves, straight from the node: both orders were relayed in P2POrderSubmitted events
    logs = market.market.events.P2POrderSubmitted().get_logs(from_block=0)
    assert set(hashes.values()) <= {"0x" + bytes(e["args"]["orderHash"]).hex() for e in logs}


# -- a sealed round: commit, reveal, clear, audit, settle -------------------------------------------


@dataclass
class SealedRound:
    round_id: int
    gate_closure_s: int
    reveal_s: int
    slot_end_s: int
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # provider -> signed offer body
    salts: dict[str, str] = field(default_factory=dict)
    commitments: dict[str, str] = field(default_factory=dict)
    revealed: bool = False


@pytest.fixture(scope="module")
def sealed(api: Api) -> SealedRound:
    """The operator opens a COMMIT_REVEAL round through the API, the DSO funds a FlexRequest in it,
    two providers commit sealed offers; all with their own wallets, before gate closure."""
    operator, dso = api.demo.operator, api.demo.dso
    grid_hash = api.service.round_config(api.demo.round_id).grid_model_hash
    config = demo_round_config(api.service.w3, grid_hash, seal_mode=SealMode.COMMIT_REVEAL, slot_count=4)
    body = config.model_dump(mode="json")
    del body["round_id"]
    with api.client() as c:
        composed = c.post("/operator/rounds/compose", json=body, headers=bearer(api.token(operator)))
        created = send_signed(c, operator, composed, "/operator/transactions", api.token(operator))
        [event] = [e for e in created["events"] if e.get("event") == "RoundCreated"]
        rid = int(event["args"]["roundId"])
        prepared = c.post("/dso/requests/prepare", headers=bearer(api.token(dso)), json={
            "round_id": rid, "bus": 14, "direction": 0, "slots": [0, 1, 2, 3], "kw": [150.0] * 4,
            "price_cap_eur_per_mwh": 300.0})
        send_signed(c, dso, prepared, "/dso/transactions", api.token(dso))
        rc = api.service.round_config(rid)
        out = SealedRound(rid, rc.gate_closure_s, rc.reveal_s, rc.slot_start_s + rc.slot_count * rc.slot_seconds)
        for i, (provider, bus, price) in enumerate(((api.demo.providers[3], 17, 100.0),
                                                    (api.demo.providers[4], 16, 120.0))):
            token = api.token(provider)
            offer = FlexOffer(provider=provider.address, round_id=rid, bus=bus, asset_id="0x" + f"{i + 7:064x}",
                              direction=Direction.UP, slots=(0, 1, 2, 3), min_kw=(0.0,) * 4, max_kw=(80.0,) * 4,
                              price_eur_per_mwh=price, nonce=next_nonce(c, token, rid),
                              expiry_s=rc.gate_closure_s + rc.reveal_s)
            signed_body = signed_order_body(provider, offer, api.demo.deployment.domain)  # eth_signTypedData_v4
            salt = "0x" + f"{1000 + i:064x}"
            sealed_hash = commitment(SignedOrder.from_dict(signed_body).order_hash, provider.address, salt)
            prepared = c.post("/prosumer/commitments/prepare", json={"round_id": rid, "commitment": sealed_hash},
                              headers=bearer(token))
            committed = send_signed(c, provider, prepared, "/prosumer/commitments", token)
            assert [e["event"] for e in committed["events"]].count("OfferCommitted") == 1
            out.bodies[provider.address], out.salts[provider.address] = signed_body, salt
            out.commitments[provider.address] = sealed_hash
    return out


def _reveal(c: httpx.Client, api: Api, r: SealedRound, address: str) -> httpx.Response:
    account = next(p for p in api.demo.providers if p.address == address)
    return c.post("/prosumer/reveals", json={"offers": [r.bodies[address]], "salts": [r.salts[address]]},
                  headers=bearer(api.token(account)))


def ensure_revealed(api: Api, r: SealedRound) -> None:
    if r.revealed:
        return
    time_travel(api.service.w3, r.gate_closure_s)
    with api.client() as c:
        for address in r.bodies:
            reveal = _reveal(c, api, r, address)
            assert reveal.status_code == 200, reveal.text
    r.revealed = True


def test_a_sealed_offer_is_committed_then_revealed_after_the_commit_phase_and_is_on_chain(
        api: Api, sealed: SealedRound) -> None:
    market = MarketClient(api.service.w3, api.demo.deployment)
    provider = api.demo.providers[3]
    body = sealed.bodies[provider.address]
    with api.client() as c:
        in_the_open = c.post("/prosumer/offers", json=body, headers=bearer(api.token(provider)))
        too_early = _reveal(c, api, sealed, provider.address)
        hidden = c.get(f"/auditor/rounds/{sealed.round_id}/orders", params={"kind": "offer"}).json()
    assert in_the_open.status_code == 422 and in_the_open.json()["field"] == "round_id"
    assert "commit, then reveal" in in_the_open.json()["reason"]
    assert too_early.status_code == 409, too_early.text  # the contract refuses a reveal before gate closure
    assert hidden["total"] == 0  # sealed: nothing of the offers is on chain yet but the commitments
    assert market.commitment_info(sealed.round_id, sealed.commitments[provider.address]) == (provider.address,
                                                                                              False)
    ensure_revealed(api, sealed)
    with api.client() as c:
        again = _reveal(c, api, sealed, provider.address)

        def listed() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = c.get(f"/auditor/rounds/{sealed.round_id}/orders",
                                                params={"kind": "offer"}).json()["items"]
            return items if len(items) == 2 else []

        offers = wait_for(listed)
    expected = {SignedOrder.from_dict(b).order_hash: a for a, b in sealed.bodies.items()}
    assert {o["order_hash"]: o["participant"] for o in offers} == expected
    for address, sealed_hash in sealed.commitments.items():
        assert market.commitment_info(sealed.round_id, sealed_hash) == (address, True)  # opened
    assert again.status_code == 409  # a commitment opens once


def test_the_oracle_commits_the_sealed_round_and_the_auditor_endpoints_prove_it(
        api: Api, sealed: SealedRound, tmp_path: Path) -> None:
    ensure_revealed(api, sealed)
    rid, w3 = sealed.round_id, api.service.w3
    time_travel(w3, sealed.gate_closure_s + sealed.reveal_s + 1)
    oracle = Oracle(w3, api.demo.deployment, api.demo.oracle, make_engine(f"sqlite:///{tmp_path / 'oracle.db'}"),
                    OracleSettings(results_dir=tmp_path / "results"))
    outcomes = [o for o in oracle.run_once(rid) if o.round_id == rid]
    assert [o.stage for o in outcomes] == [Stage.PUBLISHED], outcomes
    market = MarketClient(w3, api.demo.deployment)
    root = market.round_status(rid)["tradeRoot"]

    with api.client() as c:
        result = wait_for(lambda: (r := c.get(f"/auditor/rounds/{rid}/result").json())["committed"] and r)
        trades = c.get(f"/auditor/rounds/{rid}/trades", params={"limit": 500}).json()
        verified = c.get(f"/auditor/rounds/{rid}/verify").json()
    assert result["state"] == "COMMITTED" and result["publication_found"] is True
    assert result["committed"]["tradeRoot"].lower() == root.lower()
    items = trades["items"]
    assert trades["total"] == len(items) > 0
    participants = {t["participant"].lower() for t in items}
    assert {p.lower() for p in sealed.bodies} <= participants and api.demo.dso.address.lower() in participants
    for t in items:
        trade = Trade(round_id=rid, participant=t["participant"], order_id=t["order_hash"], slot=t["slot"],
                      kw=t["kw"], price_eur_per_mwh=t["price_eur_per_mwh"], payment_eur=t["payment_eur"])
        assert trade_leaf_hash(trade) == t["leaf"]  # the listed fields are exactly the committed leaf
        assert t["root"].lower() == root.lower()
        assert verify_proof(root, t["leaf"], t["proof"]), t
    tampered = dict(items[0], payment_eur=round(items[0]["payment_eur"] + 1.0, 6))
    forged = Trade(round_id=rid, participant=tampered["participant"], order_id=tampered["order_hash"],
                   slot=tampered["slot"], kw=tampered["kw"], price_eur_per_mwh=tampered["price_eur_per_mwh"],
                   payment_eur=tampered["payment_eur"])
    assert not verify_proof(root, trade_leaf_hash(forged), items[0]["proof"])
    assert verified["verdict"] == "VERIFIED", verified["problems"]
    assert verified["ok"] is True and verified["findings"]

    # settle: the DSO approves through the API, the metering agent commits the readings the DSO
    # uploaded, and anyone claims with the auditor's proofs; the auditor then lists the settlements
    dso, agent = api.demo.dso, api.demo.metering
    payees = [t for t in items if t["payment_eur"] > 0]
    with api.client() as c:
        approved = send_signed(c, dso, c.post(f"/dso/rounds/{rid}/approve/prepare", headers=bearer(api.token(dso))),
                               "/dso/transactions", api.token(dso))
        assert approved["function"] == "approveResult"
        late = c.post(f"/dso/rounds/{rid}/dispute/prepare", json={"reason": "too late"},
                      headers=bearer(api.token(dso)))
        assert late.status_code == 409, late.text  # an approved result can no longer be disputed
        time_travel(w3, sealed.slot_end_s)
        readings = [{"participant": t["participant"], "order_id": t["order_hash"], "slot": t["slot"],
                     "delivered_kw": t["kw"]} for t in payees]
        metering = c.post("/dso/metering", json={"round_id": rid, "readings": readings},
                          headers=bearer(api.token(dso)))
        assert metering.status_code == 200, metering.text
        signed = agent.sign_transaction(metering.json()["transaction"]).raw_transaction
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed))  # the agent's own wallet
        from flexgrid.trading import MeterReading

        mtree = MeteringTree([MeterReading(round_id=rid, **r) for r in readings])
        assert mtree.root == metering.json()["metering_root"]
        claimer = MarketClient(w3, api.demo.deployment, api.demo.providers[0])
        for t in items:
            trade = Trade(round_id=rid, participant=t["participant"], order_id=t["order_hash"], slot=t["slot"],
                          kw=t["kw"], price_eur_per_mwh=t["price_eur_per_mwh"], payment_eur=t["payment_eur"])
            if t["payment_eur"] < 0:
                claimer.claim_charge(trade, t["proof"])
        for t, r in zip(payees, mtree.items, strict=True):
            trade = Trade(round_id=rid, participant=t["participant"], order_id=t["order_hash"], slot=t["slot"],
                          kw=t["kw"], price_eur_per_mwh=t["price_eur_per_mwh"], payment_eur=t["payment_eur"])
            claimer.claim_payment(trade, t["proof"], r.delivered_kw, mtree.proof(r))

        def settled() -> dict[str, Any] | None:
            page: dict[str, Any] = c.get(f"/auditor/rounds/{rid}/settlements", params={"limit": 500}).json()
            events = [e["event"] for e in page["items"]]
            return page if events.count("PaymentSettled") == len(payees) and "ChargeSettled" in events else None

        settlements = wait_for(settled)
        provider = api.demo.providers[3]
        mine = c.get("/prosumer/settlements", params={"round_id": rid}, headers=bearer(api.token(provider))).json()
        my_trades = c.get("/prosumer/trades", params={"round_id": rid}, headers=bearer(api.token(provider))).json()
    paid = {e["order_hash"] for e in settlements["items"] if e["event"] == "PaymentSettled"}
    assert paid == {t["order_hash"] for t in payees}
    assert mine["items"] and all(e["event"] == "PaymentSettled" for e in mine["items"])
    assert {t["order_hash"] for t in my_trades["items"]} == {
        t["order_hash"] for t in payees if t["participant"].lower() == provider.address.lower()}
