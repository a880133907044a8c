"""Canonical JSON and the input hash of a round's clearing inputs."""

from __future__ import annotations

import json

import pytest

from flexgrid.errors import InputError
from flexgrid.trading import request_order_hash
from flexgrid.trading.canonical import canonical_inputs, canonical_json, input_hash
from flexgrid.trading.eip712 import Eip712Domain
from tests.trading.test_models import offer, p2p, request

DOMAIN = Eip712Domain(chain_id=31337, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3")
GRID = "0x" + "AB" * 32


def _inputs(reverse: bool = False) -> dict[str, object]:
    requests = [request(order_id=request_order_hash(i)) for i in (1, 2, 10)]
    offers = [offer(nonce=n) for n in range(5)]
    orders = [p2p(nonce=n) for n in range(3)]
    if reverse:
        requests, offers, orders = requests[::-1], offers[::-1], orders[::-1]
    return dict(round_id=7, domain=DOMAIN, grid_model_hash=GRID, requests=requests, offers=offers, p2p=orders)


def test_canonical_json_sorts_keys_and_has_no_whitespace() -> None:
    assert (
        canonical_json({"b": [1, 2], "a": {"d": "é", "c": 1}}) == '{"a":{"c":1,"d":"é"},"b":[1,2]}'.encode()
    )


def test_canonical_json_refuses_floats() -> None:
    with pytest.raises(InputError) as info:
        canonical_json({"a": [1, 2.5]})
    assert info.value.field == "$.a[1]"


def test_input_hash_does_not_depend_on_the_order_of_the_inputs() -> None:
    assert input_hash(**_inputs()) == input_hash(**_inputs(reverse=True))  # type: ignore[arg-type]


def test_inputs_are_in_on_chain_encoding_and_sorted() -> None:
    data = canonical_inputs(**_inputs(reverse=True))  # type: ignore[arg-type]
    assert [r["requestId"] for r in data["requests"]] == [1, 2, 10]
    hashes = [o["orderHash"] for o in data["offers"]]
    assert hashes == sorted(hashes)
    first = data["offers"][0]
    assert first["maxPowerW"] == [20_000, 20_000, 5_125]
    assert first["provider"] == first["provider"].lower()
    assert data["gridModelHash"] == GRID.lower()
    assert data["market"] == DOMAIN.verifying_contract.lower()
    json.loads(canonical_json(data))


def test_input_hash_changes_when_an_order_changes() -> None:
    changed = _inputs()
    changed["offers"] = [offer(nonce=0, price_eur_per_mwh=1.0), *changed["offers"][1:]]  # type: ignore[index]
    assert input_hash(**changed) != input_hash(**_inputs())  # type: ignore[arg-type]


def test_order_of_another_round_is_rejected() -> None:
    bad = _inputs()
    bad["p2p"] = [p2p(round_id=8)]
    with pytest.raises(InputError) as info:
        input_hash(**bad)  # type: ignore[arg-type]
    assert info.value.field == "round_id"


def test_duplicate_offer_is_rejected() -> None:
    bad = _inputs()
    bad["offers"] = [offer(), offer()]
    with pytest.raises(InputError) as info:
        input_hash(**bad)  # type: ignore[arg-type]
    assert info.value.field == "offers"


def test_request_without_its_chain_id_cannot_be_hashed() -> None:
    bad = _inputs()
    bad["requests"] = [request(order_id=None)]
    with pytest.raises(InputError) as info:
        input_hash(**bad)  # type: ignore[arg-type]
    assert info.value.field == "order_id"


def test_order_accumulator_folds_hashes_in_order() -> None:
    from eth_utils import keccak

    from flexgrid.trading.canonical import order_accumulator

    a, b = "0x" + "aa" * 32, "0x" + "bb" * 32
    start = (7).to_bytes(32, "big")
    expected = keccak(keccak(start + bytes.fromhex(a[2:])) + bytes.fromhex(b[2:]))
    assert order_accumulator(7, [a, b]) == "0x" + expected.hex()
    assert order_accumulator(7, []) == "0x" + start.hex()
    with pytest.raises(InputError) as info:
        order_accumulator(7, [a, "0x12"])
    assert info.value.field == "order_hashes[1]"
