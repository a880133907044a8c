"""`flexgrid demo`: one market round end to end on a real chain and a real grid.

The scenario, on the IEEE 33-bus feeder (`case33bw`) for the evening peak of the next day:

1. the operator deploys FlexToken, FlexRegistry and FlexMarket, approves four providers and an
   oracle, and the DSO of the feeder names its metering agent;
2. the operator opens a round (8 slots of 15 minutes), the DSO posts a FlexRequest at the end of
   the main feeder (its budget goes into escrow);
3. four prosumers sign FlexOffers with their wallets (EIP-712) from their assets — a battery, an
   EV fleet, heat pumps with a minimum activation, a PV plant — and one relayer sends them in one
   transaction;
4. at gate closure the oracle rebuilds the orders from the chain's events, checks the order
   accumulator, clears the round with the grid-aware engine (SOCP branch-flow OPF, DLMPs, AC
   validation, optimality certificate) and commits the Merkle root, the input hash and the
   certificate hash;
5. the DSO approves; after delivery the metering agent commits measured delivery (one provider
   under-delivers); every leaf is settled by Merkle proof, the round is closed, everyone withdraws;
   escrow conservation is checked.

The full market day with the asset meta-service, the oracle service and the auditor is the
oracle issue's; this module is the foundation's scenario and uses only landed parts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from flexgrid.chain.deploy import Deployment, deploy
from flexgrid.chain.market import MarketClient
from flexgrid.chain.node import ChainConnection, chain_time_s, time_travel
from flexgrid.grid import build_view, grid_model_hash, load_net, synthetic_profiles
from flexgrid.market import clear_market
from flexgrid.trading import (
    Direction,
    FlexOffer,
    FlexRequest,
    MeterReading,
    PricingRule,
    RoundConfig,
    SealMode,
)
from flexgrid.trading.canonical import input_hash
from flexgrid.trading.merkle import MeteringTree, TradeTree
from flexgrid.trading.models import ClearingResult

GRID_ID = "case33bw"
SLOT_SECONDS = 900
SLOT_COUNT = 8
REQUEST_BUS = 14  # its subtree (14-17) is the weak end of the main feeder
ZERO32 = "0x" + "00" * 32

Log = Callable[[str], None]


@dataclass(frozen=True)
class ProviderSpec:
    """A prosumer in the demo and the asset its offer comes from."""

    name: str
    asset: str
    bus: int
    max_kw: float
    price_eur_per_mwh: float
    min_activation: float = 0.0
    delivery_factor: float = 1.0  # what it really delivers, as a fraction of what was accepted


PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec("Ada (home battery)", "battery-17", 17, 120.0, 110.0),
    ProviderSpec("Ben (EV fleet)", "ev-fleet-16", 16, 90.0, 95.0, delivery_factor=0.5),
    ProviderSpec("Cleo (heat pumps)", "heat-pumps-15", 15, 80.0, 140.0, min_activation=0.5),
    ProviderSpec("Dev (PV plant)", "pv-6", 6, 150.0, 180.0),
)


@dataclass
class DemoReport:
    """What happened, for printing and for the tests."""

    deployment: Deployment
    round_id: int = 0
    request_kw: float = 0.0
    offers: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    trades: int = 0
    merkle_root: str = ""
    input_hash: str = ""
    certificate_hash: str = ""
    objective_eur: float = 0.0
    ac_max_voltage_error_pu: float | None = None
    violations_before: int = 0
    violations_after: int = 0
    settlement: list[dict[str, Any]] = field(default_factory=list)
    escrowed_micro: int = 0
    paid_out_micro: int = 0
    returned_micro: int = 0
    market_balance_after_micro: int = 0
    gas: dict[str, int] = field(default_factory=dict)


def _asset_id(name: str) -> str:
    return "0x" + Web3.keccak(text=name).hex().removeprefix("0x")


def _next_evening_s(now_s: int) -> int:
    """17:00 UTC of the day after `now_s`."""
    day = 86_400
    return (now_s // day + 1) * day + 17 * 3600


def run_demo(conn: ChainConnection, *, out_dir: Path, log: Log = print) -> DemoReport:
    """Run the scenario on `conn` (a managed anvil or any dev chain with funded accounts)."""
    accounts: list[LocalAccount] = conn.dev_accounts()
    if len(accounts) < 5 + len(PROVIDERS):
        raise ValueError(f"the demo needs {5 + len(PROVIDERS)} funded accounts, the chain has {len(accounts)}")
    operator, dso, metering, oracle, relayer = accounts[:5]
    providers = accounts[5 : 5 + len(PROVIDERS)]
    w3 = conn.w3

    log("[bold]1. Deploy and register[/]")
    deployment = deploy(w3, operator)
    report = DemoReport(deployment=deployment)
    out_dir.mkdir(parents=True, exist_ok=True)
    deployment.save(out_dir / "deployment.json")
    op = MarketClient(w3, deployment, operator)
    op.set_dso(GRID_ID, dso.address)
    op.grant_oracle(oracle.address)
    MarketClient(w3, deployment, dso).set_metering_agent(GRID_ID, metering.address)
    for account in (dso, *providers):
        op.mint(account.address, 10_000)
        MarketClient(w3, deployment, account).approve_market()
    for provider in providers:
        op.approve_provider(provider.address)
    log(f"   token {deployment.token}, registry {deployment.registry}, market {deployment.market}")
    log(f"   DSO {dso.address}, oracle {oracle.address}, {len(providers)} approved providers")

    log("[bold]2. Open a round, the DSO asks for flexibility[/]")
    net = load_net(GRID_ID)
    view = build_view(net, GRID_ID)
    now = chain_time_s(w3)
    slot_start = _next_evening_s(now)
    config = op.create_round(
        RoundConfig(
            round_id=0,
            grid_id=GRID_ID,
            grid_model_hash=grid_model_hash(view),
            slot_start_s=slot_start,
            slot_seconds=SLOT_SECONDS,
            slot_count=SLOT_COUNT,
            gate_closure_s=now + 3600,
            pricing_rule=PricingRule.PAY_AS_BID,
            seal_mode=SealMode.OPEN,
            dispute_window_s=3600,
            price_cap_eur_per_mwh=400.0,
            tolerance_bps=500,
            penalty_bps=2000,
            bid_deposit_eur=0.0,
            clearing_s=3600,
            settlement_s=86_400,
            dispute_bond_eur=50.0,
        )
    )
    report.round_id = config.round_id
    dso_client = MarketClient(w3, deployment, dso)
    request = dso_client.submit_request(
        FlexRequest(
            round_id=config.round_id,
            bus=REQUEST_BUS,
            direction=Direction.UP,
            slots=tuple(range(SLOT_COUNT)),
            kw=(200.0,) * SLOT_COUNT,
            price_cap_eur_per_mwh=250.0,
        )
    )
    report.request_kw = 200.0
    report.escrowed_micro = op.escrow_of_micro(config.round_id, dso.address)[0]
    log(f"   round {config.round_id}: {SLOT_COUNT} x 15 min from slot start {slot_start}, pay-as-bid")
    log(f"   FlexRequest at bus {REQUEST_BUS}: 200 kW up in every slot, cap 250 EUR/MWh, "
        f"{report.escrowed_micro / 1e6:.2f} fEUR escrowed")

    log("[bold]3. Prosumers sign offers, one relayer sends them in one transaction[/]")
    signed = []
    expiry = config.gate_closure_s
    for spec, account in zip(PROVIDERS, providers, strict=True):
        offer = FlexOffer(
            provider=account.address,
            round_id=config.round_id,
            bus=spec.bus,
            asset_id=_asset_id(spec.asset),
            direction=Direction.UP,
            slots=tuple(range(SLOT_COUNT)),
            min_kw=(0.0,) * SLOT_COUNT,
            max_kw=(spec.max_kw,) * SLOT_COUNT,
            price_eur_per_mwh=spec.price_eur_per_mwh,
            min_activation=spec.min_activation,
            nonce=config.round_id << 64,
            expiry_s=expiry,
        )
        signed.append(offer.sign(account, deployment.domain))
        report.offers.append(
            {"provider": spec.name, "bus": spec.bus, "max_kw": spec.max_kw,
             "price_eur_per_mwh": spec.price_eur_per_mwh, "min_activation": spec.min_activation}
        )
    batch = MarketClient(w3, deployment, relayer).submit_offers(signed)
    report.gas["submitOffers (4 offers)"] = batch.gas_used
    offers = [s.order.model_copy(update={"order_id": s.order_hash}) for s in signed]
    log(f"   {len(offers)} signed offers relayed in one transaction ({batch.gas_used:,} gas)")

    log("[bold]4. Gate closure: the oracle clears the round over the grid and commits[/]")
    time_travel(w3, config.gate_closure_s)
    profiles = synthetic_profiles(
        net, view, slot_start_s=config.slot_start_s, slot_seconds=SLOT_SECONDS, slot_count=SLOT_COUNT
    )
    orders: list[Any] = [request, *offers]
    outcome = clear_market(net, profiles, config, orders, view=view, now_s=config.gate_closure_s - 1, funded_only=True)
    report.objective_eur = outcome.objective_eur
    report.ac_max_voltage_error_pu = outcome.ac.max_v_error_pu if outcome.ac else None
    report.violations_after = len(outcome.violations)
    by_order = {o.order_id: spec for o, spec in zip(offers, PROVIDERS, strict=True)}
    for acc in outcome.accepted:
        if acc.kind == "offer":
            report.accepted.append({"provider": by_order[acc.order_id].name, "slot": acc.slot, "kw": acc.mw * 1000})
    trades = list(outcome.trades)
    tree = TradeTree(trades)
    assert tree.root == outcome.merkle_root
    result = ClearingResult(
        round_id=config.round_id,
        trades=tuple(trades),
        merkle_root=tree.root,
        input_hash=input_hash(
            round_id=config.round_id,
            domain=deployment.domain,
            grid_model_hash=config.grid_model_hash,
            requests=[request],
            offers=offers,
            p2p=[],
        ),
        certificate_hash=outcome.certificate_hash or ZERO32,
        uri=(out_dir / f"round-{config.round_id}-result.json").resolve().as_uri(),
    )
    (out_dir / f"round-{config.round_id}-result.json").write_text(
        json.dumps({"trades": [json.loads(t.model_dump_json()) for t in trades],
                    "merkle_root": tree.root, "input_hash": result.input_hash,
                    "certificate_hash": result.certificate_hash}, indent=2)
    )
    commit = MarketClient(w3, deployment, oracle).commit_clearing(result)
    report.gas["commitClearing"] = commit.gas_used
    report.trades = len(trades)
    report.merkle_root = tree.root
    report.input_hash = result.input_hash
    report.certificate_hash = result.certificate_hash
    log(f"   {len(trades)} trade leaves, root {tree.root[:18]}..., committed ({commit.gas_used:,} gas)")

    log("[bold]5. Approval, delivery, metering, settlement[/]")
    dso_client.approve_result(config.round_id)
    delivery_end = config.slot_start_s + SLOT_COUNT * SLOT_SECONDS
    time_travel(w3, delivery_end)
    spec_of_provider: dict[str, ProviderSpec] = {str(a.address): s for a, s in zip(providers, PROVIDERS, strict=True)}
    payees = [t for t in trades if t.payment_eur > 0]
    payers = [t for t in trades if t.payment_eur < 0]
    readings = [
        MeterReading(
            round_id=config.round_id, participant=t.participant, order_id=t.order_id, slot=t.slot,
            delivered_kw=round(t.kw * spec_of_provider[t.participant].delivery_factor, 3)
            if t.participant in spec_of_provider else t.kw,
        )
        for t in payees
    ]
    mtree = MeteringTree(readings) if readings else None
    if mtree is not None:
        MarketClient(w3, deployment, metering).commit_metering(config.round_id, mtree.root, "")
    anyone = MarketClient(w3, deployment, relayer)
    for t in payers:
        anyone.claim_charge(t, tree.proof(t))
    for t, reading in zip(payees, readings, strict=True):
        assert mtree is not None
        anyone.claim_payment(t, tree.proof(t), reading.delivered_kw, mtree.proof(reading))
    time_travel(w3, delivery_end + 2 * config.settlement_s)
    anyone.close_round(config.round_id)
    for account in (dso, *providers):
        escrow, charged = op.escrow_of_micro(config.round_id, account.address)
        if escrow - charged + op.deposit_of_micro(config.round_id, account.address) > 0:
            anyone.release(config.round_id, account.address)

    balances_before = {a.address: op.token_balance_micro(a.address) for a in (dso, *providers)}
    for account in (dso, *providers):
        if op.balance_of_micro(account.address) > 0:
            MarketClient(w3, deployment, account).withdraw()
    for account, name in [(dso, "DSO"), *zip(providers, (s.name for s in PROVIDERS), strict=True)]:
        received = op.token_balance_micro(account.address) - balances_before[account.address]
        accepted_kwh = sum(t.kw * SLOT_SECONDS / 3600 for t in trades if t.participant == account.address)
        report.settlement.append({"who": name, "accepted_kwh": accepted_kwh, "withdrawn_eur": received / 1e6})
        if account is not dso:
            report.paid_out_micro += received
        else:
            report.returned_micro = received
    report.market_balance_after_micro = op.token_balance_micro(deployment.market)
    log(f"   escrowed {report.escrowed_micro / 1e6:.2f} fEUR = paid {report.paid_out_micro / 1e6:.2f} "
        f"+ returned {report.returned_micro / 1e6:.2f}; market holds {report.market_balance_after_micro} afterwards")
    return report


__all__ = ["PROVIDERS", "DemoReport", "ProviderSpec", "run_demo"]
