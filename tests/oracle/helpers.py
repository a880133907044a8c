"""Rounds on case33bw for the oracle tests: a DSO request at the weak end of the main feeder and
UP offers from providers below it, on the `market` fixture's chain."""

from __future__ import annotations

from dataclasses import dataclass, field

from web3 import Web3

from flexgrid.chain.market import commitment
from flexgrid.grid import build_view, load_net
from flexgrid.oracle.service import RoundOutcome
from flexgrid.trading import Direction, FlexOffer, FlexRequest, PricingRule, RoundConfig, SealMode
from flexgrid.trading.eip712 import SignedOrder
from tests.conftest import MarketEnv

GRID = "case33bw"
SLOTS = 4


@dataclass
class OracleRound:
    config: RoundConfig
    request: FlexRequest | None
    offers: list[SignedOrder] = field(default_factory=list)

    @property
    def round_id(self) -> int:
        return self.config.round_id


def grid_hash() -> str:
    return build_view(load_net(GRID), GRID).model_hash()


def open_round(
    env: MarketEnv,
    *,
    quorum: int = 1,
    offer_buses: tuple[int, ...] = (17, 16, 15),
    grid_model_hash: str | None = None,
    request_kw: float = 150.0,
    sealed: bool = False,
    with_request: bool = True,
    offer_price_eur_per_mwh: float = 100.0,
    pricing_rule: PricingRule = PricingRule.PAY_AS_BID,
) -> OracleRound:
    """Open a round on case33bw with a request at bus 14 and one UP offer per bus in `offer_buses`
    (from providers 0, 1, …), relayed in one batch; returns before gate closure."""
    op = env.client()
    if op.dso_of(GRID) != env.dso.address:
        op.set_dso(GRID, env.dso.address)
    config = op.create_round(
        env.round_config(
            grid_id=GRID,
            grid_model_hash=grid_model_hash or grid_hash(),
            slot_count=SLOTS,
            pricing_rule=pricing_rule,
            seal_mode=SealMode.COMMIT_REVEAL if sealed else SealMode.OPEN,
            reveal_s=600 if sealed else 0,
            bid_deposit_eur=10.0 if sealed else 0.0,
            oracle_quorum=quorum,
        )
    )
    request = None if not with_request else env.client(env.dso).submit_request(
        FlexRequest(
            round_id=config.round_id,
            bus=14,
            direction=Direction.UP,
            slots=tuple(range(SLOTS)),
            kw=(request_kw,) * SLOTS,
            price_cap_eur_per_mwh=300.0,
        )
    )
    signed = []
    for i, bus in enumerate(offer_buses):
        provider = env.providers[i]
        offer = FlexOffer(
            provider=provider.address,
            round_id=config.round_id,
            bus=bus,
            asset_id="0x" + Web3.keccak(text=f"asset-{i}").hex().removeprefix("0x"),
            direction=Direction.UP,
            slots=tuple(range(SLOTS)),
            min_kw=(0.0,) * SLOTS,
            max_kw=(80.0 + 10 * i,) * SLOTS,
            price_eur_per_mwh=offer_price_eur_per_mwh + 20 * i,
            nonce=env.client().nonce(provider.address, config.round_id),
            expiry_s=config.gate_closure_s + (10_000 if sealed else 0),
        )
        signed.append(offer.sign(provider, env.deployment.domain))
        if sealed:
            env.client(provider).commit_offer(config.round_id, commitment(signed[-1].order_hash, provider.address, _salt(i)))
    if signed and not sealed:
        env.client(env.providers[-1]).submit_offers(signed)
    return OracleRound(config=config, request=request, offers=signed)


def _salt(i: int) -> str:
    return "0x" + f"{i + 1:064x}"


def reveal(env: MarketEnv, r: OracleRound) -> None:
    """Gate closure, then one relayer reveals every sealed offer of `r` in one transaction."""
    env.time_travel(r.config.gate_closure_s)
    env.client(env.providers[-1]).reveal_offers(r.offers, [_salt(i) for i in range(len(r.offers))])


def close_round(env: MarketEnv, r: OracleRound) -> None:
    """Move the chain past gate closure (and the reveal window)."""
    env.time_travel(r.config.gate_closure_s + r.config.reveal_s + 1)


def mine(outcomes: list[RoundOutcome], round_id: int) -> list[RoundOutcome]:
    """The outcomes of one round (other test modules may leave rounds on the worker's chain)."""
    return [o for o in outcomes if o.round_id == round_id]
