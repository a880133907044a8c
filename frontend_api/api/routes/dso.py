"""The DSO (the oracle API): grid model, FlexRequests, validating trades against the grid (AC
power flow), the orders on its grid, approval or dispute of a result, metering.

The DSO signs its own transactions (its budget goes into escrow from its account): the
`prepare` endpoints return the unsigned transaction, `transactions` relays the signed one after
checking signer, chain, contract and function."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlmodel import col, select

from flexgrid.chain.market import request_struct
from flexgrid.errors import InputError, SolverError
from flexgrid.grid import BUILTIN_NETS, build_view, grid_model_hash, load_net, synthetic_profiles
from flexgrid.opf.validate import validate_ac
from flexgrid.store.encryption import put_private
from flexgrid.store.tables import OrderRecord
from flexgrid.trading import Direction, FlexRequest, MeterReading
from flexgrid.trading.merkle import MeteringTree
from frontend_api.api.deps import DbDep, DsoDep, Page, PageDep, ServiceDep, paginate
from frontend_api.api.routes.operator import PreparedOut
from frontend_api.api.routes.prosumer import RawTxIn, RelayedOut
from frontend_api.core.problems import Problem
from frontend_api.core.rawtx import prepare_tx, relay_raw
from frontend_api.models import GridChoice

router = APIRouter(prefix="/dso", tags=["dso"])

DSO_FUNCTIONS = ("submitRequest", "approveResult", "dispute", "commitMetering")


class GridOut(BaseModel):
    grid_id: str
    mine: bool
    model: str | None
    grid_model_hash: str | None


class GridChoiceIn(BaseModel):
    grid_id: str = Field(min_length=1, max_length=66, description="a grid id I am the DSO of")
    model: str = Field(description="a built-in network: " + ", ".join(BUILTIN_NETS))


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
    model: str = Field("case33bw", description="a built-in network")
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


@router.post("/grid-model", response_model=GridOut, summary="Choose the grid model of one of my grids")
def choose_grid(body: GridChoiceIn, roles: DsoDep, db: DbDep) -> GridOut:
    if body.grid_id not in roles.dso_grids:
        raise Problem(403, "Forbidden", f"grid_id: {roles.address} is not the DSO of {body.grid_id!r}",
                      field="grid_id", reason="not your grid")
    if body.model not in BUILTIN_NETS:
        raise InputError("model", f"unknown network {body.model!r}; built-in: {', '.join(BUILTIN_NETS)}")
    net = load_net(body.model)
    h = grid_model_hash(build_view(net, body.model))
    choice = db.get(GridChoice, body.grid_id) or GridChoice(grid_id=body.grid_id, dso=roles.address, model=body.model,
                                                            grid_model_hash=h)
    choice.dso, choice.model, choice.grid_model_hash = roles.address, body.model, h
    db.add(choice)
    db.commit()
    return GridOut(grid_id=body.grid_id, mine=True, model=body.model, grid_model_hash=h)


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


@router.post("/transactions", response_model=RelayedOut,
             summary="Relay my signed transaction (submitRequest, approveResult, dispute, commitMetering)")
def relay_dso_tx(body: RawTxIn, roles: DsoDep, service: ServiceDep) -> RelayedOut:
    tx = relay_raw(service, body.raw_transaction, roles.address, service.client.market, DSO_FUNCTIONS)
    return RelayedOut(**tx.__dict__)


@router.post("/validate", response_model=ValidateOut,
             summary="Validate a proposed set of trades against the grid (AC power flow): what would break")
def validate_trades(body: ValidateIn, roles: DsoDep) -> ValidateOut:
    if body.model not in BUILTIN_NETS:
        raise InputError("model", f"unknown network {body.model!r}; built-in: {', '.join(BUILTIN_NETS)}")
    net = load_net(body.model)
    view = build_view(net, body.model)
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
    base = validate_ac(net, view, base_p, q, slots=slots)
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
