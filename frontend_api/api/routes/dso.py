"""The DSO (the oracle API): grid model, FlexRequests, validating trades against the grid (AC
power flow), the orders on its grid, approval or dispute of a result, metering.

The DSO signs its own transactions (its budget goes into escrow from its account): the
`prepare` endpoints return the unsigned transaction, `transactions` relays the signed one after
checking signer, chain, contract and function."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from sqlmodel import col, select

from flexgrid.chain.market import request_struct
from flexgrid.errors import InputError, SolverError
from flexgrid.grid import BUILTIN_NETS, synthetic_profiles
from flexgrid.opf.validate import validate_ac
from flexgrid.store.encryption import put_private
from flexgrid.store.tables import OrderRecord
from flexgrid.trading import Direction, FlexRequest, MeterReading
from flexgrid.trading.merkle import MeteringTree
from frontend_api.api.deps import DbDep, DsoDep, Page, PageDep, ServiceDep, page_rows, paginate
from frontend_api.api.grid_models import (
    MAX_UPLOAD_CHARS,
    GridFormat,
    builtin_net,
    check_upload,
    content_digest,
    remember,
    stored_net,
)
from frontend_api.api.routes.prosumer import PreparedOut, RawTxIn, RelayedOut
from frontend_api.core.problems import Problem
from frontend_api.core.rawtx import prepare_tx, relay_raw
from frontend_api.models import GridChoice, UploadedGridModel

router = APIRouter(prefix="/dso", tags=["dso"])

DSO_FUNCTIONS = ("submitRequest", "approveResult", "dispute", "commitMetering")


class GridOut(BaseModel):
    grid_id: str
    mine: bool
    model: str | None
    grid_model_hash: str | None


MODEL_DESCRIPTION = ("a built-in network (" + ", ".join(BUILTIN_NETS) + ") or the grid_model_hash of a "
                     "model I uploaded (POST /dso/grid-models)")


class GridChoiceIn(BaseModel):
    grid_id: str = Field(min_length=1, max_length=66, description="a grid id I am the DSO of")
    model: str = Field(max_length=66, description=MODEL_DESCRIPTION)


class GridModelIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="a label for the model")
    format: GridFormat = Field(description="pandapower: the JSON of pandapower.to_json; matpower: a MATPOWER "
                               "case file (.m text)")
    content: str = Field(max_length=MAX_UPLOAD_CHARS, description="the file's text")
    require_radial: bool = Field(True, description="refuse a meshed net (the market clears radial grids "
                                 "with socp or lindistflow)")


class GridModelOut(BaseModel):
    grid_model_hash: str = Field(description="what a round on this model records on chain (gridModelHash)")
    name: str
    format: str
    uploaded_by: str
    buses: int = Field(description="pandapower buses in the file")
    nodes: int = Field(description="operated nodes (buses joined by closed switches count once)")
    branches: int
    radial: bool
    radial_reason: str
    uploaded_at: datetime


class RequestIn(BaseModel):
    round_id: int = Field(ge=1, le=2**63)
    bus: int = Field(ge=0, le=2**32 - 1)
    direction: Direction
    slots: list[int] = Field(min_length=1, max_length=65536)
    kw: list[float] = Field(min_length=1, max_length=65536)
    price_cap_eur_per_mwh: float


class TradeIn(BaseModel):
    bus: int = Field(ge=0, le=2**32 - 1)
    slot: int = Field(ge=0, le=65535)
    kw: float = Field(ge=0, le=1e7)
    direction: Direction


class ValidateIn(BaseModel):
    model: str = Field("case33bw", max_length=66, description=MODEL_DESCRIPTION)
    slot_start_s: int = Field(ge=0, le=2**40)
    slot_seconds: int = Field(900, ge=60, le=86_400)
    slot_count: int = Field(ge=1, le=96)
    trades: list[TradeIn] = Field(max_length=10_000)


class ValidateOut(BaseModel):
    ok: bool
    flags: list[str] = Field(description="what would break (voltage or loading beyond limits), per slot")
    baseline_flags: list[str] = Field(description="what is already broken without the trades")
    v_min_pu: float | None
    v_max_pu: float | None
    max_loading_percent: float | None
    slots: list[int]


class GridOrderOut(BaseModel):
    order_hash: str
    kind: str
    round_id: int
    participant: str
    order: dict[str, Any]
    block_number: int


class MeteringIn(BaseModel):
    round_id: int = Field(ge=1, le=2**63)
    readings: list[dict[str, Any]] = Field(min_length=1, max_length=100_000,
                                           description="MeterReading objects (participant, order_id, slot, delivered_kw)")


class MeteringOut(BaseModel):
    round_id: int
    metering_root: str
    readings: int
    transaction: dict[str, Any] = Field(description="unsigned commitMetering for the metering agent's wallet")


@router.get("/grids", response_model=Page[GridOut], summary="Known grid ids, mine marked, with the chosen model")
def grids(roles: DsoDep, service: ServiceDep, db: DbDep, page: PageDep,
          mine: Annotated[bool | None, Query()] = None) -> Page[GridOut]:
    out = []
    for g in service.grids:
        choice = db.get(GridChoice, g)
        item = GridOut(grid_id=g, mine=g in roles.dso_grids, model=choice.model if choice else None,
                       grid_model_hash=choice.grid_model_hash if choice else None)
        if mine is None or item.mine == mine:
            out.append(item)
    return paginate(out, page)


def _model_out(m: UploadedGridModel) -> GridModelOut:
    return GridModelOut(grid_model_hash=m.grid_model_hash, name=m.name, format=m.source_format,
                        uploaded_by=m.uploaded_by, buses=m.buses, nodes=m.nodes, branches=m.branches,
                        radial=m.radial, radial_reason=m.radial_reason, uploaded_at=m.uploaded_at)


def _resolve_model(db: DbDep, model: str, dso: str) -> tuple[Any, Any, str]:
    """(net, view, grid-model hash) of a built-in name or of an upload of `dso`; `InputError` on `model`."""
    if model in BUILTIN_NETS:
        net, view = builtin_net(model)
        return net, view, view.model_hash()
    stored = db.get(UploadedGridModel, model.lower())
    if stored is None or stored.uploaded_by != dso:
        raise InputError("model", f"{model!r} is neither a built-in network ({', '.join(BUILTIN_NETS)}) nor the "
                         "grid_model_hash of a model you uploaded")
    net, view = stored_net(stored.grid_model_hash, stored.net_json)
    return net, view, stored.grid_model_hash


@router.post("/grid-models", status_code=201, response_model=GridModelOut,
             responses={200: {"model": GridModelOut, "description": "this model was already uploaded by me"}},
             summary="Upload a grid model (pandapower JSON or MATPOWER); checked, stored under its grid-model hash")
def upload_grid_model(body: GridModelIn, roles: DsoDep, db: DbDep, response: Response) -> GridModelOut:
    digest = content_digest(body.format, body.content)
    known = db.exec(select(UploadedGridModel).where(UploadedGridModel.content_sha256 == digest)
                    .where(UploadedGridModel.uploaded_by == roles.address)).first()
    if known is not None and (known.radial or not body.require_radial):
        response.status_code = 200  # the same file again: already checked and stored
        return _model_out(known)
    checked = check_upload(body.name, body.format, body.content, require_radial=body.require_radial)
    existing = db.get(UploadedGridModel, checked.grid_model_hash)
    if existing is not None and existing.uploaded_by == roles.address:
        response.status_code = 200  # the same network again: nothing new is stored
        return _model_out(existing)
    if existing is not None:
        raise Problem(409, "Already uploaded", f"content: this network (grid_model_hash {checked.grid_model_hash}) "
                      "was uploaded by another DSO", field="content", reason="uploaded by another DSO",
                      grid_model_hash=checked.grid_model_hash)
    row = UploadedGridModel(grid_model_hash=checked.grid_model_hash, name=body.name, source_format=body.format,
                            uploaded_by=roles.address, buses=len(checked.net.bus), nodes=checked.view.n_node,
                            branches=checked.view.n_branch, radial=checked.view.is_radial,
                            radial_reason=checked.view.radial_reason, net_json=checked.net_json,
                            content_sha256=digest)
    db.add(row)
    db.commit()
    remember(checked.grid_model_hash, checked.net, checked.view)
    return _model_out(row)


@router.get("/grid-models", response_model=Page[GridModelOut], summary="The grid models I uploaded")
def my_grid_models(roles: DsoDep, db: DbDep, page: PageDep,
                   radial: Annotated[bool | None, Query()] = None) -> Page[GridModelOut]:
    q = select(UploadedGridModel).where(UploadedGridModel.uploaded_by == roles.address)
    if radial is not None:
        q = q.where(UploadedGridModel.radial == radial)
    rows, total = page_rows(db, q.order_by(col(UploadedGridModel.uploaded_at)), page)
    return Page[GridModelOut](items=[_model_out(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.post("/grid-model", response_model=GridOut,
             summary="Choose the grid model of one of my grids (built-in or uploaded); its hash is what rounds record")
def choose_grid(body: GridChoiceIn, roles: DsoDep, db: DbDep) -> GridOut:
    if body.grid_id not in roles.dso_grids:
        raise Problem(403, "Forbidden", f"grid_id: {roles.address} is not the DSO of {body.grid_id!r}",
                      field="grid_id", reason="not your grid")
    _net, _view, h = _resolve_model(db, body.model, roles.address)
    model = body.model if body.model in BUILTIN_NETS else h
    choice = db.get(GridChoice, body.grid_id) or GridChoice(grid_id=body.grid_id, dso=roles.address, model=model,
                                                            grid_model_hash=h)
    choice.dso, choice.model, choice.grid_model_hash = roles.address, model, h
    db.add(choice)
    db.commit()
    return GridOut(grid_id=body.grid_id, mine=True, model=model, grid_model_hash=h)


@router.post("/requests/prepare", response_model=PreparedOut,
             summary="Check a FlexRequest and prepare its submitRequest transaction for my wallet")
def prepare_request(body: RequestIn, roles: DsoDep, service: ServiceDep) -> PreparedOut:
    config = service.round_config(body.round_id)
    if config.grid_id not in roles.dso_grids:
        raise Problem(403, "Forbidden", f"round_id: round {body.round_id} is on grid {config.grid_id}, "
                      f"which {roles.address} is not the DSO of", field="round_id", reason="not your grid")
    request = FlexRequest(dso=roles.address, round_id=body.round_id, bus=body.bus, direction=body.direction,
                          slots=tuple(body.slots), kw=tuple(body.kw), price_cap_eur_per_mwh=body.price_cap_eur_per_mwh)
    from flexgrid.trading.models import validate_for_round

    validate_for_round(request, config, now_s=service.chain_now_s())
    fn = service.client.market.functions.submitRequest(request_struct(request))
    return PreparedOut(transaction=prepare_tx(service, roles.address, fn))


class DisputeIn(BaseModel):
    reason: str = Field(min_length=1, max_length=10_000, description="why the result is wrong; its keccak256 "
                        "goes on chain as the reason hash")


def _my_round(service: ServiceDep, roles: DsoDep, round_id: int) -> None:
    config = service.round_config(round_id)
    if config.grid_id not in roles.dso_grids:
        raise Problem(403, "Forbidden", f"round_id: round {round_id} is on grid {config.grid_id}, "
                      f"which {roles.address} is not the DSO of", field="round_id", reason="not your grid")


@router.post("/rounds/{round_id}/approve/prepare", response_model=PreparedOut,
             summary="Prepare approveResult (accept the committed result before the dispute window ends)")
def prepare_approve(round_id: Annotated[int, PathParam(ge=1, le=2**63)], roles: DsoDep,
                    service: ServiceDep) -> PreparedOut:
    _my_round(service, roles, round_id)
    fn = service.client.market.functions.approveResult(round_id)
    return PreparedOut(transaction=prepare_tx(service, roles.address, fn))  # the contract's refusal: 409


@router.post("/rounds/{round_id}/dispute/prepare", response_model=PreparedOut,
             summary="Prepare dispute (challenge the committed result; the round's dispute bond is taken)")
def prepare_dispute(round_id: Annotated[int, PathParam(ge=1, le=2**63)], body: DisputeIn, roles: DsoDep,
                    service: ServiceDep) -> PreparedOut:
    from eth_utils import keccak

    _my_round(service, roles, round_id)
    fn = service.client.market.functions.dispute(round_id, keccak(text=body.reason))
    return PreparedOut(transaction=prepare_tx(service, roles.address, fn))


@router.post("/transactions", response_model=RelayedOut,
             summary="Relay my signed transaction (submitRequest, approveResult, dispute, commitMetering)")
def relay_dso_tx(body: RawTxIn, roles: DsoDep, service: ServiceDep) -> RelayedOut:
    tx = relay_raw(service, body.raw_transaction, roles.address, service.client.market, DSO_FUNCTIONS)
    return RelayedOut(**tx.__dict__)


@router.post("/validate", response_model=ValidateOut,
             summary="Validate a proposed set of trades against the grid (AC power flow): what would break")
def validate_trades(body: ValidateIn, roles: DsoDep, db: DbDep) -> ValidateOut:
    net, view, _h = _resolve_model(db, body.model, roles.address)
    profiles = synthetic_profiles(net, view, slot_start_s=body.slot_start_s, slot_seconds=body.slot_seconds,
                                  slot_count=body.slot_count)
    base_p = np.array(profiles.net_withdrawal_mw(), dtype=float)
    p = base_p.copy()
    touched: set[int] = set()
    for i, t in enumerate(body.trades):
        if t.slot >= body.slot_count:
            raise InputError(f"trades[{i}].slot", f"slot {t.slot} is outside 0..{body.slot_count - 1}")
        try:
            node = view.node(t.bus)
        except Exception:  # the view names unknown buses in its own way
            raise InputError(f"trades[{i}].bus", f"bus {t.bus} is not in {body.model}") from None
        sign = -1.0 if t.direction == Direction.UP else 1.0  # UP: less withdrawal at the bus
        p[node, t.slot] += sign * t.kw / 1000.0
        touched.add(t.slot)
    slots = sorted(touched) or [0]
    q = np.array(profiles.load_q_mvar, dtype=float)
    try:
        base = validate_ac(net, view, base_p, q, slots=slots)
    except SolverError as exc:  # an uploaded model whose base case does not solve
        raise InputError("model", f"the AC power flow of {body.model} has no solution even without the "
                         f"trades ({exc})") from None
    try:
        after = validate_ac(net, view, p, q, slots=slots)
    except SolverError as exc:  # no AC operating point at all: voltage collapse
        return ValidateOut(ok=False, flags=[f"the AC power flow has no solution with these trades ({exc})"],
                           baseline_flags=list(base.flags), v_min_pu=None, v_max_pu=None,
                           max_loading_percent=None, slots=slots)
    new_flags = [f for f in after.flags if f not in base.flags]
    return ValidateOut(ok=not new_flags, flags=new_flags, baseline_flags=list(base.flags), v_min_pu=after.v_min_pu,
                       v_max_pu=after.v_max_pu, max_loading_percent=after.max_loading_percent, slots=slots)


@router.get("/orders", response_model=Page[GridOrderOut], summary="Orders on chain in the rounds of my grids")
def grid_orders(roles: DsoDep, service: ServiceDep, db: DbDep, page: PageDep,
                round_id: Annotated[int | None, Query(ge=0, le=2**63)] = None,
                kind: Annotated[Literal["request", "offer", "p2p"] | None, Query()] = None) -> Page[GridOrderOut]:
    q = select(OrderRecord).where(OrderRecord.market == service.deployment.market)
    if round_id is not None:
        q = q.where(OrderRecord.round_id == round_id)
    if kind is not None:
        q = q.where(OrderRecord.kind == kind)
    out = []
    for r in db.exec(q.order_by(col(OrderRecord.block_number), col(OrderRecord.log_index))).all():
        if service.round_config(r.round_id).grid_id in roles.dso_grids:
            out.append(GridOrderOut(order_hash=r.order_hash, kind=r.kind, round_id=r.round_id,
                                    participant=r.participant, order=json.loads(r.model_json),
                                    block_number=r.block_number))
    return paginate(out, page)


@router.post("/metering", response_model=MeteringOut,
             summary="Upload metering for a round (stored encrypted); returns the root and its transaction")
def upload_metering(body: MeteringIn, roles: DsoDep, service: ServiceDep, db: DbDep) -> MeteringOut:
    config = service.round_config(body.round_id)
    if config.grid_id not in roles.dso_grids:
        raise Problem(403, "Forbidden", f"round_id: round {body.round_id} is not on a grid of {roles.address}",
                      field="round_id", reason="not your grid")
    readings = []
    for i, raw in enumerate(body.readings):
        try:
            readings.append(MeterReading.model_validate({**raw, "round_id": body.round_id}))
        except InputError as exc:
            raise InputError(f"readings[{i}].{exc.field}", exc.reason) from None
    tree = MeteringTree(readings)
    agent = service.client.registry.functions.meteringAgentOf(bytes.fromhex(config.grid_id_hash[2:])).call()
    fn = service.client.market.functions.commitMetering(body.round_id, bytes.fromhex(tree.root[2:]), "")
    transaction = prepare_tx(service, agent, fn)  # a refused commit stores nothing
    put_private(db, kind="metering", owner=roles.address, round_id=body.round_id, ref=tree.root,
                data=[r.model_dump(mode="json") for r in readings])
    db.commit()
    return MeteringOut(round_id=body.round_id, metering_root=tree.root, readings=len(readings),
                       transaction=transaction)
