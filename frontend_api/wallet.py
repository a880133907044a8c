"""Client side, what a browser wallet does, with eth-account keys: EIP-4361 sign-in and EIP-712
signed orders for the API (used by the tests, the load script and the README session)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from siwe import SiweMessage

from flexgrid.chain.deploy import Deployment
from flexgrid.trading import FlexOffer, P2POrder
from flexgrid.trading.eip712 import Eip712Domain, SignedOrder


def siwe_message(account: LocalAccount, *, domain: str, uri: str, chain_id: int, nonce: str,
                 expires_in_s: float = 600, issued_at: datetime | None = None) -> str:
    issued = issued_at or datetime.now(UTC)
    message = SiweMessage(
        domain=domain, address=account.address, statement="Sign in to FlexGrid", uri=uri, version="1",
        chain_id=chain_id, nonce=nonce, issued_at=issued.isoformat().replace("+00:00", "Z"),
        expiration_time=(issued + timedelta(seconds=expires_in_s)).isoformat().replace("+00:00", "Z"),
    )
    return message.prepare_message()


def personal_sign(account: LocalAccount, text: str) -> str:
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()


def sign_in(client: httpx.Client, account: LocalAccount) -> str:
    """Sign in as `account`; returns the bearer token."""
    info = client.get("/auth/nonce").json()
    text = siwe_message(account, domain=info["domain"], uri=info["uri"], chain_id=info["chain_id"],
                        nonce=info["nonce"])
    r = client.post("/auth/login", json={"message": text, "signature": personal_sign(account, text)})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed_order_body(account: LocalAccount, order: FlexOffer | P2POrder, domain: Eip712Domain) -> dict[str, Any]:
    """The body of POST /prosumer/offers or /prosumer/p2p-orders: the order signed as
    `eth_signTypedData_v4` signs its typed data."""
    signature = account.sign_typed_data(full_message=order.typed_data(domain)).signature
    return SignedOrder(order=order, domain=domain, signature="0x" + bytes(signature).hex()).to_dict()


def signed_offer_body(account: LocalAccount, deployment: Deployment, order: FlexOffer) -> dict[str, Any]:
    """`signed_order_body` for the market of `deployment`."""
    return signed_order_body(account, order, deployment.domain)
