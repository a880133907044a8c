"""Relaying a transaction the user's wallet signed (the DSO, the operator and sealed bidders send
their own transactions: the server never holds their keys).

The API checks, before sending, that the transaction is signed by the signed-in address, is for
this chain, calls the expected contract and one of the functions the endpoint allows; then it
sends it and waits for the receipt. `prepare_tx` gives the unsigned transaction for a wallet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp
from eth_account import Account
from eth_account._utils.legacy_transactions import Transaction
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import Web3RPCError

from flexgrid.chain.transact import decode_events
from flexgrid.errors import ChainError, ContractRevert
from frontend_api.core.problems import Problem
from frontend_api.core.service import FlexGridService, to_jsonable


@dataclass(frozen=True)
class RelayedTx:
    tx_hash: str
    block_number: int
    function: str
    events: list[dict[str, Any]]


def _decode(raw: bytes) -> tuple[int | None, bytes, bytes]:
    if raw and raw[0] <= 0x7F:
        d = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        return int(d["chainId"]), bytes(d["to"] or b""), bytes(d["data"] or b"")
    t = rlp.decode(raw, Transaction)
    chain_id = (t.v - 35) // 2 if t.v >= 35 else None
    return chain_id, bytes(t.to), bytes(t.data)


def relay_raw(service: FlexGridService, raw_hex: str, sender: str, contract: Contract,
              allowed: tuple[str, ...]) -> RelayedTx:
    """Check and send a wallet-signed transaction calling `contract.<one of allowed>`."""
    try:
        raw = bytes.fromhex(raw_hex.removeprefix("0x"))
        signer = Account.recover_transaction(raw)
        chain_id, to, data = _decode(raw)
    except Exception:  # any decoding failure is the client's input
        raise Problem(422, "Invalid input", "raw_transaction: is not a signed Ethereum transaction",
                      field="raw_transaction", reason="not a signed transaction") from None
    if signer != sender:
        raise Problem(403, "Forbidden", f"raw_transaction: signed by {signer}, not by the signed-in {sender}",
                      field="raw_transaction", reason="signed by another account")
    if chain_id is not None and chain_id != service.deployment.chain_id:
        raise Problem(422, "Invalid input", f"raw_transaction: for chain {chain_id}, not {service.deployment.chain_id}",
                      field="raw_transaction", reason="wrong chain id")
    if Web3.to_checksum_address(to) != Web3.to_checksum_address(contract.address):
        raise Problem(422, "Invalid input", f"raw_transaction: calls {Web3.to_checksum_address(to)}, "
                      f"not the {'/'.join(allowed)} contract {contract.address}",
                      field="raw_transaction", reason="wrong contract")
    try:
        fn, _args = contract.decode_function_input(data)
        name = str(fn.fn_name)
    except Exception:
        name = "?"
    if name not in allowed:
        raise Problem(422, "Invalid input", f"raw_transaction: calls {name}, this endpoint relays {', '.join(allowed)}",
                      field="raw_transaction", reason=f"must call {' or '.join(allowed)}")
    w3 = service.w3
    try:
        tx_hash = w3.eth.send_raw_transaction(raw)
    except (ValueError, Web3RPCError) as exc:  # the node refused it (nonce too low, not enough funds, ...)
        reason = str(exc.args[0] if exc.args else exc)
        raise Problem(422, "Rejected by the node", f"raw_transaction: {reason}", field="raw_transaction",
                      reason=reason) from None
    try:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.05)
    except Exception as exc:
        raise ChainError(f"transaction not mined: {exc}") from exc
    if receipt["status"] != 1:
        from flexgrid.chain.transact import TxSender

        tx = w3.eth.get_transaction(tx_hash)
        try:
            TxSender(w3, Account.create())._raise_replayed_revert(
                {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"]},
                int(receipt["blockNumber"]))
        except ContractRevert:
            raise
        raise ContractRevert("UnknownRevert", (), "transaction reverted")
    service.forget_roles()
    return RelayedTx("0x" + bytes(tx_hash).hex(), int(receipt["blockNumber"]), name,
                     to_jsonable(decode_events(contract.abi, w3, receipt)))


def prepare_tx(service: FlexGridService, sender: str, fn: Any) -> dict[str, Any]:
    """The unsigned transaction (EIP-1559) for `sender`'s wallet to sign; gas estimated now."""
    try:
        tx = dict(fn.build_transaction({"from": sender}))
    except ContractRevert:
        raise
    except Exception as exc:
        from web3.exceptions import ContractLogicError

        from flexgrid.chain.transact import decode_revert, revert_data

        if isinstance(exc, ContractLogicError):
            raise decode_revert(revert_data(exc)) from None
        raise
    tx["nonce"] = service.w3.eth.get_transaction_count(Web3.to_checksum_address(sender), "pending")
    tx["chainId"] = service.deployment.chain_id
    return {k: (v if not isinstance(v, bytes) else "0x" + v.hex()) for k, v in tx.items()}
