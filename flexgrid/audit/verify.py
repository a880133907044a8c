"""Re-verify a committed clearing from chain data, the published grid model and the published result.

`gather_evidence` reads what the chain says about a round (events through the indexer, the
signatures from the calldata of the transactions that brought each order, the round's
configuration); `verify_round` is pure and checks, each as a named `Finding`:

- `publication`: the published result is for this chain, market and round;
- `grid-model`: the grid model hashes to the round's `gridModelHash` and the publication's `gridId`
  hashes to the round's `gridId`. The model is the pandapower JSON published beside the result
  (`gridModel.file`, read by `audit_round` from the publication's folder) when the round's grid is
  not a built-in network; else the built-in network with that hash (the one `gridId` names first);
- `round-config`: the round configuration in the publication is the one on chain;
- `order-accumulator`: the accumulator over the accepted orders' events equals the committed one;
- `orders-accounted`: every accepted order is used or dropped (never silently omitted), and each
  dropped order really is invalid (its signature fails or the clearing's own order checks refuse it);
- `signatures`: every used offer and P2P order is signed by its provider/trader (ECDSA recovered
  from the calldata; orders relayed through another contract are reported as checked on chain only);
- `input-hash`: the canonical input hash of the used orders equals the committed `inputHash`
  and the publication's `inputs`;
- `certificate`: its hash is the committed one, it verifies without a solver (feasibility, duality
  gap, stationarity, prices from duals), it belongs to these inputs, and the published DLMPs are its;
- `trade-root`: the published trades hash to the committed root and total payout;
- `trades`: each trade is for a used order and its participant, in one of its slots, within its
  power, with a payment that follows from its price and power, and at the price the pricing rule
  allows where that is checkable without a solver (pay-as-bid, uniform), no offer paid below its bid,
  no request charged above its cap;
- `funded-pricing` (rounds settled on chain, `clearing.fundedOnly`): every FlexOffer and FlexRequest
  leaf is recomputed from the certificate's offer-to-request assignment and duals by the funded rule
  (`flexgrid.market.clearing.funded_leaves`; DLMP prices from the duals), and the payer leaves
  cover the payee leaves;
- `sealed` (ENCRYPTED rounds): the round key was published and matches the round's public key, every
  ciphertext opens, and the offers used are exactly the ones sealed before gate closure;
- `metering-root` (when committed and published with readings): the readings hash to the root;
- `resolve` (with `resolve=True`): the clearing re-run from the same inputs gives the same trades
  (each difference named: missing, extra, changed quantity or price) and the same root.

A failing check reads as a plain statement of what does not match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine
from web3 import Web3

from flexgrid.chain.deploy import Deployment
from flexgrid.chain.indexer import EventIndexer, accepted_order_hashes, jsonable, round_events, round_orders
from flexgrid.chain.market import MarketClient, grid_id_hash, offer_from_struct, p2p_from_struct
from flexgrid.errors import FlexGridError, InputError
from flexgrid.trading.canonical import canonical_hash, canonical_inputs, canonical_json, order_accumulator
from flexgrid.trading.eip712 import Eip712Domain, digest, recover_signer
from flexgrid.trading.merkle import MeteringTree, TradeTree
from flexgrid.trading.models import (
    Direction,
    FlexOffer,
    FlexRequest,
    MeterReading,
    P2POrder,
    PricingRule,
    RoundConfig,
    SealMode,
    Trade,
)
from flexgrid.trading.sealing import (
    check_sealed_round,
    commitments_from_events,
    open_commitments,
    public_key_of,
)
from flexgrid.trading.units import value_micro_down, value_micro_up

Order = FlexRequest | FlexOffer | P2POrder


@dataclass(frozen=True)
class Finding:
    """The outcome of one check: `ok`, and plain statements of what does (not) match."""

    check: str
    ok: bool
    details: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "details": list(self.details)}


@dataclass
class AuditReport:
    """All findings for one round; `ok` when every check passed."""

    round_id: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.findings) and all(f.ok for f in self.findings)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def problems(self) -> list[str]:
        """Every failing statement, prefixed by its check."""
        return [f"{f.check}: {d}" for f in self.failures for d in (f.details or ("failed",))]

    def add(self, check: str, problems: Sequence[str], ok_detail: str = "") -> None:
        if problems:
            self.findings.append(Finding(check, False, tuple(problems)))
        else:
            self.findings.append(Finding(check, True, (ok_detail,) if ok_detail else ()))

    def to_dict(self) -> dict[str, Any]:
        return {"round_id": self.round_id, "ok": self.ok, "findings": [f.to_dict() for f in self.findings]}


@dataclass(frozen=True)
class RoundEvidence:
    """What the chain says about one round, gathered by `gather_evidence`."""

    domain: Eip712Domain
    round_config: RoundConfig  # as on chain; `grid_id` is the bytes32 hash
    requests: list[FlexRequest]
    offers: list[FlexOffer]
    p2p: list[P2POrder]
    accepted_hashes: list[str]  # in acceptance order
    order_tx: dict[str, str]  # order hash -> transaction that brought it
    signatures: dict[str, str]  # order hash -> 65-byte signature from the calldata
    contract_only: frozenset[str]  # orders whose calldata could not be decoded (relayed by a contract)
    events: list[dict[str, Any]]  # every indexed event of the round
    erc1271_valid: frozenset[str] = frozenset()  # orders of contract signers whose wallet accepts the signature

    def committed(self) -> dict[str, Any] | None:
        found = [e["args"] for e in self.events if e["event"] == "ClearingCommitted"]
        return found[-1] if found else None

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


# ---------------------------------------------------------------------------------------------
# Gathering (I/O)


def _as_struct(value: Any) -> dict[str, Any]:
    s = dict(value)
    for key in ("assetId", "exclusiveGroup"):
        if key in s and isinstance(s[key], str):
            s[key] = bytes.fromhex(s[key][2:])
    return s


def signatures_from_calldata(
    w3: Web3, deployment: Deployment, tx_hashes: Sequence[str]
) -> tuple[dict[str, str], set[str]]:
    """(order hash -> signature, txs not sent to the market) from the transactions' calldata."""
    market = MarketClient(w3, deployment).market
    domain = deployment.domain
    sigs: dict[str, str] = {}
    foreign: set[str] = set()
    for tx_hash in sorted(set(tx_hashes)):
        tx = w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        if str(tx.get("to") or "").lower() != deployment.market.lower():
            foreign.add(tx_hash)
            continue
        fn, args = market.decode_function_input(tx["input"])
        abi_inputs = {p["name"]: p for p in fn.abi["inputs"]}
        name = fn.abi["name"]
        if name in ("submitOffer", "submitOffers", "revealOffers"):
            key = "offer" if name == "submitOffer" else "offers"
            raw = [args[key]] if name == "submitOffer" else list(args[key])
            raw_sigs = [args["signature"]] if name == "submitOffer" else list(args["signatures"])
            param = abi_inputs[key]
            elem = param if name == "submitOffer" else {**param, "type": "tuple"}
            for value, sig in zip(raw, raw_sigs, strict=True):
                offer = offer_from_struct(_as_struct(jsonable(value, elem)))
                sigs[digest(offer, domain)] = "0x" + bytes(sig).hex()
        elif name == "submitP2POrders":
            elem = {**abi_inputs["orders"], "type": "tuple"}
            for value, sig in zip(args["orders"], args["signatures"], strict=True):
                order = p2p_from_struct(_as_struct(jsonable(value, elem)))
                sigs[digest(order, domain)] = "0x" + bytes(sig).hex()
    return sigs, foreign


