"""Prosumers and flexibility providers: assets, proposed offers, signed offers (open or sealed),
P2P orders, and what they have: orders, trades, settlements, withdrawable balance."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from flexgrid.assets.models import parse_asset
from flexgrid.assets.offers import propose_offers
from flexgrid.errors import InputError
from flexgrid.oracle.publication import PublishedTrade
from flexgrid.store.encryption import get_private, put_private
from flexgrid.store.tables import ChainEvent, OrderRecord
from flexgrid.trading import FlexOffer, P2POrder, RoundState, SealMode
from flexgrid.trading.eip712 import SignedOrder
from flexgrid.trading.models import validate_for_round
from frontend_api.api.deps import (
    DbDep,
    Page,
    PageDep,
    ProviderDep,
    ServiceDep,
    SessionDep,
    page_rows,
    paginate,
)
from frontend_api.core.problems import Problem
from frontend_api.core.rawtx import relay_raw
from frontend_api.core.service import SEQ_BITS, FlexGridService, to_jsonable
from frontend_api.models import ApiOrder

router = APIRouter(prefix="/prosumer", tags=["prosumer"])


class AssetIn(BaseModel):
    bus: int = Field(ge=0, le=2**32 - 1, description="the grid bus the asset is connected to")
    asset: dict[str, Any] = Field(description="asset parameters (flexgrid.assets: kind battery, ev, "
                                  "shiftable_load, pv or heat_pump and its fields); stored encrypted")


class AssetOut(BaseModel):
    ref: str
    bus: int
    name: str
    kind: str
    asset_id: str
    asset: dict[str, Any]


class ProposedOffer(BaseModel):
    asset_ref: str
    offer: dict[str, Any] = Field(description="the FlexOffer in user units: sign its typed_data")
    typed_data: dict[str, Any] = Field(description="EIP-712 typed data for eth_signTypedData_v4")


class SignedOrderIn(BaseModel):
    kind: Literal["offer", "p2p"]
    order: dict[str, Any]
    domain: dict[str, Any]
    signature: str = Field(max_length=200)


class OrderOut(BaseModel):
    order_hash: str
    kind: str
    owner: str
    round_id: int
    status: str = Field(description="queued, relayed, indexed or failed")
    tx_hash: str | None = None
    error: str | None = None
    created_at: datetime | None = None
    order: dict[str, Any] | None = None


class RawTxIn(BaseModel):
    raw_transaction: str = Field(max_length=200_000, description="a transaction signed by the wallet, 0x hex")


class RelayedOut(BaseModel):
    tx_hash: str
    block_number: int
    function: str
    events: list[dict[str, Any]]


class RevealIn(BaseModel):
    offers: list[SignedOrderIn] = Field(min_length=1, max_length=200)
    salts: list[str] = Field(min_length=1, max_length=200)


class TradeOut(BaseModel):
    round_id: int
    leaf_index: int
    order_hash: str
    slot: int
    kw: float
    price_eur_per_mwh: float
    payment_eur: float


class EventOut(BaseModel):
    event: str
    round_id: int | None
    order_hash: str | None
    tx_hash: str
    block_number: int
    args: dict[str, Any]


class WithdrawableOut(BaseModel):
    address: str
    withdrawable_eur: float
    withdrawable_micro: int
    token_balance_eur: float


def _order_out(row: ApiOrder, indexed: set[str]) -> OrderOut:
    status = "indexed" if row.order_hash in indexed else row.status
    return OrderOut(order_hash=row.order_hash, kind=row.kind, owner=row.owner, round_id=row.round_id, status=status,
                    tx_hash=row.tx_hash, error=row.error, created_at=row.created_at,
                    order=json.loads(row.signed_json)["order"])


def _parse_signed(body: SignedOrderIn, kind: str) -> SignedOrder:
    if body.kind != kind:
        raise InputError("kind", f"must be {kind!r} on this endpoint, got {body.kind!r}")
    return SignedOrder.from_dict(body.model_dump())


def accept_signed(service: FlexGridService, db: DbDep, signed: SignedOrder, signer: str) -> ApiOrder:
    """Check a signed order as the contract will, then store and queue it (all or nothing)."""
    order = signed.order
    assert isinstance(order, FlexOffer | P2POrder)
    order_hash = signed.verify(service.deployment.domain)  # domain and signer: SignatureError names the field
    owner = order.provider if isinstance(order, FlexOffer) else order.trader
    if owner != signer:
        raise Problem(403, "Forbidden", f"{'provider' if isinstance(order, FlexOffer) else 'trader'}: the order is "
                      f"signed for {owner}, the signed-in wallet is {signer}",
                      field="provider" if isinstance(order, FlexOffer) else "trader", reason="not the signed-in address")
    config = service.round_config(order.round_id)
    if isinstance(order, FlexOffer) and config.seal_mode != SealMode.OPEN:
        raise InputError("round_id", f"round {order.round_id} is {config.seal_mode.name}: commit, then reveal")
    state = service.round_state(order.round_id)
    now = service.chain_now_s()
    if state != RoundState.OPEN or now >= config.gate_closure_s:
        raise InputError("round_id", f"round {order.round_id} is not open for orders "
                         f"({state.name}, gate closure {config.gate_closure_s}, chain time {now})")
    validate_for_round(order, config, now_s=now)
    if db.get(ApiOrder, order_hash) is not None:
        raise Problem(409, "Duplicate order", f"order {order_hash} was already submitted",
                      field="order", reason="already submitted", order_hash=order_hash)
    service.reserve_nonce(owner, order.nonce)
    row = ApiOrder(order_hash=order_hash, kind="offer" if isinstance(order, FlexOffer) else "p2p", owner=owner,
                   round_id=order.round_id, nonce_key=str(order.nonce >> SEQ_BITS),
                   nonce_seq=order.nonce & ((1 << SEQ_BITS) - 1), signed_json=json.dumps(signed.to_dict()))
    try:
        db.add(row)
        db.commit()
    except IntegrityError:
        db.rollback()
        service.release_nonce(owner, order.nonce)
        raise Problem(409, "Duplicate order", f"order {order_hash} was already submitted",
                      field="order", reason="already submitted") from None
    except Exception:
        db.rollback()
        service.release_nonce(owner, order.nonce)
        raise
    service.enqueue(order_hash)
    return row


@router.post("/assets", status_code=201, response_model=AssetOut, summary="Register an asset (stored encrypted)")
def register_asset(body: AssetIn, roles: ProviderDep, db: DbDep) -> AssetOut:
    asset = parse_asset(body.asset)
    asset_json: dict[str, Any] = asset.model_dump(mode="json")
    data = {"bus": body.bus, "asset": asset_json}
    record = put_private(db, kind="asset", owner=roles.address, data=data, ref=asset.asset_id)
    db.commit()
    return AssetOut(ref=str(record.id), bus=body.bus, name=asset.name, kind=type(asset).__name__,
                    asset_id=asset.asset_id, asset=asset_json)


@router.get("/assets", response_model=Page[AssetOut], summary="My registered assets")
def my_assets(roles: ProviderDep, db: DbDep, page: PageDep,
              kind: Annotated[str | None, Query(max_length=40)] = None) -> Page[AssetOut]:
    out = []
    for r in get_private(db, kind="asset", owner=roles.address):
        asset = parse_asset(r.data["asset"])
        if kind is None or type(asset).__name__ == kind:
            out.append(AssetOut(ref=str(r.id), bus=r.data["bus"], name=asset.name, kind=type(asset).__name__,
                                asset_id=asset.asset_id, asset=r.data["asset"]))
    return paginate(out, page)


@router.get("/rounds/{round_id}/proposed-offers", response_model=Page[ProposedOffer],
            summary="Offers the meta-service proposes from my assets for a round (to sign)")
def proposed_offers(round_id: Annotated[int, Path(ge=1, le=2**63)], roles: ProviderDep, service: ServiceDep,
                    db: DbDep, page: PageDep) -> Page[ProposedOffer]:
    config = service.round_config(round_id)
    nonce_key = round_id
    next_seq = service.client.nonce(roles.address, nonce_key) & ((1 << SEQ_BITS) - 1)
    out = []
    for r in get_private(db, kind="asset", owner=roles.address):
        asset = parse_asset(r.data["asset"])
        offers = propose_offers(asset, config, provider=roles.address, bus=int(r.data["bus"]),
                                nonce_start=(nonce_key << SEQ_BITS) | next_seq, expiry_s=config.gate_closure_s)
        next_seq += len(offers)
        for offer in offers:
            out.append(ProposedOffer(asset_ref=str(r.id), offer=offer.model_dump(mode="json"),
                                     typed_data=_typed_json(offer.typed_data(service.deployment.domain))))
    return paginate(out, page)


def _typed_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {k: _typed_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_typed_json(v) for v in value]
    return value


@router.post("/offers", status_code=202, response_model=OrderOut,
             summary="Submit an EIP-712 signed FlexOffer (relayed in the next batch)")
def submit_offer(body: SignedOrderIn, roles: ProviderDep, service: ServiceDep, db: DbDep) -> OrderOut:
    row = accept_signed(service, db, _parse_signed(body, "offer"), roles.address)
    return _order_out(row, set())


@router.post("/p2p-orders", status_code=202, response_model=OrderOut,
             summary="Submit an EIP-712 signed P2P order (relayed in the next batch)")
def submit_p2p(body: SignedOrderIn, session: SessionDep, service: ServiceDep, db: DbDep) -> OrderOut:
    row = accept_signed(service, db, _parse_signed(body, "p2p"), session.address)
    return _order_out(row, set())


@router.post("/commitments", response_model=RelayedOut,
             summary="Relay my wallet-signed commitOffer transaction (sealed rounds)")
def commit_offer(body: RawTxIn, roles: ProviderDep, service: ServiceDep) -> RelayedOut:
    tx = relay_raw(service, body.raw_transaction, roles.address, service.client.market, ("commitOffer",))
    return RelayedOut(**tx.__dict__)


@router.post("/reveals", response_model=RelayedOut, summary="Reveal my sealed offers with their salts")
def reveal_offers(body: RevealIn, roles: ProviderDep, service: ServiceDep) -> RelayedOut:
    if len(body.salts) != len(body.offers):
        raise InputError("salts", f"{len(body.salts)} salts for {len(body.offers)} offers")
    signed = []
    for i, item in enumerate(body.offers):
        s = _parse_signed(item, "offer")
        s.verify(service.deployment.domain)
        assert isinstance(s.order, FlexOffer)
        if s.order.provider != roles.address:
            raise Problem(403, "Forbidden", f"offers[{i}].provider: {s.order.provider} is not the signed-in wallet",
                          field=f"offers[{i}].provider", reason="not the signed-in address")
        signed.append(s)
    result = service.relay_client.reveal_offers(signed, body.salts)
    return RelayedOut(tx_hash=result.tx_hash, block_number=result.block_number, function="revealOffers",
                      events=to_jsonable(list(result.events)))


@router.get("/orders", response_model=Page[OrderOut], summary="My orders and where they are")
def my_orders(session: SessionDep, db: DbDep, page: PageDep,
              round_id: Annotated[int | None, Query(ge=0, le=2**63)] = None,
              status: Annotated[Literal["queued", "relayed", "indexed", "failed"] | None, Query()] = None,
              kind: Annotated[Literal["offer", "p2p"] | None, Query()] = None) -> Page[OrderOut]:
    q = select(ApiOrder).where(ApiOrder.owner == session.address)
    if round_id is not None:
        q = q.where(ApiOrder.round_id == round_id)
    if kind is not None:
        q = q.where(ApiOrder.kind == kind)
    q = q.order_by(col(ApiOrder.created_at))
    if status is None:  # page in SQL
        rows, total = page_rows(db, q, page)
    else:
        rows, total = list(db.exec(q).all()), 0
    hashes = [r.order_hash for r in rows]
    indexed = set(db.exec(select(OrderRecord.order_hash).where(col(OrderRecord.order_hash).in_(hashes))).all())
    out = [_order_out(r, indexed) for r in rows]
    if status is None:
        return Page[OrderOut](items=out, total=total, limit=page.limit, offset=page.offset)
    return paginate([o for o in out if o.status == status], page)


@router.get("/orders/{order_hash}", response_model=OrderOut, summary="One of my orders")
def my_order(order_hash: str, session: SessionDep, db: DbDep) -> OrderOut:
    row = db.get(ApiOrder, order_hash.lower())
    if row is None or row.owner != session.address:
        raise Problem(404, "Not found", f"order_hash: no order {order_hash} of {session.address}",
                      field="order_hash", reason="no such order of yours")
    indexed = set(db.exec(select(OrderRecord.order_hash).where(OrderRecord.order_hash == row.order_hash)).all())
    return _order_out(row, indexed)


@router.get("/trades", response_model=Page[TradeOut], summary="My trades in committed results")
def my_trades(session: SessionDep, service: ServiceDep, db: DbDep, page: PageDep,
              round_id: Annotated[int | None, Query(ge=0, le=2**63)] = None) -> Page[TradeOut]:
    q = select(PublishedTrade).where(PublishedTrade.participant == session.address) \
        .where(PublishedTrade.market == service.deployment.market)
    if round_id is not None:
        q = q.where(PublishedTrade.round_id == round_id)
    rows = db.exec(q.order_by(col(PublishedTrade.round_id), col(PublishedTrade.leaf_index))).all()
    return paginate([TradeOut(round_id=t.round_id, leaf_index=t.leaf_index, order_hash=t.order_hash, slot=t.slot,
                              kw=t.power_w / 1000, price_eur_per_mwh=t.price_micro_per_mwh / 1e6,
                              payment_eur=t.payment_micro / 1e6) for t in rows], page)


SETTLEMENT_EVENTS = ("PaymentSettled", "ChargeSettled", "Released", "Withdrawn")


@router.get("/settlements", response_model=Page[EventOut], summary="My settlement events on chain")
def my_settlements(session: SessionDep, db: DbDep, page: PageDep,
                   round_id: Annotated[int | None, Query(ge=0, le=2**63)] = None) -> Page[EventOut]:
    q = select(ChainEvent).where(col(ChainEvent.event).in_(SETTLEMENT_EVENTS)) \
        .where(ChainEvent.account == session.address)
    if round_id is not None:
        q = q.where(ChainEvent.round_id == round_id)
    rows, total = page_rows(db, q.order_by(col(ChainEvent.block_number), col(ChainEvent.log_index)), page)
    return Page[EventOut](items=[EventOut(event=e.event, round_id=e.round_id, order_hash=e.order_hash,
                                          tx_hash=e.tx_hash, block_number=e.block_number,
                                          args=json.loads(e.args_json)) for e in rows],
                          total=total, limit=page.limit, offset=page.offset)


@router.get("/withdrawable", response_model=WithdrawableOut, summary="What I can withdraw from the market")
def withdrawable(session: SessionDep, service: ServiceDep) -> WithdrawableOut:
    micro = service.client.balance_of_micro(session.address)
    return WithdrawableOut(address=session.address, withdrawable_eur=micro / 1e6, withdrawable_micro=micro,
                           token_balance_eur=service.client.token_balance_micro(session.address) / 1e6)
