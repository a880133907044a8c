"""Every endpoint called by every role and by no one: the answer is the expected one."""

from __future__ import annotations

import pytest
from eth_account import Account

from tests.api.conftest import Api
from tests.api.wallet import bearer, sign_in

pytestmark = [pytest.mark.chain, pytest.mark.xdist_group("api")]

IDENTITIES = ("nobody", "stranger", "provider", "dso", "operator")
PUBLIC = frozenset(IDENTITIES)
SIGNED_IN = frozenset(IDENTITIES) - {"nobody"}

# (method, path) -> who may call it; everyone else gets 401 (not signed in) or 403 (wrong role).
MATRIX: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/auth/nonce"): PUBLIC,
    ("POST", "/auth/login"): PUBLIC,
    ("GET", "/auth/me"): SIGNED_IN,
    ("POST", "/auth/logout"): SIGNED_IN,
    ("POST", "/prosumer/assets"): frozenset({"provider"}),
    ("GET", "/prosumer/assets"): frozenset({"provider"}),
    ("GET", "/prosumer/rounds/{round_id}/proposed-offers"): frozenset({"provider"}),
    ("POST", "/prosumer/offers"): frozenset({"provider"}),
    ("POST", "/prosumer/offers/bulk"): frozenset({"provider"}),
    ("POST", "/prosumer/p2p-orders"): SIGNED_IN,
    ("GET", "/prosumer/nonces/{key}"): SIGNED_IN,
    ("POST", "/prosumer/commitments/prepare"): frozenset({"provider"}),
    ("POST", "/prosumer/commitments"): frozenset({"provider"}),
    ("POST", "/prosumer/reveals"): frozenset({"provider"}),
    ("GET", "/prosumer/orders"): SIGNED_IN,
    ("GET", "/prosumer/orders/{order_hash}"): SIGNED_IN,
    ("GET", "/prosumer/trades"): SIGNED_IN,
    ("GET", "/prosumer/settlements"): SIGNED_IN,
    ("GET", "/prosumer/withdrawable"): SIGNED_IN,
    ("GET", "/dso/grids"): frozenset({"dso"}),
    ("POST", "/dso/grid-model"): frozenset({"dso"}),
    ("POST", "/dso/grid-models"): frozenset({"dso"}),
    ("GET", "/dso/grid-models"): frozenset({"dso"}),
    ("POST", "/dso/requests/prepare"): frozenset({"dso"}),
    ("POST", "/dso/rounds/{round_id}/approve/prepare"): frozenset({"dso"}),
    ("POST", "/dso/rounds/{round_id}/dispute/prepare"): frozenset({"dso"}),
    ("POST", "/dso/transactions"): frozenset({"dso"}),
    ("POST", "/dso/validate"): frozenset({"dso"}),
    ("GET", "/dso/orders"): frozenset({"dso"}),
    ("POST", "/dso/metering"): frozenset({"dso"}),
    ("POST", "/operator/rounds/compose"): frozenset({"operator"}),
    ("POST", "/operator/rounds/{round_id}/cancel/prepare"): frozenset({"operator"}),
    ("POST", "/operator/participants/{address}/approve/prepare"): frozenset({"operator"}),
    ("POST", "/operator/transactions"): frozenset({"operator"}),
    ("POST", "/operator/participants"): frozenset({"operator"}),
    ("GET", "/auditor/rounds"): PUBLIC,
    ("GET", "/auditor/rounds/{round_id}"): PUBLIC,
    ("GET", "/auditor/rounds/{round_id}/result"): PUBLIC,
    ("GET", "/auditor/rounds/{round_id}/trades"): PUBLIC,
    ("GET", "/auditor/rounds/{round_id}/orders"): PUBLIC,
    ("GET", "/auditor/rounds/{round_id}/settlements"): PUBLIC,
    ("GET", "/auditor/rounds/{round_id}/verify"): PUBLIC,
    ("GET", "/auditor/grid-models/{grid_model_hash}"): PUBLIC,
    ("GET", "/events/rounds"): PUBLIC,
}


def test_the_matrix_lists_every_endpoint(api: Api) -> None:
    with api.client() as c:
        spec = c.get("/openapi.json").json()
    routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert routes == set(MATRIX)


def test_every_endpoint_answers_every_role_as_expected(api: Api) -> None:
    accounts = {"stranger": Account.create(), "provider": api.demo.providers[0], "dso": api.demo.dso,
                "operator": api.demo.operator}
    failures = []
    with api.client() as c:
        tokens = {name: sign_in(c, acct) for name, acct in accounts.items()}  # fresh: logout ends them
        values = {"round_id": "1", "order_hash": "0x" + "00" * 32, "key": "1", "grid_model_hash": "0x" + "00" * 32, "address": api.demo.providers[0].address}
        ordered = sorted(MATRIX, key=lambda k: k[1] == "/auth/logout")  # log out last
        for method, path in ordered:
            url = path.format(**values)
            params = {"max_events": 1} if path == "/events/rounds" else None
            for who in IDENTITIES:
                headers = bearer(tokens[who]) if who in tokens else {}
                r = c.request(method, url, headers=headers, params=params, json={} if method == "POST" else None)
                allowed = who in MATRIX[(method, path)]
                if r.status_code >= 500:
                    failures.append(f"{method} {path} as {who}: {r.status_code} {r.text[:200]}")
                elif allowed and r.status_code in (401, 403):
                    failures.append(f"{method} {path} as {who}: refused with {r.status_code}")
                elif not allowed:
                    expected = 401 if who == "nobody" else 403
                    if r.status_code != expected:
                        failures.append(f"{method} {path} as {who}: {r.status_code}, expected {expected}")
                    elif not r.headers["content-type"].startswith("application/problem+json"):
                        failures.append(f"{method} {path} as {who}: not a problem document")
    assert not failures, "\n".join(failures)