def gather_evidence(w3: Web3, deployment: Deployment, engine: Engine, round_id: int) -> RoundEvidence:
    """Index the chain into `engine` and collect everything about `round_id` the checks need."""
    EventIndexer(w3, deployment, engine).run_once()
    client = MarketClient(w3, deployment)
    if not 0 < round_id <= client.round_count():
        raise InputError("round", f"round {round_id} does not exist on market {deployment.market}")
    config = client.round_config(round_id)
    orders = round_orders(engine, deployment, round_id)
    events = round_events(engine, deployment, round_id)
    order_tx: dict[str, str] = {}
    for e in events:
        if e["event"] in ("FlexOfferSubmitted", "P2POrderSubmitted"):
            order_tx[str(e["args"]["orderHash"]).lower()] = e["tx_hash"]
    sigs, foreign = signatures_from_calldata(w3, deployment, list(order_tx.values()))
    contract_only = frozenset(h for h, tx in order_tx.items() if tx in foreign)
    erc1271_valid = _erc1271_valid(w3, deployment.domain, [*orders.offers, *orders.p2p], sigs)
    return RoundEvidence(
        domain=deployment.domain,
        round_config=config,
        requests=orders.requests,
        offers=orders.offers,
        p2p=orders.p2p,
        accepted_hashes=[h.lower() for h in accepted_order_hashes(engine, deployment, round_id)],
        order_tx=order_tx,
        signatures={k.lower(): v for k, v in sigs.items()},
        contract_only=contract_only,
        events=events,
        erc1271_valid=erc1271_valid,
    )


def _erc1271_valid(
    w3: Web3, domain: Eip712Domain, orders: Sequence[FlexOffer | P2POrder], sigs: Mapping[str, str]
) -> frozenset[str]:
    """Orders whose signature is not the signer's ECDSA one but its contract wallet accepts (ERC-1271)."""
    from flexgrid.oracle.inputs import erc1271_checker

    check = erc1271_checker(w3)
    valid = set()
    for o in orders:
        h = _order_hash(o)
        sig = sigs.get(h)
        if sig is None:
            continue
        try:
            if recover_signer(o, sig, domain) == o.signer:
                continue
        except InputError:
            pass
        if check(o.signer, bytes.fromhex(h[2:]), bytes.fromhex(sig.removeprefix("0x"))):
            valid.add(h)
    return frozenset(valid)


# ---------------------------------------------------------------------------------------------
# Checking (pure apart from loading the built-in grid named by the publication)


def _hex(value: Any) -> str:
    return str(value).lower()


def _order_hash(order: Order) -> str:
    return str(order.order_id).lower()


def _trades(doc: Mapping[str, Any]) -> list[Trade]:
    from flexgrid.oracle.publication import trades_from_publication

    return trades_from_publication(doc)


@lru_cache(maxsize=4)
def _grid(grid_id: str) -> tuple[Any, Any, str]:
    """A built-in net, its operated view and model hash (cached: built-ins do not change in a process)."""
    from flexgrid.grid import build_view, grid_model_hash, load_net

    net = load_net(grid_id)
    view = build_view(net, grid_id)
    return net, view, grid_model_hash(view)


