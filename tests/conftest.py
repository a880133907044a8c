"""Shared fixtures: a real anvil per test process, the FlexGrid contracts deployed on it.

- `session_flexgrid_home` (session, autouse): FLEXGRID_HOME in a temporary folder.
- `anvil` (session): an `AnvilNode` on a free loopback port, one per pytest-xdist worker.
- `w3` (session): a web3 client to it; `dev_accounts` (session): its ten funded accounts.
- `deployment` (session): FlexToken, FlexRegistry and FlexMarket deployed from the shipped
  artifacts.
- `market_env` (session): the deployment with roles set up (operator, DSO and metering agent of
  the grid `MarketEnv.grid_id`, one oracle, six approved providers holding 1,000,000 fEUR each
  and having approved the market).
- `market` (function): `market_env` with the chain snapshotted before the test and reverted
  after it, so each test starts from the same state (including chain time).

Tests that use the chain are marked `chain`; they share the worker's node, so they belong in
one xdist group per module (`pytest.mark.xdist_group`) only if they need ordering — none do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from flexgrid.chain.deploy import Deployment, deploy
from flexgrid.chain.market import MarketClient
from flexgrid.chain.node import AnvilNode, chain_time_s, revert_to, snapshot, time_travel
from flexgrid.trading import PricingRule, RoundConfig, SealMode


@pytest.fixture(scope="session", autouse=True)
def session_flexgrid_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """FLEXGRID_HOME in a temporary folder for the session (per xdist worker): no test writes to
    ~/.flexgrid (e.g. `flexgrid audit verify`'s default event index, $FLEXGRID_HOME/index)."""
    home = tmp_path_factory.mktemp("flexgrid-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEXGRID_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilNode]:
    with AnvilNode() as node:
        yield node


@pytest.fixture(scope="session")
def w3(anvil: AnvilNode) -> Web3:
    return anvil.web3()


@pytest.fixture(scope="session")
def dev_accounts(anvil: AnvilNode) -> list[LocalAccount]:
    return anvil.dev_accounts()


@pytest.fixture(scope="session")
def deployment(w3: Web3, dev_accounts: list[LocalAccount]) -> Deployment:
    return deploy(w3, dev_accounts[0])


@dataclass
class MarketEnv:
    """A deployed, set-up market and the accounts that play each role."""

    w3: Web3
    deployment: Deployment
    operator: LocalAccount
    dso: LocalAccount
    metering: LocalAccount
    oracle: LocalAccount
    providers: list[LocalAccount]
    grid_id: str = "test-grid"
    grid_model_hash: str = "0x" + "33" * 32
    _clients: dict[str, MarketClient] = field(default_factory=dict, repr=False)

    def client(self, account: LocalAccount | None = None) -> MarketClient:
        """A `MarketClient` acting as `account` (default: the operator)."""
        account = account or self.operator
        if account.address not in self._clients:
            self._clients[account.address] = MarketClient(self.w3, self.deployment, account)
        return self._clients[account.address]

    def now_s(self) -> int:
        return chain_time_s(self.w3)

    def time_travel(self, to_s: int) -> None:
        time_travel(self.w3, to_s)

    def round_config(self, **over: Any) -> RoundConfig:
        """A round starting an hour from the chain's time: 4 slots of 15 minutes, OPEN, uniform."""
        now = self.now_s()
        base: dict[str, Any] = dict(
            round_id=0,
            grid_id=self.grid_id,
            grid_model_hash=self.grid_model_hash,
            slot_start_s=now + 3600,
            slot_seconds=900,
            slot_count=4,
            gate_closure_s=now + 1800,
            pricing_rule=PricingRule.UNIFORM,
            seal_mode=SealMode.OPEN,
            dispute_window_s=600,
            price_cap_eur_per_mwh=500.0,
            tolerance_bps=500,
            penalty_bps=2000,
            bid_deposit_eur=0.0,
            clearing_s=1800,
            settlement_s=3600,
            dispute_bond_eur=5.0,
        )
        base.update(over)
        return RoundConfig(**base)


@pytest.fixture(scope="session")
def market_env(w3: Web3, deployment: Deployment, dev_accounts: list[LocalAccount]) -> MarketEnv:
    env = MarketEnv(
        w3=w3,
        deployment=deployment,
        operator=dev_accounts[0],
        dso=dev_accounts[1],
        metering=dev_accounts[2],
        oracle=dev_accounts[3],
        providers=dev_accounts[4:10],
    )
    op = env.client()
    op.set_dso(env.grid_id, env.dso.address)
    env.client(env.dso).set_metering_agent(env.grid_id, env.metering.address)
    op.grant_oracle(env.oracle.address)
    for account in [env.dso, env.oracle, *env.providers]:
        op.mint(account.address, 1_000_000)
        env.client(account).approve_market()
    for provider in env.providers:
        op.approve_provider(provider.address)
    return env


@pytest.fixture
def market(market_env: MarketEnv) -> Iterator[MarketEnv]:
    snap = snapshot(market_env.w3)
    try:
        yield market_env
    finally:
        revert_to(market_env.w3, snap)
