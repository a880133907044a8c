"""The ABI codecs built once from an ABI parameter: the relayer's calldata encoder
(`flexgrid.chain.transact.CallEncoder`) and the indexer's event decoders
(`flexgrid.chain.indexer`).

eth-abi builds its coders per call and, for the indexer, returns tuples that still have to be turned
into the stored JSON form: ~0.2 ms per offer to encode a batch's calldata, ~0.35 ms per offer event
to decode (docs/api-performance.md). These codecs are built once per function or event and are
checked byte for byte against web3 / eth-abi in tests/chain/test_event_decoding.py.

One parse (`parse`) decides what a type is, whether it is dynamic and how many head bytes it takes;
the encoder and the decoder only switch on its result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from web3 import Web3

Encode = Callable[[Any], bytes]  # value -> its ABI encoding (the tail of a dynamic value)
Decode = Callable[[bytes, int], Any]  # (data, offset of the value's head) -> JSON-able value


class Unsupported(ValueError):
    """A type these codecs do not take, or data the decoder does not take (eth-abi decides)."""


@dataclass(frozen=True)
class AbiType:
    """An ABI type as both codecs see it.

    `base` is one of uint, int, address, bool, fixed-bytes (bytesN), bytes, string, array (`T[]`),
    tuple. `size` is the bits of an (u)int or the length of a bytesN. `dynamic` is the ABI spec's:
    bytes, string, `T[]`, and a tuple with a dynamic component. `head_size` is what the value takes
    in its parent's head: 32 (a word, or the offset of a dynamic value), or a static tuple's
    components' heads.
    """

    kind: str
    base: str
    size: int = 0
    element: AbiType | None = None
    components: tuple[tuple[str, AbiType], ...] = ()
    dynamic: bool = False
    head_size: int = 32


_WORD_BASES = ("uint", "int", "address", "bool", "fixed-bytes")


def parse(param: dict[str, Any]) -> AbiType:
    """The `AbiType` of an ABI parameter (its `type`, and `components` of a tuple). Raises
    `Unsupported` for fixed-size arrays (no FlexGrid function or event has one) and unknown types."""
    kind = str(param["type"])
    if kind.endswith("[]"):
        element = parse({**param, "type": kind[:-2]})
        return AbiType(kind, "array", element=element, dynamic=True)
    if kind.endswith("]"):
        raise Unsupported(f"fixed-size array {kind} is not supported")
    if kind == "tuple":
        components = tuple((str(c["name"]), parse(c)) for c in param["components"])
        dynamic = any(t.dynamic for _, t in components)
        head = 32 if dynamic else sum(t.head_size for _, t in components)
        return AbiType(kind, "tuple", components=components, dynamic=dynamic, head_size=head)
    if kind in ("bytes", "string"):
        return AbiType(kind, kind, dynamic=True)
    if kind in ("address", "bool"):
        return AbiType(kind, kind)
    for prefix, base, default, limit in (("uint", "uint", 256, 256), ("int", "int", 256, 256),
                                         ("bytes", "fixed-bytes", 0, 32)):
        if kind.startswith(prefix):
            digits = kind[len(prefix):]
            size = int(digits) if digits.isdigit() else default if not digits else 0
            if not 0 < size <= limit:
                break
            return AbiType(kind, base, size=size)
    raise Unsupported(f"ABI type {kind} is not supported")


def topic_holds_hash(param: dict[str, Any]) -> bool:
    """Whether an indexed event parameter's topic is the keccak of its value (reference types:
    arrays, bytes, string, tuples) rather than the value's word."""
    kind = str(param["type"])
    return kind.endswith("]") or kind in ("bytes", "string") or kind.startswith("tuple")


# -- encoding -------------------------------------------------------------------------------------


def encoder(t: AbiType) -> Encode:
    """An encoder of `t`'s values (structs as dicts by component name, bytes as bytes or `0x` hex),
    range-checked like eth-abi: a value out of range raises ValueError naming the type."""
    if t.base == "array":
        assert t.element is not None
        inner, inner_dynamic = encoder(t.element), t.element.dynamic

        def array(values: Any) -> bytes:
            items = [inner(v) for v in values]
            return len(items).to_bytes(32, "big") + heads_and_tails(items, [inner_dynamic] * len(items))

        return array
    if t.base == "tuple":
        parts = [(name, encoder(c)) for name, c in t.components]
        flags = [c.dynamic for _, c in t.components]

        def struct(value: Any) -> bytes:
            return heads_and_tails([encode(value[name]) for name, encode in parts], flags)

        return struct
    if t.base in ("bytes", "string"):
        text = t.base == "string"

        def blob(value: Any) -> bytes:
            raw = value.encode() if isinstance(value, str) and text else bytes(value)
            return len(raw).to_bytes(32, "big") + raw + b"\x00" * (-len(raw) % 32)

        return blob
    if t.base == "uint":
        bits = t.size
        return lambda v: _uint_word(bits, v)
    if t.base == "int":
        bits = t.size

        def sint(value: Any) -> bytes:
            if isinstance(value, bool) or not isinstance(value, int) or not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
                raise ValueError(f"{value!r} is not an int{bits}")
            return value.to_bytes(32, "big", signed=True)

        return sint
    if t.base == "address":

        def address(value: Any) -> bytes:
            raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
            if len(raw) != 20:
                raise ValueError(f"{value!r} is not an address")
            return b"\x00" * 12 + raw

        return address
    if t.base == "bool":
        return lambda v: _uint_word(1, int(v) if isinstance(v, bool) else v)
    assert t.base == "fixed-bytes", t
    size = t.size

    def fixed(value: Any) -> bytes:
        raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
        if len(raw) != size:
            raise ValueError(f"{value!r} is not {size} bytes")
        return raw + b"\x00" * (32 - size)

    return fixed


