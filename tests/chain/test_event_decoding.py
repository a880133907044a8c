"""The chain codecs built from the ABI: the indexer's event decoder gives exactly what eth-abi (and
`jsonable`) give on every log a market's life emits on a real anvil and hands anything it does not
take to eth-abi; the relayer's batch calldata is byte for byte web3's."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.exceptions import DecodingError
from web3 import Web3

from flexgrid.chain.artifacts import abi_signature, load_artifact
from flexgrid.chain.indexer import CONTRACTS, _LogDecoder
from flexgrid.chain.market import offer_struct
from flexgrid.chain.transact import CallEncoder
from flexgrid.trading import Direction, FlexOffer
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


def _offer(i: int, slots: int) -> FlexOffer:
    return FlexOffer(provider="0x" + f"{i + 1:040x}", round_id=3, bus=4 + i, asset_id="0x" + f"{i:064x}",
                     direction=Direction.UP if i % 2 else Direction.DOWN, slots=tuple(range(slots)),
                     min_kw=(0.0,) * slots, max_kw=tuple(1.5 + k for k in range(slots)),
                     price_eur_per_mwh=99.125 + i, exclusive_group="0x" + "00" * 31 + "01", min_activation=0.2,
                     nonce=(3 << 64) | i, expiry_s=2_000_000_000)


def test_batch_calldata_equals_web3s_encoding() -> None:
    market = Web3().eth.contract(abi=load_artifact("FlexMarket").abi)
    item = next(i for i in load_artifact("FlexMarket").abi if i.get("name") == "submitOffers")
    offers = [_offer(i, 1 + i % 4) for i in range(7)]
    signatures = [bytes([i]) * 65 for i in range(7)]
    ours = CallEncoder(item).encode([[offer_struct(o) for o in offers], signatures])
    assert "0x" + ours.hex() == market.encode_abi("submitOffers", [[offer_struct(o) for o in offers], signatures])
    with pytest.raises(ValueError, match="uint32"):  # out of range: refused, not cut
        CallEncoder(item).encode([[{**offer_struct(offers[0]), "bus": 1 << 32}], signatures[:1]])
