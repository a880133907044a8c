"""A round's clearing inputs, read from the chain's events and re-verified.

The event indexer (`flexgrid.chain.EventIndexer`) stores every accepted order of a round in
acceptance order. Here the oracle

1. recomputes the round's order accumulator from those orders and compares it (and the order
   count) with `roundStatus` on chain: the index must hold exactly the orders the chain accepted;
2. re-verifies each signed order: its order hash is recomputed from its content; its signature is
   taken from the calldata of the transaction that submitted (or revealed) it and must recover to
   its signer (or pass ERC-1271 for a contract account); the sequences of keyed nonces of each
   signer and key must increase one by one in acceptance order;
3. checks each order against the round and the grid (slots, price cap, expiry at gate closure,
   known bus, consistent exclusive options) as the clearing engine would.

An order failing a check is dropped and reported with its reason (`DroppedOrder`), never silently.
`check_signed_orders` and `screen_orders` are pure; `read_round_inputs` does the I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from sqlalchemy.engine import Engine
from web3 import Web3

from flexgrid.chain.artifacts import load_artifact
from flexgrid.chain.deploy import Deployment
from flexgrid.chain.indexer import order_records
from flexgrid.chain.market import offer_from_struct, p2p_from_struct, plain
from flexgrid.errors import FlexGridError, InputError
from flexgrid.grid.topology import GridView
from flexgrid.market.clearing import check_orders
from flexgrid.trading.canonical import order_accumulator
from flexgrid.trading.eip712 import Eip712Domain, digest_bytes
from flexgrid.trading.models import FlexOffer, FlexRequest, P2POrder, RoundConfig

Order = FlexRequest | FlexOffer | P2POrder

ERC1271_MAGIC = bytes.fromhex("1626ba7e")
ERC1271_ABI = [
    {
        "inputs": [{"name": "hash", "type": "bytes32"}, {"name": "signature", "type": "bytes"}],
        "name": "isValidSignature",
        "outputs": [{"name": "", "type": "bytes4"}],
        "stateMutability": "view",
        "type": "function",
    }
]
SIGNED_FUNCTIONS = {"submitOffer", "submitOffers", "revealOffers", "submitP2POrders"}


class OracleInputError(FlexGridError):
    """The round's inputs cannot be established (the index and the chain disagree)."""


@dataclass(frozen=True)
class AcceptedOrder:
    """One order the chain accepted, as indexed: the model, who and which transaction."""

    kind: str  # request | offer | p2p
    order: Order
    participant: str
    tx_hash: str

    @property
    def order_hash(self) -> str:
        return str(self.order.order_id)


@dataclass(frozen=True)
class DroppedOrder:
    """An accepted order the oracle does not use, and why."""

    order_hash: str
    kind: str
    participant: str
    tx_hash: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {
            "orderHash": self.order_hash,
            "kind": self.kind,
            "participant": self.participant,
            "txHash": self.tx_hash,
            "reason": self.reason,
        }


@dataclass
class RoundInputs:
    """What the oracle clears: the orders it uses, those it dropped, and the proofs it checked."""

    config: RoundConfig
    requests: list[FlexRequest]
    offers: list[FlexOffer]
    p2p: list[P2POrder]
    dropped: list[DroppedOrder]
    order_accumulator: str
    order_count: int
    signatures: dict[str, str] = field(default_factory=dict)
    signature_checks: dict[str, str] = field(default_factory=dict)

    @property
    def orders(self) -> list[Order]:
        return [*self.requests, *self.offers, *self.p2p]


# -- pure checks ---------------------------------------------------------------------------------

SignatureLookup = Callable[[AcceptedOrder], str | None]
ContractSignatureCheck = Callable[[str, bytes, bytes], bool]  # (signer, digest, signature) -> valid


