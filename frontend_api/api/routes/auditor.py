"""The auditor (no sign-in, read-only): rounds, committed results, trades with their Merkle
proofs, orders, settlements, and the same verification as `flexgrid audit verify`."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlmodel import col, select

from flexgrid.audit.verify import audit_round, load_round_publication
from flexgrid.oracle.publication import trades_from_publication
from flexgrid.store.tables import ChainEvent, OrderRecord
from flexgrid.trading import RoundState
from flexgrid.trading.merkle import TradeTree, trade_leaf_hash
from frontend_api.api.deps import DbDep, Page, PageDep, ServiceDep, page_rows, paginate
from frontend_api.api.routes.prosumer import SETTLEMENT_EVENTS, EventOut
from frontend_api.core.problems import Problem
from frontend_api.models import UploadedGridModel

router = APIRouter(prefix="/auditor", tags=["auditor"])
RoundId = Annotated[int, Path(ge=1, le=2**63, description="round id")]


class RoundOut(BaseModel):
    round_id: int
    grid_id: str
    state: str
    config: dict[str, Any]
    deadlines: dict[str, int] | None = None


class ResultOut(BaseModel):
    round_id: int
    state: str
    committed: dict[str, Any] | None = Field(description="the ClearingCommitted event's arguments")
    tx_hash: str | None
    publication_found: bool


class TradeProofOut(BaseModel):
    leaf_index: int
    participant: str
    order_hash: str
    slot: int
    kw: float
    price_eur_per_mwh: float
    payment_eur: float
    leaf: str
    proof: list[str]
    root: str


class OrderOut(BaseModel):
    order_hash: str
    kind: str
    participant: str
    order: dict[str, Any]
    tx_hash: str
    block_number: int


class FindingOut(BaseModel):
    check: str
    ok: bool
    details: list[str]


class VerifyOut(BaseModel):
    round_id: int
    ok: bool
    verdict: str = Field(description="VERIFIED, or NOT VERIFIED (n mismatches), as `flexgrid audit verify` says")
    problems: list[str] = Field(description="every failing statement, prefixed by its check")
    findings: list[FindingOut]


class GridModelDocOut(BaseModel):
    grid_model_hash: str
    name: str
    format: str = Field(description="the format it was uploaded in")
    uploaded_by: str
    buses: int
    radial: bool
    net: dict[str, Any] = Field(description="the net as pandapower JSON (pandapower.from_json_string of its "
                                "dump): flexgrid.grid.build_view(net).model_hash() gives grid_model_hash")


def _round_out(service: Any, round_id: int, with_deadlines: bool) -> RoundOut:
    config = service.round_config(round_id)
    state = service.round_state(round_id)
    return RoundOut(round_id=round_id, grid_id=config.grid_id, state=state.name, config=config.model_dump(mode="json"),
                    deadlines=service.deadlines(round_id) if with_deadlines else None)


@router.get("/rounds", response_model=Page[RoundOut], summary="All rounds, newest first")
def rounds(service: ServiceDep, page: PageDep,
           state: Annotated[str | None, Query(description="OPEN, CLOSED, COMMITTED, ... (a RoundState name)",
                                              max_length=20)] = None,
           grid_id: Annotated[str | None, Query(max_length=66)] = None) -> Page[RoundOut]:
    if state is not None and state not in RoundState.__members__:
        raise Problem(422, "Invalid input", f"state: must be one of {', '.join(RoundState.__members__)}",
                      field="state", reason="not a round state")
    count = service.round_count()
    ids = list(range(count, 0, -1))
    if state is None and grid_id is None:  # page before reading the chain
        window = ids[page.offset: page.offset + page.limit]
        return Page[RoundOut](items=[_round_out(service, i, False) for i in window], total=count, limit=page.limit,
                              offset=page.offset)
    out = [r for r in (_round_out(service, i, False) for i in ids)
           if (state is None or r.state == state) and (grid_id is None or r.grid_id == grid_id)]
    return paginate(out, page)


@router.get("/rounds/{round_id}", response_model=RoundOut, summary="One round: configuration, state, deadlines")
def round_detail(round_id: RoundId, service: ServiceDep) -> RoundOut:
    return _round_out(service, round_id, True)


def _commit_event(db: DbDep, service: Any, round_id: int) -> ChainEvent | None:
    return db.exec(select(ChainEvent).where(ChainEvent.event == "ClearingCommitted")
                   .where(ChainEvent.round_id == round_id)
                   .where(ChainEvent.contract == service.deployment.market)
                   .order_by(col(ChainEvent.block_number).desc())).first()


@router.get("/rounds/{round_id}/result", response_model=ResultOut, summary="The committed clearing result")
def result(round_id: RoundId, service: ServiceDep, db: DbDep) -> ResultOut:
    service.round_config(round_id)
    ev = _commit_event(db, service, round_id)
    args = json.loads(ev.args_json) if ev else None
    doc = load_round_publication(str(args.get("uri", ""))) if args else None
    return ResultOut(round_id=round_id, state=service.client.round_state(round_id).name, committed=args,
                     tx_hash=ev.tx_hash if ev else None, publication_found=doc is not None)


@router.get("/rounds/{round_id}/trades", response_model=Page[TradeProofOut],
            summary="The committed trades with their Merkle proofs (from the publication at the committed URI)")
def trades(round_id: RoundId, service: ServiceDep, db: DbDep, page: PageDep,
           participant: Annotated[str | None, Query(pattern=r"^0x[0-9a-fA-F]{40}$")] = None) -> Page[TradeProofOut]:
    service.round_config(round_id)
    ev = _commit_event(db, service, round_id)
    if ev is None:
        raise Problem(404, "Not found", f"round_id: round {round_id} has no committed result",
                      field="round_id", reason="no committed result")
    args = json.loads(ev.args_json)
    doc = load_round_publication(str(args.get("uri", "")))
    if doc is None:
        raise Problem(404, "Not found", f"round_id: the publication at {args.get('uri')!r} cannot be read",
                      field="round_id", reason="publication unavailable")
    leaves = trades_from_publication(doc)
    tree = TradeTree(leaves)
    out = []
    for i, t in enumerate(leaves):
        if participant is None or t.participant.lower() == participant.lower():
            out.append(TradeProofOut(leaf_index=i, participant=t.participant, order_hash=t.order_id, slot=t.slot,
                                     kw=t.kw, price_eur_per_mwh=t.price_eur_per_mwh, payment_eur=t.payment_eur,
                                     leaf=trade_leaf_hash(t), proof=list(tree.proof(t)), root=tree.root))
    return paginate(out, page)


@router.get("/rounds/{round_id}/orders", response_model=Page[OrderOut], summary="Orders accepted on chain")
def orders(round_id: RoundId, service: ServiceDep, db: DbDep, page: PageDep,
           kind: Annotated[str | None, Query(pattern="^(request|offer|p2p)$")] = None) -> Page[OrderOut]:
    service.round_config(round_id)
    q = select(OrderRecord).where(OrderRecord.round_id == round_id).where(OrderRecord.market == service.deployment.market)
    if kind is not None:
        q = q.where(OrderRecord.kind == kind)
    rows, total = page_rows(db, q.order_by(col(OrderRecord.block_number), col(OrderRecord.log_index)), page)
    return Page[OrderOut](items=[OrderOut(order_hash=r.order_hash, kind=r.kind, participant=r.participant,
                                          order=json.loads(r.model_json), tx_hash=r.tx_hash,
                                          block_number=r.block_number) for r in rows],
                          total=total, limit=page.limit, offset=page.offset)


@router.get("/rounds/{round_id}/settlements", response_model=Page[EventOut], summary="Settlement events of a round")
def settlements(round_id: RoundId, service: ServiceDep, db: DbDep, page: PageDep,
                account: Annotated[str | None, Query(pattern=r"^0x[0-9a-fA-F]{40}$")] = None) -> Page[EventOut]:
    service.round_config(round_id)
    q = select(ChainEvent).where(col(ChainEvent.event).in_((*SETTLEMENT_EVENTS, "RoundSettled"))) \
        .where(ChainEvent.round_id == round_id)
    if account is not None:
        from web3 import Web3

        q = q.where(ChainEvent.account == Web3.to_checksum_address(account))
    rows, total = page_rows(db, q.order_by(col(ChainEvent.block_number), col(ChainEvent.log_index)), page)
    return Page[EventOut](items=[EventOut(event=e.event, round_id=e.round_id, order_hash=e.order_hash,
                                          tx_hash=e.tx_hash, block_number=e.block_number,
                                          args=json.loads(e.args_json)) for e in rows],
                          total=total, limit=page.limit, offset=page.offset)


@router.get("/rounds/{round_id}/verify", response_model=VerifyOut,
            summary="Verify the round as `flexgrid audit verify` does")
def verify(round_id: RoundId, service: ServiceDep,
           resolve: Annotated[bool, Query(description="also re-run the clearing")] = False) -> VerifyOut:
    service.round_config(round_id)
    report = audit_round(service.w3, service.deployment, service.engine, round_id, resolve=resolve)
    problems = report.problems()
    return VerifyOut(round_id=round_id, ok=report.ok,
                     verdict="VERIFIED" if report.ok else f"NOT VERIFIED ({len(problems)} mismatches)",
                     problems=problems, findings=[FindingOut(**f.to_dict()) for f in report.findings])


@router.get("/grid-models/{grid_model_hash}", response_model=GridModelDocOut,
            summary="A grid model a DSO uploaded, as pandapower JSON, to recompute its hash")
def grid_model(grid_model_hash: Annotated[str, Path(pattern=r"^0x[0-9a-fA-F]{64}$")], db: DbDep) -> GridModelDocOut:
    row = db.get(UploadedGridModel, grid_model_hash.lower())
    if row is None:
        raise Problem(404, "Not found", f"grid_model_hash: no uploaded grid model {grid_model_hash} "
                      "(built-in networks: flexgrid.grid.load_net)", field="grid_model_hash", reason="not uploaded")
    return GridModelDocOut(grid_model_hash=row.grid_model_hash, name=row.name, format=row.source_format,
                           uploaded_by=row.uploaded_by, buses=row.buses, radial=row.radial,
                           net=json.loads(row.net_json))
