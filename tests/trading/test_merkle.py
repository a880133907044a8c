"""Merkle trees of trades and meter readings (OpenZeppelin StandardMerkleTree via murky-tree)."""

from __future__ import annotations

import random

import pytest
from eth_abi import encode
from eth_utils import keccak

from flexgrid.errors import InputError
from flexgrid.trading import ZERO_BYTES32, MeterReading, Trade
from flexgrid.trading.merkle import MeteringTree, TradeTree, trade_leaf_hash, verify_reading, verify_trade

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