def _grid_model(doc: Mapping[str, Any], rc_chain: RoundConfig, text: str | None,
                problem: str | None) -> tuple[Any, Any, list[str], str]:
    """(net, view, problems, note) of the round's grid model: the published one when the
    publication names one (`gridModel`) or its text is given, else the built-in network hashing to
    the round's `gridModelHash` (the one `gridId` names first). Net and view are None when the
    model cannot be had or does not hash to the chain's."""
    from flexgrid.grid import BUILTIN_NETS
    from flexgrid.store.grid_models import builtin_by_hash, model_from_json

    want = _hex(rc_chain.grid_model_hash)
    grid_name = str(doc.get("gridId", ""))
    problems = []
    if _hex(doc.get("gridModelHash")) != want:
        problems.append(f"the publication's gridModelHash {doc.get('gridModelHash')} is not the round's {want}")
    entry = doc.get("gridModel")
    if entry or text is not None:
        label = str(entry.get("file", "")) if isinstance(entry, Mapping) else "(given)"
        label = f"published grid model {label}"
        if text is None:
            problems.append(problem or f"the {label} was not read")
            return None, None, problems, label
        try:
            model = model_from_json(text, label, "published")
        except InputError as exc:
            problems.append(f"the {label} cannot be loaded: {exc.reason}")
            return None, None, problems, label
        if model.grid_model_hash != want:
            problems.append(f"the {label} hashes to {model.grid_model_hash}, the round's gridModelHash is "
                            f"{rc_chain.grid_model_hash}")
            return None, None, problems, label
        if isinstance(entry, Mapping) and _hex(entry.get("gridModelHash")) != want:
            problems.append(f"the publication's gridModel.gridModelHash {entry.get('gridModelHash')} is not the "
                            f"round's {want}")
        return model.net, model.view, problems, label
    if grid_name in BUILTIN_NETS:
        try:
            net, view, model_hash = _grid(grid_name)
        except FlexGridError as exc:
            problems.append(f"the grid {grid_name!r} named by the publication cannot be loaded: {exc}")
            return None, None, problems, grid_name
        if model_hash == want:
            return net, view, problems, grid_name
    try:
        found = builtin_by_hash(want, grid_name if grid_name in BUILTIN_NETS else None)
    except FlexGridError as exc:
        problems.append(f"the built-in networks cannot be loaded: {exc}")
        return None, None, problems, grid_name
    if found is None:
        problems.append(f"no built-in network hashes to the round's gridModelHash {rc_chain.grid_model_hash}"
                        + (f" (built-in grid {grid_name!r} hashes to {_grid(grid_name)[2]})"
                           if grid_name in BUILTIN_NETS else "")
                        + ", and the publication publishes no grid model (gridModel)")
        return None, None, problems, grid_name
    return found.net, found.view, problems, f"built-in {found.name}"


