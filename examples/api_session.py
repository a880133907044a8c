"""A prosumer's session with the FlexGrid HTTP API: sign in with a wallet (EIP-4361), submit an
EIP-712 signed flexibility offer, and see it on chain.

Start the API in one terminal (it starts its own anvil and seeds a demo market):

    .venv/bin/flexgrid serve

then, in another:

    .venv/bin/python examples/api_session.py                 # as anvil's dev account 5, a demo provider
    .venv/bin/python examples/api_session.py --url http://127.0.0.1:8000 --key 0x<private key>

The key stays here: the server only sees signatures. Exit code 0 when the offer is on chain.
`tests/api/test_market_flows.py` runs this script against a real server.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from siwe import SiweMessage

from flexgrid.chain.node import dev_accounts
from flexgrid.trading import Direction, FlexOffer
from flexgrid.trading.eip712 import Eip712Domain, SignedOrder


def sign_in(api: httpx.Client, wallet: LocalAccount) -> dict[str, str]:
    """EIP-4361: ask for a nonce, sign the message as a wallet's personal_sign does, log in."""
    info = api.get("/auth/nonce").json()  # nonce, domain, uri and chain id the message must carry
    now = datetime.now(UTC)
    message = SiweMessage(
        domain=info["domain"], address=wallet.address, statement="Sign in to FlexGrid", uri=info["uri"],
        version="1", chain_id=info["chain_id"], nonce=info["nonce"],
        issued_at=now.isoformat().replace("+00:00", "Z"),
        expiration_time=(now + timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
    ).prepare_message()
    signature = wallet.sign_message(encode_defunct(text=message)).signature
    r = api.post("/auth/login", json={"message": message, "signature": "0x" + bytes(signature).hex()})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['token']}"}


def open_round(api: httpx.Client, health: dict[str, object]) -> int:
    if health.get("demo_round_id"):
        return int(str(health["demo_round_id"]))
    rounds = api.get("/auditor/rounds", params={"state": "OPEN"}).json()["items"]
    if not rounds:
        raise SystemExit("no OPEN round on this market")
    return int(rounds[0]["round_id"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the API (flexgrid serve)")
    parser.add_argument("--key", help="the prosumer's private key (default: anvil's dev account 5)")
    parser.add_argument("--kw", type=float, default=25.0, help="offered power per slot")
    args = parser.parse_args(argv)
    wallet: LocalAccount = Account.from_key(args.key) if args.key else dev_accounts()[5]

    with httpx.Client(base_url=args.url, timeout=30) as api:
        health = api.get("/health").json()  # chain id and contract addresses
        me = sign_in(api, wallet)
        roles = api.get("/auth/me", headers=me).json()["roles"]
        print(f"signed in as {wallet.address}, roles on chain: {roles}")

        round_id = open_round(api, health)
        config = api.get(f"/auditor/rounds/{round_id}").json()["config"]
        nonce = api.get(f"/prosumer/nonces/{round_id}", headers=me).json()["next_nonce"]
        offer = FlexOffer(provider=wallet.address, round_id=round_id, bus=15, asset_id="0x" + "ab" * 32,
                          direction=Direction.UP, slots=(0, 1), min_kw=(0.0, 0.0), max_kw=(args.kw, args.kw),
                          price_eur_per_mwh=120.0, nonce=nonce, expiry_s=config["gate_closure_s"])
        domain = Eip712Domain(chain_id=health["chain_id"], verifying_contract=health["market"])
        # what eth_signTypedData_v4 signs in a browser wallet
        signature = wallet.sign_typed_data(full_message=offer.typed_data(domain)).signature
        body = SignedOrder(order=offer, domain=domain, signature="0x" + bytes(signature).hex()).to_dict()
        r = api.post("/prosumer/offers", json=body, headers={**me, "Idempotency-Key": f"offer-{nonce}"})
        if r.status_code != 202:
            print(f"refused: {r.status_code} {r.text}", file=sys.stderr)
            return 1
        order_hash = r.json()["order_hash"]
        print(f"offer {order_hash} accepted for round {round_id}: {r.json()['status']}")

        deadline = time.monotonic() + 60
        status = "queued"
        while status not in ("indexed", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)  # queued -> relayed (mined in a batch) -> indexed (its event is in the database)
            status = api.get(f"/prosumer/orders/{order_hash}", headers=me).json()["status"]
        orders = f"/auditor/rounds/{round_id}/orders"  # the round's orders as the chain's events say
        total = api.get(orders, params={"kind": "offer", "limit": 1}).json()["total"]
        latest = api.get(orders, params={"kind": "offer", "limit": 100, "offset": max(0, total - 100)}).json()
        found = [o for o in latest["items"] if o["order_hash"] == order_hash]
        if status != "indexed" or not found:
            print(f"not on chain: status {status}", file=sys.stderr)
            return 1
        print(f"on chain: block {found[0]['block_number']}, transaction {found[0]['tx_hash']}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
