"""The API as users meet it: sign in with a wallet, submit signed offers, see them on chain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from flexgrid.chain.market import MarketClient
from frontend_api.models import ApiOrder
from tests.api.conftest import Api, wait_for
from tests.api.wallet import bearer, offer, personal_sign, sign_in, signed_offer_body, siwe_message

pytestmark = [pytest.mark.chain, pytest.mark.xdist_group("api")]


def _gate(api: Api) -> int:
    return api.service.round_config(api.demo.round_id).gate_closure_s


# -- start, docs -----------------------------------------------------------------------------------


def test_openapi_and_docs_are_served_without_internet(api: Api) -> None:
    with api.client() as c:
        spec = c.get("/openapi.json").json()
        assert "/prosumer/offers" in spec["paths"] and "/auth/login" in spec["paths"]
        docs = c.get("/docs").text
        assert "cdn.jsdelivr" not in docs and "/static-offline-docs/" in docs
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            assert c.get(f"/static-offline-docs/{asset}").status_code == 200, asset
        assert c.get("/redoc").status_code == 200


# -- sign-in -------------------------------------------------------------------------------------


def test_roles_come_from_the_registry(api: Api) -> None:
    with api.client() as c:
        me = {name: c.get("/auth/me", headers=bearer(api.token(acct))).json()
              for name, acct in (("operator", api.demo.operator), ("dso", api.demo.dso),
                                 ("provider", api.demo.providers[0]), ("oracle", api.demo.oracle))}
        stranger = Account.create()
        me["stranger"] = c.get("/auth/me", headers=bearer(sign_in(c, stranger))).json()
    assert me["operator"]["roles"] == ["operator"]
    assert me["dso"]["roles"] == ["dso"] and me["dso"]["dso_grids"] == ["case33bw"]
    assert me["provider"]["roles"] == ["provider"]
    assert "oracle" in me["oracle"]["roles"]
    assert me["stranger"]["roles"] == []


def _login(c: Any, text: str, account: Any) -> Any:
    return c.post("/auth/login", json={"message": text, "signature": personal_sign(account, text)})


def test_a_replayed_sign_in_message_is_refused(api: Api) -> None:
    account = api.demo.providers[1]
    with api.client() as c:
        info = c.get("/auth/nonce").json()
        text = siwe_message(account, domain=info["domain"], uri=info["uri"], chain_id=info["chain_id"],
                            nonce=info["nonce"])
        assert _login(c, text, account).status_code == 200
        again = _login(c, text, account)
    assert again.status_code == 401
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["field"] == "nonce"


def test_an_expired_sign_in_message_is_refused(api: Api) -> None:
    account = api.demo.providers[1]
    with api.client() as c:
        info = c.get("/auth/nonce").json()
        text = siwe_message(account, domain=info["domain"], uri=info["uri"], chain_id=info["chain_id"],
                            nonce=info["nonce"], issued_at=datetime.now(UTC) - timedelta(hours=2), expires_in_s=60)
        r = _login(c, text, account)
    assert r.status_code == 401 and r.json()["field"] == "expiration_time"


@pytest.mark.parametrize(("field", "change"), [("domain", {"domain": "evil.example"}),
                                                ("uri", {"uri": "https://evil.example"}),
                                                ("chain_id", {"chain_id": 1})])
def test_a_sign_in_message_for_another_site_or_chain_is_refused(api: Api, field: str, change: dict[str, Any]) -> None:
    account = api.demo.providers[1]
    with api.client() as c:
        info = c.get("/auth/nonce").json()
        params = {"domain": info["domain"], "uri": info["uri"], "chain_id": info["chain_id"], **change}
        r = _login(c, siwe_message(account, nonce=info["nonce"], **params), account)
    assert r.status_code == 401 and r.json()["field"] == field


def test_a_sign_in_signed_by_another_key_is_refused(api: Api) -> None:
    account, other = api.demo.providers[1], api.demo.providers[2]
    with api.client() as c:
        info = c.get("/auth/nonce").json()
        text = siwe_message(account, domain=info["domain"], uri=info["uri"], chain_id=info["chain_id"],
                            nonce=info["nonce"])
        r = c.post("/auth/login", json={"message": text, "signature": personal_sign(other, text)})
    assert r.status_code == 401 and r.json()["field"] == "signature"


# -- offers --------------------------------------------------------------------------------------


def test_a_signed_offer_reaches_the_chain_and_the_database(api: Api) -> None:
    account = api.demo.providers[0]
    market = MarketClient(api.service.w3, api.demo.deployment)
    seq = market.nonce(account.address, api.demo.round_id) & ((1 << 64) - 1)
    body = signed_offer_body(account, api.demo.deployment, offer(account, api.demo.round_id, seq, _gate(api)))
    with api.client() as c:
        r = c.post("/prosumer/offers", json=body, headers=bearer(api.token(account)))
        assert r.status_code == 202, r.text
        order_hash = r.json()["order_hash"]
        assert r.json()["status"] == "queued"
        done = wait_for(lambda: c.get(f"/prosumer/orders/{order_hash}", headers=bearer(api.token(account)))
                        .json()["status"] == "indexed")
        assert done
        on_chain = c.get(f"/auditor/rounds/{api.demo.round_id}/orders", params={"kind": "offer"}).json()
    assert order_hash in [o["order_hash"] for o in on_chain["items"]]
    assert market.nonce(account.address, api.demo.round_id) & ((1 << 64) - 1) == seq + 1


def test_an_offer_signed_by_another_key_is_refused_and_not_stored(api: Api) -> None:
    account, thief = api.demo.providers[1], api.demo.providers[2]
    order = offer(account, api.demo.round_id, 0, _gate(api))
    body = signed_offer_body(thief, api.demo.deployment, order)  # claims `account`, signed by `thief`
    with api.client() as c:
        r = c.post("/prosumer/offers", json=body, headers=bearer(api.token(account)))
        r2 = c.post("/prosumer/offers", json=body, headers=bearer(api.token(thief)))
    assert r.status_code == 422 and r.json()["field"] == "signature"
    assert r2.status_code == 422
    with api.service.engine.connect():
        from sqlmodel import Session, select

        with Session(api.service.engine) as s:
            assert s.exec(select(ApiOrder).where(ApiOrder.owner == account.address)
                          .where(ApiOrder.nonce_seq == 0)).first() is None


def test_an_offer_of_someone_else_is_forbidden_even_if_validly_signed(api: Api) -> None:
    account, other = api.demo.providers[3], api.demo.providers[4]
    body = signed_offer_body(account, api.demo.deployment, offer(account, api.demo.round_id, 0, _gate(api)))
    with api.client() as c:
        r = c.post("/prosumer/offers", json=body, headers=bearer(api.token(other)))
    assert r.status_code == 403 and r.json()["field"] == "provider"


@pytest.mark.parametrize(("change", "field"), [({"max_kw": [-5.0, 5.0]}, "max_kw[0]"),
                                                ({"price_eur_per_mwh": "NaN"}, "price_eur_per_mwh"),
                                                ({"bus": "x"}, "bus")])
def test_bad_offer_input_names_the_field_and_stores_nothing(api: Api, change: dict[str, Any], field: str) -> None:
    account = api.demo.providers[4]
    body = signed_offer_body(account, api.demo.deployment, offer(account, api.demo.round_id, 0, _gate(api)))
    body["order"].update(change)
    with api.client() as c:
        r = c.post("/prosumer/offers", json=body, headers=bearer(api.token(account)))
        mine = c.get("/prosumer/orders", headers=bearer(api.token(account))).json()
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["field"] == field and problem["reason"] and problem["status"] == 422
    assert "Traceback" not in r.text
    assert mine["total"] == 0


def test_a_signed_offer_for_a_slot_outside_the_round_is_refused(api: Api) -> None:
    account = api.demo.providers[4]
    order = offer(account, api.demo.round_id, 0, _gate(api), slots=(0, 99))
    body = signed_offer_body(account, api.demo.deployment, order)
    with api.client() as c:
        r = c.post("/prosumer/offers", json=body, headers=bearer(api.token(account)))
    assert r.status_code == 422 and r.json()["field"] == "slots" and "outside the round" in r.json()["reason"]


def test_a_nonce_out_of_sequence_is_refused(api: Api) -> None:
    account = api.demo.providers[4]
    body = signed_offer_body(account, api.demo.deployment, offer(account, api.demo.round_id, 7, _gate(api)))
    with api.client() as c:
        r = c.post("/prosumer/offers", json=body, headers=bearer(api.token(account)))
    assert r.status_code == 422 and r.json()["field"] == "nonce"


def test_many_offers_are_relayed_in_few_batches_none_lost(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    market = MarketClient(api.service.w3, api.demo.deployment)
    providers = api.demo.providers
    bodies: dict[str, list[dict[str, Any]]] = {}
    for p in providers:
        seq = market.nonce(p.address, api.demo.round_id) & ((1 << 64) - 1)
        bodies[p.address] = [signed_offer_body(p, api.demo.deployment,
                                               offer(p, api.demo.round_id, seq + i, _gate(api), kw=1.0 + i))
                             for i in range(6)]
    tokens: dict[str, str] = {p.address: api.token(p) for p in providers}
    batches_before = api.service.stats.batches

    def submit(address: str) -> list[str]:
        with api.client() as c:
            out = []
            for body in bodies[address]:
                r = c.post("/prosumer/offers", json=body, headers=bearer(tokens[address]))
                assert r.status_code == 202, r.text
                out.append(r.json()["order_hash"])
            return out

    with ThreadPoolExecutor(len(providers)) as pool:
        hashes = [h for hs in pool.map(submit, list(bodies)) for h in hs]
    with api.client() as c:
        def all_listed() -> bool:
            items = c.get(f"/auditor/rounds/{api.demo.round_id}/orders",
                          params={"kind": "offer", "limit": 500}).json()["items"]
            return set(hashes) <= {o["order_hash"] for o in items}

        wait_for(all_listed)
        mine = c.get("/prosumer/orders", params={"round_id": api.demo.round_id, "limit": 500},
                     headers=bearer(tokens[providers[0].address])).json()["items"]
    assert len(set(hashes)) == 30
    assert {o["order_hash"] for o in mine if o["status"] == "indexed"} >= set(hashes[:6])
    assert api.service.stats.batches - batches_before < len(hashes)


def test_a_retried_batch_that_already_landed_is_not_sent_twice(api: Api) -> None:
    """The relayer's transaction was mined but its answer was lost: the retry must neither lose
    nor duplicate the orders."""
    account = api.demo.providers[2]
    market = MarketClient(api.service.w3, api.demo.deployment)
    seq = market.nonce(account.address, api.demo.round_id) & ((1 << 64) - 1)
    import json

    from sqlmodel import Session

    from flexgrid.trading.eip712 import SignedOrder
    from frontend_api.core.service import SEQ_BITS

    signed = [SignedOrder.from_dict(signed_offer_body(account, api.demo.deployment,
                                                      offer(account, api.demo.round_id, seq + i, _gate(api))))
              for i in range(3)]
    with Session(api.service.engine) as s:
        for so in signed:
            s.add(ApiOrder(order_hash=so.order_hash, kind="offer", owner=account.address, round_id=api.demo.round_id,
                           nonce_key=str(so.order.nonce >> SEQ_BITS), nonce_seq=so.order.nonce & ((1 << 64) - 1),
                           signed_json=json.dumps(so.to_dict()), attempts=1))  # one attempt, answer lost
        s.commit()
    first = MarketClient(api.service.w3, api.demo.deployment, api.demo.relayer).submit_offers(signed)  # landed
    api.service.relay_batch([so.order_hash for so in signed])  # the retry
    with Session(api.service.engine) as s:
        rows = [s.get(ApiOrder, so.order_hash) for so in signed]
    assert [r.status for r in rows if r] == ["relayed"] * 3
    assert {r.tx_hash for r in rows if r} == {first.tx_hash}
    events = api.service.w3.eth.get_logs({"address": Web3.to_checksum_address(api.demo.deployment.market), "fromBlock": first.block_number,
                                          "toBlock": "latest"})
    hashes = {"0x" + bytes(e["topics"][2]).hex() for e in events if len(e["topics"]) > 2}
    assert {so.order_hash for so in signed} <= hashes
    assert market.nonce(account.address, api.demo.round_id) & ((1 << 64) - 1) == seq + 3


# -- idempotency ------------------------------------------------------------------------------------


def test_idempotency_key_replays_refuses_other_body_and_concurrent_duplicate(api: Api) -> None:
    import threading

    headers = {**bearer(api.token(api.demo.dso))}
    body = {"model": "case33bw", "slot_start_s": 1_700_000_000, "slot_count": 2,
            "trades": [{"bus": 17, "slot": 0, "kw": 50.0, "direction": 0}]}
    with api.client() as c:
        first = c.post("/dso/validate", json=body, headers={**headers, "Idempotency-Key": "k-1"})
        again = c.post("/dso/validate", json=body, headers={**headers, "Idempotency-Key": "k-1"})
        other = c.post("/dso/validate", json={**body, "slot_count": 3}, headers={**headers, "Idempotency-Key": "k-1"})
    assert first.status_code == 200 and again.status_code == 200
    assert again.json() == first.json() and again.headers.get("idempotent-replayed") == "true"
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"

    answers: list[int] = []

    def post() -> None:
        with api.client() as c2:
            answers.append(c2.post("/dso/validate", json={**body, "slot_count": 24},
                                   headers={**headers, "Idempotency-Key": "k-2"}).status_code)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200, 409]


# -- DSO, operator, events -------------------------------------------------------------------------


def test_dso_validation_says_what_a_large_injection_would_break(api: Api) -> None:
    with api.client() as c:
        small = c.post("/dso/validate", headers=bearer(api.token(api.demo.dso)), json={
            "model": "case33bw", "slot_start_s": 1_700_000_000, "slot_count": 1,
            "trades": [{"bus": 17, "slot": 0, "kw": 20.0, "direction": 0}]}).json()
        large = c.post("/dso/validate", headers=bearer(api.token(api.demo.dso)), json={
            "model": "case33bw", "slot_start_s": 1_700_000_000, "slot_count": 1,
            "trades": [{"bus": 17, "slot": 0, "kw": 1_500.0, "direction": 1}]}).json()
        huge = c.post("/dso/validate", headers=bearer(api.token(api.demo.dso)), json={
            "model": "case33bw", "slot_start_s": 1_700_000_000, "slot_count": 1,
            "trades": [{"bus": 17, "slot": 0, "kw": 20_000.0, "direction": 1}]}).json()
        unknown = c.post("/dso/validate", headers=bearer(api.token(api.demo.dso)), json={
            "model": "case33bw", "slot_start_s": 1_700_000_000, "slot_count": 1,
            "trades": [{"bus": 9999, "slot": 0, "kw": 1.0, "direction": 0}]})
    assert small["ok"] is True and small["flags"] == []
    assert large["ok"] is False and large["flags"] and large["v_min_pu"] < small["v_min_pu"]
    assert huge["ok"] is False and "no solution" in huge["flags"][0]
    assert unknown.status_code == 422 and unknown.json()["field"] == "trades[0].bus"


def test_operator_opens_a_round_with_its_wallet_and_the_event_stream_shows_it(api: Api) -> None:
    import json
    import threading

    from frontend_api.core.seed import demo_round_config

    config = demo_round_config(api.service.w3, api.service.round_config(1).grid_model_hash)
    seen: list[dict[str, Any]] = []
    with api.client() as c:
        count = len(c.get("/auditor/rounds").json()["items"])

        def listen() -> None:
            with api.client() as c2, c2.stream("GET", "/events/rounds", params={"max_events": count + 1}) as s:
                for line in s.iter_lines():
                    if line.startswith("data: "):
                        seen.append(json.loads(line[6:]))

        listener = threading.Thread(target=listen)
        listener.start()
        wait_for(lambda: len(seen) >= count)
        body = config.model_dump(mode="json")
        del body["round_id"]
        composed = c.post("/operator/rounds/compose", json=body, headers=bearer(api.token(api.demo.operator)))
        assert composed.status_code == 200, composed.text
        raw = api.demo.operator.sign_transaction(composed.json()["transaction"]).raw_transaction
        sent = c.post("/operator/transactions", json={"raw_transaction": "0x" + bytes(raw).hex()},
                      headers=bearer(api.token(api.demo.operator)))
        assert sent.status_code == 200, sent.text
        assert sent.json()["function"] == "createRound"
        listener.join(timeout=20)
        replay = c.post("/operator/transactions", json={"raw_transaction": "0x" + bytes(raw).hex()},
                        headers=bearer(api.token(api.demo.operator)))
    assert seen[-1] == {"round_id": count + 1, "state": "OPEN", "previous": None}
    assert replay.status_code == 422  # the node refuses a replayed transaction (nonce too low)


def test_a_transaction_signed_by_someone_else_is_not_relayed(api: Api) -> None:
    from frontend_api.core.seed import demo_round_config

    config = demo_round_config(api.service.w3, api.service.round_config(1).grid_model_hash)
    body = config.model_dump(mode="json")
    del body["round_id"]
    with api.client() as c:
        composed = c.post("/operator/rounds/compose", json=body, headers=bearer(api.token(api.demo.operator))).json()
        tx = {k: v for k, v in composed["transaction"].items() if k != "from"}
        raw = api.demo.dso.sign_transaction(tx).raw_transaction  # the DSO signs the operator's transaction
        r = c.post("/operator/transactions", json={"raw_transaction": "0x" + bytes(raw).hex()},
                   headers=bearer(api.token(api.demo.operator)))
    assert r.status_code == 403 and r.json()["field"] == "raw_transaction"


def test_dso_posts_a_flex_request_signed_by_its_wallet(api: Api) -> None:
    with api.client() as c:
        prepared = c.post("/dso/requests/prepare", headers=bearer(api.token(api.demo.dso)), json={
            "round_id": api.demo.round_id, "bus": 16, "direction": 0, "slots": [0, 1], "kw": [50.0, 50.0],
            "price_cap_eur_per_mwh": 200.0})
        assert prepared.status_code == 200, prepared.text
        raw = api.demo.dso.sign_transaction(prepared.json()["transaction"]).raw_transaction
        sent = c.post("/dso/transactions", json={"raw_transaction": "0x" + bytes(raw).hex()},
                      headers=bearer(api.token(api.demo.dso)))
        assert sent.status_code == 200, sent.text
        assert any(e.get("event") == "FlexRequestSubmitted" for e in sent.json()["events"])
        wrong_fn = c.post("/prosumer/commitments", json={"raw_transaction": "0x" + bytes(raw).hex()},
                          headers=bearer(api.token(api.demo.providers[0])))
    assert wrong_fn.status_code == 403  # signed by the DSO, not the signed-in provider


def test_prosumer_signs_the_offers_proposed_from_a_registered_asset(api: Api) -> None:
    account = api.demo.providers[3]
    battery = {"kind": "battery", "name": "home-battery", "capacity_kwh": 20.0, "power_kw": 5.0,
               "soc_now_pu": 0.6, "degradation_cost_eur_per_mwh": 40.0}
    with api.client() as c:
        h = bearer(api.token(account))
        assert c.post("/prosumer/assets", json={"bus": 15, "asset": battery}, headers=h).status_code == 201
        proposed = c.get(f"/prosumer/rounds/{api.demo.round_id}/proposed-offers", headers=h).json()["items"]
        assert proposed
        first = proposed[0]
        signature = account.sign_typed_data(full_message=first["typed_data"]).signature
        body = {"kind": "offer", "order": first["offer"], "signature": "0x" + bytes(signature).hex(),
                "domain": {"chainId": api.demo.deployment.chain_id, "verifyingContract": api.demo.deployment.market,
                           "name": first["typed_data"]["domain"]["name"],
                           "version": first["typed_data"]["domain"]["version"]}}
        r = c.post("/prosumer/offers", json=body, headers=h)
        stored = c.get("/prosumer/assets", headers=h).json()
    assert r.status_code == 202, r.text
    assert stored["items"][0]["asset"]["name"] == "home-battery"
    from sqlalchemy import text

    with api.service.engine.connect() as conn:  # encrypted at rest: the name is not in the stored bytes
        raw = conn.execute(text("select data from private_record where kind='asset'")).fetchall()
    assert raw and all(b"home-battery" not in bytes(row[0]) for row in raw)
