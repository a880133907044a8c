"""`flexgrid audit verify`: an honest round verifies; a dishonest oracle is caught every time.

One round on case33bw is set up once on the worker's anvil (a DSO request at the weak end of the
feeder, five signed offers, one of them at a bus the grid does not have); it is cleared honestly
with the real engine. Each test then commits a result with the oracle account — honest, or made
dishonest by changing the honest one — publishes it, and runs the auditor's CLI against the chain.
The chain is snapshotted around each test, so every test commits to the same fresh round.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from flexgrid.chain.indexer import EventIndexer, accepted_order_hashes, round_orders
from flexgrid.chain.node import AnvilNode, revert_to, snapshot
from flexgrid.cli.main import app
from flexgrid.grid import build_view, load_net, synthetic_profiles
from flexgrid.market import clear_market
from flexgrid.oracle.publication import publication_path, trade_json, write_publication
from flexgrid.store import init_db, make_engine
from flexgrid.trading import (
    ClearingResult,
    Direction,
    FlexOffer,
    FlexRequest,
    P2POrder,
    PricingRule,
    SealMode,
    Side,
    Trade,
)
from flexgrid.trading.canonical import canonical_inputs, canonical_json, order_accumulator
from flexgrid.trading.merkle import TradeTree
from flexgrid.trading.units import value_micro_down
from tests.conftest import MarketEnv
from tests.oracle.helpers import OracleRound

pytestmark = [pytest.mark.chain, pytest.mark.xdist_group("audit-verify")]

GRID = "case33bw"
SLOTS = 4
SLOT_S = 900
WHOLESALE = [60.0] * SLOTS
OFFERS = (  # provider index, bus, max kW, price EUR/MWh
    (0, 17, 120.0, 110.0),
    (1, 16, 90.0, 95.0),
    (2, 15, 80.0, 140.0),
    (3, 6, 150.0, 180.0),
    (4, 500, 50.0, 90.0),  # no bus 500 in case33bw: valid on chain, refused by the clearing
)


@dataclass
class Round:
    env: MarketEnv
    url: str
    deployment_file: Path
    out: Path
    rc: Any
    orders: list[FlexRequest | FlexOffer | P2POrder]  # every order on chain, order_id = order hash
    invalid: str  # the order hash of the offer at the unknown bus
    accepted: list[str]  # order hashes in acceptance order
    net: Any
    view: Any
    doc: dict[str, Any]  # the honest publication


def _asset(i: int) -> str:
    return "0x" + f"{i + 1:02x}" * 32


def _publication(r: Round, used: list[Any], dropped: list[tuple[str, str]], trades: list[Trade],
                 outcome: Any) -> dict[str, Any]:
    """A publication in the oracle's format (flexgrid.oracle.publication) of a clearing result."""
    env, rc = r.env, r.rc
    domain = env.deployment.domain
    requests = [o for o in used if isinstance(o, FlexRequest)]
    offers = [o for o in used if isinstance(o, FlexOffer)]
    p2p = [o for o in used if isinstance(o, P2POrder)]
    inputs = canonical_inputs(round_id=rc.round_id, domain=domain, grid_model_hash=rc.grid_model_hash,
                              requests=requests, offers=offers, p2p=p2p)
    from eth_utils import keccak

    accepted = r.accepted
    cert = outcome.certificate
    return {
        "format": "flexgrid-clearing-publication/1",
        "chainId": domain.chain_id,
        "market": domain.verifying_contract.lower(),
        "roundId": rc.round_id,
        "gridId": GRID,
        "gridModelHash": rc.grid_model_hash,
        "round": rc.model_dump(mode="json"),
        "orderAccumulator": order_accumulator(rc.round_id, [str(h) for h in accepted]),
        "orderCount": len(accepted),
        "inputs": inputs,
        "inputHash": "0x" + bytes(keccak(canonical_json(inputs))).hex(),
        "dropped": [{"orderHash": h, "kind": "offer", "participant": "", "txHash": "", "reason": why}
                    for h, why in dropped],
        "signatures": {},
        "signatureChecks": {},
        "clearing": {"formulation": "socp", "pricingRule": int(rc.pricing_rule), "wholesaleEurPerMwh": WHOLESALE,
                     "objectiveEur": outcome.objective_eur, "mipGap": outcome.mip_gap,
                     "relaxationGapMw": outcome.relaxation_gap_mw, "budgetBalanceEur": outcome.budget_balance_eur,
                     "notes": list(outcome.notes)},
        "trades": [trade_json(t) for t in trades],
        "tradeRoot": TradeTree(trades).root,
        "totalPayoutMicro": sum(t.payment_micro for t in trades if t.payment_micro > 0),
        "certificate": json.loads(cert.to_json()) if cert is not None else None,
        "certificateHash": outcome.certificate_hash,
        "dlmp": {"busOfNode": [int(b) for b in outcome.bus_of_node],
                 "eurPerMwh": cert.doc["dlmp_eur_per_mwh"] if cert is not None else None},
    }


