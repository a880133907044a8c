"""The oracle service: clear every round past gate closure, commit the result, publish it.

Per round, a persisted checkpoint (`OracleCheckpoint`, one row per chain, market, round and
oracle account) moves through

    read ─► solved ─► sending ─► sent ─► voted ─► published        (or refused, with the reason)

- read: the orders were read from the chain's events and re-verified; the input hash is stored.
- solved: the clearing, AC validation and risk check ran; the whole publication document (hence
  the trade root, the input and certificate hashes and the URI) is stored, so a restart never
  solves again and always commits the same result.
- sending: the commit transaction is signed and its hash, nonce and raw bytes are stored BEFORE it
  is sent; a restart re-broadcasts exactly those bytes (same nonce: it cannot be mined twice).
- sent: the raw transaction was handed to the node.
- voted: the receipt is in (or the chain shows that this oracle voted, or that the round was
  committed with the same root). With a quorum above one, the round may still wait for the
  other oracles' votes.
- published: the round is committed on chain; the publication file is written and its rows are in
  the database (`flexgrid.oracle.publication`).

Before any transaction the chain is asked first (`roundStatus`, `hasVoted`), so an oracle never
votes twice for a round.

Test hook: the environment variable `FLEXGRID_ORACLE_CRASH_AT=<checkpoint>` (or
`OracleSettings.crash_at`) makes the process kill itself with SIGKILL at that checkpoint, one of
`CHECKPOINTS`: after_read, after_solve, before_send (tx stored, not sent), after_send (sent, no
receipt yet), after_receipt, during_publish (file written, rows not yet). It exists for the
crash-recovery tests; never set it in production.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy import BigInteger, Column, Text, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound

from flexgrid.chain.artifacts import decode_revert
from flexgrid.chain.deploy import Deployment
from flexgrid.chain.indexer import EventIndexer, round_events
from flexgrid.chain.market import MarketClient, clearing_struct, grid_id_hash, total_payout_micro
from flexgrid.chain.node import chain_time_s
from flexgrid.chain.transact import revert_data
from flexgrid.errors import ChainError, ContractRevert, FlexGridError, InputError, SolverError
from flexgrid.grid import BUILTIN_NETS, synthetic_profiles
from flexgrid.market import clear_market
from flexgrid.monitoring import build_model
from flexgrid.opf.validate import validate_ac
from flexgrid.oracle.ciphertexts import match_off_chain, off_chain_ciphertexts
from flexgrid.oracle.inputs import OracleInputError, RoundInputs, read_round_inputs
from flexgrid.oracle.publication import (
    FORMAT,
    default_results_uri,
    grid_model_path,
    load_publication,
    publication_path,
    publication_uri,
    store_publication,
    trade_json,
    trades_from_publication,
    write_grid_model,
    write_publication,
)
from flexgrid.oracle.risk_check import ac_json, load_margin_percent, n1_summary, risk_check, stressed_slot
from flexgrid.store.db import init_db, make_engine
from flexgrid.store.grid_models import ResolvedGridModel, resolve_grid_model
from flexgrid.trading.canonical import canonical_hash, canonical_inputs
from flexgrid.trading.merkle import TradeTree
from flexgrid.trading.models import ClearingResult, RoundState, SealMode
from flexgrid.trading.sealing import OpenedCommitment, commitments_from_events, open_commitments, revealable

CRASH_ENV = "FLEXGRID_ORACLE_CRASH_AT"
CHECKPOINTS = ("after_read", "after_solve", "before_send", "after_send", "after_receipt", "during_publish")
ZERO32 = "0x" + "00" * 32

Log = Callable[[str], None]


class Stage(StrEnum):
    NEW = "new"
    READ = "read"
    SOLVED = "solved"
    SENDING = "sending"
    SENT = "sent"
    VOTED = "voted"
    PUBLISHED = "published"
    REFUSED = "refused"


TERMINAL = (Stage.PUBLISHED, Stage.REFUSED)


class OracleError(FlexGridError):
    """The oracle cannot clear or commit a round; the message says why."""


class OracleCheckpoint(SQLModel, table=True):
    """Where one oracle is with one round (see the module docstring)."""

    __tablename__ = "oracle_checkpoint"
    __table_args__ = (UniqueConstraint("chain_id", "market", "round_id", "oracle", name="uq_oracle_round"),)

    id: int | None = Field(default=None, primary_key=True)
    chain_id: int = Field(index=True, sa_type=BigInteger)
    market: str = Field(index=True)
    round_id: int = Field(index=True, sa_type=BigInteger)
    oracle: str = Field(index=True)
    stage: str = Stage.NEW.value
    input_hash: str | None = None
    trade_root: str | None = None
    certificate_hash: str | None = None
    uri: str | None = None
    document: str | None = Field(default=None, sa_column=Column(Text))  # the publication, once solved
    tx_hash: str | None = None
    tx_nonce: int | None = None
    raw_tx: str | None = Field(default=None, sa_column=Column(Text))
    error: str | None = Field(default=None, sa_column=Column(Text))
    updated_s: float = 0.0


@dataclass
class OracleSettings:
    results_dir: Path
    results_uri: str | None = None  # default: the file:// URI of results_dir
    formulation: str = "socp"
    wholesale_eur_per_mwh: float = 60.0
    receipt_timeout_s: float = 120.0
    crash_at: str | None = None
    # ENCRYPTED rounds: the round's X25519 secret key (0x hex), by round id, or as files
    # `<round_keys_dir>/round-<id>.key` holding the hex; without it sealed offers stay closed
    round_secrets: dict[int, str] = field(default_factory=dict)
    round_keys_dir: Path | None = None
    # where ciphertexts sent through the API are stored (`flexgrid.oracle.ciphertexts`): the
    # API's database URL; default: the oracle's own database (the two share it by default)
    ciphertexts_db_url: str | None = None
    # grid models that are not built-in (`flexgrid.store.grid_models`): the ones DSOs uploaded
    # through the API (its database URL; default: ciphertexts_db_url, else the oracle's own
    # database) and pandapower JSON files in a directory; each is checked against the round's hash
    grid_models_db_url: str | None = None
    grid_models_dir: Path | None = None

    def round_secret(self, round_id: int) -> str | None:
        if round_id in self.round_secrets:
            return self.round_secrets[round_id]
        if self.round_keys_dir is not None:
            path = Path(self.round_keys_dir) / f"round-{round_id}.key"
            if path.is_file():
                return path.read_text().strip()
        return None

    def __post_init__(self) -> None:
        if self.crash_at is not None and self.crash_at not in CHECKPOINTS:
            raise InputError(CRASH_ENV, f"{self.crash_at!r} is not a checkpoint ({', '.join(CHECKPOINTS)})")
        if self.formulation == "sensitivity":  # its LP's coefficients depend on an operating point the
            # certificate does not carry: an auditor could not check them without a solver
            raise InputError("formulation", "on-chain rounds are cleared with socp (or lindistflow, dc, copperplate); "
                             "sensitivity is for off-chain clearings (flexgrid clear)")


@dataclass(frozen=True)
class RoundOutcome:
    """What one pass did for one round."""

    round_id: int
    stage: str
    trade_root: str | None = None
    detail: str = ""


def grid_name_of(grid_id_hex: str) -> str | None:
    """The built-in net whose `keccak256(name)` is the round's grid id, if any."""
    for name in sorted(BUILTIN_NETS):
        if "0x" + grid_id_hash(name).hex() == grid_id_hex.lower():
            return name
    return None


