"""Canonical JSON of a round's clearing inputs and its hash (`inputHash` of the clearing commit).

Canonical JSON: UTF-8, keys sorted, no whitespace, integers as integers, every order in its
on-chain integer encoding with the Solidity field names; hex values (addresses, bytes32) in
lower case. Requests are sorted by request id, offers and P2P orders by order hash. The same
orders in any order give the same bytes and the same hash.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from eth_utils import keccak

from flexgrid.errors import InputError
from flexgrid.trading.eip712 import Eip712Domain, digest
from flexgrid.trading.models import FlexOffer, FlexRequest, P2POrder, request_order_hash


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no whitespace; floats are refused (use integers)."""
    _refuse_floats(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _refuse_floats(value: Any, path: str) -> None:
    if isinstance(value, float):
        raise InputError(path, f"canonical JSON holds integers only, got the float {value}")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InputError(path, f"keys must be strings, got {k!r}")
            _refuse_floats(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _refuse_floats(v, f"{path}[{i}]")


def _hex(value: bytes | str) -> str:
    return ("0x" + value.hex()) if isinstance(value, bytes) else value.lower()


def request_id_of(request: FlexRequest) -> int:
    """The on-chain request id of a request read from chain (its `order_id` is `bytes32(id)`)."""
    oid = request.order_id
    if oid is None:
        raise InputError("order_id", "a request needs its on-chain id (bytes32(requestId)) to be hashed")
    try:
        return int(oid, 16) if oid.startswith("0x") else int(oid)
    except ValueError as exc:
        raise InputError("order_id", f"{oid!r} is not a request id", order_id=oid) from exc


def request_json(request: FlexRequest) -> dict[str, Any]:
    """A request in its on-chain encoding."""
    if request.dso is None:
        raise InputError("dso", "a request read from chain has its DSO's address", order_id=request.order_id)
    return {"requestId": request_id_of(request), "dso": request.dso.lower(), **request.struct()}


def order_json(order: FlexOffer | P2POrder, domain: Eip712Domain) -> dict[str, Any]:
    """A signed order in its on-chain encoding, with its order hash."""
    out = {k: (_hex(v) if isinstance(v, bytes | str) else v) for k, v in order.message().items()}
    out["orderHash"] = digest(order, domain)
    return out


def canonical_inputs(
    *,
    round_id: int,
    domain: Eip712Domain,
    grid_model_hash: str,
    requests: Sequence[FlexRequest],
    offers: Sequence[FlexOffer],
    p2p: Sequence[P2POrder],
) -> dict[str, Any]:
    """The clearing inputs of a round as the canonical JSON object (before serialisation)."""
    all_orders: list[FlexRequest | FlexOffer | P2POrder] = [*requests, *offers, *p2p]
    for i, order in enumerate(all_orders):
        if order.round_id != round_id:
            raise InputError(
                "round_id",
                f"input {i} is for round {order.round_id}, not {round_id}",
                order_id=order.order_id,
            )
    request_items = sorted((request_json(r) for r in requests), key=lambda r: int(r["requestId"]))
    offer_items = sorted((order_json(o, domain) for o in offers), key=lambda o: str(o["orderHash"]))
    p2p_items = sorted((order_json(o, domain) for o in p2p), key=lambda o: str(o["orderHash"]))
    for name, items, key in (
        ("requests", request_items, "requestId"),
        ("offers", offer_items, "orderHash"),
        ("p2p", p2p_items, "orderHash"),
    ):
        ids = [item[key] for item in items]
        if len(set(ids)) != len(ids):
            raise InputError(name, f"the same {key} appears twice")
    return {
        "roundId": round_id,
        "chainId": domain.chain_id,
        "market": domain.verifying_contract.lower(),
        "gridModelHash": grid_model_hash.lower(),
        "requests": request_items,
        "offers": offer_items,
        "p2p": p2p_items,
    }


def input_hash(
    *,
    round_id: int,
    domain: Eip712Domain,
    grid_model_hash: str,
    requests: Sequence[FlexRequest],
    offers: Sequence[FlexOffer],
    p2p: Sequence[P2POrder],
) -> str:
    """`keccak256` of the canonical JSON of the round's inputs, `0x` hex."""
    inputs = canonical_inputs(
        round_id=round_id,
        domain=domain,
        grid_model_hash=grid_model_hash,
        requests=requests,
        offers=offers,
        p2p=p2p,
    )
    return canonical_hash(inputs)


def canonical_hash(doc: dict[str, Any]) -> str:
    """`keccak256` of `canonical_json(doc)`, `0x` hex: the input hash of a `canonical_inputs` object."""
    return "0x" + bytes(keccak(canonical_json(doc))).hex()


def order_accumulator(round_id: int, order_hashes: Sequence[str]) -> str:
    """The round's order accumulator (docs/trading-language.md, "Order accumulator").

    `acc = bytes32(roundId)`, then `acc = keccak256(abi.encode(acc, orderHash))` for every accepted
    order in acceptance order (a request's order hash is `bytes32(requestId)`). Equal to the value
    `ClearingCommitted` emits when `order_hashes` are exactly the round's accepted orders.
    """
    acc = request_order_hash(round_id)
    for i, order_hash in enumerate(order_hashes):
        if not (isinstance(order_hash, str) and len(order_hash) == 66 and order_hash.startswith("0x")):
            raise InputError(f"order_hashes[{i}]", f"{order_hash!r} is not a bytes32")
        acc = "0x" + bytes(keccak(bytes.fromhex(acc[2:]) + bytes.fromhex(order_hash[2:]))).hex()
    return acc


__all__ = [
    "canonical_inputs",
    "canonical_json",
    "input_hash",
    "order_accumulator",
    "order_json",
    "request_id_of",
    "request_json",
]