def _clear(r: Round, used: list[Any]) -> Any:
    profiles = synthetic_profiles(r.net, r.view, slot_start_s=r.rc.slot_start_s, slot_seconds=SLOT_S,
                                  slot_count=SLOTS)
    return clear_market(r.net, profiles, r.rc, used, wholesale_eur_per_mwh=WHOLESALE, formulation="socp",
                        view=r.view, ac_validation=False)


@pytest.fixture(scope="module")
def honest(market_env: MarketEnv, anvil: AnvilNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Round]:
    env = market_env
    snap = snapshot(env.w3)
    out = tmp_path_factory.mktemp("audit")
    op, dso = env.client(), env.client(env.dso)
    op.set_dso(GRID, env.dso.address)
    dso.set_metering_agent(GRID, env.metering.address)
    net = load_net(GRID)
    view = build_view(net, GRID)
    now = env.now_s()
    slot_start = (now // 86_400 + 1) * 86_400 + 17 * 3600
    rc = op.create_round(env.round_config(
        grid_id=GRID, grid_model_hash=view.model_hash(), slot_start_s=slot_start, slot_seconds=SLOT_S,
        slot_count=SLOTS, gate_closure_s=now + 1800, pricing_rule=PricingRule.PAY_AS_BID, seal_mode=SealMode.OPEN,
        price_cap_eur_per_mwh=400.0, dispute_window_s=3600,
    ))
    rc = op.round_config(rc.round_id, grid_id=GRID)
    dso.submit_request(FlexRequest(round_id=rc.round_id, bus=14, direction=Direction.UP, slots=tuple(range(SLOTS)),
                                   kw=(200.0,) * SLOTS, price_cap_eur_per_mwh=250.0))
    signed = []
    for i, bus, max_kw, price in OFFERS:
        provider = env.providers[i]
        offer = FlexOffer(provider=provider.address, round_id=rc.round_id, bus=bus, asset_id=_asset(i),
                          direction=Direction.UP, slots=tuple(range(SLOTS)), min_kw=(0.0,) * SLOTS,
                          max_kw=(max_kw,) * SLOTS, price_eur_per_mwh=price, nonce=rc.round_id << 64,
                          expiry_s=rc.gate_closure_s)
        signed.append(offer.sign(provider, env.deployment.domain))
    env.client(env.providers[5]).submit_offers(signed)  # a relayer
    p2p = [P2POrder(trader=env.providers[4].address, round_id=rc.round_id, bus=10, side=Side.SELL, slot=0, kw=20.0,
                    limit_price_eur_per_mwh=50.0, nonce=(rc.round_id << 64) | 1, expiry_s=rc.gate_closure_s),
           P2POrder(trader=env.providers[5].address, round_id=rc.round_id, bus=12, side=Side.BUY, slot=0, kw=20.0,
                    limit_price_eur_per_mwh=200.0, nonce=rc.round_id << 64, expiry_s=rc.gate_closure_s)]
    env.client(env.providers[0]).submit_p2p_orders(
        [o.sign(env.providers[4 + i], env.deployment.domain) for i, o in enumerate(p2p)])
    env.time_travel(rc.gate_closure_s)

    engine = make_engine(f"sqlite:///{out / 'oracle.db'}")
    init_db(engine)
    EventIndexer(env.w3, env.deployment, engine).run_once()
    chain_orders = round_orders(engine, env.deployment, rc.round_id)
    orders: list[FlexRequest | FlexOffer | P2POrder] = [*chain_orders.requests, *chain_orders.offers,
                                                         *chain_orders.p2p]
    assert sorted(str(o.order_id) for o in orders) == sorted(accepted_order_hashes(engine, env.deployment,
                                                                                     rc.round_id))
    assert len(chain_orders.p2p) == 2
    invalid = signed[-1].order_hash
    deployment_file = out / "deployment.json"
    env.deployment.save(deployment_file)
    r = Round(env, anvil.url, deployment_file, out, rc, orders, invalid,
              accepted_order_hashes(engine, env.deployment, rc.round_id), net, view, {})
    used = [o for o in orders if o.order_id != invalid]
    outcome = _clear(r, used)
    assert any(t.order_id == signed[0].order_hash for t in outcome.trades)  # the cheap offers are bought
    assert {t.order_id for t in outcome.trades} >= {str(o.order_id) for o in chain_orders.p2p}  # P2P matched
    r.doc = _publication(r, used, [(invalid, "bus 500 is not in case33bw")], list(outcome.trades), outcome)
    try:
        yield r
    finally:
        revert_to(env.w3, snap)


@pytest.fixture
def fresh(honest: Round) -> Iterator[Round]:
    snap = snapshot(honest.env.w3)
    try:
        yield honest
    finally:
        revert_to(honest.env.w3, snap)


def _commit_and_audit(r: Round, doc: dict[str, Any], *, resolve: bool = True) -> tuple[int, str]:
    """Commit `doc`'s result with the oracle account, publish it, run `flexgrid audit verify`."""
    trades = [Trade(round_id=t["roundId"], participant=t["participant"], order_id=t["orderHash"], slot=t["slot"],
                    kw=t["powerW"] / 1000, price_eur_per_mwh=t["priceMicroPerMwh"] / 1e6,
                    payment_eur=t["paymentMicro"] / 1e6) for t in doc["trades"]]
    doc = {**doc, "tradeRoot": TradeTree(trades).root,
           "totalPayoutMicro": sum(t.payment_micro for t in trades if t.payment_micro > 0)}
    path = publication_path(r.out, doc["chainId"], doc["market"], doc["roundId"])
    write_publication(path, doc)
    r.env.client(r.env.oracle).commit_clearing(ClearingResult(
        round_id=r.rc.round_id, trades=tuple(trades), merkle_root=doc["tradeRoot"], input_hash=doc["inputHash"],
        certificate_hash=doc["certificateHash"], uri=path.resolve().as_uri()))
    args = ["audit", "verify", "--round", str(r.rc.round_id), "--deployment", str(r.deployment_file),
            "--rpc-url", r.url]
    result = CliRunner().invoke(app, [*args, "--resolve"] if resolve else args)
    return result.exit_code, result.output


def _with_trade(doc: dict[str, Any], index: int, **change: Any) -> dict[str, Any]:
    trades = [dict(t) for t in doc["trades"]]
    t = trades[index]
    t.update(change)
    t["paymentMicro"] = value_micro_down(t["powerW"], SLOT_S, t["priceMicroPerMwh"])  # a careful cheat
    return {**doc, "trades": trades}


def _offer_trade(doc: dict[str, Any]) -> int:
    """The index of the FlexOffer leaf with the most power."""
    offers = {o["orderHash"] for o in doc["inputs"]["offers"]}
    leaves = [(t["powerW"], i) for i, t in enumerate(doc["trades"]) if t["orderHash"] in offers]
    power_w, i = max(leaves)
    assert power_w > 20_000, "the honest round buys tens of kW from its offers"
    return i


def test_honest_result_verifies(fresh: Round) -> None:
    code, output = _commit_and_audit(fresh, fresh.doc)
    assert code == 0, output
    assert f"round {fresh.rc.round_id}: VERIFIED" in output


def test_raised_price_is_caught(fresh: Round) -> None:
    i = _offer_trade(fresh.doc)
    t = fresh.doc["trades"][i]
    code, output = _commit_and_audit(fresh, _with_trade(fresh.doc, i, priceMicroPerMwh=t["priceMicroPerMwh"] + 25_000_000))
    assert code == 1
    assert "pay-as-bid gives its bid" in output  # seen without re-running the clearing
    assert f"{t['orderHash']} slot {t['slot']}: the committed price is" in output  # and by the re-run


def test_dropped_trade_is_caught(fresh: Round) -> None:
    i = _offer_trade(fresh.doc)
    t = fresh.doc["trades"][i]
    doc = {**fresh.doc, "trades": [x for j, x in enumerate(fresh.doc["trades"]) if j != i]}
    code, output = _commit_and_audit(fresh, doc)
    assert code == 1
    assert f"of {t['orderHash']} in slot {t['slot']}" in output and "has no such trade" in output


def test_changed_quantity_is_caught(fresh: Round) -> None:
    i = _offer_trade(fresh.doc)
    t = fresh.doc["trades"][i]
    code, output = _commit_and_audit(fresh, _with_trade(fresh.doc, i, powerW=t["powerW"] - 10_000))
    assert code == 1
    assert f"{t['orderHash']} slot {t['slot']}: the committed result has" in output


@pytest.mark.parametrize("reported", [True, False], ids=["dropped-with-a-false-reason", "silently-left-out"])
def test_omitted_valid_order_is_caught(fresh: Round, reported: bool) -> None:
    victim = next(o for o in fresh.orders if isinstance(o, FlexOffer) and o.bus == 16)
    used = [o for o in fresh.orders if o.order_id not in (fresh.invalid, victim.order_id)]
    outcome = _clear(fresh, used)  # the oracle clears honestly, just without the victim's offer
    dropped = [(fresh.invalid, "bus 500 is not in case33bw")]
    if reported:
        dropped.append((str(victim.order_id), "offer expired"))
    doc = _publication(fresh, used, dropped, list(outcome.trades), outcome)
    code, output = _commit_and_audit(fresh, doc, resolve=False)  # caught from chain data alone
    assert code == 1
    if reported:
        assert f"order {victim.order_id} was dropped as 'offer expired', but it is valid" in output
    else:
        assert f"order {victim.order_id} was accepted on chain but is neither used nor reported" in output


def test_unknown_round_is_a_clear_error(fresh: Round) -> None:
    result = CliRunner().invoke(app, ["audit", "verify", "--round", "9999", "--deployment",
                                      str(fresh.deployment_file), "--rpc-url", fresh.url])
    assert result.exit_code == 2
    assert "round 9999 does not exist" in result.output


def test_certificate_with_a_raised_dlmp_does_not_verify(fresh: Round) -> None:
    from flexgrid.market import Certificate

    cert = json.loads(json.dumps(fresh.doc["certificate"]))
    cert["dlmp_eur_per_mwh"][-1][0] += 30.0  # the end of the feeder looks dearer than its duals say
    doc = {**fresh.doc, "certificate": cert, "certificateHash": Certificate(cert).hash(),
           "dlmp": {**fresh.doc["dlmp"], "eurPerMwh": cert["dlmp_eur_per_mwh"]}}
    code, output = _commit_and_audit(fresh, doc, resolve=False)
    assert code == 1
    assert "certificate: the certificate does not verify: stated DLMPs differ from the duals" in output


def _oracle_commits_then_audit(market: MarketEnv, anvil: AnvilNode, tmp_path: Path, r: OracleRound,
                               *extra: str) -> Result:
    """Close `r`, let the real oracle service clear, commit and publish it, then run
    `flexgrid audit verify --resolve` on it from the chain."""
    from flexgrid.oracle.service import Oracle, OracleSettings, Stage
    from tests.oracle.helpers import close_round

    close_round(market, r)
    oracle = Oracle(market.w3, market.deployment, market.oracle, make_engine(f"sqlite:///{tmp_path / 'o.db'}"),
                    OracleSettings(results_dir=tmp_path / "results"))
    [outcome] = oracle.run_once()
    assert outcome.stage == Stage.PUBLISHED, outcome.detail
    market.deployment.save(tmp_path / "deployment.json")
    return CliRunner().invoke(app, ["audit", "verify", "--round", str(r.round_id), "--deployment",
                                    str(tmp_path / "deployment.json"), "--rpc-url", anvil.url, "--resolve", *extra])


def test_a_round_committed_by_the_oracle_service_verifies(market: MarketEnv, anvil: AnvilNode,
                                                          tmp_path: Path) -> None:
    from tests.oracle.helpers import open_round

    r = open_round(market, offer_buses=(17, 16, 999))  # one offer the oracle must drop
    result = _oracle_commits_then_audit(market, anvil, tmp_path, r)
    assert result.exit_code == 0, result.output
    assert f"round {r.round_id}: VERIFIED" in result.output


def test_a_funded_dlmp_round_verifies_and_a_raised_dlmp_price_is_caught(market: MarketEnv, anvil: AnvilNode,
                                                                         tmp_path: Path) -> None:
    """The request (400 kW at bus 14, cap 300 EUR/MWh) is more than the offers can serve, so its
    flexibility price is its cap and the offers' locational marginal value (DLMP + 300) exceeds it:
    funded, each offer is paid the cap, the request charged no more, and the auditor recomputes
    every leaf from the certificate."""
    from flexgrid.audit.verify import gather_evidence, load_round_publication, verify_round
    from flexgrid.oracle.publication import trades_from_publication
    from tests.oracle.helpers import open_round

    r = open_round(market, offer_buses=(17, 16), request_kw=400.0, pricing_rule=PricingRule.DLMP)
    result = _oracle_commits_then_audit(market, anvil, tmp_path, r, "--json")
    assert result.exit_code == 0, result.output
    checks = {f["check"]: f for f in json.loads(result.output)["findings"]}
    assert checks["funded-pricing"]["ok"] and checks["trades"]["ok"]

    engine = make_engine(f"sqlite:///{tmp_path / 'auditor.db'}")
    init_db(engine)
    ev = gather_evidence(market.w3, market.deployment, engine, r.round_id)
    committed = ev.committed()
    assert committed is not None
    doc = load_round_publication(str(committed["uri"]))
    assert doc is not None
    trades = trades_from_publication(doc)
    offers = {o.order_hash.lower() for o in r.offers}
    assert {t.price_micro_per_mwh for t in trades if t.order_id.lower() in offers} == {300_000_000}  # clamped at the cap
    assert all(t.price_micro_per_mwh <= 300_000_000 for t in trades if t.payment_micro < 0)
    assert sum(t.payment_micro for t in trades) <= 0  # the payer leaves cover the payee leaves

    i = next(i for i, t in enumerate(doc["trades"]) if t["orderHash"].lower() in offers)
    raised = {**doc, "trades": [dict(t) for t in doc["trades"]]}
    leaf = raised["trades"][i]
    leaf["priceMicroPerMwh"] += 1_000_000
    leaf["paymentMicro"] = value_micro_down(leaf["powerW"], r.config.slot_seconds, leaf["priceMicroPerMwh"])
    report = verify_round(ev, raised)
    problems = "\n".join(report.problems())
    assert f"funded-pricing: {leaf['orderHash']} slot {leaf['slot']}: priced 301000000 micro/MWh, funded DLMP " \
           "pricing gives 300000000" in problems


def test_metering_root_and_settled_payments_are_checked(fresh: Round) -> None:
    from dataclasses import replace

    from flexgrid.audit.verify import gather_evidence, verify_round
    from flexgrid.oracle.publication import trades_from_publication
    from flexgrid.trading import MeterReading
    from flexgrid.trading.merkle import MeteringTree

    env, rc = fresh.env, fresh.rc
    code, output = _commit_and_audit(fresh, fresh.doc, resolve=False)
    assert code == 0, output
    trades = trades_from_publication(fresh.doc)
    tree = TradeTree(trades)
    env.client(env.dso).approve_result(rc.round_id)
    env.time_travel(rc.slot_start_s + SLOTS * SLOT_S)
    payees = [t for t in trades if t.payment_micro > 0]
    readings = [MeterReading(round_id=rc.round_id, participant=t.participant, order_id=t.order_id, slot=t.slot,
                             delivered_kw=round(t.kw * (0.5 if i == 0 else 1.0), 3)) for i, t in enumerate(payees)]
    metering_file = fresh.out / "metering.json"
    metering_file.write_text(json.dumps({"readings": [
        {"participant": m.participant, "orderHash": m.order_id, "slot": m.slot, "deliveredPowerW": m.delivered_power_w}
        for m in readings]}))
    mtree = MeteringTree(readings)
    env.client(env.metering).commit_metering(rc.round_id, mtree.root, metering_file.resolve().as_uri())
    anyone = env.client(env.providers[5])
    for t in trades:
        if t.payment_micro < 0:
            anyone.claim_charge(t, tree.proof(t))
    for t, m in zip(payees, readings, strict=True):
        anyone.claim_payment(t, tree.proof(t), m.delivered_kw, mtree.proof(m))

    args = ["audit", "verify", "--round", str(rc.round_id), "--deployment", str(fresh.deployment_file),
            "--rpc-url", fresh.url, "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    checks = {f["check"]: f for f in json.loads(result.output)["findings"]}
    assert checks["metering-root"]["ok"] and checks["metering-root"]["details"][0].startswith(f"{len(payees)} readings")
    assert checks["settlement"]["ok"]

    altered = json.loads(metering_file.read_text())
    altered["readings"][0]["deliveredPowerW"] += 1000  # the under-deliverer claims 1 kW more afterwards
    (fresh.out / "altered.json").write_text(json.dumps(altered))
    result = CliRunner().invoke(app, [*args, "--metering", str(fresh.out / "altered.json")])
    assert result.exit_code == 1
    assert "the metering readings hash to" in result.output

    # a payout that does not follow the settlement rule (as a faulty contract would make) is named
    engine = make_engine(f"sqlite:///{fresh.out / 'auditor.db'}")
    init_db(engine)
    ev = gather_evidence(env.w3, env.deployment, engine, rc.round_id)
    events = [dict(e, args={**e["args"], "payout": int(e["args"]["payout"]) + 1})
              if e["event"] == "PaymentSettled" and e["args"]["orderHash"] == payees[0].order_id else e
              for e in ev.events]
    report = verify_round(replace(ev, events=events), fresh.doc)
    assert [f.check for f in report.failures] == ["settlement"]
    assert "the settlement rule gives" in report.problems()[0]


def test_payment_redirected_to_another_account_is_caught(fresh: Round) -> None:
    i = _offer_trade(fresh.doc)
    t = fresh.doc["trades"][i]
    thief = fresh.env.oracle.address.lower()
    code, output = _commit_and_audit(fresh, _with_trade(fresh.doc, i, participant=thief), resolve=False)
    assert code == 1
    assert f"trade {t['orderHash']} slot {t['slot']} names participant" in output


def test_round_without_a_committed_result_does_not_verify(fresh: Round) -> None:
    result = CliRunner().invoke(app, ["audit", "verify", "--round", str(fresh.rc.round_id), "--deployment",
                                      str(fresh.deployment_file), "--rpc-url", fresh.url])
    assert result.exit_code == 1
    assert f"round {fresh.rc.round_id} has no committed clearing result on chain" in result.output