def verify_round(
    ev: RoundEvidence,
    publication: Mapping[str, Any] | None,
    *,
    resolve: bool = False,
    metering_readings: Sequence[MeterReading] | None = None,
    grid_model_json: str | None = None,
    grid_model_problem: str | None = None,
) -> AuditReport:
    """Run every check on one round (see the module docstring). `grid_model_json` is the text of
    the grid model published beside the result (`gridModel`), or `grid_model_problem` says why it
    could not be read."""
    rc_chain = ev.round_config
    rid = rc_chain.round_id
    report = AuditReport(round_id=rid)
    committed = ev.committed()
    if committed is None:
        report.add("commit", [f"round {rid} has no committed clearing result on chain"])
        return report
    every: list[Order] = [*ev.requests, *ev.offers, *ev.p2p]
    all_orders: dict[str, Order] = {_order_hash(o): o for o in every}

    # -- the chain alone: the accumulator over every accepted order's event --------------------------
    acc = order_accumulator(rid, ev.accepted_hashes)
    problems = []
    if acc != _hex(committed["orderAccumulator"]):
        problems.append(f"the order events give accumulator {acc}, the commit says {committed['orderAccumulator']}")
    if len(ev.accepted_hashes) != int(committed["orderCount"]):
        problems.append(f"{len(ev.accepted_hashes)} order events, the commit counts {committed['orderCount']}")
    report.add("order-accumulator", problems, f"{len(ev.accepted_hashes)} orders, accumulator {acc}")

    if publication is None:
        report.add("publication", [f"no published result for round {rid} (uri {committed.get('uri')!r})"])
        return report
    doc = publication

    # -- the publication belongs to this round -----------------------------------------------------
    problems = []
    for key, want in (("chainId", ev.domain.chain_id), ("market", ev.domain.verifying_contract.lower()),
                      ("roundId", rid)):
        got = doc.get(key)
        if (str(got).lower() if isinstance(want, str) else got) != want:
            problems.append(f"the publication's {key} is {got!r}, the chain's is {want!r}")
    report.add("publication", problems)
    if problems:
        return report

    # -- grid model ------------------------------------------------------------------------------------
    grid_name = str(doc.get("gridId", ""))
    net, view, problems, grid_note = _grid_model(doc, rc_chain, grid_model_json, grid_model_problem)
    if "0x" + grid_id_hash(grid_name).hex() != _hex(rc_chain.grid_id):
        problems.insert(0, f"grid {grid_name!r} hashes to 0x{grid_id_hash(grid_name).hex()}, "
                        f"the round's gridId is {rc_chain.grid_id}")
    report.add("grid-model", problems, f"{grid_note} = {rc_chain.grid_model_hash}")

    # -- round configuration -------------------------------------------------------------------------
    rc = rc_chain.model_copy(update={"grid_id": grid_name})
    problems = []
    try:
        published_rc = RoundConfig.model_validate(doc["round"])
        if published_rc != rc:
            diff = [k for k in RoundConfig.model_fields if getattr(published_rc, k) != getattr(rc, k)]
            problems.append(f"the published round configuration differs from the chain's in {', '.join(diff)}")
    except (KeyError, InputError) as exc:
        problems.append(f"the publication has no valid round configuration: {exc}")
    report.add("round-config", problems)

    # -- orders accounted for: used or dropped with a true reason --------------------------------------
    inputs = doc.get("inputs") or {}
    used_hashes = {_hex("0x" + int(r["requestId"]).to_bytes(32, "big").hex()) for r in inputs.get("requests", [])}
    used_hashes |= {_hex(o["orderHash"]) for k in ("offers", "p2p") for o in inputs.get(k, [])}
    dropped = {_hex(d["orderHash"]): d for d in doc.get("dropped", [])}
    problems = []
    for h in ev.accepted_hashes:
        if h not in used_hashes and h not in dropped:
            problems.append(f"order {h} was accepted on chain but is neither used nor reported as dropped")
    for h in sorted(used_hashes | set(dropped)):
        if h not in all_orders:
            problems.append(f"order {h} is used or dropped by the oracle but was never accepted on chain")
    for h in sorted(used_hashes & set(dropped)):
        problems.append(f"order {h} is both used and dropped")
    used = [all_orders[h] for h in sorted(used_hashes) if h in all_orders]
    for h, d in sorted(dropped.items()):
        order = all_orders.get(h)
        if order is not None and _order_is_valid(order, ev, rc, view, used):
            problems.append(f"order {h} was dropped as {d.get('reason')!r}, but it is valid: "
                            f"its signature verifies and the clearing's order checks accept it")
    report.add("orders-accounted", problems,
               f"{len(used_hashes)} used, {len(dropped)} dropped, {len(ev.accepted_hashes)} on chain")

    # -- signatures --------------------------------------------------------------------------------------
    problems = []
    contract_only = contract_wallets = 0
    for o in used:
        if isinstance(o, FlexRequest):
            continue
        h = _order_hash(o)
        if h in ev.contract_only:
            contract_only += 1
            continue
        sig = ev.signatures.get(h)
        if sig is None:
            problems.append(f"no signature for order {h} in the calldata of {ev.order_tx.get(h)}")
            continue
        if h in ev.erc1271_valid:
            contract_wallets += 1
            continue
        try:
            signer = recover_signer(o, sig, ev.domain)
        except InputError as exc:
            problems.append(f"order {h}: {exc}")
            continue
        if signer != o.signer:
            problems.append(f"order {h} is signed by {signer}, not by {o.signer}")
    note = f"{sum(not isinstance(o, FlexRequest) for o in used)} signed orders"
    if contract_wallets:
        note += f", {contract_wallets} by contract wallets (ERC-1271)"
    report.add("signatures", problems, note + (f" ({contract_only} relayed by contracts, checked on chain only)"
                                              if contract_only else ""))

    # -- input hash --------------------------------------------------------------------------------------
    problems = []
    used_requests = [o for o in used if isinstance(o, FlexRequest)]
    used_offers = [o for o in used if isinstance(o, FlexOffer)]
    used_p2p = [o for o in used if isinstance(o, P2POrder)]
    mine = canonical_inputs(round_id=rid, domain=ev.domain, grid_model_hash=rc_chain.grid_model_hash,
                            requests=used_requests, offers=used_offers, p2p=used_p2p)
    my_hash = canonical_hash(mine)
    if my_hash != _hex(committed["inputHash"]):
        problems.append(f"the orders used hash to {my_hash}, the committed inputHash is {committed['inputHash']}")
    if canonical_json(mine) != canonical_json(inputs):
        problems.append("the published inputs are not the chain's orders in canonical form")
    if _hex(doc.get("inputHash")) != _hex(committed["inputHash"]):
        problems.append(f"the publication's inputHash {doc.get('inputHash')} is not the committed one")
    report.add("input-hash", problems, my_hash)

    # -- certificate ---------------------------------------------------------------------------------------
    report.add("certificate", _check_certificate(doc, committed, rc, used))

    # -- trade root ------------------------------------------------------------------------------------------
    problems = []
    try:
        trades = _trades(doc)
    except (KeyError, InputError, ValueError) as exc:
        trades = []
        problems.append(f"the published trades are malformed: {exc}")
    root = TradeTree(trades).root if trades else "0x" + "00" * 32
    if root != _hex(committed["tradeRoot"]):
        problems.append(f"the published trades hash to root {root}, the committed root is {committed['tradeRoot']}")
    payout = sum(t.payment_micro for t in trades if t.payment_micro > 0)
    if payout != int(committed["totalPayout"]):
        problems.append(f"the published trades pay out {payout} micro, the commit says {committed['totalPayout']}")
    report.add("trade-root", problems, f"{len(trades)} leaves, root {root}")

    # -- trades against their orders ----------------------------------------------------------------------
    funded = bool((doc.get("clearing") or {}).get("fundedOnly", False))
    report.add("trades", _check_trades(trades, {_order_hash(o): o for o in used}, rc, funded=funded))
    if funded:
        report.add("funded-pricing", _check_funded(doc, trades, used, rc, view),
                   "every FlexOffer/FlexRequest leaf is the funded pricing of the certificate's assignment")

    # -- sealed offers ---------------------------------------------------------------------------------------
    if rc_chain.seal_mode == SealMode.ENCRYPTED:
        considered = [*(_order_hash(o) for o in used if isinstance(o, FlexOffer)), *dropped]
        sealed_problems, notes = _check_sealed(ev, considered, doc.get("sealedCiphertexts") or {},
                                               doc.get("sealed") or {})
        n_sealed = len(ev.of("OfferCommitted"))
        report.findings.append(Finding("sealed", not sealed_problems, tuple(sealed_problems or [
            f"{n_sealed} commitments, {n_sealed - len(notes)} opened and used or dropped", *notes])))

    # -- metering and settlement ----------------------------------------------------------------------------
    metering = ev.of("MeteringCommitted")
    if metering:
        want = _hex(metering[-1]["args"]["meteringRoot"])
        if metering_readings is None:
            report.add("metering-root", [], f"committed {want}; no readings published, so not recomputed")
        else:
            mroot = MeteringTree(list(metering_readings)).root if metering_readings else "0x" + "00" * 32
            report.add("metering-root", [] if mroot == want else
                       [f"the metering readings hash to {mroot}, the committed metering root is {want}"],
                       f"{len(metering_readings)} readings, root {mroot}")
    if ev.of("PaymentSettled") or ev.of("ChargeSettled"):
        report.add("settlement", _check_settlement(ev, trades, rc))

    # -- re-run ----------------------------------------------------------------------------------------------
    if resolve:
        report.add("resolve", _resolve(doc, rc, used, trades, net, view, committed))
    return report


def _order_is_valid(order: Order, ev: RoundEvidence, rc: RoundConfig, view: Any, used: Sequence[Order]) -> bool:
    """Whether a dropped order should have been used: its signature verifies (or the market checked
    it, relayed by a contract), the clearing's order checks accept it, alone and beside the used ones
    (exclusive options)."""
    from flexgrid.market import check_orders

    if not isinstance(order, FlexRequest):
        h = _order_hash(order)
        sig = ev.signatures.get(h)
        if sig is None and h not in ev.contract_only:
            return False
        if sig is not None and h not in ev.erc1271_valid:
            try:
                if recover_signer(order, sig, ev.domain) != order.signer:
                    return False
            except InputError:
                return False
    if view is None:
        return True
    try:
        check_orders([order], rc, view, None)
        check_orders([*used, order], rc, view, None)
    except InputError:
        return False
    return True


