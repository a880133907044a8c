"""`flexgrid demo`: the whole market day end to end, on a real chain and a real grid.

On its own anvil and SQLite (the `--out` folder), on `case33bw` by default, for a day of 96 slots of
15 minutes from midnight (`--slots`, `--prosumers`, `--seed`, `--net` change it):

1. the operator deploys FlexToken, FlexRegistry and FlexMarket, names the DSO, its metering agent
   and the oracle; `--prosumers` prosumers get their own fresh keys (1 ETH each from the operator)
   and are approved as providers;
2. a pandapower AC run of every slot without flexibility (case33bw's evening peak congests the
   feeder head, rated 205 A, and takes both feeder ends below 0.95 pu), then the DSO's FlexRequests
   come from the risk service (`flexgrid.risk.risk_flex_requests`, chance-constrained over the
   shipped load and PV profiles) with the DSO's planning rules stated in this module (`DSO_V_MIN_PU`
   0.95 pu, day-ahead load forecast error 5 %, ε = 5 %, one zone per feeder end), into an ENCRYPTED
   round (X25519 round key, `DAY_PRICING`);
3. each prosumer is an MV-connected site (`flexgrid.assets.samples.feeder_sites`: community
   batteries, EV charging hubs, building heat pumps, process loads) placed where a request needs it
   most (a bus of the request's subtree; one in ten elsewhere), and gets offers from the
   meta-service for that request's slots (a battery: the core of the request, where it asks at
   least 15 % of its peak), signed with the prosumer's wallet; every other offering prosumer seals
   them to the round key (ciphertext in calldata), the others commit without a ciphertext and let a
   relayer reveal them in batches (commit-reveal in the same round);
4. gate closure: the relayer reveals, the oracle service (`flexgrid.oracle.service.Oracle`) opens and
   reveals the encrypted offers, then clears (SOCP, DLMPs, funded_only), validates in AC, checks the
   risk, commits, publishes and publishes the round key;
5. the dispute window passes, the DSO approves; delivery is metered (`flexgrid.settlement`:
   simulated meters, same-slot baseline, the biggest provider delivers half), the metering root is
   committed, a relayer claims every leaf by Merkle proof, the round closes, everyone withdraws;
6. the auditor (`flexgrid.audit.verify.audit_round`) re-verifies the round from the chain alone;
7. an OPEN P2P round between prosumers (sellers near the substation, buyers at the feeder's end)
   clears with network charges, is settled and audited the same way;
8. the day again in AC with the bought flexibility: worst line loading and lowest voltage before
   and after (the whole day and the most congested slot); plots in the output folder: DLMP
   heatmap, network map with line loading before/after, supply curve, battery SoC.
"""

from __future__ import annotations

import copy
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
from flexgrid.trading import (
    Direction,
    FlexOffer,
    FlexRequest,
    MeterReading,
    PricingRule,
    RoundConfig,
    SealMode,
)
from flexgrid.trading.merkle import MeteringTree, TradeTree

GRID_ID = "case33bw"
Log = Callable[[str], None]


# ====================================================================== the whole market day

DAY_SLOT_SECONDS = 900
DAY_STEPS = 10  # the numbered steps of `run_day`, for progress bars

DAY_PRICING = PricingRule.DLMP  # the flexibility round's rule (funded: offers >= bid, requests <= cap)

# The DSO's planning rules, stated (they size the requests; the clearing keeps the net's own limits):
DSO_V_MIN_PU = 0.95  # MV voltage kept within -5 %, leaving the rest of the statutory -10 % to the LV networks
DSO_LOAD_SIGMA = 0.05  # day-ahead forecast error of a feeder's aggregated load (relative, one sigma)
DSO_EPSILON = 0.05  # accepted probability of a violation per slot
DSO_ZONE_THRESHOLD = 0.5  # a bus serves a violated limit if it is at least half as effective as the best bus


@dataclass(frozen=True)
class DaySettings:
    """The scenario of `flexgrid demo`."""

    net: str = GRID_ID
    prosumers: int = 50
    slots: int = 96
    seed: int = 7
    batch: int = 25  # orders per relayed transaction


@dataclass
class DayReport:
    """The summary of a market day (printed as a table or as JSON)."""

    settings: dict[str, Any] = field(default_factory=dict)
    round_id: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    requests_source: str = ""
    pricing: str = ""
    orders: dict[str, int] = field(default_factory=dict)
    accepted_offers: int = 0
    accepted_kwh: float = 0.0
    cost_eur: float = 0.0
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    oracle: dict[str, Any] = field(default_factory=dict)
    gas: dict[str, int] = field(default_factory=dict)
    time_s: dict[str, float] = field(default_factory=dict)
    settlement: list[dict[str, Any]] = field(default_factory=list)
    under_deliverer: dict[str, Any] = field(default_factory=dict)
    escrowed_micro: int = 0
    after_with_catch_up: dict[str, Any] = field(default_factory=dict)  # "after" plus the assets' later catch-up
    paid_out_micro: int = 0
    returned_micro: int = 0
    market_balance_after_micro: int = 0
    audit_ok: bool = False
    audit_problems: list[str] = field(default_factory=list)
    p2p: dict[str, Any] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Steps:
    """Time and gas per step of the day."""

    def __init__(self, report: DayReport, log: Log) -> None:
        self.report = report
        self.log = log
        self.current = ""
        self.t0 = 0.0

    def start(self, name: str) -> None:
        import time

        self.stop()
        self.current = name
        self.t0 = time.perf_counter()
        self.report.gas.setdefault(name, 0)
        self.log(f"[bold]{name}[/]")

    def stop(self) -> None:
        import time

        if self.current:
            self.report.time_s[self.current] = round(time.perf_counter() - self.t0, 2)
        self.current = ""

    def gas(self, *results: Any) -> None:
        for r in results:
            self.report.gas[self.current] = self.report.gas.get(self.current, 0) + int(r.gas_used)


