"""Merkle trees of trades and meter readings (OpenZeppelin StandardMerkleTree via murky-tree)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from eth_abi import encode
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from murky_tree import StandardMerkleTree
from murky_tree.core import hash_pair as murky_hash_pair
from murky_tree.standard import standard_leaf_hash

from flexgrid.errors import InputError
from flexgrid.trading import ZERO_BYTES32, MeterReading, Trade
from flexgrid.trading.merkle import (
    MeteringTree,
    TradeTree,
    encode_leaf,
    hash_pair,
    leaf_hash_bytes,
    trade_leaf_hash,
    verify_reading,
    verify_trade,
)
from flexgrid.trading.models import METERING_LEAF_TYPES, TRADE_LEAF_TYPES

PARTICIPANTS = [
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
]


def trades(n: int, seed: int = 1) -> list[Trade]:
    rng = random.Random(seed)
    return [
        Trade(
            round_id=3,
            participant=rng.choice(PARTICIPANTS),
            order_id="0x" + rng.randbytes(32).hex(),
            slot=rng.randrange(96),
            kw=rng.randrange(1, 10**6) / 1000,
            price_eur_per_mwh=rng.randrange(10**9) / 10**6,
            payment_eur=rng.randrange(-(10**9), 10**9) / 10**6,
        )
        for _ in range(n)
    ]


def test_trade_leaf_is_the_double_hash_of_the_abi_encoding() -> None:
    t = trades(1)[0]
    encoded = encode(
        ["uint256", "address", "bytes32", "uint16", "uint64", "uint64", "int256"], t.leaf_values()
    )
    assert trade_leaf_hash(t) == "0x" + keccak(keccak(encoded)).hex()


def test_two_leaf_root_is_the_sorted_pair_hash() -> None:
    a, b = trades(2)
    la, lb = (bytes.fromhex(trade_leaf_hash(t)[2:]) for t in (a, b))
    expected = keccak(min(la, lb) + max(la, lb))
    assert TradeTree([a, b]).root == "0x" + expected.hex()


def test_every_trade_proof_verifies_and_the_root_ignores_input_order() -> None:
    items = trades(37)
    tree = TradeTree(items)
    shuffled = list(items)
    random.Random(2).shuffle(shuffled)
    assert TradeTree(shuffled).root == tree.root
    for t in items:
        assert verify_trade(tree.root, t, tree.proof(t))


def test_a_changed_trade_does_not_verify() -> None:
    items = trades(8)
    tree = TradeTree(items)
    proof = tree.proof(items[0])
    forged = items[0].model_copy(update={"payment_eur": items[0].payment_eur + 1})
    assert not verify_trade(tree.root, forged, proof)


def test_duplicate_trade_is_rejected() -> None:
    t = trades(1)[0]
    with pytest.raises(InputError) as info:
        TradeTree([t, t])
    assert info.value.field == "trades[1]"


def test_empty_tree_has_zero_root() -> None:
    assert TradeTree([]).root == ZERO_BYTES32


def test_proof_of_a_foreign_trade_is_refused() -> None:
    tree = TradeTree(trades(3))
    with pytest.raises(InputError):
        tree.proof(trades(1, seed=99)[0])


def test_metering_proofs_verify() -> None:
    readings = [
        MeterReading(
            round_id=3, participant=t.participant, order_id=t.order_id, slot=t.slot, delivered_kw=t.kw
        )
        for t in trades(10)
    ]
    tree = MeteringTree(readings)
    for r in readings:
        assert verify_reading(tree.root, r, tree.proof(r))
    assert tree.to_json()["leafEncoding"] == ["uint256", "address", "bytes32", "uint16", "uint64"]


# ------------------------------------------------------------------------------------------------
# The fast path (C keccak, static ABI words) against murky-tree's own (eth_abi, eth-hash's auto backend)

_UINT = {"uint256": 2**256, "uint64": 2**64, "uint16": 2**16}


def _int_values(abi_type: str) -> st.SearchStrategy[int]:
    if abi_type == "int256":
        lo, hi = -(2**255), 2**255 - 1
    else:
        lo, hi = 0, _UINT[abi_type] - 1
    return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, lo + 1, hi - 1]),
                     st.integers(lo - 3, lo - 1), st.integers(hi + 1, hi + 3))  # the last two: eth_abi's error


_ADDRESS = st.one_of(st.sampled_from(PARTICIPANTS), st.sampled_from([p.lower() for p in PARTICIPANTS]),
                     st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex().upper()),
                     st.just("0x70997970C51812dc3A010C7d01b50e0d17dc79c8"),  # broken checksum
                     st.binary(min_size=20, max_size=20), st.just("70997970c51812dc3a010c7d01b50e0d17dc79c8"))
_BYTES32 = st.one_of(st.binary(min_size=32, max_size=32), st.binary(min_size=0, max_size=33))


def _leaf(types: list[str]) -> st.SearchStrategy[list[Any]]:
    parts = [_ADDRESS if t == "address" else _BYTES32 if t == "bytes32" else _int_values(t) for t in types]
    return st.tuples(*parts).map(list)


@settings(max_examples=600, deadline=None)
@given(st.one_of(_leaf(TRADE_LEAF_TYPES).map(lambda v: (TRADE_LEAF_TYPES, v)),
                 _leaf(METERING_LEAF_TYPES).map(lambda v: (METERING_LEAF_TYPES, v))))
def test_fast_leaf_encoding_equals_eth_abi(case: tuple[list[str], list[Any]]) -> None:
    """`encode_leaf` gives eth_abi's bytes, or (for values eth_abi refuses) eth_abi's error."""
    types, values = case
    try:
        expected: bytes | type[Exception] = encode(types, values)
    except Exception as exc:  # whichever eth_abi raises, the fast path must raise it too
        expected = type(exc)
    if isinstance(expected, bytes):
        assert encode_leaf(values, types) == expected
        assert leaf_hash_bytes(values, types) == standard_leaf_hash(values, types)
    else:
        with pytest.raises(expected):
            encode_leaf(values, types)


def test_root_leaves_proofs_and_json_equal_murky_trees_own() -> None:
    """A clearing-sized tree hashed the fast way has murky-tree's root, leaves, proofs and JSON."""
    items = trades(400, seed=5)
    tree = TradeTree(items)
    values = [t.leaf_values() for t in items]
    ref = StandardMerkleTree.of(values, TRADE_LEAF_TYPES)  # eth_abi + eth-hash's auto backend
    assert tree.root == ref.root
    assert tree.to_json() == ref.to_json()
    for i, t in enumerate(items):
        assert trade_leaf_hash(t) == "0x" + standard_leaf_hash(values[i], TRADE_LEAF_TYPES).hex()
        assert tree.proof(t) == ref.get_proof(i)
        assert verify_trade(tree.root, t, tree.proof(i))
    readings = [MeterReading(round_id=3, participant=t.participant, order_id=t.order_id, slot=t.slot,
                             delivered_kw=t.kw) for t in items[:50]]
    mref = StandardMerkleTree.of([r.leaf_values() for r in readings], METERING_LEAF_TYPES)
    assert MeteringTree(readings).root == mref.root


def test_pair_hash_is_murky_trees() -> None:
    rng = random.Random(4)
    for _ in range(50):
        a, b = rng.randbytes(32), rng.randbytes(32)
        assert hash_pair(a, b) == murky_hash_pair(a, b) == hash_pair(b, a)