def _check_certificate(doc: Mapping[str, Any], committed: Mapping[str, Any], rc: RoundConfig,
                       used: Sequence[Order]) -> list[str]:
    from flexgrid.market import Certificate, inputs_hash, verify

    cert_doc = doc.get("certificate")
    if cert_doc is None:
        if int(_hex(committed["certificateHash"]), 16) != 0:
            return ["a certificate hash is committed but the publication has no certificate"]
        return ["the result has no optimality certificate, so optimality and prices cannot be checked"]
    cert = Certificate(dict(cert_doc))
    problems = []
    if str((doc.get("clearing") or {}).get("formulation")) == "sensitivity":
        problems.append("the round was cleared with the sensitivity formulation, whose LP is linearised at an "
                        "operating point the certificate does not carry: its physics cannot be checked; on-chain "
                        "rounds must be cleared with socp")
    if cert.hash() != _hex(committed["certificateHash"]):
        problems.append(f"the published certificate hashes to {cert.hash()}, "
                        f"the committed certificateHash is {committed['certificateHash']}")
    try:
        verdict = verify(cert)
        problems.extend(f"the certificate does not verify: {r}" for r in verdict.reasons)
    except InputError as exc:
        problems.append(f"the certificate is malformed: {exc}")
    clearing = doc.get("clearing") or {}
    try:
        wholesale = [float(v) for v in clearing["wholesaleEurPerMwh"]]
        import numpy as np

        expected = inputs_hash(rc, rc.grid_model_hash, list(used), np.asarray(wholesale, dtype=float),
                               str(clearing["formulation"]), PricingRule(int(clearing["pricingRule"])),
                               funded_only=bool(clearing.get("fundedOnly", False)))
        if expected != cert.doc.get("inputs_hash"):
            problems.append("the certificate was computed for other inputs than the orders used "
                            f"(its inputs hash {cert.doc.get('inputs_hash')}, these inputs give {expected})")
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"the publication's clearing parameters are incomplete: {exc}")
    dlmp = (doc.get("dlmp") or {}).get("eurPerMwh")
    if dlmp is not None and not _same_prices(dlmp, cert.doc.get("dlmp_eur_per_mwh")):
        problems.append("the published DLMPs are not the certificate's")
    if int(cert.doc.get("round_id", -1)) != rc.round_id:
        problems.append(f"the certificate is for round {cert.doc.get('round_id')}, not {rc.round_id}")
    return problems


def _same_prices(a: Any, b: Any) -> bool:
    """Equal price tables to the certificate's precision (6 decimals of EUR/MWh)."""
    import numpy as np

    try:
        x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    except (TypeError, ValueError):
        return False
    return x.shape == y.shape and bool(np.all(np.abs(x - y) <= 1.5e-6))


def _check_trades(trades: Sequence[Trade], used: Mapping[str, Order], rc: RoundConfig, *,
                  funded: bool = False) -> list[str]:
    problems: list[str] = []
    seen: set[tuple[str, int]] = set()
    slot_s = rc.slot_seconds
    best_bid: dict[tuple[int, int], int] = {}
    for t in trades:
        o = used.get(t.order_id.lower())
        if isinstance(o, FlexOffer) and t.power_w > 0:
            key = (t.slot, int(o.direction))
            best_bid[key] = max(best_bid.get(key, 0), o.price_micro_per_mwh)
    for t in trades:
        h = t.order_id.lower()
        where = f"trade {h} slot {t.slot}"
        if t.round_id != rc.round_id:
            problems.append(f"{where} is for round {t.round_id}")
        if (h, t.slot) in seen:
            problems.append(f"{where} appears twice")
        seen.add((h, t.slot))
        o = used.get(h)
        if o is None:
            problems.append(f"{where} is not for an order used in the clearing")
            continue
        participant = o.dso if isinstance(o, FlexRequest) else o.signer
        if participant is not None and participant.lower() != t.participant.lower():
            problems.append(f"{where} names participant {t.participant}, the order's is {participant}")
        if t.slot not in o.slots:
            problems.append(f"{where}: the order has no slot {t.slot}")
            continue
        i = list(o.slots).index(t.slot)
        limit = (o.max_power_w[i] if isinstance(o, FlexOffer)
                 else o.power_w[i] if isinstance(o, FlexRequest) else o.power_w)
        if t.power_w > limit:
            problems.append(f"{where}: {t.power_w} W accepted, the order offers at most {limit} W")
        value_down = value_micro_down(t.power_w, slot_s, t.price_micro_per_mwh)
        value_up = value_micro_up(t.power_w, slot_s, t.price_micro_per_mwh)
        if t.payment_micro not in (value_down, -value_up):
            problems.append(f"{where}: payment {t.payment_micro} micro does not follow from {t.power_w} W "
                            f"at {t.price_micro_per_mwh} micro/MWh (expected {value_down} or {-value_up})")
        if isinstance(o, FlexOffer) and t.power_w > 0:
            if rc.pricing_rule == PricingRule.PAY_AS_BID and t.price_micro_per_mwh != o.price_micro_per_mwh:
                problems.append(f"{where}: paid {t.price_micro_per_mwh} micro/MWh, pay-as-bid gives its bid "
                                f"{o.price_micro_per_mwh}")
            if t.price_micro_per_mwh < o.price_micro_per_mwh:
                problems.append(f"{where}: paid {t.price_micro_per_mwh} micro/MWh, below its bid "
                                f"{o.price_micro_per_mwh}")
            if rc.pricing_rule == PricingRule.UNIFORM and not funded:  # funded: checked by funded-pricing
                want = best_bid[(t.slot, int(o.direction))]
                if t.price_micro_per_mwh != want:
                    problems.append(f"{where}: paid {t.price_micro_per_mwh} micro/MWh, the uniform price of "
                                    f"its slot is the highest accepted bid {want}")
        if isinstance(o, FlexRequest) and t.price_micro_per_mwh > o.price_cap_micro_per_mwh:
            problems.append(f"{where}: the DSO is charged {t.price_micro_per_mwh} micro/MWh, above its cap "
                            f"{o.price_cap_micro_per_mwh}")
    return problems


