"""Fast EIP-712 checks for the offer intake: the order hash and the signer of a signed order.

`flexgrid.trading.eip712` builds the full typed-data document and hashes it with eth-account's
`encode_typed_data` (about a millisecond per order, twice per `SignedOrder.verify`). The intake
hashes the same structs directly: type hashes and the domain separator are computed once per
domain, each field is ABI-encoded as EIP-712 says (atomic values as 32-byte words, dynamic arrays
as the keccak of their encoded items), and the signer is recovered from the digest with coincurve
(libsecp256k1, the backend eth-keys uses). The results are the same as eth-account's; tests/api/test_intake.py checks it.
"""

from __future__ import annotations

from functools import lru_cache

from coincurve import PublicKey
from sha3 import keccak_256  # safe-pysha3

from flexgrid.errors import SignatureError
from flexgrid.trading.eip712 import (
    FLEX_OFFER_TYPE,
    P2P_ORDER_TYPE,
    Eip712Domain,
    SignableOrder,
    domain_separator,
)
from flexgrid.trading.models import FlexOffer, P2POrder


def keccak(data: bytes) -> bytes:
    """keccak256 from safe-pysha3 (eth-hash's pysha3 backend, in C): pycryptodome's cffi wrapper
    cost a third of the API process's CPU under the bulk load (~7 us per hash quiet, more when busy)."""
    return bytes(keccak_256(data).digest())


def _encode_type(name: str, fields: list[dict[str, str]]) -> bytes:
    return f"{name}({','.join(f['type'] + ' ' + f['name'] for f in fields)})".encode()


_TYPES: dict[type, tuple[bytes, list[tuple[str, str]]]] = {
    FlexOffer: (keccak(_encode_type("FlexOffer", FLEX_OFFER_TYPE)), [(f["name"], f["type"]) for f in FLEX_OFFER_TYPE]),
    P2POrder: (keccak(_encode_type("P2POrder", P2P_ORDER_TYPE)), [(f["name"], f["type"]) for f in P2P_ORDER_TYPE]),
}


def _word(kind: str, value: object) -> bytes:
    if kind == "address":
        return b"\x00" * 12 + bytes.fromhex(str(value)[2:])
    if kind == "bytes32":
        raw = bytes(value)  # type: ignore[call-overload]
        if len(raw) != 32:
            raise SignatureError(kind, f"must be 32 bytes, got {len(raw)}")
        return raw
    return int(value).to_bytes(32, "big")  # type: ignore[call-overload]  # uintN (validated by the models)


@lru_cache(maxsize=64)
def _separator(domain: Eip712Domain) -> bytes:
    return bytes.fromhex(domain_separator(domain)[2:])


def order_digest(order: SignableOrder, domain: Eip712Domain) -> bytes:
    """`keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(order))`, as eth-account computes it."""
    type_hash, fields = _TYPES[type(order)]
    message = order.message()
    parts = [type_hash]
    for name, kind in fields:
        value = message[name]
        if kind.endswith("[]"):
            item = kind[:-2]
            parts.append(keccak(b"".join(_word(item, v) for v in value)))
        else:
            parts.append(_word(kind, value))
    return keccak(b"\x19\x01" + _separator(domain) + keccak(b"".join(parts)))


def recover_address(digest: bytes, signature: bytes) -> bytes:
    """The 20-byte address that signed `digest` (65-byte r‖s‖v, v in 0, 1, 27 or 28)."""
    if len(signature) != 65:
        raise SignatureError("signature", f"must be 65 bytes, got {len(signature)}")
    v = signature[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1):
        raise SignatureError("signature", f"cannot recover a signer: v must be 27 or 28, got {signature[64]}")
    try:
        public = PublicKey.from_signature_and_message(signature[:64] + bytes([v]), digest, hasher=None)
    except Exception as exc:  # libsecp256k1 refuses r or s out of range
        raise SignatureError("signature", f"cannot recover a signer: {exc}") from exc
    return _address_of(public.format(compressed=False)[1:])


@lru_cache(maxsize=65536)
def _address_of(public_key: bytes) -> bytes:
    """The address of a 64-byte public key (cached: a wallet signs many orders)."""
    return keccak(public_key)[-20:]


def check_signed(order: SignableOrder, domain: Eip712Domain, signature: bytes) -> str:
    """Check that the order's signer signed it for `domain`; return the order hash (`0x` hex).
    Raises `SignatureError` naming the field, with the same reasons as `SignedOrder.verify`."""
    digest = order_digest(order, domain)
    signer = recover_address(digest, signature)
    if signer != bytes.fromhex(order.signer[2:]):
        raise SignatureError(
            "signature",
            f"signed by 0x{signer.hex()}, not by {order.signer} (or signed for another chain id, contract or content)",
            order_id=order.order_id,
        )
    return "0x" + digest.hex()


__all__ = ["check_signed", "order_digest", "recover_address"]
