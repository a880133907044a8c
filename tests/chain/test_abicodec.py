"""flexgrid.chain.abicodec's one reading of an ABI type (what both the relayer's encoder and the
indexer's decoders build from) agrees with eth-abi's on every parameter of the shipped contracts."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_abi.grammar import parse as eth_abi_parse

from flexgrid.chain.abicodec import Unsupported, decoder, encoder, parse
from flexgrid.chain.artifacts import ARTIFACTS_DIR, abi_type, load_artifact


def _params(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        for p in [*item.get("inputs", []), *item.get("outputs", [])]:
            out.append(p)
            stack = list(p.get("components", []))
            while stack:
                c = stack.pop()
                out.append(c)
                stack += c.get("components", [])
    return out


def test_dynamic_and_head_size_agree_with_eth_abi_on_every_contract_parameter() -> None:
    params = [p for path in sorted(ARTIFACTS_DIR.glob("*.json")) for p in _params(load_artifact(path.stem).abi)]
    kinds = {str(p["type"]) for p in params}
    assert {"tuple", "tuple[]", "bytes", "string", "bytes32[]", "uint16[]"} <= kinds  # the cases that matter
    for p in params:
        ours, theirs = parse(p), eth_abi_parse(abi_type(p))
        assert ours.dynamic == theirs.is_dynamic, abi_type(p)
        if not ours.dynamic:  # a static value's head is its whole encoding
            assert ours.head_size == len(abi_encode([abi_type(p)], [_zero(p)])), abi_type(p)


def _zero(p: dict[str, Any]) -> Any:
    kind = str(p["type"])
    if kind == "tuple":
        return tuple(_zero(c) for c in p["components"])
    if kind == "address":
        return "0x" + "00" * 20
    if kind == "bool":
        return False
    if kind.startswith("bytes"):
        return b"\x00" * int(kind[5:])
    return 0


def test_types_neither_codec_takes_are_refused_when_built() -> None:
    for kind in ("uint256[2]", "fixed128x18", "uint0", "bytes33"):
        with pytest.raises(Unsupported):
            parse({"type": kind})
    with pytest.raises(Unsupported):  # arrays of dynamic values: the decoder leaves them to eth-abi
        decoder(parse({"type": "string[]"}))
    assert encoder(parse({"type": "string[]"}))(["a"]) == abi_encode(["string[]"], [["a"]])[32:]
