"""The indexer's own event decoder gives exactly what eth-abi (and `jsonable`) give, on every log
a market's life emits on a real anvil, and hands anything it does not take to eth-abi."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.exceptions import DecodingError
from web3 import Web3

from flexgrid.chain.artifacts import abi_signature, load_artifact
from flexgrid.chain.indexer import CONTRACTS, _LogDecoder
from tests.chain.test_indexer import _round_with_orders
from tests.conftest import MarketEnv

pytestmark = pytest.mark.chain


def _decoders() -> dict[bytes, tuple[str, _LogDecoder]]:
    out = {}
    for name in CONTRACTS.values():
        for item in load_artifact(name).abi:
            if item.get("type") == "event" and not item.get("anonymous"):
                out[bytes(Web3.keccak(text=abi_signature(item)))] = (str(item["name"]), _LogDecoder(item))
    return out


def test_fast_decoding_equals_eth_abi_on_every_log_of_a_market(market: MarketEnv) -> None:
    _round_with_orders(market, offers=3)
    answer = market.w3.provider.make_request("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}])  # type: ignore[arg-type]
    logs: list[dict[str, Any]] = answer["result"]
    decoders = _decoders()
    seen = set()
    for log in logs:
        found = decoders.get(bytes.fromhex(log["topics"][0][2:])) if log["topics"] else None
        if found is None:
            continue
        name, decoder = found
        assert decoder._fast is not None, name  # every FlexGrid event takes the fast path
        fast = decoder._decode_fast(log)
        assert fast == decoder._decode_abi(log), name
        assert list(fast) == list(decoder._decode_abi(log))  # same argument order
        seen.add(name)
    assert {"FlexOfferSubmitted", "FlexRequestSubmitted", "RoundCreated"} <= seen
    assert len(seen) >= 6


def test_data_the_fast_decoder_refuses_goes_to_eth_abi(market: MarketEnv) -> None:
    _round_with_orders(market, offers=1)
    answer = market.w3.provider.make_request("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}])  # type: ignore[arg-type]
    decoders = _decoders()
    log = next(x for x in answer["result"] if x["topics"]
               and decoders.get(bytes.fromhex(x["topics"][0][2:]), ("",))[0] == "FlexOfferSubmitted")
    decoder = decoders[bytes.fromhex(log["topics"][0][2:])][1]
    data = bytearray(bytes.fromhex(log["data"][2:]))
    # the offer's `bus` (uint32, third word of the struct) with a non-zero high byte: not a uint32
    struct_at = int.from_bytes(data[:32], "big")
    data[struct_at + 64] = 1
    bad = {**log, "data": "0x" + data.hex()}
    with pytest.raises(DecodingError):
        decoder.decode(bad)