class Oracle:
    """One oracle account clearing the rounds of one deployment."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        account: LocalAccount,
        engine: Engine,
        settings: OracleSettings,
        *,
        log: Log | None = None,
    ) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.account = account
        self.engine = engine
        self.settings = settings
        self.client = MarketClient(w3, deployment, account)
        self.indexer = EventIndexer(w3, deployment, engine)
        self.log: Log = log or (lambda _msg: None)
        init_db(engine)
        self.ciphertext_engine = make_engine(settings.ciphertexts_db_url) if settings.ciphertexts_db_url else engine
        self.grid_model_engine = (
            make_engine(settings.grid_models_db_url) if settings.grid_models_db_url else self.ciphertext_engine
        )
        self._models: dict[str, ResolvedGridModel] = {}  # by grid-model hash, resolved in this process

    # -- checkpoints -----------------------------------------------------------------------------

    def checkpoint(self, round_id: int) -> OracleCheckpoint:
        with Session(self.engine, expire_on_commit=False) as session:
            cp = session.exec(
                select(OracleCheckpoint)
                .where(OracleCheckpoint.chain_id == self.deployment.chain_id)
                .where(OracleCheckpoint.market == self.deployment.market)
                .where(OracleCheckpoint.round_id == round_id)
                .where(OracleCheckpoint.oracle == self.account.address)
            ).first()
        return cp or OracleCheckpoint(
            chain_id=self.deployment.chain_id,
            market=self.deployment.market,
            round_id=round_id,
            oracle=self.account.address,
        )

    def _save(self, cp: OracleCheckpoint, stage: Stage, **values: Any) -> None:
        for key, value in values.items():
            setattr(cp, key, value)
        cp.stage = stage.value
        cp.updated_s = time.time()
        with Session(self.engine, expire_on_commit=False) as session:
            session.add(cp)
            session.commit()
            session.refresh(cp)

    def _crash_point(self, name: str) -> None:
        if self.settings.crash_at == name:
            self.log(f"test hook {CRASH_ENV}={name}: killing this process")
            os.kill(os.getpid(), signal.SIGKILL)

    # -- the loop --------------------------------------------------------------------------------

    def due_rounds(self) -> list[int]:
        """Rounds to work on now: closed and past the reveal window (ENCRYPTED: inside it, to reveal),
        or unfinished here."""
        now = chain_time_s(self.w3)
        due = []
        for round_id in range(1, self.client.round_count() + 1):
            cp = self.checkpoint(round_id)
            if cp.stage in TERMINAL:
                continue
            if cp.stage != Stage.NEW:
                due.append(round_id)
                continue
            if self.client.round_state(round_id) != RoundState.CLOSED:
                continue
            deadlines = self.client.deadlines(round_id)
            if deadlines["reveal_end_s"] <= now < deadlines["commit_deadline_s"]:
                due.append(round_id)
            elif now < deadlines["reveal_end_s"] and self.client.round_config(round_id).seal_mode == SealMode.ENCRYPTED:
                due.append(round_id)  # its sealed offers are ours to open and reveal
        return due

    def run_once(self, round_id: int | None = None) -> list[RoundOutcome]:
        """One pass: index the chain, then work on `round_id` or on every due round."""
        self.indexer.run_once()
        rounds = [round_id] if round_id is not None else self.due_rounds()
        outcomes = []
        for r in rounds:
            try:
                outcomes.append(self.process(r))
            except (FlexGridError, ValueError) as exc:  # chain or node trouble: retried on the next pass
                self.log(f"round {r}: error, will retry: {exc}")
                outcomes.append(RoundOutcome(r, self.checkpoint(r).stage, detail=f"error: {exc}"))
        return outcomes

    def run(
        self,
        *,
        poll_interval_s: float = 2.0,
        stop: threading.Event | None = None,
        on_outcome: Callable[[RoundOutcome], None] | None = None,
    ) -> None:
        """Pass after pass until `stop` is set; `on_outcome` sees every round's outcome."""
        stop = stop or threading.Event()
        while not stop.is_set():
            for outcome in self.run_once():
                self.log(f"round {outcome.round_id}: {outcome.stage} {outcome.detail}")
                if on_outcome is not None:
                    on_outcome(outcome)
            stop.wait(poll_interval_s)

    def process(self, round_id: int) -> RoundOutcome:
        """Take round `round_id` as far as it can go now (idempotent; resumes from the checkpoint)."""
        cp = self.checkpoint(round_id)
        if cp.stage in (Stage.NEW, Stage.READ):
            state = self.client.round_state(round_id)
            if state != RoundState.CLOSED:
                return RoundOutcome(round_id, cp.stage, detail=f"round is {state.name}, not CLOSED: nothing to clear")
            reveal_end = self.client.deadlines(round_id)["reveal_end_s"]
            if chain_time_s(self.w3) < reveal_end:
                revealed = self._reveal_encrypted(round_id)
                return RoundOutcome(
                    round_id, cp.stage, detail=f"{revealed}waiting for the reveal window to end at {reveal_end}"
                )
            try:
                self._read_and_solve(cp)
            except (OracleError, InputError, SolverError) as exc:
                self._save(cp, Stage.REFUSED, error=str(exc))
                self.log(f"round {round_id}: refused: {exc}")
                return RoundOutcome(round_id, cp.stage, detail=str(exc))
        if cp.stage == Stage.SOLVED:
            self._commit(cp)
        if cp.stage in (Stage.SENDING, Stage.SENT):
            self._confirm(cp)
        if cp.stage == Stage.VOTED:
            self._publish(cp)
        return RoundOutcome(round_id, cp.stage, cp.trade_root, cp.error or "")

    # -- encrypted rounds ------------------------------------------------------------------------

    def _sealed_inputs(self, round_id: int) -> tuple[list[dict[str, Any]], dict[str, str], list[dict[str, str]]]:
        """The round's `OfferCommitted` events, the ciphertexts received through the API matched
        to them by commitment (for commitments whose calldata carries none), and the received
        ciphertexts that match no commitment (each with the reason)."""
        events = round_events(self.engine, self.deployment, round_id, "OfferCommitted")
        received = off_chain_ciphertexts(
            self.ciphertext_engine, self.deployment.chain_id, self.deployment.market, round_id
        )
        matched, unmatched = match_off_chain(events, received)
        return events, matched, unmatched

    def _open_sealed(
        self, round_id: int, secret: str, events: list[dict[str, Any]], off_chain: dict[str, str]
    ) -> list[OpenedCommitment]:
        return open_commitments(
            commitments_from_events(events, off_chain), secret, round_id=round_id, domain=self.deployment.domain
        )

    def _reveal_encrypted(self, round_id: int) -> str:
        """In the reveal window of an ENCRYPTED round: open the ciphertexts (from the calldata, or
        received through the API) with the round's secret key and reveal those not revealed yet
        (idempotent: the chain says which commitments are closed). A commitment without any
        ciphertext is a commit-reveal bid: its bidder reveals it. Returns a note for the outcome."""
        config = self.client.round_config(round_id)
        if config.seal_mode != SealMode.ENCRYPTED:
            return ""
        secret = self.settings.round_secret(round_id)
        if secret is None:
            return "no secret key for this ENCRYPTED round: its sealed offers stay closed; "
        events, off_chain, unmatched = self._sealed_inputs(round_id)
        for u in unmatched:
            self.log(f"round {round_id}: ciphertext of {u['provider']} for commitment {u['commitment']} "
                     f"not used: {u['reason']}")
        opened = self._open_sealed(round_id, secret, events, off_chain)
        without = [o for o in opened if not o.ok and _ciphertext_source(_event_of(events, o.commitment), off_chain) == "none"]
        for o in opened:
            if not o.ok and o not in without:
                self.log(f"round {round_id}: sealed commitment {o.commitment} of {o.provider}: its ciphertext "
                         f"cannot be used ({o.problem}); rejected unless its bidder reveals it")
        if without:
            self.log(f"round {round_id}: {len(without)} commitments carry no ciphertext (none in calldata, none "
                     "received through the API): commit-reveal bids, left to their bidders to reveal")
        pending = [o for o in opened if o.ok and not self.client.commitment_info(round_id, o.commitment)[1]]
        offers, salts = revealable(pending)
        if offers:
            self.client.reveal_offers(offers, salts)
            self.indexer.run_once()
            self.log(f"round {round_id}: revealed {len(offers)} sealed offers")
        return f"revealed {len(offers)} sealed offers; "

    def _sealed_json(self, inputs: RoundInputs) -> tuple[dict[str, Any] | None, dict[str, str]]:
        """The report on an ENCRYPTED round's commitments, and the ciphertexts received off chain
        that were matched to them (published as `sealedCiphertexts`); (None, {}) otherwise.

        Each commitment is classified once the reveal window is over: `used` or `dropped` (with the
        oracle's reason) when revealed, `sealedBy` saying how (`encryption`: its ciphertext opened;
        `commit-reveal`: its bidder revealed it with the salt), or `rejected` with the reason when
        it was not revealed. `ciphertext` says where its ciphertext came from (calldata, api, none)."""
        config = inputs.config
        round_id = config.round_id
        if config.seal_mode != SealMode.ENCRYPTED:
            return None, {}
        events, off_chain, unmatched = self._sealed_inputs(round_id)
        secret = self.settings.round_secret(round_id)
        opened = {o.commitment.lower(): o for o in self._open_sealed(round_id, secret, events, off_chain)} if secret else {}
        revealed = {
            str(e["args"]["commitment"]).lower(): str(e["args"]["orderHash"]).lower()
            for e in round_events(self.engine, self.deployment, round_id, "OfferRevealed")
        }
        used = {str(o.order_id).lower() for o in inputs.offers}
        dropped = {d.order_hash.lower(): d.reason for d in inputs.dropped}
        entries: list[dict[str, Any]] = []
        for e in events:
            c = str(e["args"]["commitment"]).lower()
            source = _ciphertext_source(e, off_chain)
            entry: dict[str, Any] = {"commitment": c, "provider": str(e["args"]["provider"]).lower(), "ciphertext": source}
            o = opened.get(c)
            problem = None if o is None or o.ok else str(o.problem)
            if secret is None:
                problem = "not opened: this oracle does not hold the round's secret key"
            elif source == "none":
                problem = "no ciphertext: none in the commitOffer calldata and none received through the API"
            h = revealed.get(c)
            if h is None:
                if o is not None and o.ok:
                    entry.update(status="rejected", orderHash=str(o.order_hash).lower(),
                                 reason="its ciphertext opens to a valid offer, but it was not revealed in the reveal window")
                else:
                    entry.update(status="rejected", reason=f"{problem}; not revealed by its bidder either")
            else:
                how = "encryption" if o is not None and o.ok else "commit-reveal" if secret is not None else "unknown"
                entry.update(orderHash=h, sealedBy=how)  # unknown: without the key, who revealed is not known
                if h in used:
                    entry["status"] = "used"
                elif h in dropped:
                    entry.update(status="dropped", reason=dropped[h])
                else:
                    entry.update(status="rejected", reason="revealed, but not among the round's accepted orders")
                if problem is not None and source != "none" and secret is not None:
                    entry["ciphertextProblem"] = problem  # a damaged ciphertext, revealed by its bidder's salt
            entries.append(entry)
        entries.sort(key=lambda x: x["commitment"])
        counts = {s: sum(1 for x in entries if x["status"] == s) for s in ("used", "dropped", "rejected")}
        by = {s: sum(1 for x in entries if x.get("sealedBy") == s and x["status"] != "rejected")
              for s in ("encryption", "commit-reveal")}
        self.log(
            f"round {round_id}: {len(entries)} sealed commitments: {counts['used']} used, {counts['dropped']} dropped, "
            f"{counts['rejected']} rejected; revealed from a ciphertext {by['encryption']} "
            f"({sum(1 for x in entries if x['ciphertext'] == 'api' and x.get('sealedBy') == 'encryption')} "
            f"received through the API), by their bidders (commit-reveal) {by['commit-reveal']}"
        )
        for x in entries:
            if x["status"] != "used":
                self.log(f"round {round_id}: sealed commitment {x['commitment']} of {x['provider']} {x['status']}: "
                         f"{x['reason']}")
        sealed = {
            "opened": secret is not None,
            "commitments": entries,
            "counts": counts,
            "rejected": [
                {"commitment": x["commitment"], "provider": x["provider"], "reason": x["reason"]}
                for x in entries if x["status"] == "rejected"
            ],
            "unmatchedCiphertexts": sorted(unmatched, key=lambda u: (u["commitment"], u["provider"])),
        }
        return sealed, dict(sorted(off_chain.items()))

    def _publish_round_key(self, round_id: int) -> None:
        """After the commit of an ENCRYPTED round: publish its secret key once (checked on chain)."""
        config = self.client.round_config(round_id)
        secret = self.settings.round_secret(round_id)
        if config.seal_mode != SealMode.ENCRYPTED or secret is None:
            return
        if round_events(self.engine, self.deployment, round_id, "RoundKeyPublished"):
            return
        self.client.publish_round_key(round_id, secret)
        self.indexer.run_once()
        self.log(f"round {round_id}: round key published")

    # -- read and solve --------------------------------------------------------------------------

    def _read_and_solve(self, cp: OracleCheckpoint) -> None:
        round_id = cp.round_id
        on_chain = self.client.round_config(round_id)
        model = self._grid_model(round_id, on_chain.grid_model_hash, grid_name_of(on_chain.grid_id))
        net, view, model_hash = model.net, model.view, model.grid_model_hash
        # the grid id as published: a built-in's name when the on-chain id is keccak256 of one, else the bytes32
        name = grid_name_of(on_chain.grid_id) or on_chain.grid_id.lower()
        config = on_chain.model_copy(update={"grid_id": name})
        status = self.client.round_status(round_id)
        try:
            inputs = read_round_inputs(self.w3, self.deployment, self.engine, config, view, status.values)
        except OracleInputError:
            self.indexer.run_once()  # the index may lag the status read: read once more
            status = self.client.round_status(round_id)
            inputs = read_round_inputs(self.w3, self.deployment, self.engine, config, view, status.values)
        for d in inputs.dropped:
            self.log(f"round {round_id}: dropped {d.kind} {d.order_hash}: {d.reason}")
        ihash = canonical_hash(self._canonical(inputs))
        if cp.stage == Stage.READ and cp.input_hash != ihash:
            raise OracleError(f"round {round_id}: inputs changed since the last read ({cp.input_hash} -> {ihash})")
        self._save(cp, Stage.READ, input_hash=ihash)
        self._crash_point("after_read")

        profiles = synthetic_profiles(
            net, view, slot_start_s=config.slot_start_s, slot_seconds=config.slot_seconds, slot_count=config.slot_count
        )
        outcome = clear_market(
            net,
            profiles,
            config,
            inputs.orders,
            wholesale_eur_per_mwh=self.settings.wholesale_eur_per_mwh,
            formulation=self.settings.formulation,
            view=view,
            funded_only=True,  # on chain only escrowed money pays: no offer without a paying request
        )
        if outcome.ac is None:
            raise OracleError(f"round {round_id}: the clearing returned no AC validation")
        before = validate_ac(
            net, view, profiles.load_p_mw - profiles.pv_p_mw, profiles.load_q_mvar, slots=outcome.ac.slots
        )
        risk = risk_check(before, outcome.ac, view)
        n1, forecast = self._margins(net, view, profiles, outcome)
        if not outcome.trades:
            raise OracleError(f"round {round_id}: the clearing accepted nothing; there is no trade root to commit")
        if not risk.ok:
            raise OracleError(
                f"round {round_id}: the result fails the risk check: "
                + "; ".join([*risk.new_violations, *risk.worsened])
            )
        trades = list(outcome.trades)
        root = TradeTree(trades).root
        if root != outcome.merkle_root:
            raise OracleError(f"round {round_id}: the engine's root {outcome.merkle_root} is not the tree's {root}")
        payee = sum(t.payment_micro for t in trades if t.payment_micro > 0)
        payer = -sum(t.payment_micro for t in trades if t.payment_micro < 0)
        funding = {"payeeMicro": payee, "payerMicro": payer, "unfundedMicro": max(payee - payer, 0), "ok": payee <= payer}
        if not funding["ok"]:
            self.log(
                f"round {round_id}: WARNING payee leaves ({payee} micro) exceed payer leaves ({payer} micro): "
                "the last claims will revert with RoundUnderfunded"
            )
        notes = list(outcome.notes)
        sealed, sealed_ciphertexts = self._sealed_json(inputs)
        if sealed is not None and not sealed["opened"]:
            notes.append("ENCRYPTED round without its secret key here: only offers revealed on chain are used")
        uri = publication_uri(
            self.settings.results_uri or default_results_uri(self.settings.results_dir),
            self.deployment.chain_id,
            self.deployment.market,
            round_id,
        )
        cert = outcome.certificate
        doc: dict[str, Any] = {
            "format": FORMAT,
            "chainId": self.deployment.chain_id,
            "market": self.deployment.market.lower(),
            "roundId": round_id,
            "gridId": name,
            "gridModelHash": model_hash.lower(),
            **({"gridModel": {"file": grid_model_path(Path("."), model_hash).name, "gridModelHash": model_hash.lower()}}
               if model.net_json is not None else {}),
            "round": config.model_dump(mode="json"),
            "orderAccumulator": inputs.order_accumulator,
            "orderCount": inputs.order_count,
            "inputs": self._canonical(inputs),
            "inputHash": ihash,
            "dropped": [d.to_json() for d in inputs.dropped],
            "signatures": dict(sorted(inputs.signatures.items())),
            "signatureChecks": dict(sorted(inputs.signature_checks.items())),
            "clearing": {
                "formulation": outcome.formulation,
                "pricingRule": int(outcome.pricing),
                "fundedOnly": True,
                "wholesaleEurPerMwh": [self.settings.wholesale_eur_per_mwh] * config.slot_count,
                "objectiveEur": float(outcome.objective_eur),
                "mipGap": outcome.mip_gap,
                "relaxationGapMw": outcome.relaxation_gap_mw,
                "budgetBalanceEur": float(outcome.budget_balance_eur),
                "notes": notes,
            },
            "trades": [trade_json(t) for t in trades],
            "tradeRoot": root,
            "totalPayoutMicro": total_payout_micro(trades),
            "funding": funding,
            "certificate": json.loads(cert.to_json()) if cert is not None else None,
            "certificateHash": outcome.certificate_hash or ZERO32,
            "dlmp": {
                "busOfNode": [int(b) for b in outcome.bus_of_node],
                "eurPerMwh": [[float(v) for v in row] for row in outcome.dlmp_eur_per_mwh],
            },
            "ac": {"before": ac_json(before), "after": ac_json(outcome.ac)},
            "risk": {**risk.to_json(), "forecastMargin": forecast, "n1": n1},
            "sealed": sealed,
        }
        if sealed is not None:  # the ciphertexts received through the API: the auditor opens them too
            doc["sealedCiphertexts"] = sealed_ciphertexts
        self._save(
            cp,
            Stage.SOLVED,
            trade_root=root,
            certificate_hash=doc["certificateHash"],
            uri=uri,
            document=json.dumps(doc, sort_keys=True, separators=(",", ":")),
        )
        self.log(f"round {round_id}: solved, {len(trades)} leaves, root {root}")
        self._crash_point("after_solve")

    def _grid_model(self, round_id: int, grid_model_hash: str, builtin_name: str | None) -> ResolvedGridModel:
        """The round's grid model by its on-chain hash (`flexgrid.store.grid_models.resolve_grid_model`:
        a built-in, an upload, a file of `grid_models_dir`), its content re-hashed; `OracleError`
        naming the round and the hash when none matches."""
        key = grid_model_hash.lower()
        model = self._models.get(key)
        if model is None:
            try:
                model = resolve_grid_model(key, engine=self.grid_model_engine, directory=self.settings.grid_models_dir,
                                           prefer_builtin=builtin_name)
            except InputError as exc:
                raise OracleError(f"round {round_id}: cannot load the grid model of the round's grid-model hash "
                                  f"{key}: {exc.reason}; refusing to clear it") from exc
            if model.grid_model_hash != key:  # resolve_grid_model checks it; a second look costs nothing
                raise OracleError(f"round {round_id}: the grid-model hash on chain is {key}, but the model found "
                                  f"hashes to {model.grid_model_hash}: refusing to clear over another grid")
            self._models[key] = model
            self.log(f"round {round_id}: grid model {key} is the {model.source} model {model.name!r}")
        return ResolvedGridModel(copy.deepcopy(model.net), model.view, model.grid_model_hash, model.source,
                                 model.name, model.net_json)

    @staticmethod
    def _margins(
        net: Any, view: Any, profiles: Any, outcome: Any
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """N-1 and load-growth margins of the most loaded slot, without and with the result."""
        if outcome.dispatch is None or outcome.ac is None:
            return None, None
        slot = stressed_slot(outcome.ac)
        base_p = profiles.load_p_mw - profiles.pv_p_mw
        try:
            model = build_model(net)
            n1: dict[str, Any] | None = {
                "before": n1_summary(model, view, base_p, profiles.load_q_mvar, slot),
                "after": n1_summary(
                    model, view, outcome.dispatch.withdrawal_p_mw, outcome.dispatch.withdrawal_q_mvar, slot
                ),
            }
        except InputError as exc:  # e.g. more than one external grid: no N-1 model for this net
            n1 = {"error": str(exc)}
        return n1, {
            "slot": slot,
            "beforePercent": load_margin_percent(
                net, view, base_p, profiles.load_q_mvar, profiles.load_p_mw, profiles.load_q_mvar, slot
            ),
            "afterPercent": load_margin_percent(
                net,
                view,
                outcome.dispatch.withdrawal_p_mw,
                outcome.dispatch.withdrawal_q_mvar,
                profiles.load_p_mw,
                profiles.load_q_mvar,
                slot,
            ),
            "method": "largest uniform base-load increase (steps of 5 %, max 100 %) without an AC violation",
        }

    def _canonical(self, inputs: RoundInputs) -> dict[str, Any]:
        return canonical_inputs(
            round_id=inputs.config.round_id,
            domain=self.deployment.domain,
            grid_model_hash=inputs.config.grid_model_hash,
            requests=inputs.requests,
            offers=inputs.offers,
            p2p=inputs.p2p,
        )

    # -- commit ----------------------------------------------------------------------------------

    def _document(self, cp: OracleCheckpoint) -> dict[str, Any]:
        if cp.document is None:
            raise OracleError(f"round {cp.round_id}: checkpoint {cp.stage} has no stored result")
        doc: dict[str, Any] = json.loads(cp.document)
        return doc

    def _result(self, cp: OracleCheckpoint) -> ClearingResult:
        doc = self._document(cp)
        return ClearingResult(
            round_id=cp.round_id,
            trades=tuple(trades_from_publication(doc)),
            merkle_root=doc["tradeRoot"],
            input_hash=doc["inputHash"],
            certificate_hash=doc["certificateHash"],
            uri=str(cp.uri),
        )

    def _already_done_on_chain(self, cp: OracleCheckpoint) -> bool:
        """True when the chain shows this oracle's vote or the same result committed; raises
        `OracleError` when a different result was committed."""
        status = self.client.round_status(cp.round_id)
        if status.state in (RoundState.COMMITTED, RoundState.DISPUTED, RoundState.FINAL, RoundState.SETTLED):
            committed = str(status["tradeRoot"]).lower()
            if committed != str(cp.trade_root).lower():
                raise OracleError(
                    f"round {cp.round_id}: the chain committed root {committed}, this oracle computed {cp.trade_root}"
                )
            return True
        if status.state == RoundState.CANCELLED:
            raise OracleError(f"round {cp.round_id} was cancelled")
        quorum = self.client.round_config(cp.round_id).oracle_quorum
        return quorum > 1 and self.client.has_voted(cp.round_id, self.account.address)

    def _commit(self, cp: OracleCheckpoint) -> None:
        try:
            if self._already_done_on_chain(cp):
                self._save(cp, Stage.VOTED)
                return
        except OracleError as exc:
            self._save(cp, Stage.REFUSED, error=str(exc))
            return
        if not self._prepare_commit(cp):
            return
        self._crash_point("before_send")
        assert cp.raw_tx is not None
        self.w3.eth.send_raw_transaction(bytes.fromhex(cp.raw_tx[2:]))
        self._save(cp, Stage.SENT)
        self.log(f"round {cp.round_id}: commit sent, tx {cp.tx_hash}")
        self._crash_point("after_send")

    def _prepare_commit(self, cp: OracleCheckpoint) -> bool:
        """Build and sign the commit with the next nonce and store it (stage sending) before it
        is sent; False (and stage refused) when the contract would revert."""
        result = self._result(cp)
        fn = self.client.market.functions.commitClearing(cp.round_id, clearing_struct(result))
        nonce = self.w3.eth.get_transaction_count(self.account.address, "pending")
        try:
            tx = fn.build_transaction(
                {"from": self.account.address, "nonce": nonce, "chainId": self.deployment.chain_id}
            )
        except ContractLogicError as exc:
            data = revert_data(exc)
            error: ContractRevert = decode_revert(data) if data else ContractRevert("Error", (str(exc),))
            funding = self._document(cp)["funding"]
            unfunded = (
                ""
                if funding["ok"]
                else f" (payee leaves {funding['payeeMicro']} micro exceed payer leaves {funding['payerMicro']} micro: "
                "offers accepted without a request that pays for them)"
            )
            self._save(cp, Stage.REFUSED, error=f"commitClearing would revert: {error}{unfunded}")
            self.log(f"round {cp.round_id}: commit refused by the contract: {error}")
            return False
        signed = self.account.sign_transaction(dict(tx))  # type: ignore[arg-type]
        self._save(
            cp,
            Stage.SENDING,
            tx_hash="0x" + bytes(signed.hash).hex(),
            tx_nonce=nonce,
            raw_tx="0x" + bytes(signed.raw_transaction).hex(),
        )
        return True

    def _confirm(self, cp: OracleCheckpoint) -> None:
        assert cp.tx_hash is not None and cp.raw_tx is not None and cp.tx_nonce is not None
        receipt = self._receipt(cp.tx_hash)
        if receipt is None:
            if self.w3.eth.get_transaction_count(self.account.address, "latest") > cp.tx_nonce:
                # the nonce went to another transaction: ours can never be mined
                try:
                    done = self._already_done_on_chain(cp)
                except OracleError as exc:
                    self._save(cp, Stage.REFUSED, error=str(exc))
                    return
                self._save(cp, Stage.VOTED if done else Stage.SOLVED)
                if not done:
                    self._commit(cp)
                    if cp.stage in (Stage.SENDING, Stage.SENT):
                        self._confirm(cp)
                return
            try:
                self.w3.eth.send_raw_transaction(bytes.fromhex(cp.raw_tx[2:]))
            except ValueError as exc:  # "already known" and the like: the node has it
                self.log(f"round {cp.round_id}: re-broadcast: {exc}")
            try:
                receipt = self.w3.eth.wait_for_transaction_receipt(
                    cp.tx_hash,  # type: ignore[arg-type]
                    timeout=self.settings.receipt_timeout_s,
                    poll_latency=0.05,
                )
            except TimeExhausted as exc:
                raise ChainError(f"round {cp.round_id}: commit {cp.tx_hash} not mined in time") from exc
        if int(receipt["status"]) != 1:
            try:
                done = self._already_done_on_chain(cp)
            except OracleError as exc:
                done, reason = False, str(exc)
            else:
                reason = f"commit transaction {cp.tx_hash} reverted"
            if not done:
                self._save(cp, Stage.REFUSED, error=reason)
                return
        self._save(cp, Stage.VOTED)
        self.log(f"round {cp.round_id}: vote mined in block {receipt['blockNumber']}")
        self._crash_point("after_receipt")

    def _receipt(self, tx_hash: str) -> Any:
        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            try:
                self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None
            return self.w3.eth.wait_for_transaction_receipt(
                tx_hash,  # type: ignore[arg-type]
                timeout=self.settings.receipt_timeout_s,
                poll_latency=0.05,
            )

    # -- publish ---------------------------------------------------------------------------------

    def _publish(self, cp: OracleCheckpoint) -> None:
        state = self.client.round_state(cp.round_id)
        if state == RoundState.CLOSED:
            return  # voted; the quorum is not reached yet
        if state == RoundState.CANCELLED:
            self._save(cp, Stage.REFUSED, error=f"round {cp.round_id} was cancelled before a result was committed")
            return
        self.indexer.run_once()
        events = round_events(self.engine, self.deployment, cp.round_id, "ClearingCommitted")
        if not events:
            raise OracleError(f"round {cp.round_id} is {state.name} but no ClearingCommitted event is indexed")
        event = events[-1]
        args = event["args"]
        doc = self._document(cp)
        if str(args["tradeRoot"]).lower() != str(cp.trade_root).lower():
            self._save(
                cp,
                Stage.REFUSED,
                error=f"the chain committed root {args['tradeRoot']}, this oracle computed {cp.trade_root}",
            )
            return
        if str(args["orderAccumulator"]).lower() != doc["orderAccumulator"]:
            raise OracleError(
                f"round {cp.round_id}: committed accumulator {args['orderAccumulator']} differs from the one "
                f"read ({doc['orderAccumulator']})"
            )
        path = publication_path(self.settings.results_dir, self.deployment.chain_id, self.deployment.market, cp.round_id)
        if doc.get("gridModel"):  # not a built-in: the model is published beside the result, first
            model_path = grid_model_path(path.parent, doc["gridModelHash"])
            if not model_path.is_file():
                model = self._grid_model(cp.round_id, doc["gridModelHash"], None)
                assert model.net_json is not None
                write_grid_model(model_path, model.net_json)
        write_publication(path, doc)
        self._crash_point("during_publish")
        store_publication(
            self.engine,
            doc,
            uri=str(args["uri"]),
            commit_tx_hash=str(event["tx_hash"]),
            commit_block=int(event["block_number"]),
        )
        self._publish_round_key(cp.round_id)
        self._save(cp, Stage.PUBLISHED)
        self.log(f"round {cp.round_id}: published {path}")


def _event_of(events: list[dict[str, Any]], commitment: str) -> dict[str, Any]:
    return next(e for e in events if str(e["args"]["commitment"]).lower() == commitment.lower())


def _ciphertext_source(event: dict[str, Any], off_chain: dict[str, str]) -> str:
    """Where a commitment's ciphertext came from: `calldata`, `api` (received off chain) or `none`."""
    raw = event["args"].get("ciphertext") or "0x"
    if raw not in ("0x", ""):
        return "calldata"
    return "api" if str(event["args"]["commitment"]).lower() in off_chain else "none"


def reindex_publications(
    w3: Web3, deployment: Deployment, engine: Engine, *, results_dir: Path | None = None
) -> int:
    """Rebuild the publication tables from the chain's ClearingCommitted events and the published
    files (at the committed URI, or under `results_dir`); run the event indexer first. Files whose
    root does not match the chain are skipped. Returns the number of rounds stored."""
    init_db(engine)
    stored = 0
    client = MarketClient(w3, deployment)
    for round_id in range(1, client.round_count() + 1):
        events = round_events(engine, deployment, round_id, "ClearingCommitted")
        if not events:
            continue
        event = events[-1]
        args = event["args"]
        source: str | Path = str(args["uri"])
        if results_dir is not None:
            source = publication_path(results_dir, deployment.chain_id, deployment.market, round_id)
        try:
            doc = load_publication(source)
        except InputError:
            continue
        if str(doc["tradeRoot"]).lower() != str(args["tradeRoot"]).lower():
            continue
        if TradeTree(trades_from_publication(doc)).root != str(args["tradeRoot"]).lower():
            continue
        store_publication(
            engine, doc, uri=str(args["uri"]), commit_tx_hash=str(event["tx_hash"]), commit_block=int(event["block_number"])
        )
        stored += 1
    return stored


__all__ = [
    "CHECKPOINTS",
    "CRASH_ENV",
    "Oracle",
    "OracleCheckpoint",
    "OracleError",
    "OracleSettings",
    "RoundOutcome",
    "Stage",
    "grid_name_of",
    "reindex_publications",
]
