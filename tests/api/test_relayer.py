"""The batch relayer when the chain fails under it: a failed batch is retried without losing or
doubling an order, and the intake's fast EIP-712 check agrees with eth-account."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from sqlmodel import Session
from web3 import Web3

from flexgrid.chain.market import MarketClient
from flexgrid.errors import ChainError, SignatureError
from flexgrid.trading import Direction, FlexOffer, P2POrder, Side
from flexgrid.trading.eip712 import Eip712Domain, SignedOrder, digest
from frontend_api.core.intake import check_signed
from frontend_api.models import ApiOrder
from tests.api.conftest import Api
from tests.api.wallet import offer, signed_offer_body

pytestmark = [pytest.mark.chain, pytest.mark.xdist_group("api")]


def _signed(api: Api, account: Any, count: int) -> list[SignedOrder]:
    market = MarketClient(api.service.w3, api.demo.deployment)
    seq = market.nonce(account.address, api.demo.round_id) & ((1 << 64) - 1)
    gate = api.service.round_config(api.demo.round_id).gate_closure_s
    return [SignedOrder.from_dict(signed_offer_body(account, api.demo.deployment,
                                                    offer(account, api.demo.round_id, seq + i, gate, kw=1.0 + i)))
            for i in range(count)]


def _wait_settled(api: Api, hashes: list[str], timeout_s: float = 60.0) -> list[ApiOrder]:
    deadline = time.monotonic() + timeout_s
    while True:
        with Session(api.service.engine) as s:
            rows = [s.get(ApiOrder, h) for h in hashes]
        if all(r is not None and r.status != "queued" for r in rows):
            return [r for r in rows if r is not None]
        if time.monotonic() > deadline:
            raise AssertionError(f"orders still queued: {[r.status if r else None for r in rows]}")
        time.sleep(0.05)


def _times_on_chain(api: Api, hashes: list[str], from_block: int) -> Counter[str]:
    logs = api.service.w3.eth.get_logs({"address": Web3.to_checksum_address(api.demo.deployment.market),
                                        "fromBlock": from_block, "toBlock": "latest"})
    seen = Counter("0x" + bytes(log["topics"][2]).hex() for log in logs if len(log["topics"]) > 2)
    return Counter({h: seen[h] for h in hashes})


def _fail_once(monkeypatch: pytest.MonkeyPatch, api: Api, name: str) -> list[int]:
    """Make `service.<name>` raise ChainError on its first call (later calls go through)."""
    real: Callable[..., Any] = getattr(api.service, name)
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            if name == "_wait_receipt":  # the transaction was sent: let it be mined, lose the answer
                real(*args, **kwargs)
            raise ChainError(f"injected failure in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(api.service, name, flaky)
    return calls


@pytest.mark.parametrize(("fault", "provider"), [("_wait_receipt", 1), ("_broadcast", 2)])
def test_a_failed_batch_is_retried_without_loss_or_duplication(api: Api, monkeypatch: pytest.MonkeyPatch,
                                                               fault: str, provider: int) -> None:
    """_wait_receipt: the batch was mined but its receipt never came back; _broadcast: the node
    never got the transaction. Either way every order lands exactly once."""
    account = api.demo.providers[provider]
    signed = _signed(api, account, 4)
    block = api.service.w3.eth.block_number
    retries = api.service.stats.retries
    calls = _fail_once(monkeypatch, api, fault)
    results = api.service.accept_orders(signed, account.address)
    hashes = [r.order_hash for r in results if isinstance(r, ApiOrder)]
    assert len(hashes) == 4, results
    rows = _wait_settled(api, hashes)
    assert api.service.stats.retries > retries
    # lost answer: the retry finds the mined transaction and sends nothing; never sent: sent again
    assert len(calls) == (1 if fault == "_wait_receipt" else 2)
    assert [r.status for r in rows] == ["relayed"] * 4
    assert len({r.tx_hash for r in rows}) == 1  # one batch transaction carried them
    assert _times_on_chain(api, hashes, block) == Counter(dict.fromkeys(hashes, 1))
    market = MarketClient(api.service.w3, api.demo.deployment)
    first_seq = signed[0].order.nonce & ((1 << 64) - 1)
    assert market.nonce(account.address, api.demo.round_id) & ((1 << 64) - 1) == first_seq + 4


def test_one_refused_order_in_a_batch_fails_alone(api: Api) -> None:
    """A batch the contract refuses (one order reached the chain by another relayer first) is
    split: the others land in one transaction, the refused one is marked failed with the reason."""
    import json

    account = api.demo.providers[3]
    signed = _signed(api, account, 3)
    with Session(api.service.engine) as s:
        for so in signed:
            assert isinstance(so.order, FlexOffer)
            s.add(ApiOrder(order_hash=so.order_hash, kind="offer", owner=account.address, round_id=api.demo.round_id,
                           nonce_key=str(so.order.nonce >> 64), nonce_seq=so.order.nonce & ((1 << 64) - 1),
                           signed_json=json.dumps(so.to_dict())))
        s.commit()
    MarketClient(api.service.w3, api.demo.deployment, api.demo.operator).submit_offers(signed[:1])
    failed = api.service.stats.offers_failed
    api.service.relay_batch([so.order_hash for so in signed])
    with Session(api.service.engine) as s:
        rows = [s.get(ApiOrder, so.order_hash) for so in signed]
    assert [r.status for r in rows if r] == ["failed", "relayed", "relayed"]
    assert rows[0] is not None and rows[0].error and "Nonce" in rows[0].error
    assert rows[1] is not None and rows[2] is not None and rows[1].tx_hash == rows[2].tx_hash
    assert api.service.stats.offers_failed == failed + 1


def test_the_fast_intake_check_agrees_with_eth_account() -> None:
    domain = Eip712Domain(chain_id=31337, verifying_contract="0x" + "12" * 20)
    other = Eip712Domain(chain_id=1, verifying_contract="0x" + "12" * 20)
    account = Account.create()
    orders: list[FlexOffer | P2POrder] = [
        FlexOffer(provider=account.address, round_id=3, bus=2, asset_id="0x" + "cd" * 32, direction=Direction.DOWN,
                  slots=(0, 1, 5), min_kw=(0.0, 0.5, 1.0), max_kw=(5.0, 5.0, 2.0), price_eur_per_mwh=101.5,
                  nonce=(3 << 64) | 7, expiry_s=2_000_000_000),
        P2POrder(trader=account.address, round_id=4, bus=9, side=Side.SELL, slot=2, kw=3.5,
                 limit_price_eur_per_mwh=80.0, nonce=(4 << 64) | 1, expiry_s=2_000_000_000),
    ]
    for order in orders:
        signed = order.sign(account, domain)
        assert check_signed(order, domain, signed.signature_bytes) == digest(order, domain) == signed.verify(domain)
        with pytest.raises(SignatureError) as refused:
            check_signed(order, other, signed.signature_bytes)  # signed for another chain
        assert refused.value.field == "signature"
        tampered = bytearray(signed.signature_bytes)
        tampered[64] = 40
        with pytest.raises(SignatureError):
            check_signed(order, domain, bytes(tampered))