def _uint_word(bits: int, value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{value!r} is not a uint{bits}")
    return value.to_bytes(32, "big")


def heads_and_tails(encoded: list[bytes], dynamic: list[bool]) -> bytes:
    """The ABI encoding of a sequence of encoded values: static ones in the head, dynamic ones in
    the tail with their offset in the head."""
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


# -- decoding -------------------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def checksum(address: str) -> str:
    """EIP-55 checksummed address (cached: each costs two keccaks, and few addresses recur)."""
    return str(Web3.to_checksum_address(address))


def decoder(t: AbiType) -> Decode:
    """A decoder of `t` into the stored JSON form (structs as dicts by component name, bytes as `0x`
    hex, addresses checksummed); the value's head is at the given offset and takes `t.head_size`
    bytes. Raises `Unsupported` (when built, or on data) for what eth-abi should decide instead:
    arrays of dynamic values, a value out of its type's range, data too short."""
    if t.base == "array":
        assert t.element is not None
        if t.element.dynamic:
            raise Unsupported(t.kind)
        inner, stride, kind = decoder(t.element), t.element.head_size, t.kind

        def array(data: bytes, at: int) -> list[Any]:
            start = int.from_bytes(data[at: at + 32], "big")
            n = int.from_bytes(data[start: start + 32], "big")
            if start + 32 + stride * n > len(data):
                raise Unsupported(kind)
            return [inner(data, start + 32 + stride * i) for i in range(n)]

        return array
    if t.base == "tuple":
        heads: list[tuple[str, Decode, int]] = []
        offset = 0
        for name, c in t.components:
            heads.append((name, decoder(c), offset))
            offset += c.head_size
        if t.dynamic:

            def dynamic_struct(data: bytes, at: int) -> dict[str, Any]:
                view = data[int.from_bytes(data[at: at + 32], "big"):]  # offsets inside are relative to it
                return {name: decode(view, off) for name, decode, off in heads}

            return dynamic_struct

        def static_struct(data: bytes, at: int) -> dict[str, Any]:
            return {name: decode(data, at + off) for name, decode, off in heads}

        return static_struct
    if t.base in ("bytes", "string"):
        text, kind = t.base == "string", t.kind

        def blob(data: bytes, at: int) -> Any:
            start = int.from_bytes(data[at: at + 32], "big")
            n = int.from_bytes(data[start: start + 32], "big")
            raw = data[start + 32: start + 32 + n]
            if len(raw) != n:
                raise Unsupported(kind)
            return raw.decode("utf-8") if text else "0x" + raw.hex()

        return blob
    return word_decoder(t)


def word_decoder(t: AbiType) -> Decode:
    """Decoder of a one-word static type (uint, int, address, bool, bytesN): also what an indexed
    value-type parameter's topic holds."""
    kind, bits = t.kind, t.size
    if t.base == "uint":

        def uint(data: bytes, at: int) -> int:
            value = int.from_bytes(data[at: at + 32], "big")
            if value >> bits or at + 32 > len(data):
                raise Unsupported(kind)
            return value

        return uint
    if t.base == "int":

        def sint(data: bytes, at: int) -> int:
            value = int.from_bytes(data[at: at + 32], "big", signed=True)
            if not -(1 << (bits - 1)) <= value < 1 << (bits - 1) or at + 32 > len(data):
                raise Unsupported(kind)
            return value

        return sint
    if t.base == "address":

        def address(data: bytes, at: int) -> str:
            word = data[at: at + 32]
            if len(word) != 32 or any(word[:12]):
                raise Unsupported(kind)
            return checksum("0x" + word[12:].hex())

        return address
    if t.base == "bool":

        def boolean(data: bytes, at: int) -> bool:
            value = int.from_bytes(data[at: at + 32], "big")
            if value > 1 or at + 32 > len(data):
                raise Unsupported(kind)
            return bool(value)

        return boolean
    if t.base == "fixed-bytes" and t.size == 32:  # the common case (hashes, ids): no padding to check

        def bytes32(data: bytes, at: int) -> str:
            word = data[at: at + 32]
            if len(word) != 32:
                raise Unsupported(kind)
            return "0x" + word.hex()

        return bytes32
    if t.base == "fixed-bytes":
        size = t.size

        def fixed(data: bytes, at: int) -> str:
            word = data[at: at + 32]
            if len(word) != 32 or any(word[size:]):
                raise Unsupported(kind)
            return "0x" + word[:size].hex()

        return fixed
    raise Unsupported(f"{kind} is not a one-word type")


__all__ = [
    "AbiType",
    "Decode",
    "Encode",
    "Unsupported",
    "checksum",
    "decoder",
    "encoder",
    "heads_and_tails",
    "parse",
    "topic_holds_hash",
    "word_decoder",
]
