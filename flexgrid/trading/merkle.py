"""Merkle trees of trades and metering readings, compatible with OpenZeppelin `MerkleProof`.

Both are OpenZeppelin `StandardMerkleTree`s built by `murky-tree` (leaf =
`keccak256(bytes.concat(keccak256(abi.encode(values…))))`, sorted pairs), with the leaf types of
docs/trading-language.md. An empty tree has the root `bytes32(0)` and no proofs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from murky_tree import StandardMerkleTree
from murky_tree.core import get_proof, hash_pair
from murky_tree.merkletree import build_tree
from murky_tree.standard import standard_leaf_hash

from flexgrid.errors import InputError
from flexgrid.trading.models import METERING_LEAF_TYPES, TRADE_LEAF_TYPES, ZERO_BYTES32, MeterReading, Trade

L = TypeVar("L", Trade, MeterReading)


def leaf_hash(values: Sequence[Any], leaf_types: Sequence[str]) -> str:
    """The double-hashed leaf of `values` typed as `leaf_types`, `0x` hex."""
    return "0x" + bytes(standard_leaf_hash(list(values), list(leaf_types))).hex()


def trade_leaf_hash(trade: Trade) -> str:
    """The leaf of a trade in the clearing root."""
    return leaf_hash(trade.leaf_values(), TRADE_LEAF_TYPES)


def metering_leaf_hash(reading: MeterReading) -> str:
    """The leaf of a meter reading in the metering root."""
    return leaf_hash(reading.leaf_values(), METERING_LEAF_TYPES)


class _LeafTree(Generic[L]):
    leaf_types: list[str]
    kind: str

    def __init__(self, items: Sequence[L]) -> None:
        self.items: tuple[L, ...] = tuple(items)
        values = [item.leaf_values() for item in self.items]
        hashes = [standard_leaf_hash(v, self.leaf_types) for v in values]
        seen: dict[str, int] = {}
        for i, item in enumerate(self.items):
            h = "0x" + bytes(hashes[i]).hex()
            if h in seen:
                raise InputError(
                    f"{self.kind}[{i}]",
                    f"duplicates {self.kind}[{seen[h]}]: a leaf can appear only once",
                    order_id=item.order_id,
                )
            seen[h] = i
        self._index = seen
        # murky-tree builds the tree from the leaf hashes computed once above (as its `of` does).
        self._tree: StandardMerkleTree[list[Any]] | None = None
        if values:
            tree, indexed = build_tree(values, hashes, True, hash_pair)
            self._tree = StandardMerkleTree(tree, indexed, self.leaf_types, _leaf_hashes=hashes)

    @property
    def root(self) -> str:
        """The root, `0x` hex; `bytes32(0)` for an empty tree."""
        return ZERO_BYTES32 if self._tree is None else "0x" + self._tree.tree[0].hex()

    def __len__(self) -> int:
        return len(self.items)

    def proof(self, item: L | int) -> list[str]:
        """The proof of an item (or of the item at an index), as `0x` hex strings."""
        index = (
            item if isinstance(item, int) else self._index.get(leaf_hash(item.leaf_values(), self.leaf_types))
        )
        if index is None or self._tree is None or not 0 <= index < len(self.items):
            raise InputError(self.kind, "is not a leaf of this tree")
        tree = self._tree.tree
        return ["0x" + bytes(p).hex() for p in get_proof(tree, self._tree.values[index].tree_index)]

    def to_json(self) -> dict[str, Any]:
        """The tree in `@openzeppelin/merkle-tree`'s JSON format (empty dict for an empty tree)."""
        return {} if self._tree is None else self._tree.to_json()


class TradeTree(_LeafTree[Trade]):
    """The clearing root's tree of accepted trades."""

    leaf_types = TRADE_LEAF_TYPES
    kind = "trades"


class MeteringTree(_LeafTree[MeterReading]):
    """The DSO's tree of measured deliveries."""

    leaf_types = METERING_LEAF_TYPES
    kind = "readings"


def verify_proof(root: str, leaf: str, proof: Sequence[str]) -> bool:
    """OpenZeppelin `MerkleProof.verify`: does `proof` lead from `leaf` (hash) to `root`?"""
    node = bytes.fromhex(leaf[2:])
    for sibling in proof:
        node = hash_pair(node, bytes.fromhex(sibling[2:]))
    return node == bytes.fromhex(root[2:])


def verify_trade(root: str, trade: Trade, proof: Sequence[str]) -> bool:
    """Does `proof` show that `trade` is a leaf of the clearing root `root`?"""
    return verify_proof(root, trade_leaf_hash(trade), proof)


def verify_reading(root: str, reading: MeterReading, proof: Sequence[str]) -> bool:
    """Does `proof` show that `reading` is a leaf of the metering root `root`?"""
    return verify_proof(root, metering_leaf_hash(reading), proof)


__all__ = [
    "MeteringTree",
    "TradeTree",
    "leaf_hash",
    "metering_leaf_hash",
    "trade_leaf_hash",
    "verify_proof",
    "verify_reading",
    "verify_trade",
]
