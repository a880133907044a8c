"""Small builders for clearing tests: a round on case33bw and orders with readable defaults."""

from __future__ import annotations

from functools import cache

import pandapower as pp

from flexgrid.grid import GridView, Profiles, build_view, load_net, synthetic_profiles
from flexgrid.trading import (
    Direction,
    FlexOffer,
    FlexRequest,
    P2POrder,
    PricingRule,
    RoundConfig,
    SealMode,
    Side,
)

PROVIDER = "0x" + "11" * 20
OTHER = "0x" + "22" * 20
DSO = "0x" + "33" * 20
EVENING_S = 17 * 3600
FAR_FUTURE_S = 2**40


@cache
def grid(name: str = "case33bw") -> tuple[pp.pandapowerNet, GridView]:
    net = load_net(name)
    return net, build_view(net, name)


def round_config(slots: int = 4, slot_s: int = 3600, rule: PricingRule = PricingRule.DLMP, cap: float = 1000.0,
                 name: str = "case33bw") -> RoundConfig:
    return RoundConfig(round_id=7, grid_id=name, grid_model_hash=grid(name)[1].model_hash(), slot_start_s=EVENING_S,
                       slot_seconds=slot_s, slot_count=slots, gate_closure_s=EVENING_S - 900, pricing_rule=rule,
                       seal_mode=SealMode.OPEN, dispute_window_s=600, price_cap_eur_per_mwh=cap, tolerance_bps=500,
                       penalty_bps=1000, bid_deposit_eur=10.0)


def profiles(rc: RoundConfig, load: float = 1.0, name: str = "case33bw") -> Profiles:
    net, view = grid(name)
    return synthetic_profiles(net, view, slot_start_s=rc.slot_start_s, slot_seconds=rc.slot_seconds,
                              slot_count=rc.slot_count, load_scale=load)


def offer(oid: str, bus: int, price: float, kw: float, slots: tuple[int, ...] = (0,), *,
          direction: Direction = Direction.UP, provider: str = PROVIDER, min_kw: float = 0.0, asset_id: str | None = None,
          **extra: object) -> FlexOffer:
    asset = asset_id or "0x" + oid.encode().hex().ljust(64, "0")
    return FlexOffer(order_id=oid, provider=provider, round_id=7, bus=bus, asset_id=asset,
                     direction=direction, slots=slots, min_kw=(min_kw,) * len(slots), max_kw=(kw,) * len(slots),
                     price_eur_per_mwh=price, nonce=1, expiry_s=FAR_FUTURE_S, **extra)  # type: ignore[arg-type]


def request(oid: str, bus: int, kw: float, cap: float, slots: tuple[int, ...] = (0,),
            direction: Direction = Direction.UP) -> FlexRequest:
    return FlexRequest(order_id=oid, dso=DSO, round_id=7, bus=bus, direction=direction, slots=slots,
                       kw=(kw,) * len(slots), price_cap_eur_per_mwh=cap)


def p2p(oid: str, bus: int, side: Side, kw: float, limit: float, slot: int = 0, trader: str = OTHER) -> P2POrder:
    return P2POrder(order_id=oid, trader=trader, round_id=7, bus=bus, side=side, slot=slot, kw=kw,
                    limit_price_eur_per_mwh=limit, nonce=1, expiry_s=FAR_FUTURE_S)