def check_signed_orders(
    accepted: Sequence[AcceptedOrder],
    domain: Eip712Domain,
    signature_of: SignatureLookup,
    *,
    erc1271: ContractSignatureCheck | None = None,
) -> tuple[list[AcceptedOrder], list[DroppedOrder], dict[str, str], dict[str, str]]:
    """Re-verify order hashes, signatures and keyed-nonce order of `accepted` (acceptance order).

    `signature_of(order)` gives the 65-byte signature hex found for the order, or None when it
    cannot be found (then the market's intake check is the only one: recorded as `contract-only`).
    Returns (kept, dropped, signatures, how each signature was checked).
    """
    kept: list[AcceptedOrder] = []
    dropped: list[DroppedOrder] = []
    signatures: dict[str, str] = {}
    checks: dict[str, str] = {}
    last_sequence: dict[tuple[str, int], int] = {}

    def drop(item: AcceptedOrder, reason: str) -> None:
        dropped.append(DroppedOrder(item.order_hash, item.kind, item.participant, item.tx_hash, reason))

    for item in accepted:
        order = item.order
        if isinstance(order, FlexRequest):
            kept.append(item)  # sent by the grid's DSO itself: the market checked the sender
            continue
        expected = "0x" + digest_bytes(order, domain).hex()
        if expected != item.order_hash.lower():
            drop(item, f"order hash {item.order_hash} does not match the order's content ({expected})")
            continue
        signer = order.signer
        signature = signature_of(item)
        if signature is None:
            checks[item.order_hash] = "contract-only"
        else:
            signatures[item.order_hash] = signature
            sig = bytes.fromhex(signature.removeprefix("0x"))
            recovered: str | None = None
            if len(sig) == 65:
                try:
                    recovered = str(Account._recover_hash(bytes.fromhex(expected[2:]), signature=sig))
                except Exception:  # malformed (s too high, bad v): eth-keys raises several types
                    recovered = None
            if recovered is not None and recovered.lower() == signer.lower():
                checks[item.order_hash] = "ecdsa"
            elif erc1271 is not None and erc1271(signer, bytes.fromhex(expected[2:]), sig):
                checks[item.order_hash] = "erc1271"
            else:
                drop(item, f"signature does not verify: recovers to {recovered}, the signer is {signer}")
                continue
        key, sequence = order.nonce >> 64, order.nonce & ((1 << 64) - 1)
        previous = last_sequence.get((signer.lower(), key))
        if previous is not None and sequence != previous + 1:
            drop(item, f"nonce out of order: sequence {sequence} of key {key} follows {previous}")
            continue
        last_sequence[(signer.lower(), key)] = sequence
        kept.append(item)
    return kept, dropped, signatures, checks


def screen_orders(
    accepted: Sequence[AcceptedOrder], config: RoundConfig, view: GridView
) -> tuple[list[AcceptedOrder], list[DroppedOrder]]:
    """Drop orders the clearing would refuse (round, slots, cap, expiry at gate closure, bus,
    exclusive options), each with the engine's own error message as the reason."""
    kept: list[AcceptedOrder] = []
    dropped: list[DroppedOrder] = []
    for item in accepted:
        try:
            check_orders([item.order], config, view, None)
        except InputError as exc:
            dropped.append(DroppedOrder(item.order_hash, item.kind, item.participant, item.tx_hash, str(exc)))
            continue
        kept.append(item)
    # cross-order checks (exclusive groups): drop the named order and check again
    while True:
        try:
            check_orders([k.order for k in kept], config, view, None)
            break
        except InputError as exc:
            culprit = next((k for k in kept if k.order_hash == exc.order_id), None)
            if culprit is None:
                raise
            kept.remove(culprit)
            dropped.append(DroppedOrder(culprit.order_hash, culprit.kind, culprit.participant, culprit.tx_hash, str(exc)))
    return kept, dropped


# -- reading the chain ---------------------------------------------------------------------------


def accepted_orders(engine: Engine, deployment: Deployment, round_id: int) -> list[AcceptedOrder]:
    """The indexed orders of a round in acceptance order."""
    out: list[AcceptedOrder] = []
    for r in order_records(engine, deployment, round_id):
        model: Order
        if r.kind == "request":
            model = FlexRequest.model_validate_json(r.model_json)
        elif r.kind == "offer":
            model = FlexOffer.model_validate_json(r.model_json)
        else:
            model = P2POrder.model_validate_json(r.model_json)
        out.append(AcceptedOrder(kind=r.kind, order=model, participant=r.participant, tx_hash=r.tx_hash))
    return out