def _check_funded(doc: Mapping[str, Any], trades: Sequence[Trade], orders: Sequence[Order], rc: RoundConfig,
                  view: Any) -> list[str]:
    """A round settled on chain (`clearing.fundedOnly`): recompute every FlexOffer and FlexRequest leaf
    from the certificate's assignment, the round's pricing rule and the orders
    (`flexgrid.market.clearing.funded_leaves`: the watts of each offer-to-request pair are priced at
    the offer's rule price within [bid, the request's cap]; offers are paid the mean of their pairs'
    prices rounded down, requests charged their pairs' worth rounded up within their escrow), and
    check that the payer leaves cover the payee leaves. VCG prices need a re-solve (`--resolve`): without it only the quantities
    and the bounds of the prices are checked (bid, caps)."""
    import numpy as np

    from flexgrid.market import Certificate
    from flexgrid.market.certificate import assignment_from_certificate, dlmp_from_duals
    from flexgrid.market.clearing import funded_allocation_w, funded_leaves, leaf_order_id, price_to_micro

    problems: list[str] = []
    payee = sum(t.payment_micro for t in trades if t.payment_micro > 0)
    payer = -sum(t.payment_micro for t in trades if t.payment_micro < 0)
    if payee > payer:
        problems.append(f"the payee leaves ({payee} micro) exceed the payer leaves ({payer} micro): "
                        "the requests' escrow cannot pay them")
    cert_doc = doc.get("certificate")
    if cert_doc is None:
        return [*problems, "no certificate: the funded prices cannot be recomputed"]
    cert = Certificate(dict(cert_doc))
    ordered = sorted(orders, key=lambda o: str(o.order_id))
    offers = [o for o in ordered if isinstance(o, FlexOffer)]
    requests = [o for o in ordered if isinstance(o, FlexRequest)]
    off_entries = [(i, k) for i, o in enumerate(offers) for k in range(len(o.slots))]
    req_entries = [(i, k) for i, r in enumerate(requests) for k in range(len(r.slots))]
    rule = PricingRule(rc.pricing_rule)
    try:
        pair_e, pair_q, a_mw = assignment_from_certificate(cert)
        if len(pair_e) and (pair_e.max() >= len(off_entries) or pair_q.max() >= len(req_entries)):
            return [*problems, "the certificate's assignment does not match the orders used"]
        pair_w = funded_allocation_w(pair_e, pair_q, a_mw, [offers[i].max_power_w[k] for i, k in off_entries],
                                     [requests[i].power_w[k] for i, k in req_entries])
        rule_micro: list[int] | None = None
        published = {(t.order_id.lower(), t.slot): t for t in trades}
        if rule == PricingRule.DLMP:
            if view is None:
                return [*problems, "the grid model is not available: the DLMP prices cannot be recomputed"]
            lam = dlmp_from_duals(cert)
            z = cert.doc["z"]
            rho = (np.asarray(z["offer_cover"], dtype=float) / float(cert.doc["slot_h"])
                   if "offer_cover" in z else np.zeros(len(off_entries)))
            rule_micro = []
            for e, (i, k) in enumerate(off_entries):
                o = offers[i]
                v = float(lam[view.node(o.bus), o.slots[k]])
                rule_micro.append(price_to_micro(v + rho[e] if o.direction == Direction.UP else rho[e] - v))
        elif rule == PricingRule.VCG:  # the externalities need a re-solve (--resolve): quantities and bounds here
            rule_micro = [offers[i].price_micro_per_mwh for i, _ in off_entries]
        fl = funded_leaves(rule, offers, requests, off_entries, req_entries, pair_e, pair_q, pair_w,
                           rc.slot_seconds, rule_micro)
    except (FlexGridError, KeyError, TypeError, ValueError, IndexError) as exc:
        return [*problems, f"the funded prices cannot be recomputed from the certificate: {exc}"]
    want: dict[tuple[str, int], tuple[int, int]] = {}
    for e, (i, k) in enumerate(off_entries):
        if fl.offer_w[e] > 0:
            key = (leaf_order_id(offers[i]).lower(), offers[i].slots[k])
            want[key] = (fl.offer_w[e], fl.offer_price_micro[e])
            t = published.get(key)
            if rule == PricingRule.VCG and t is not None:
                top = max(requests[req_entries[q][0]].price_cap_micro_per_mwh
                          for q in pair_q[(pair_e == e) & (pair_w > 0)].tolist())
                if t.price_micro_per_mwh > top:
                    problems.append(f"{key[0]} slot {key[1]}: priced {t.price_micro_per_mwh} micro/MWh, above "
                                    f"the highest cap {top} of the requests it serves")
                want[key] = (fl.offer_w[e], t.price_micro_per_mwh)  # bounded here; the bid by `trades`
    for q, (i, k) in enumerate(req_entries):
        if fl.request_w[q] > 0:
            want[(leaf_order_id(requests[i]).lower(), requests[i].slots[k])] = (fl.request_w[q],
                                                                                fl.request_price_micro[q])
    requests_leaves = {leaf_order_id(r).lower() for r in requests}
    flex = {leaf_order_id(o).lower() for o in offers} | requests_leaves
    have = {key: (t.power_w, t.price_micro_per_mwh) for key, t in published.items() if key[0] in flex}
    for key in sorted(want.keys() - have.keys()):
        problems.append(f"{key[0]} slot {key[1]}: funded pricing gives {want[key][0]} W at {want[key][1]} "
                        "micro/MWh, the result has no such leaf")
    for key in sorted(have.keys() - want.keys()):
        problems.append(f"{key[0]} slot {key[1]}: the result has a leaf of {have[key][0]} W that the "
                        "certificate's assignment does not give")
    for key in sorted(want.keys() & have.keys()):
        (w_want, p_want), (w_have, p_have) = want[key], have[key]
        if w_want != w_have:
            problems.append(f"{key[0]} slot {key[1]}: {w_have} W in the result, the certificate's assignment "
                            f"gives {w_want} W")
        if p_want != p_have and not (rule == PricingRule.VCG and key[0] in requests_leaves):
            problems.append(f"{key[0]} slot {key[1]}: priced {p_have} micro/MWh, funded {rule.name} pricing "
                            f"gives {p_want}")
    return problems


