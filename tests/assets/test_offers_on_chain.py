"""Offers from the meta-service, signed by each prosumer's wallet, are accepted by the real FlexMarket."""

from __future__ import annotations

import pytest

from flexgrid.assets import CurtailablePVAsset, propose_offers, sample_assets
from flexgrid.trading import Direction, FlexOffer
from tests.conftest import MarketEnv

pytestmark = pytest.mark.chain


def test_meta_service_offers_of_every_kind_are_accepted_on_chain_in_one_batch(market: MarketEnv) -> None:
    op = market.client()
    next_day_10h = (market.now_s() // 86_400 + 1) * 86_400 + 10 * 3600  # 10:00-14:00 UTC: the PV produces
    cfg = op.create_round(market.round_config(slot_count=16, slot_start_s=next_day_10h))
    assets = sample_assets(cfg, 5, seed=2)  # one of each kind
    signed = []
    offers: list[FlexOffer] = []
    for asset, provider in zip(assets, market.providers, strict=False):
        key = cfg.round_id << 64
        directions = (Direction.DOWN,) if isinstance(asset, CurtailablePVAsset) else (Direction.UP, Direction.DOWN)
        for d in directions:
            new = propose_offers(asset, cfg, provider=provider.address, bus=3, nonce_start=key + len(
                [o for o in offers if o.provider == provider.address]), expiry_s=cfg.gate_closure_s, direction=d,
                slots=range(4, 12))
            offers += new
            signed += [o.sign(provider, market.deployment.domain) for o in new]
    assert len({o.provider for o in offers}) >= 4, "too few assets had anything to offer"
    result = op.submit_offers(signed)
    hashes = ["0x" + bytes(e["orderHash"]).hex() for e in result.all("FlexOfferSubmitted")]
    assert hashes == [s.order_hash for s in signed]
    assert op.round_status(cfg.round_id)["orderCount"] == len(signed)
    for provider in market.providers[:5]:
        used = sum(o.provider == provider.address for o in offers)  # keyed nonces: key << 64 | next sequence
        assert op.nonce(provider.address, cfg.round_id) == (cfg.round_id << 64) + used