class CalldataSignatures:
    """Finds each signed order's signature in the calldata of its transaction (cached per tx)."""

    def __init__(self, w3: Web3, deployment: Deployment) -> None:
        self.w3 = w3
        self.domain = deployment.domain
        self.market = w3.eth.contract(
            address=Web3.to_checksum_address(deployment.market), abi=load_artifact("FlexMarket").abi
        )
        self._by_tx: dict[str, dict[str, str]] = {}

    def _decode(self, tx_hash: str) -> dict[str, str]:
        tx = self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        if tx.get("to") is None or str(tx["to"]).lower() != str(self.market.address).lower():
            return {}
        try:
            fn, args = self.market.decode_function_input(tx["input"])
        except ValueError:
            return {}
        name = fn.fn_name
        if name not in SIGNED_FUNCTIONS:
            return {}
        args = {k: plain(v) for k, v in args.items()}
        if name == "submitOffer":
            pairs: Iterable[tuple[Any, Any]] = [(args["offer"], args["signature"])]
        elif name == "submitP2POrders":
            pairs = zip(args["orders"], args["signatures"], strict=True)
        else:
            pairs = zip(args["offers"], args["signatures"], strict=True)
        found: dict[str, str] = {}
        for struct, signature in pairs:
            s = _struct_dict(struct, self.market, name)
            order: FlexOffer | P2POrder
            try:
                order = p2p_from_struct(s) if name == "submitP2POrders" else offer_from_struct(s)
            except InputError:
                continue  # an order the market refused or that cannot be a model: not ours to find
            found["0x" + digest_bytes(order, self.domain).hex()] = "0x" + bytes(signature).hex()
        return found

    def __call__(self, item: AcceptedOrder) -> str | None:
        if item.tx_hash not in self._by_tx:
            self._by_tx[item.tx_hash] = self._decode(item.tx_hash)
        return self._by_tx[item.tx_hash].get(item.order_hash.lower())


def _struct_dict(struct: Any, contract: Any, fn_name: str) -> dict[str, Any]:
    if isinstance(struct, dict):
        return struct
    # web3 returns tuples for structs without decode_tuples: name them from the ABI
    item = next(i for i in contract.abi if i.get("name") == fn_name and i.get("type") == "function")
    components = item["inputs"][0]["components"]
    return {c["name"]: v for c, v in zip(components, struct, strict=True)}


def erc1271_checker(w3: Web3) -> ContractSignatureCheck:
    """ERC-1271 `isValidSignature` for signers that are contracts (false for plain accounts)."""

    def check(signer: str, digest: bytes, signature: bytes) -> bool:
        address = Web3.to_checksum_address(signer)
        if len(w3.eth.get_code(address)) == 0:
            return False
        try:
            result = w3.eth.contract(address=address, abi=ERC1271_ABI).functions.isValidSignature(
                digest, signature
            ).call()
        except Exception:  # a reverting or non-conforming wallet does not validate the signature
            return False
        return bytes(result) == ERC1271_MAGIC

    return check


def read_round_inputs(
    w3: Web3,
    deployment: Deployment,
    engine: Engine,
    config: RoundConfig,
    view: GridView,
    status: dict[str, Any],
) -> RoundInputs:
    """Read, check and screen the orders of `config.round_id` from the index (run the indexer
    first); `status` is the round's on-chain `roundStatus` (its accumulator and order count)."""
    round_id = config.round_id
    accepted = accepted_orders(engine, deployment, round_id)
    acc = order_accumulator(round_id, [a.order_hash for a in accepted])
    chain_acc, chain_count = str(status["orderAccumulator"]).lower(), int(status["orderCount"])
    if acc != chain_acc or len(accepted) != chain_count:
        raise OracleInputError(
            f"round {round_id}: the indexed orders ({len(accepted)}, accumulator {acc}) differ from the "
            f"chain's ({chain_count}, accumulator {chain_acc}); re-index from block {deployment.block_number}"
        )
    kept, dropped, signatures, checks = check_signed_orders(
        accepted, deployment.domain, CalldataSignatures(w3, deployment), erc1271=erc1271_checker(w3)
    )
    kept, screened = screen_orders(kept, config, view)
    dropped = sorted([*dropped, *screened], key=lambda d: d.order_hash)
    return RoundInputs(
        config=config,
        requests=[k.order for k in kept if isinstance(k.order, FlexRequest)],
        offers=[k.order for k in kept if isinstance(k.order, FlexOffer)],
        p2p=[k.order for k in kept if isinstance(k.order, P2POrder)],
        dropped=dropped,
        order_accumulator=acc,
        order_count=len(accepted),
        signatures=signatures,
        signature_checks=checks,
    )


__all__ = [
    "AcceptedOrder",
    "CalldataSignatures",
    "DroppedOrder",
    "OracleInputError",
    "RoundInputs",
    "accepted_orders",
    "check_signed_orders",
    "erc1271_checker",
    "read_round_inputs",
    "screen_orders",
]