def _check_settlement(ev: RoundEvidence, trades: Sequence[Trade], rc: RoundConfig) -> list[str]:
    """Each settled leaf against the published trade and the settlement rule of the trading language."""
    from flexgrid.trading.models import settle

    by_leaf = {(t.participant.lower(), t.order_id.lower(), t.slot): t for t in trades}
    problems = []
    for e in ev.of("ChargeSettled"):
        a = e["args"]
        key = (str(a["payer"]).lower(), _hex(a["orderHash"]), int(a["slot"]))
        t = by_leaf.get(key)
        if t is None:
            problems.append(f"a charge was settled for {key[1]} slot {key[2]}, which is not a published trade")
        elif int(a["amount"]) != -t.payment_micro:
            problems.append(f"{key[1]} slot {key[2]}: charged {a['amount']} micro, the trade says {-t.payment_micro}")
    for e in ev.of("PaymentSettled"):
        a = e["args"]
        key = (str(a["payee"]).lower(), _hex(a["orderHash"]), int(a["slot"]))
        t = by_leaf.get(key)
        if t is None:
            problems.append(f"a payment was settled for {key[1]} slot {key[2]}, which is not a published trade")
            continue
        s = settle(t, int(a["deliveredPowerW"]) / 1000, tolerance_bps=rc.tolerance_bps, penalty_bps=rc.penalty_bps)
        if int(a["payout"]) != max(s.paid_micro, 0):
            problems.append(f"{key[1]} slot {key[2]}: paid {a['payout']} micro for {a['deliveredPowerW']} W delivered, "
                            f"the settlement rule gives {max(s.paid_micro, 0)}")
        if int(a["penaltyFromDeposit"]) > s.deposit_penalty_micro:
            problems.append(f"{key[1]} slot {key[2]}: {a['penaltyFromDeposit']} micro taken from the deposit, "
                            f"the rule allows at most {s.deposit_penalty_micro}")
    return problems


def readings_from_json(doc: Any, round_id: int) -> list[MeterReading]:
    """Metering readings from JSON: a list, or an object with `readings`; each reading
    `{participant, orderHash, slot, deliveredPowerW}` (on-chain encoding) or the model's own fields."""
    items = doc.get("readings") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise InputError("readings", "expected a list of metering readings")
    out = []
    for i, r in enumerate(items):
        if not isinstance(r, dict):
            raise InputError(f"readings[{i}]", "expected an object")
        if "deliveredPowerW" in r:
            out.append(MeterReading(round_id=int(r.get("roundId", round_id)), participant=r["participant"],
                                    order_id=str(r["orderHash"]), slot=int(r["slot"]),
                                    delivered_kw=int(r["deliveredPowerW"]) / 1000))
        else:
            out.append(MeterReading.model_validate(r))
    return out


def _check_sealed(
    ev: RoundEvidence, considered: Sequence[str], off_chain: Mapping[str, str],
    report: Mapping[str, Any] | None = None,
) -> tuple[list[str], list[str]]:
    """(problems, notes). `considered`: the offers the oracle used or dropped (a drop's reason is
    checked by `orders-accounted`). Ciphertexts that do not open are a bidder's fault: notes;
    commitments without a ciphertext that their bidder revealed are commit-reveal bids: notes.
    `off_chain`: the ciphertexts received through the API (published as `sealedCiphertexts`);
    `report`: the publication's `sealed`, whose claims (a ciphertext received through the API, an
    offer opened from its ciphertext) must hold for the auditor too."""
    keys = ev.of("RoundKeyPublished")
    if not keys:
        return ["the round key has not been published, so the sealed offers cannot be checked"], []
    secret = str(keys[-1]["args"]["secretKey"])
    problems = []
    if public_key_of(secret) != _hex(ev.round_config.encryption_key):
        problems.append(f"the published secret key does not belong to the round's public key "
                        f"{ev.round_config.encryption_key}")
        return problems, []
    sealed = commitments_from_events(ev.of("OfferCommitted"), off_chain)
    opened = open_commitments(sealed, secret, round_id=ev.round_config.round_id, domain=ev.domain)
    revealed = {str(e["args"]["commitment"]): str(e["args"]["orderHash"]) for e in ev.of("OfferRevealed")}
    check = check_sealed_round(opened, revealed, considered)
    problems.extend(check.problems)
    problems.extend(_check_off_chain_claims(ev, opened, off_chain, report or {}))
    revealed_l = {c.lower() for c in revealed}
    with_ciphertext = {s.commitment.lower() for s in sealed if s.ciphertext}
    notes = []
    for o in opened:
        c = o.commitment.lower()
        if o.ok:
            continue
        if c not in with_ciphertext and c in revealed_l:
            notes.append(f"commit-reveal commitment {o.commitment} of {o.provider}: no ciphertext, revealed by its bidder")
        else:
            also = " (revealed by its salt all the same)" if c in revealed_l else ""
            notes.append(f"rejected commitment {o.commitment} of {o.provider}: {o.problem}{also}")
    return problems, notes


