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

from flexgrid.chain.abicodec import encoder, heads_and_tails, parse
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


class CallEncoder:
    """Calldata of one contract function: selector + ABI-encoded arguments, with encoders built
    once from the function's ABI (`flexgrid.chain.abicodec`; eth-abi's generic encoder took ~1 ms
    per offer of a batch)."""

    def __init__(self, item: dict[str, Any]) -> None:
        self.selector = bytes(Web3.keccak(text=abi_signature(item)))[:4]
        types = [parse(p) for p in item["inputs"]]
        self._args = [encoder(t) for t in types]
        self._dynamic = [t.dynamic for t in types]

    def encode(self, args: list[Any]) -> bytes:
        if len(args) != len(self._args):
            raise ValueError(f"expected {len(self._args)} arguments, got {len(args)}")
        encoded = [encode(a) for encode, a in zip(self._args, args, strict=True)]
        return self.selector + heads_and_tails(encoded, self._dynamic)


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