@dataclass(frozen=True)
class DayAC:
    """pandapower AC power flows of every slot of the day: voltages (bus x slot, pu) and line
    loadings (line x slot, % of the rating)."""

    bus_ids: tuple[int, ...]
    v_pu: Any
    loading_percent: Any

    @property
    def v_min_pu(self) -> float:
        return float(self.v_pu.min())

    @property
    def worst_bus(self) -> int:
        return self.bus_ids[int(self.v_pu.min(axis=1).argmin())]

    @property
    def worst_voltage_slot(self) -> int:
        return int(self.v_pu.min(axis=0).argmin())

    @property
    def max_loading_percent(self) -> float:
        return float(self.loading_percent.max()) if self.loading_percent.size else 0.0

    @property
    def worst_line(self) -> int:
        return int(self.loading_percent.max(axis=1).argmax())

    @property
    def worst_loading_slot(self) -> int:
        return int(self.loading_percent.max(axis=0).argmax())

    @property
    def congested_slots(self) -> int:
        return int((self.loading_percent.max(axis=0) > 100.0 + 1e-9).sum())

    @property
    def low_voltage_slots(self) -> int:
        return int((self.v_pu.min(axis=0) < DSO_V_MIN_PU - 1e-9).sum())

    def summary(self) -> dict[str, Any]:
        return {"max_loading_percent": round(self.max_loading_percent, 2), "worst_line": self.worst_line,
                "worst_loading_slot": self.worst_loading_slot, "congested_slots": self.congested_slots,
                "v_min_pu": round(self.v_min_pu, 4), "worst_bus": self.worst_bus,
                "worst_voltage_slot": self.worst_voltage_slot, "low_voltage_slots": self.low_voltage_slots}


def day_ac(net: Any, view: Any, withdrawal_p_mw: Any, withdrawal_q_mvar: Any, *, same_as: DayAC | None = None,
           slots: Any = None) -> DayAC:
    """One pandapower `runpp` per slot with each node's withdrawal (the net's own loads replaced);
    with `same_as`, only `slots` are run and the other slots are copied from it."""
    import numpy as np
    import pandapower as pp

    work = copy.deepcopy(net)
    for table in ("load", "sgen", "gen", "storage"):
        df = getattr(work, table)
        if len(df):
            df["in_service"] = False
    nodes = [int(n) for n in np.flatnonzero(view.bus_of_node >= 0)]
    idx = [pp.create_load(work, bus=int(view.bus_of_node[n]), p_mw=0.0, q_mvar=0.0) for n in nodes]
    n_slot = int(withdrawal_p_mw.shape[1])
    bus_ids = tuple(int(b) for b in work.bus.index)
    v = np.zeros((len(bus_ids), n_slot)) if same_as is None else np.array(same_as.v_pu, dtype=float, copy=True)
    loading = (np.zeros((len(work.line), n_slot)) if same_as is None
               else np.array(same_as.loading_percent, dtype=float, copy=True))
    for t in range(n_slot) if same_as is None or slots is None else sorted({int(x) for x in slots}):
        work.load.loc[idx, "p_mw"] = [float(withdrawal_p_mw[n, t]) for n in nodes]
        work.load.loc[idx, "q_mvar"] = [float(withdrawal_q_mvar[n, t]) for n in nodes]
        pp.runpp(work, numba=False)
        v[:, t] = work.res_bus.vm_pu.loc[list(bus_ids)].to_numpy(dtype=float)
        loading[:, t] = np.nan_to_num(work.res_line.loading_percent.to_numpy(dtype=float))
    return DayAC(bus_ids, v, loading)


def _in_parallel(clients: list[MarketClient], items: list[Any], send: Callable[[MarketClient, Any], Any]) -> list[Any]:
    """`send(client, item)` for every item, each client (its own account and nonces) in its own
    thread over its share of the items; the results in the order of the items."""
    from concurrent.futures import ThreadPoolExecutor

    def share(j: int) -> list[tuple[int, Any]]:
        return [(i, send(clients[j], items[i])) for i in range(j, len(items), len(clients))]

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        done = [r for part in pool.map(share, range(len(clients))) for r in part]
    return [r for _, r in sorted(done, key=lambda x: x[0])]


def _site_kw(asset: Any) -> float:
    """The power a site can move (for placing it)."""
    for name in ("power_kw", "charger_kw", "baseline_kw"):
        if hasattr(asset, name):
            return float(getattr(asset, name))
    return 0.0


def _subtree_buses(view: Any, bus: int) -> list[int]:
    """The pandapower buses downstream of `bus` (itself included) in the radial view."""
    node = view.node_of_bus[bus]
    parent = {int(t): int(f) for f, t in zip(view.from_node, view.to_node, strict=True)}
    out = []
    for n in range(view.n_node):
        m = n
        while m != node and m in parent:
            m = parent[m]
        if m == node and int(view.bus_of_node[n]) >= 0:
            out.append(int(view.bus_of_node[n]))
    return sorted(out)