def _check_off_chain_claims(ev: RoundEvidence, opened: Sequence[Any], off_chain: Mapping[str, str],
                            report: Mapping[str, Any]) -> list[str]:
    """The published off-chain ciphertexts belong to this round's commitments without calldata
    ciphertext, and what the oracle's report says it received or opened, the auditor finds too."""
    problems = []
    empty = {str(e["args"]["commitment"]).lower() for e in ev.of("OfferCommitted")
             if str(e["args"].get("ciphertext") or "0x") in ("0x", "")}
    for c in off_chain:
        if c.lower() not in empty:
            problems.append(f"sealedCiphertexts has a ciphertext for {c}, which is not a commitment of this round "
                            "without a ciphertext in its calldata")
    ok = {o.commitment.lower() for o in opened if o.ok}
    published = {c.lower() for c in off_chain}
    if "commitments" in report:
        listed = {str(x.get("commitment", "")).lower() for x in report["commitments"]}
        for o in opened:
            if o.commitment.lower() not in listed:
                problems.append(f"commitment {o.commitment} of {o.provider} is on chain but missing from the "
                                "oracle's sealed.commitments report")
    for entry in report.get("commitments") or []:
        c = str(entry.get("commitment", "")).lower()
        if entry.get("ciphertext") == "api" and c not in published:
            problems.append(f"the oracle reports a ciphertext received through the API for {c}, but does not "
                            "publish it in sealedCiphertexts")
        if entry.get("sealedBy") == "encryption" and c not in ok:
            problems.append(f"the oracle reports {c} opened from its ciphertext, but the ciphertext on chain or "
                            "in sealedCiphertexts does not open to the committed offer")
    return problems


def _resolve(doc: Mapping[str, Any], rc: RoundConfig, used: Sequence[Order], trades: Sequence[Trade],
             net: Any, view: Any, committed: Mapping[str, Any]) -> list[str]:
    from flexgrid.grid import synthetic_profiles
    from flexgrid.market import clear_market

    if net is None or view is None:
        return ["cannot re-run: the grid model is not available"]
    clearing = doc.get("clearing") or {}
    profiles = synthetic_profiles(net, view, slot_start_s=rc.slot_start_s, slot_seconds=rc.slot_seconds,
                                  slot_count=rc.slot_count)
    try:
        out = clear_market(net, profiles, rc, list(used), wholesale_eur_per_mwh=clearing["wholesaleEurPerMwh"],
                           formulation=str(clearing["formulation"]),
                           pricing=PricingRule(int(clearing["pricingRule"])), view=view, ac_validation=False,
                           funded_only=bool(clearing.get("fundedOnly", False)))
    except (FlexGridError, KeyError) as exc:
        return [f"the clearing cannot be re-run from the published inputs: {exc}"]
    problems = []
    mine = {(t.order_id.lower(), t.slot): t for t in out.trades}
    theirs = {(t.order_id.lower(), t.slot): t for t in trades}
    for key in sorted(mine.keys() - theirs.keys()):
        t = mine[key]
        problems.append(f"the re-run accepts {t.kw:g} kW of {key[0]} in slot {key[1]} at "
                        f"{t.price_eur_per_mwh:g} EUR/MWh; the committed result has no such trade")
    for key in sorted(theirs.keys() - mine.keys()):
        t = theirs[key]
        problems.append(f"the committed result has {t.kw:g} kW of {key[0]} in slot {key[1]}; the re-run has none")
    for key in sorted(mine.keys() & theirs.keys()):
        a, b = mine[key], theirs[key]
        if a.power_w != b.power_w:
            problems.append(f"{key[0]} slot {key[1]}: the committed result has {b.kw:g} kW, the re-run {a.kw:g} kW")
        if a.price_micro_per_mwh != b.price_micro_per_mwh:
            problems.append(f"{key[0]} slot {key[1]}: the committed price is {b.price_eur_per_mwh:g} EUR/MWh, "
                            f"the re-run's {a.price_eur_per_mwh:g}")
        elif a.payment_micro != b.payment_micro:
            problems.append(f"{key[0]} slot {key[1]}: the committed payment is {b.payment_eur:g} EUR, "
                            f"the re-run's {a.payment_eur:g}")
    if out.merkle_root != _hex(committed["tradeRoot"]) and not problems:
        problems.append(f"the re-run's root {out.merkle_root} differs from the committed {committed['tradeRoot']}")
    return problems


# ---------------------------------------------------------------------------------------------
# Everything together


def load_round_publication(uri: str) -> dict[str, Any] | None:
    """The published result at `uri` (a path or `file://` URI), or None when there is none."""
    from flexgrid.oracle.publication import load_publication

    if not uri:
        return None
    try:
        return load_publication(uri)
    except InputError:
        return None


def audit_round(
    w3: Web3,
    deployment: Deployment,
    engine: Engine,
    round_id: int,
    *,
    resolve: bool = False,
    publication: Mapping[str, Any] | None = None,
    metering_readings: Sequence[MeterReading] | None = None,
    publication_source: str | None = None,
    grid_model_json: str | None = None,
) -> AuditReport:
    """Gather the evidence for `round_id` and verify it; the publication is read from the URI
    committed on chain unless given (then `publication_source`, its path or URI, says where the
    grid model it publishes beside it is). `grid_model_json` overrides the published grid model."""
    from flexgrid.oracle.publication import published_grid_model

    ev = gather_evidence(w3, deployment, engine, round_id)
    committed = ev.committed()
    if publication is None and committed is not None:
        publication_source = str(committed.get("uri", ""))
        publication = load_round_publication(publication_source)
    grid_problem = None
    if grid_model_json is None and publication is not None and publication.get("gridModel"):
        if publication_source is None:
            grid_problem = "the publication names a grid model file, but not where the publication was read from"
        else:
            try:
                grid_model_json = published_grid_model(publication_source, publication)
            except (InputError, OSError) as exc:
                grid_problem = str(exc)
    metering = ev.of("MeteringCommitted")
    if metering_readings is None and metering:
        metering_readings = _readings_at(str(metering[-1]["args"].get("uri", "")), round_id)
    return verify_round(ev, publication, resolve=resolve, metering_readings=metering_readings,
                        grid_model_json=grid_model_json, grid_model_problem=grid_problem)


def _readings_at(uri: str, round_id: int) -> list[MeterReading] | None:
    """Readings published at a `file://` URI or path, if there are any."""
    import json
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    if not uri:
        return None
    path = Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri)
    if not path.is_file():
        return None
    try:
        return readings_from_json(json.loads(path.read_text()), round_id)
    except (ValueError, KeyError):
        return None


__all__ = [
    "AuditReport",
    "Finding",
    "RoundEvidence",
    "audit_round",
    "gather_evidence",
    "load_round_publication",
    "readings_from_json",
    "signatures_from_calldata",
    "verify_round",
]
