"""Sending transactions signed by a local key, with reverts decoded into `ContractRevert`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted
from web3.types import TxParams

from flexgrid.chain.artifacts import Artifact, abi_signature, decode_revert
from flexgrid.errors import ChainError, ContractRevert

T = TypeVar("T")


@dataclass(frozen=True)
class TxResult:
    """A mined transaction: hash, block, gas and the decoded events of the called contract."""

    tx_hash: str
    block_number: int
    gas_used: int
    events: list[dict[str, Any]] = field(default_factory=list)
    contract_address: str | None = None

    def event(self, name: str) -> dict[str, Any]:
        """The arguments of the first event called `name`; raises `ChainError` when absent."""
        for item in self.events:
            if item["event"] == name:
                return dict(item["args"])
        raise ChainError(f"transaction {self.tx_hash} emitted no {name} event")

    def all(self, name: str) -> list[dict[str, Any]]:
        """The arguments of every event called `name`, in log order."""
        return [dict(item["args"]) for item in self.events if item["event"] == name]


def revert_data(exc: ContractLogicError) -> str | None:
    data = exc.data
    if isinstance(data, dict):
        data = data.get("data")
    return data if isinstance(data, str) and data.startswith("0x") else None


def call_view(fn: Callable[[], T]) -> T:
    """Run a view call; a revert becomes `ContractRevert`."""
    try:
        return fn()
    except ContractLogicError as exc:
        data = revert_data(exc)
        if data is None:
            raise ContractRevert("Error", (exc.message or str(exc),)) from exc
        raise decode_revert(data) from exc


_LOCKS_GUARD = threading.Lock()
_SEND_LOCKS: dict[str, threading.Lock] = {}


def _send_lock(address: str) -> threading.Lock:
    """One lock per sending account in this process, so concurrent senders never share a nonce."""
    with _LOCKS_GUARD:
        return _SEND_LOCKS.setdefault(address, threading.Lock())


class TxSender:
    """Signs and sends transactions for one account; waits for the receipt.

    Threads of one process may share an account: picking the nonce and sending are serialised
    per account (waiting for the receipt is not).
    """

    def __init__(self, w3: Web3, account: LocalAccount, *, timeout_s: float = 120.0) -> None:
        self.w3 = w3
        self.account = account
        self.timeout_s = timeout_s
        self._chain_id: int | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    def _send(self, tx: dict[str, Any]) -> Any:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        tx.setdefault("chainId", self._chain_id)
        with _send_lock(self.address):
            tx["nonce"] = self.w3.eth.get_transaction_count(self.account.address, "pending")
            signed = self.account.sign_transaction(tx)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.timeout_s, poll_latency=0.05
            )
        except TimeExhausted as exc:
            raise ChainError(f"transaction {tx_hash.hex()} not mined within {self.timeout_s} s") from exc
        if receipt["status"] != 1:
            self._raise_replayed_revert(tx, receipt["blockNumber"])
        return receipt

    def _raise_replayed_revert(self, tx: dict[str, Any], block: int) -> None:
        call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        call.setdefault("from", self.address)
        try:
            self.w3.eth.call(call, block)  # type: ignore[arg-type]
        except ContractLogicError as exc:
            raise decode_revert(revert_data(exc)) from exc
        raise ContractRevert("UnknownRevert", (), "transaction reverted (out of gas?)")

    def transact(self, fn: ContractFunction, *, gas: int | None = None) -> TxResult:
        """Send `fn` (a bound contract function); return the receipt with decoded events."""
        params: dict[str, Any] = {"from": self.address}
        if gas is not None:
            params["gas"] = gas
        tx_params = cast(TxParams, params)
        try:
            tx = fn.build_transaction(tx_params)  # estimates gas: a revert surfaces here
        except ContractLogicError as exc:
            data = revert_data(exc)
            if data is None:
                raise ContractRevert("Error", (exc.message or str(exc),)) from exc
            raise decode_revert(data) from exc
        receipt = self._send(dict(tx))
        return TxResult(
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            events=decode_events(fn.contract_abi, self.w3, receipt),
        )

    def deploy(self, artifact: Artifact, *args: Any) -> TxResult:
        """Deploy `artifact` with constructor `args`; the result holds the new address."""
        if artifact.bytecode in ("", "0x"):
            raise ChainError(f"artifact {artifact.name} has no bytecode (an interface or abstract contract?)")
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        try:
            tx = factory.constructor(*args).build_transaction({"from": self.address})
        except ContractLogicError as exc:
            raise decode_revert(revert_data(exc)) from exc
        receipt = self._send(dict(tx))
        return TxResult(
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            contract_address=str(receipt["contractAddress"]),
        )


_Encode = Callable[[Any], bytes]


def _uint_word(bits: int, value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{value!r} is not a uint{bits}")
    return value.to_bytes(32, "big")


def _encoder(param: dict[str, Any]) -> tuple[_Encode, bool]:
    """An ABI encoder of `param`'s values (structs as dicts by component name) and whether the
    type is dynamic. Values are range-checked like eth-abi does."""
    kind = str(param["type"])
    if kind.endswith("[]"):
        inner, inner_dynamic = _encoder({**param, "type": kind[:-2]})

        def array(values: Any) -> bytes:
            items = [inner(v) for v in values]
            return len(items).to_bytes(32, "big") + _heads_and_tails(items, [inner_dynamic] * len(items))

        return array, True
    if kind.endswith("]"):
        raise ValueError(f"fixed-size array {kind} is not supported")
    if kind == "tuple":
        parts = [(str(c["name"]), *_encoder(c)) for c in param["components"]]
        flags = [d for _, _, d in parts]

        def struct(value: Any) -> bytes:
            return _heads_and_tails([encode(value[name]) for name, encode, _ in parts], flags)

        return struct, any(flags)
    if kind in ("bytes", "string"):

        def blob(value: Any) -> bytes:
            raw = value.encode() if isinstance(value, str) and kind == "string" else bytes(value)
            return len(raw).to_bytes(32, "big") + raw + b"\x00" * (-len(raw) % 32)

        return blob, True
    if kind.startswith("uint"):
        bits = int(kind[4:] or 256)
        return (lambda v: _uint_word(bits, v)), False
    if kind.startswith("int"):
        bits = int(kind[3:] or 256)

        def sint(value: Any) -> bytes:
            if isinstance(value, bool) or not isinstance(value, int) or not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
                raise ValueError(f"{value!r} is not an int{bits}")
            return value.to_bytes(32, "big", signed=True)

        return sint, False
    if kind == "address":

        def address(value: Any) -> bytes:
            raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
            if len(raw) != 20:
                raise ValueError(f"{value!r} is not an address")
            return b"\x00" * 12 + raw

        return address, False
    if kind == "bool":
        return (lambda v: _uint_word(1, int(v) if isinstance(v, bool) else v)), False
    if kind.startswith("bytes"):
        size = int(kind[5:])

        def fixed(value: Any) -> bytes:
            raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
            if len(raw) != size:
                raise ValueError(f"{value!r} is not {size} bytes")
            return raw + b"\x00" * (32 - size)

        return fixed, False
    raise ValueError(f"ABI type {kind} is not supported")


def _heads_and_tails(encoded: list[bytes], dynamic: list[bool]) -> bytes:
    head_size = sum(32 if d else len(e) for e, d in zip(encoded, dynamic, strict=True))
    heads, tails, offset = [], [], head_size
    for e, d in zip(encoded, dynamic, strict=True):
        if d:
            heads.append(offset.to_bytes(32, "big"))
            tails.append(e)
            offset += len(e)
        else:
            heads.append(e)
    return b"".join(heads) + b"".join(tails)


class CallEncoder:
    """Calldata of one contract function: selector + ABI-encoded arguments, with encoders built
    once from the function's ABI (eth-abi's generic encoder took ~1 ms per offer of a batch)."""

    def __init__(self, item: dict[str, Any]) -> None:
        self.selector = bytes(Web3.keccak(text=abi_signature(item)))[:4]
        self._args = [_encoder(p) for p in item["inputs"]]

    def encode(self, args: list[Any]) -> bytes:
        if len(args) != len(self._args):
            raise ValueError(f"expected {len(self._args)} arguments, got {len(args)}")
        encoded = [encode(a) for (encode, _), a in zip(self._args, args, strict=True)]
        return self.selector + _heads_and_tails(encoded, [d for _, d in self._args])


def decode_events(abi: Any, w3: Web3, receipt: Any) -> list[dict[str, Any]]:
    """Decode the logs of `receipt` that match events of `abi` (others are skipped)."""
    contract = w3.eth.contract(abi=abi)
    by_topic: dict[bytes, Any] = {}
    for item in abi:
        if item.get("type") == "event" and not item.get("anonymous"):
            by_topic[bytes(Web3.keccak(text=abi_signature(item)))] = contract.events[item["name"]]
    out = []
    for log in receipt["logs"]:
        if not log["topics"]:
            continue
        event = by_topic.get(bytes(log["topics"][0]))
        if event is None:
            continue
        decoded = event().process_log(log)
        out.append({"event": decoded["event"], "args": dict(decoded["args"]), "address": log["address"]})
    return out


__all__ = ["CallEncoder", "TxResult", "TxSender", "call_view", "decode_events"]