def run_day(conn: ChainConnection, *, out_dir: Path, settings: DaySettings = DaySettings(),
            log: Log = print) -> DayReport:
    """The whole market day on `conn` (see the CLI's help): returns the summary."""
    import numpy as np
    from eth_account import Account
    from sqlmodel import create_engine

    from flexgrid.assets import propose_offers, simulate_assets
    from flexgrid.assets.samples import feeder_sites
    from flexgrid.audit.verify import audit_round
    from flexgrid.monitoring import build_model
    from flexgrid.oracle.publication import load_publication, publication_path, trades_from_publication
    from flexgrid.oracle.service import Oracle, OracleSettings, Stage
    from flexgrid.risk import RiskPricing, Uncertainty, risk_flex_requests, slot_scales
    from flexgrid.settlement import SameSlotAverage, meter_readings, simulate_metering
    from flexgrid.store import init_db
    from flexgrid.trading.sealing import RoundKeyPair, seal_offer


    report = DayReport(settings=dict(settings.__dict__))
    steps = _Steps(report, log)
    out_dir.mkdir(parents=True, exist_ok=True)
    import shutil

    for stale in ("oracle.db", "auditor.db"):  # a new chain each run: the demo's databases start empty
        (out_dir / stale).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "results", ignore_errors=True)
    w3 = conn.w3
    accounts: list[LocalAccount] = conn.dev_accounts()
    if len(accounts) < 5:
        raise ValueError(f"the demo needs 5 funded accounts, the chain has {len(accounts)}")
    operator, dso, metering, oracle_acct, relayer = accounts[:5]
    rng = np.random.default_rng(settings.seed)

    steps.start("1. deploy, register, fund prosumers")
    deployment = deploy(w3, operator)
    deployment.save(out_dir / "deployment.json")
    op = MarketClient(w3, deployment, operator)
    steps.gas(op.set_dso(settings.net, dso.address), op.grant_oracle(oracle_acct.address))
    dso_client = MarketClient(w3, deployment, dso)
    steps.gas(dso_client.set_metering_agent(settings.net, metering.address))
    steps.gas(op.mint(dso.address, 1_000_000), dso_client.approve_market())
    prosumers = [Account.from_key(Web3.keccak(text=f"flexgrid demo prosumer {settings.seed} {i}"))
                 for i in range(settings.prosumers)]
    for p in prosumers:
        signed_tx = operator.sign_transaction({
            "to": p.address, "value": Web3.to_wei(1, "ether"), "gas": 21_000, "chainId": w3.eth.chain_id,
            "nonce": w3.eth.get_transaction_count(operator.address, "pending"), "gasPrice": w3.eth.gas_price})
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed_tx.raw_transaction))
        steps.gas(op.approve_provider(p.address))
    log(f"   market {deployment.market}; {len(prosumers)} prosumers with their own keys, 1 ETH each")

    steps.start("2. DSO requests from the risk service")
    net = load_net(settings.net)
    view = build_view(net, settings.net)
    now = chain_time_s(w3)
    # the whole day from midnight; a shorter round ends at 20:00 at the latest, so it holds the evening peak
    first_slot = max(0, min(96 - settings.slots, 80 - settings.slots))
    # the next day whose first slot comes after gate closure and the reveal phase (now + 1.5 h)
    day_start = ((now + 5400 - first_slot * DAY_SLOT_SECONDS) // 86_400 + 1) * 86_400 + first_slot * DAY_SLOT_SECONDS
    key = RoundKeyPair.generate()
    config = op.create_round(RoundConfig(
        round_id=0, grid_id=settings.net, grid_model_hash=grid_model_hash(view), slot_start_s=day_start,
        slot_seconds=DAY_SLOT_SECONDS, slot_count=settings.slots, gate_closure_s=now + 3600,
        pricing_rule=DAY_PRICING, seal_mode=SealMode.ENCRYPTED, reveal_s=1800,
        encryption_key=key.public_key, dispute_window_s=3600, price_cap_eur_per_mwh=400.0, tolerance_bps=500,
        penalty_bps=2000, bid_deposit_eur=0.0, clearing_s=3600, settlement_s=86_400, dispute_bond_eur=50.0))
    report.round_id = rid = config.round_id
    report.pricing = {PricingRule.PAY_AS_BID: "pay-as-bid", PricingRule.DLMP: "DLMP"}.get(DAY_PRICING, DAY_PRICING.name)
    profiles = synthetic_profiles(net, view, slot_start_s=day_start, slot_seconds=DAY_SLOT_SECONDS,
                                  slot_count=settings.slots)
    withdrawal = profiles.load_p_mw - profiles.pv_p_mw
    before = day_ac(net, view, withdrawal, profiles.load_q_mvar)
    report.before = before.summary()
    log(f"   pandapower AC over the day without flexibility: worst line loading {before.max_loading_percent:.1f} % "
        f"(line {before.worst_line}, slot {before.worst_loading_slot}), lowest voltage {before.v_min_pu:.4f} pu "
        f"(bus {before.worst_bus}, slot {before.worst_voltage_slot}); {before.congested_slots} slots congested, "
        f"{before.low_voltage_slots} below {DSO_V_MIN_PU} pu")
    if not np.isfinite(view.i_max_pu).any():
        report.notes.append(f"{settings.net} has no line ratings (pandapower max_i_ka = 99999 kA): no line can congest")
    load, pv = slot_scales(day_start, DAY_SLOT_SECONDS, settings.slots)
    planning = copy.deepcopy(net)  # the DSO plans to its own voltage band (the net keeps the statutory one)
    planning.bus["min_vm_pu"] = np.maximum(planning.bus["min_vm_pu"].fillna(0.0), DSO_V_MIN_PU)
    plan = risk_flex_requests(build_model(planning, settings.net), round_id=rid, load_scale=load, gen_scale=pv,
                              slot_seconds=DAY_SLOT_SECONDS, epsilon=DSO_EPSILON, dso=dso.address, seed=settings.seed,
                              uncertainty=Uncertainty(load_sigma_rel=DSO_LOAD_SIGMA),
                              zone_threshold=DSO_ZONE_THRESHOLD, n_scenarios=1000, n_out_of_sample=1000,
                              pricing=RiskPricing(max_price_eur_per_mwh=config.price_cap_eur_per_mwh))
    requests = plan.flex_requests()
    if not requests:
        raise ValueError("the risk service sees no violation in this day: no flexibility to buy")
    report.requests_source = "flexgrid.risk.risk_flex_requests"
    for r in requests:
        dso_client.submit_request(r)
        report.gas[steps.current] += int(w3.eth.get_block("latest")["gasUsed"])  # anvil mines one tx a block
        report.requests.append({"bus": r.bus, "direction": r.direction.name, "slots": list(r.slots),
                                "kw": list(r.kw), "cap_eur_per_mwh": r.price_cap_eur_per_mwh,
                                "risk_id": r.order_id})
        log(f"   request at bus {r.bus}: {len(r.slots)} slots (peak {max(r.kw):.0f} kW), cap "
            f"{r.price_cap_eur_per_mwh:.0f} EUR/MWh")
    report.escrowed_micro = op.escrow_of_micro(rid, dso.address)[0]

    steps.start("3. prosumers seal signed offers (encrypted / commit-reveal)")
    assets = feeder_sites(config, settings.prosumers, seed=settings.seed)
    request_slots = sorted({s for r in requests for s in r.slots})
    all_buses = [int(b) for b in view.bus_of_node if int(b) >= 0]
    # each site is placed where a request needs it most (the request's peak kW against the power placed
    # there so far), at a bus of the request's subtree; one in ten elsewhere on the feeder
    placed = dict.fromkeys(range(len(requests)), 0.0)
    jobs: list[tuple[Any, str, list[FlexOffer], Any]] = []
    sealed_by: dict[str, list[Any]] = {"encrypted": [], "commit-reveal": []}
    offers_all: list[FlexOffer] = []
    asset_of: dict[str, Any] = {}
    provider_name: dict[str, str] = {}
    for i, (p, asset) in enumerate(zip(prosumers, assets, strict=True)):
        k = min(placed, key=lambda j: placed[j] / max(max(requests[j].kw), 1e-9))
        req = requests[k]
        if i % 10 == 9:
            bus, target = int(rng.choice(all_buses)), request_slots
        else:
            placed[k] += _site_kw(asset)
            bus = int(rng.choice(_subtree_buses(view, req.bus)))
            # a battery discharges over the core of the request (where it asks at least 15 % of its peak)
            core = [s_ for s_, kw in zip(req.slots, req.kw, strict=True) if kw >= 0.15 * max(req.kw)]
            target = core if getattr(asset, "kind", "") == "battery" else list(req.slots)
        try:
            offers = propose_offers(asset, config, provider=p.address, bus=bus, nonce_start=rid << 64,
                                    expiry_s=config.gate_closure_s + config.reveal_s,
                                    direction=Direction.UP, slots=target)
        except Exception as exc:  # an asset that cannot help in these slots makes no offer
            log(f"   {asset.name}: no offer ({exc})")
            offers = []
        if not offers:
            if i % 10 != 9:
                placed[k] -= _site_kw(asset)
            continue
        mode = "encrypted" if len(provider_name) % 2 == 0 else "commit-reveal"  # every other offering prosumer
        provider_name[p.address] = asset.name
        jobs.append((p, mode, offers, asset))

    def sign_seal_commit(job: tuple[Any, str, list[FlexOffer], Any]) -> list[tuple[Any, FlexOffer, Any]]:
        who, how, offers_, _ = job
        client = MarketClient(w3, deployment, who)
        out = []
        for o in offers_:
            sealed = seal_offer(o.sign(who, deployment.domain), key.public_key)
            out.append((sealed, o, client.commit_offer(rid, sealed.commitment,
                                                       sealed.ciphertext if how == "encrypted" else b"")))
        return out

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:  # the prosumers sign and send side by side
        committed = list(pool.map(sign_seal_commit, jobs))
    for (_, mode, _, asset), done in zip(jobs, committed, strict=True):
        for sealed, o, result in done:
            steps.gas(result)
            sealed_by[mode].append(sealed)
            offers_all.append(o.model_copy(update={"order_id": sealed.order_hash}))
            asset_of[o.asset_id] = asset
    report.orders = {"requests": len(requests), "offers": len(offers_all),
                     "encrypted": len(sealed_by["encrypted"]), "commit_reveal": len(sealed_by["commit-reveal"])}
    log(f"   {len(offers_all)} offers from {len(provider_name)} prosumers: {len(sealed_by['encrypted'])} encrypted "
        f"to the round key, {len(sealed_by['commit-reveal'])} by commit-reveal")

    steps.start("4. gate closure, reveals (relayer batches, oracle)")
    time_travel(w3, config.gate_closure_s)
    engine = create_engine(f"sqlite:///{out_dir / 'oracle.db'}")
    init_db(engine)
    results_dir = out_dir / "results"
    def oracle_log(msg: str) -> None:
        if "no ciphertext was sent" not in msg:  # the commit-reveal half: the relayer reveals those
            log(f"   oracle: {msg}")

    oracle = Oracle(w3, deployment, oracle_acct, engine, log=oracle_log,
                    settings=OracleSettings(results_dir=results_dir, round_secrets={rid: key.secret_key}))
    relay = MarketClient(w3, deployment, relayer)
    cr = sealed_by["commit-reveal"]
    for k in range(0, len(cr), settings.batch):
        chunk = cr[k:k + settings.batch]
        steps.gas(relay.reveal_offers([s.signed for s in chunk], [s.salt for s in chunk]))
    log(f"   relayer revealed {len(cr)} offers in {-(-len(cr) // settings.batch)} transactions")
    first = oracle.run_once(rid)
    log(f"   oracle: {first[0].detail if first else 'nothing to do'}")

    steps.start(f"5. oracle clears (SOCP, {report.pricing} pricing), validates AC, commits")
    time_travel(w3, op.deadlines(rid)["reveal_end_s"])
    [outcome] = oracle.run_once(rid)
    log(f"   oracle: {outcome.stage}: {outcome.detail}")
    if outcome.stage != Stage.PUBLISHED:
        raise RuntimeError(f"the oracle did not publish round {rid}: {outcome.stage} {outcome.detail}")
    pub_file = publication_path(results_dir, deployment.chain_id, deployment.market, rid)
    doc = load_publication(pub_file)
    trades = trades_from_publication(doc)
    report.oracle = {"trade_root": outcome.trade_root, "detail": outcome.detail, "dropped": len(doc.get("dropped", [])),
                     "publication": str(pub_file)}
    offer_ids = {o.order_id for o in offers_all}
    offer_trades = [t for t in trades if t.order_id in offer_ids and t.payment_micro > 0]
    report.accepted_offers = len({t.order_id for t in offer_trades})
    report.accepted_kwh = round(sum(t.kw for t in offer_trades) * DAY_SLOT_SECONDS / 3600, 3)
    report.cost_eur = round(sum(t.payment_micro for t in offer_trades) / 1e6, 2)
    ac = doc.get("ac", {})
    report.oracle["ac_cleared_slots"] = {
        k: {"v_min_pu": round(float(ac.get(k, {}).get("vMinPu", float("nan"))), 4),
            "max_loading_percent": round(float(ac.get(k, {}).get("maxLoadingPercent", float("nan"))), 2)}
        for k in ("before", "after")}
    c = report.oracle["ac_cleared_slots"]
    log(f"   {len(trades)} leaves, {report.accepted_offers} offers accepted, {report.accepted_kwh:.1f} kWh, "
        f"{report.cost_eur:.2f} fEUR; oracle's AC check of the cleared slots: worst loading "
        f"{c['before']['max_loading_percent']} -> {c['after']['max_loading_percent']} %, lowest voltage "
        f"{c['before']['v_min_pu']} -> {c['after']['v_min_pu']} pu")
    commit_tx = _commit_gas(w3, deployment, rid)
    if commit_tx:
        report.gas[steps.current] += commit_tx

    steps.start("6. dispute window, DSO approval, metering")
    time_travel(w3, op.deadlines(rid)["dispute_deadline_s"] - 2)  # no one disputed within the window
    steps.gas(dso_client.approve_result(rid))
    delivery_end = config.slot_start_s + config.slot_count * DAY_SLOT_SECONDS
    time_travel(w3, delivery_end)
    kwh_of: dict[str, float] = {}
    for t in offer_trades:
        kwh_of[t.participant] = kwh_of.get(t.participant, 0.0) + t.kw
    lazy = max(sorted(kwh_of), key=lambda a: kwh_of[a]) if kwh_of else ""  # the biggest provider delivers half
    meters = simulate_metering(config, trades, offers_all, seed=settings.seed, delivery_factor={lazy: 0.5} if lazy else None)
    readings = meter_readings(config, trades, offers_all, meters, SameSlotAverage(days=5))
    metering_file = out_dir / f"round-{rid}-metering.json"
    metering_file.write_text(json.dumps({"readings": [
        {"participant": m.participant, "orderHash": m.order_id, "slot": m.slot, "deliveredPowerW": m.delivered_power_w}
        for m in readings]}))
    mtree = MeteringTree(readings) if readings else None
    if mtree is not None:
        steps.gas(MarketClient(w3, deployment, metering).commit_metering(rid, mtree.root, metering_file.resolve().as_uri()))

    steps.start("7. claims (relayers), close, withdraw")
    tree = TradeTree(trades)
    # anyone may claim a leaf: a few relayer accounts send the claims side by side (the payer leaves
    # first, so that the escrow is charged before the payee leaves draw on it)
    relayers = [relay, *(MarketClient(w3, deployment, a) for a in accounts[5:8])]
    charges = [t for t in trades if t.payment_micro < 0]
    steps.gas(*_in_parallel(relayers, charges, lambda c, t: c.claim_charge(t, tree.proof(t))))
    by_leaf = {(m.order_id, m.slot): m for m in readings}
    if mtree is not None:
        mt = mtree
        payees = [t for t in trades if t.payment_micro > 0 and (t.order_id, t.slot) in by_leaf]
        steps.gas(*_in_parallel(relayers, payees, lambda c, t: c.claim_payment(
            t, tree.proof(t), by_leaf[(t.order_id, t.slot)].delivered_kw, mt.proof(by_leaf[(t.order_id, t.slot)]))))
    time_travel(w3, delivery_end + 2 * config.settlement_s)
    steps.gas(relay.close_round(rid))
    everyone = [dso, *prosumers]
    def left_in_round(a: Any) -> int:
        escrow, charged = op.escrow_of_micro(rid, a.address)
        return int(escrow - charged + op.deposit_of_micro(rid, a.address))

    owed = [a for a in everyone if left_in_round(a) > 0]
    _in_parallel(relayers, owed, lambda c, a: c.release(rid, a.address))
    balances_before = {a.address: op.token_balance_micro(a.address) for a in everyone}
    withdrawing = [a for a in everyone if op.balance_of_micro(a.address) > 0]
    _in_parallel([MarketClient(w3, deployment, a) for a in withdrawing], list(range(len(withdrawing))),
                 lambda c, _: c.withdraw())
    for a in everyone:
        got = op.token_balance_micro(a.address) - balances_before[a.address]
        if a is dso:
            report.returned_micro = got
            continue
        report.paid_out_micro += got
        kwh = sum(t.kw for t in offer_trades if t.participant == a.address) * DAY_SLOT_SECONDS / 3600
        value = sum(t.payment_micro for t in offer_trades if t.participant == a.address)
        if kwh > 0:
            row = {"who": provider_name.get(a.address, a.address), "address": a.address, "accepted_kwh": round(kwh, 3),
                   "accepted_value_eur": value / 1e6, "withdrawn_eur": got / 1e6, "under_delivers": a.address == lazy}
            report.settlement.append(row)
            if a.address == lazy:
                report.under_deliverer = row
    report.market_balance_after_micro = op.token_balance_micro(deployment.market)
    log(f"   escrowed {report.escrowed_micro / 1e6:.2f} = paid {report.paid_out_micro / 1e6:.2f} + returned "
        f"{report.returned_micro / 1e6:.2f} fEUR; market holds {report.market_balance_after_micro}")

    steps.start("8. auditor verifies from the chain")
    audit_engine = create_engine(f"sqlite:///{out_dir / 'auditor.db'}")
    init_db(audit_engine)
    audit = audit_round(w3, deployment, audit_engine, rid)
    report.audit_ok = bool(audit.ok)
    report.audit_problems = list(audit.problems())
    log(f"   audit: {'VERIFIED' if audit.ok else 'FAILED: ' + '; '.join(audit.problems())}")
    steps.stop()

    steps.start("9. P2P round between prosumers (network charges)")
    try:
        report.p2p = _p2p_round(w3, deployment, op, relay, dso_client, oracle, audit_engine, prosumers, view,
                                settings, steps, log, metering=metering, out_dir=out_dir)
    except Exception as exc:  # reported in the summary (and by the test), the day's round stands
        report.p2p = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "summary": f"failed: {exc}"}
        log(f"   [red]P2P round failed[/]: {exc}")

    steps.start("10. network before/after and plots")

    # the day with the cleared flexibility in its slots (what the clearing and the oracle's AC check see)
    after_w = np.array(withdrawal, dtype=float, copy=True)
    offer_by_id = {o.order_id: o for o in offers_all}
    for t in offer_trades:
        o = offer_by_id[t.order_id]
        after_w[view.node_of_bus[o.bus], t.slot] -= (t.kw if o.direction == Direction.UP else -t.kw) / 1000
    after = day_ac(net, view, after_w, profiles.load_q_mvar, same_as=before, slots={t.slot for t in offer_trades})
    # and with each activated asset's simulated schedule against its baseline
    # (`flexgrid.assets.simulate_assets`): the charging an EV hub or a process load catches up after
    # the requested slots lands on the grid too (the clearing does not model this rebound)
    rebound_w = np.array(withdrawal, dtype=float, copy=True)
    bus_of_asset = {o.asset_id: o.bus for o in offers_all}
    active = {offer_by_id[t.order_id].asset_id for t in offer_trades}
    runs = simulate_assets({a: asset_of[a] for a in active}, config, offers_all, trades)
    idle = simulate_assets({a: asset_of[a] for a in active}, config, offers_all, [])
    moved_kwh = 0.0
    for aid in active:
        delta_kw = np.asarray(runs[aid].power_kw, dtype=float) - np.asarray(idle[aid].power_kw, dtype=float)
        rebound_w[view.node_of_bus[bus_of_asset[aid]], :] += delta_kw / 1000
        moved_kwh += float(np.clip(delta_kw, 0, None).sum()) * DAY_SLOT_SECONDS / 3600
    changed = np.flatnonzero(np.abs(rebound_w - withdrawal).max(axis=0) > 1e-9)
    rebound = day_ac(net, view, rebound_w, profiles.load_q_mvar, same_as=before, slots=changed)
    report.after_with_catch_up = {**rebound.summary(), "caught_up_kwh": round(moved_kwh, 1)}
    report.after = after.summary()
    # the most congested slot before the flexibility (the most requested one if nothing congests)
    need = {s_: sum(r.kw[r.slots.index(s_)] for r in requests if s_ in r.slots) for s_ in request_slots}
    worst = before.worst_loading_slot if before.congested_slots else max(request_slots, key=lambda s_: need[s_])
    for rep, ac_ in ((report.before, before), (report.after, after)):
        rep.update(slot=worst, max_loading_percent_slot=round(float(ac_.loading_percent[:, worst].max()), 2),
                   v_min_pu_slot=round(float(ac_.v_pu[:, worst].min()), 4))
    log(f"   whole day: worst line loading {before.max_loading_percent:.1f} -> {after.max_loading_percent:.1f} %, "
        f"lowest voltage {before.v_min_pu:.4f} -> {after.v_min_pu:.4f} pu; slots congested {before.congested_slots} "
        f"-> {after.congested_slots}, below {DSO_V_MIN_PU} pu {before.low_voltage_slots} -> {after.low_voltage_slots}; "
        f"with the {moved_kwh:.0f} kWh the activated assets catch up later: {rebound.max_loading_percent:.1f} %, "
        f"{rebound.v_min_pu:.4f} pu, {rebound.low_voltage_slots} slots below {DSO_V_MIN_PU} pu")
    report.plots = write_plots(out_dir, net=net, view=view, profiles=profiles, config=config, doc=doc, trades=trades,
                               offers=offers_all, assets=asset_of, requests=requests, worst_slot=worst,
                               loading_before=before.loading_percent[:, worst],
                               loading_after=after.loading_percent[:, worst])
    log(f"   plots: {', '.join(report.plots)}")
    steps.stop()
    (out_dir / "summary.json").write_text(json.dumps(day_summary(report), indent=2, default=str))
    return report


