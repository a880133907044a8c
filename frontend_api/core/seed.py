"""A demo market for `flexgrid serve` without an RPC URL: contracts deployed on the managed anvil,
roles registered, one OPEN round on `case33bw` with a DSO FlexRequest in it.

Accounts (anvil's default mnemonic): 0 operator, 1 DSO of case33bw, 2 metering agent, 3 oracle,
4 relayer, 5-9 approved providers holding 10,000 fEUR each."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3

from flexgrid.chain.deploy import Deployment, deploy
from flexgrid.chain.market import MarketClient
from flexgrid.chain.node import chain_time_s
from flexgrid.grid import build_view, grid_model_hash, load_net
from flexgrid.trading import Direction, FlexRequest, PricingRule, RoundConfig, SealMode

DEMO_GRID = "case33bw"


@dataclass(frozen=True)
class DemoMarket:
    deployment: Deployment
    round_id: int
    operator: LocalAccount
    dso: LocalAccount
    metering: LocalAccount
    oracle: LocalAccount
    relayer: LocalAccount
    providers: tuple[LocalAccount, ...]


def demo_round_config(w3: Web3, grid_hash: str, *, gate_in_s: int = 6 * 3600, slot_count: int = 8,
                      seal_mode: SealMode = SealMode.OPEN) -> RoundConfig:
    now = chain_time_s(w3)
    start = (now // 900 + 1) * 900 + gate_in_s
    return RoundConfig(
        round_id=0, grid_id=DEMO_GRID, grid_model_hash=grid_hash, slot_start_s=start, slot_seconds=900,
        slot_count=slot_count, gate_closure_s=now + gate_in_s, pricing_rule=PricingRule.PAY_AS_BID,
        seal_mode=seal_mode, dispute_window_s=3600, price_cap_eur_per_mwh=400.0, tolerance_bps=500,
        penalty_bps=2000, bid_deposit_eur=0.0 if seal_mode == SealMode.OPEN else 1.0,
        reveal_s=0 if seal_mode == SealMode.OPEN else 1800, clearing_s=3600, settlement_s=86_400,
        dispute_bond_eur=50.0,
    )


def seed_demo_market(w3: Web3, accounts: list[LocalAccount]) -> DemoMarket:
    if len(accounts) < 10:
        raise ValueError(f"the demo market needs 10 funded accounts, the chain has {len(accounts)}")
    operator, dso, metering, oracle, relayer, *providers = accounts[:10]
    deployment = deploy(w3, operator)
    op = MarketClient(w3, deployment, operator)
    op.set_dso(DEMO_GRID, dso.address)
    op.grant_oracle(oracle.address)
    MarketClient(w3, deployment, dso).set_metering_agent(DEMO_GRID, metering.address)
    for account in (dso, *providers):
        op.mint(account.address, 10_000)
        MarketClient(w3, deployment, account).approve_market()
    for provider in providers:
        op.approve_provider(provider.address)
    grid_hash = grid_model_hash(build_view(load_net(DEMO_GRID), DEMO_GRID))
    config = op.create_round(demo_round_config(w3, grid_hash))
    MarketClient(w3, deployment, dso).submit_request(FlexRequest(
        round_id=config.round_id, bus=14, direction=Direction.UP, slots=tuple(range(config.slot_count)),
        kw=(200.0,) * config.slot_count, price_cap_eur_per_mwh=250.0))
    return DemoMarket(deployment, config.round_id, operator, dso, metering, oracle, relayer, tuple(providers))