def _p2p_round(w3: Web3, deployment: Deployment, op: MarketClient, relay: MarketClient, dso_client: MarketClient,
               oracle: Any, audit_engine: Any, prosumers: list[Any], view: Any, settings: DaySettings,
               steps: _Steps, log: Log, *, metering: LocalAccount, out_dir: Path) -> dict[str, Any]:
    """An OPEN round of 4 midday slots: prosumers near the substation sell, prosumers at the feeder's
    end buy; each side pays or gets the pool price plus its bus's DLMP (the network charge)."""
    from flexgrid.audit.verify import audit_round
    from flexgrid.oracle.publication import load_publication, publication_path, trades_from_publication
    from flexgrid.oracle.service import Stage
    from flexgrid.trading import P2POrder, Side

    slot_count = 4
    now = chain_time_s(w3)
    start = (now // 86_400 + 1) * 86_400 + 18 * 3600  # 18:00, the evening peak of the next day
    config = op.create_round(RoundConfig(
        round_id=0, grid_id=settings.net, grid_model_hash=grid_model_hash(view), slot_start_s=start,
        slot_seconds=DAY_SLOT_SECONDS, slot_count=slot_count, gate_closure_s=now + 3600,
        pricing_rule=PricingRule.UNIFORM, seal_mode=SealMode.OPEN, dispute_window_s=3600,
        price_cap_eur_per_mwh=400.0, tolerance_bps=500, penalty_bps=2000, bid_deposit_eur=0.0, clearing_s=3600,
        settlement_s=86_400, dispute_bond_eur=50.0))
    rid = config.round_id
    buses = [int(b) for b in view.bus_of_node if int(b) >= 0]
    near, far = buses[1:4], buses[-6:]
    n = min(len(prosumers) // 2, 3)
    sellers, buyers = prosumers[:n], prosumers[n:2 * n]
    signed = []
    for b in buyers:
        steps.gas(op.mint(b.address, 100), MarketClient(w3, deployment, b).approve_market())
    for i, (who, side, bus, price) in enumerate(
            [(a, Side.SELL, near[i % len(near)], 70.0 + 5 * i) for i, a in enumerate(sellers)]
            + [(a, Side.BUY, far[i % len(far)], 140.0 + 10 * i) for i, a in enumerate(buyers)]):
        for slot in range(slot_count):
            o = P2POrder(trader=who.address, round_id=rid, bus=bus, side=side, slot=slot, kw=20.0 + 5 * (i % 3),
                         limit_price_eur_per_mwh=price, nonce=(rid << 64) + slot, expiry_s=config.gate_closure_s)
            signed.append(o.sign(who, deployment.domain))
    for k in range(0, len(signed), settings.batch):
        steps.gas(relay.submit_p2p_orders(signed[k:k + settings.batch]))
    time_travel(w3, config.gate_closure_s)
    [outcome] = oracle.run_once(rid)
    if outcome.stage != Stage.PUBLISHED:
        raise RuntimeError(f"the oracle did not publish P2P round {rid}: {outcome.stage} {outcome.detail}")
    doc = load_publication(publication_path(oracle.settings.results_dir, deployment.chain_id, deployment.market, rid))
    trades = trades_from_publication(doc)
    time_travel(w3, op.deadlines(rid)["dispute_deadline_s"] - 2)
    steps.gas(dso_client.approve_result(rid))
    end = config.slot_start_s + slot_count * DAY_SLOT_SECONDS
    time_travel(w3, end)
    tree = TradeTree(trades)
    # the sellers' meters: delivered as cleared (the under-delivery story is the flexibility round's)
    readings = [MeterReading(round_id=rid, participant=t.participant, order_id=t.order_id, slot=t.slot, delivered_kw=t.kw)
                for t in trades if t.payment_micro > 0]
    metering_file = out_dir / f"round-{rid}-metering.json"
    metering_file.write_text(json.dumps({"readings": [
        {"participant": m.participant, "orderHash": m.order_id, "slot": m.slot, "deliveredPowerW": m.delivered_power_w}
        for m in readings]}))
    mtree = MeteringTree(readings)
    steps.gas(MarketClient(w3, deployment, metering).commit_metering(rid, mtree.root, metering_file.resolve().as_uri()))
    for t in trades:
        if t.payment_micro < 0:
            steps.gas(relay.claim_charge(t, tree.proof(t)))
    for t, m in zip([t for t in trades if t.payment_micro > 0], readings, strict=True):
        steps.gas(relay.claim_payment(t, tree.proof(t), m.delivered_kw, mtree.proof(m)))
    time_travel(w3, end + 2 * config.settlement_s)
    steps.gas(relay.close_round(rid))
    traders = [*sellers, *buyers, dso_client.account]
    for a in traders:
        escrow, charged = op.escrow_of_micro(rid, a.address)
        if escrow - charged + op.deposit_of_micro(rid, a.address) > 0:
            relay.release(rid, a.address)
    for a in traders:
        if op.balance_of_micro(a.address) > 0:
            MarketClient(w3, deployment, a).withdraw()
    sold_kwh = sum(t.kw for t in trades if t.payment_micro > 0) * DAY_SLOT_SECONDS / 3600
    paid = -sum(t.payment_micro for t in trades if t.payment_micro < 0)
    got = sum(t.payment_micro for t in trades if t.payment_micro > 0)
    audit = audit_round(w3, deployment, audit_engine, rid)
    summary = (f"round {rid}: {len(signed)} orders, {sold_kwh:.1f} kWh traded, buyers paid {paid / 1e6:.2f}, sellers "
               f"got {got / 1e6:.2f}, network charges {(paid - got) / 1e6:.2f} fEUR, audit "
               f"{'VERIFIED' if audit.ok else 'FAILED'}")
    log(f"   {summary}")
    return {"ok": bool(audit.ok) and sold_kwh > 0, "round_id": rid, "orders": len(signed), "traded_kwh": round(sold_kwh, 3),
            "buyers_paid_micro": paid, "sellers_got_micro": got, "network_charges_micro": paid - got,
            "market_balance_after_micro": op.token_balance_micro(deployment.market),
            "audit_ok": bool(audit.ok), "audit_problems": list(audit.problems()), "summary": summary}


def _commit_gas(w3: Web3, deployment: Deployment, round_id: int) -> int:
    """Gas of the oracle's commitClearing transaction, from its event's receipt."""
    market = MarketClient(w3, deployment).market
    for e in market.events.ClearingCommitted().get_logs(from_block=deployment.block_number):
        if int(e["args"]["roundId"]) == round_id:
            return int(w3.eth.get_transaction_receipt(e["transactionHash"])["gasUsed"])
    return 0


def day_summary(report: DayReport) -> dict[str, Any]:
    """The summary as plain JSON."""
    from dataclasses import asdict

    return asdict(report)


# ====================================================================== plots (matplotlib, Agg)


def _bus_xy(net: Any) -> dict[int, tuple[float, float]]:
    """Bus positions from the net's GeoJSON geodata, else pandapower's generic coordinates."""
    xy: dict[int, tuple[float, float]] = {}
    if "geo" in net.bus and net.bus.geo.notna().all():
        for b, g in net.bus.geo.items():
            x, y = json.loads(g)["coordinates"][:2]
            xy[int(b)] = (float(x), float(y))
        return xy
    from pandapower.plotting import create_generic_coordinates

    work = create_generic_coordinates(net.deepcopy() if hasattr(net, "deepcopy") else net, overwrite=True)
    for b, g in work.bus.geo.items():
        x, y = json.loads(g)["coordinates"][:2]
        xy[int(b)] = (float(x), float(y))
    return xy


def line_currents_ka(net: Any, view: Any, withdrawal_p_mw: Any, withdrawal_q_mvar: Any, slot: int) -> tuple[Any, float]:
    """Per line of `net.line`, the AC current (kA) in `slot`, and the lowest voltage (pu)."""
    import numpy as np

    from flexgrid.opf.validate import validate_ac

    rep = validate_ac(net, view, withdrawal_p_mw, withdrawal_q_mvar, slots=[slot])
    assert rep.loading_percent is not None
    col = rep.loading_percent[:, slot] if rep.loading_percent.shape[1] > slot else rep.loading_percent[:, 0]
    n_line = len(net.line)
    ka = np.asarray(col[:n_line], dtype=float) / 100.0 * net.line.max_i_ka.to_numpy(dtype=float)
    ka = np.where(net.line.in_service.to_numpy(dtype=bool), ka, 0.0)
    return ka, float(rep.v_min_pu)


def write_plots(out_dir: Path, *, net: Any, view: Any, profiles: Any, config: RoundConfig, doc: dict[str, Any],
                trades: list[Any], offers: list[FlexOffer], assets: dict[str, Any], requests: list[FlexRequest],
                worst_slot: int, loading_before: Any, loading_after: Any) -> list[str]:
    """The four plots of the day; returns the file names written in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from flexgrid.assets import simulate_assets

    written: list[str] = []
    hours = config.slot_seconds / 3600

    # 1. DLMP heatmap bus x slot
    dl = doc.get("dlmp") or {}
    if dl.get("eurPerMwh"):
        z = np.asarray(dl["eurPerMwh"], dtype=float)
        fig, ax = plt.subplots(figsize=(11, 6))
        im = ax.imshow(z, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(dl["busOfNode"])), [str(b) for b in dl["busOfNode"]], fontsize=6)
        ax.set_xlabel("slot (15 min from midnight)")
        ax.set_ylabel("bus")
        ax.set_title(f"DLMP (EUR/MWh), round {config.round_id}, {config.grid_id}")
        fig.colorbar(im, ax=ax, label="EUR/MWh")
        fig.tight_layout()
        fig.savefig(out_dir / "dlmp_heatmap.png", dpi=110)
        plt.close(fig)
        written.append("dlmp_heatmap.png")

    # 2. network map: line loading before and after the flexibility, in the most congested slot
    xy = _bus_xy(net)
    top = float(max(np.max(loading_before), np.max(loading_after), 100.0))
    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    cmap = plt.get_cmap("RdYlGn_r")
    norm = plt.Normalize(0, top)
    tod = (config.slot_start_s + worst_slot * config.slot_seconds) % 86_400
    for ax, pct, label in ((axes[0], loading_before, "before"), (axes[1], loading_after, "after")):
        for i, (f, t, ins) in enumerate(zip(net.line.from_bus, net.line.to_bus, net.line.in_service, strict=True)):
            (x0, y0), (x1, y1) = xy[int(f)], xy[int(t)]
            if ins:
                ax.plot([x0, x1], [y0, y1], color=cmap(norm(pct[i])), lw=2 + 6 * min(pct[i], top) / top,
                        ls="-" if pct[i] <= 100.0 else (0, (2, 1)))
                if pct[i] > 100.0:
                    ax.annotate(f"{pct[i]:.0f} %", ((x0 + x1) / 2, (y0 + y1) / 2), fontsize=8, color="darkred")
            else:
                ax.plot([x0, x1], [y0, y1], color="0.8", lw=0.8, ls=":")
        ax.scatter([p[0] for p in xy.values()], [p[1] for p in xy.values()], s=12, color="k", zorder=3)
        for r in requests:
            ax.annotate(f"request bus {r.bus}", xy[r.bus], fontsize=8, color="tab:blue")
        ax.set_title(f"line loading {label} flexibility, slot {worst_slot} ({tod // 3600:02d}:{tod % 3600 // 60:02d}), "
                     f"max {np.max(pct):.1f} %", fontsize=10)
        ax.set_axis_off()
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=norm)
    fig.colorbar(sm, ax=axes, label="loading (% of the line's rating; dashed above 100 %)", shrink=0.7)
    fig.savefig(out_dir / "network_loading.png", dpi=110)
    plt.close(fig)
    written.append("network_loading.png")

    # 3. supply curve of the most congested slot
    slot = worst_slot
    cands = sorted((o for o in offers if slot in o.slots), key=lambda o: o.price_eur_per_mwh)
    bought = {t.order_id: t.kw for t in trades if t.slot == slot and t.payment_micro > 0}
    fig, ax = plt.subplots(figsize=(8, 5))
    x = 0.0
    for o in cands:
        kw = o.max_kw[o.slots.index(slot)]
        ax.bar(x, o.price_eur_per_mwh, width=kw, align="edge", edgecolor="k", lw=0.4,
               color="tab:green" if o.order_id in bought else "0.8")
        x += kw
    need = sum(r.kw[r.slots.index(slot)] for r in requests if slot in r.slots)
    ax.axvline(need, color="tab:red", ls="--", label=f"requested {need:.0f} kW")
    ax.set_xlabel("offered kW (cumulative, cheapest first; green = accepted)")
    ax.set_ylabel("offer price (EUR/MWh)")
    ax.set_title(f"supply curve, slot {slot}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "supply_curve.png", dpi=110)
    plt.close(fig)
    written.append("supply_curve.png")

    # 4. state of charge of the batteries, with the cleared activation
    batteries = {aid: a for aid, a in assets.items() if getattr(a, "kind", "") == "battery"}
    if batteries:
        runs = simulate_assets(batteries, config, [o for o in offers if o.asset_id in batteries], trades)
        fig, ax = plt.subplots(figsize=(9, 5))
        for aid, run in runs.items():
            state = np.concatenate([[batteries[aid].soc_now_pu], np.asarray(run.state, dtype=float)])
            ax.plot((config.slot_start_s % 86_400) / 3600 + np.arange(len(state)) * hours, state,
                    label=batteries[aid].name)
        ax.set_xlabel("hour of the day")
        ax.set_ylabel("state of charge (pu)")
        ax.set_title("batteries: state of charge under the cleared activation")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "battery_soc.png", dpi=110)
        plt.close(fig)
        written.append("battery_soc.png")
    return written


__all__ = ["DAY_STEPS", "DSO_V_MIN_PU", "DayAC", "DayReport", "DaySettings", "day_ac", "day_summary", "line_currents_ka", "run_day", "write_plots"]
