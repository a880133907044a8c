"""Prosumers and flexibility providers: assets, proposed offers, signed offers (open or sealed),
P2P orders, and what they have: orders, trades, settlements, withdrawable balance."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlmodel import col, select

from flexgrid.assets.models import parse_asset
from flexgrid.assets.offers import propose_offers
from flexgrid.audit.verify import load_round_publication
from flexgrid.errors import ContractRevert, InputError
from flexgrid.oracle.ciphertexts import (
    MAX_CIPHERTEXT_BYTES,
    SealedCiphertext,
    check_ciphertext,
    forget_ciphertext,
    store_ciphertext,
)
from flexgrid.oracle.publication import trades_from_publication
from flexgrid.store.encryption import get_private, put_private
from flexgrid.store.tables import ChainEvent, OrderRecord
from flexgrid.trading import FlexOffer, SealMode, Trade
from flexgrid.trading.eip712 import SignedOrder
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
from frontend_api.core.rawtx import _decode as decode_raw
from frontend_api.core.rawtx import prepare_tx, relay_raw
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


class PreparedOut(BaseModel):
    transaction: dict[str, Any] = Field(description="unsigned transaction (EIP-1559) for the wallet to sign")


class RelayedOut(BaseModel):
    tx_hash: str
    block_number: int
    function: str
    events: list[dict[str, Any]]


class NonceOut(BaseModel):
    owner: str
    key: int
    next_seq: int = Field(description="the next unused sequence under this key (counting orders the API "
                          "accepted and has not relayed yet)")
    next_nonce: int = Field(description="key << 64 | next_seq: the `nonce` to sign into the next order")


class CommitmentIn(BaseModel):
    round_id: int = Field(ge=1, le=2**63)
    commitment: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$", description="keccak256(abi.encode(orderHash, "
                            "provider, salt)) of the sealed offer (flexgrid.chain.market.commitment)")
    ciphertext: str = Field("0x", pattern=r"^0x([0-9a-fA-F]{2}){0,8192}$",
                            description="the offer encrypted to the round key (ENCRYPTED rounds), else empty")


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
    # the parsed fields as they are (model_dump copied every nested dict of every offer)
    return SignedOrder.from_dict({"kind": body.kind, "order": body.order, "domain": body.domain,
                                  "signature": body.signature})


def accept_signed(service: FlexGridService, db: DbDep, signed: SignedOrder, signer: str) -> ApiOrder:
    """Check a signed order as the contract will, then store and queue it (all or nothing; the
    service writes the rows of concurrent requests in one transaction)."""
    return service.accept_order(signed, signer)


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


class CommitIn(RawTxIn):
    ciphertext: str | None = Field(default=None, max_length=2 * MAX_CIPHERTEXT_BYTES + 2,
                                   description="ENCRYPTED rounds: the sealed offer's ciphertext (0x hex), kept off "
                                   "chain for the oracle; the commitOffer transaction then carries an empty one")


@router.get("/nonces/{key}", response_model=NonceOut,
            summary="The next nonce of my orders under a key (offers and P2P orders use the round id as key)")
def next_nonce(key: Annotated[int, Path(ge=0, le=2**192 - 1)], session: SessionDep, service: ServiceDep,
               db: DbDep) -> NonceOut:
    from sqlalchemy import func

    mask = (1 << SEQ_BITS) - 1
    on_chain = service.client.nonce(session.address, key) & mask
    pending = db.exec(select(func.max(ApiOrder.nonce_seq)).where(ApiOrder.owner == session.address)
                      .where(ApiOrder.nonce_key == str(key)).where(col(ApiOrder.status).in_(("queued", "relayed")))
                      ).first()
    seq = max(on_chain, (int(pending) + 1) if pending is not None else 0)
    return NonceOut(owner=session.address, key=key, next_seq=seq, next_nonce=(key << SEQ_BITS) | seq)


@router.post("/commitments/prepare", response_model=PreparedOut,
             summary="Prepare the commitOffer transaction of a sealed offer for my wallet (the round's bid "
                     "deposit is taken from it)")
def prepare_commitment(body: CommitmentIn, roles: ProviderDep, service: ServiceDep) -> PreparedOut:
    config = service.round_config(body.round_id)
    if config.seal_mode == SealMode.OPEN:
        raise InputError("round_id", f"round {body.round_id} is OPEN: submit signed offers to POST /prosumer/offers")
    fn = service.client.market.functions.commitOffer(body.round_id, bytes.fromhex(body.commitment[2:]),
                                                     bytes.fromhex(body.ciphertext[2:]))
    return PreparedOut(transaction=prepare_tx(service, roles.address, fn))


@router.post("/commitments", response_model=RelayedOut,
             summary="Relay my wallet-signed commitOffer transaction (sealed rounds), with its ciphertext")
def commit_offer(body: CommitIn, roles: ProviderDep, service: ServiceDep, db: DbDep) -> RelayedOut:
    stored = None if body.ciphertext is None else _store_ciphertext(service, db, body, roles.address)
    try:
        tx = relay_raw(service, body.raw_transaction, roles.address, service.client.market, ("commitOffer",))
    except (Problem, ContractRevert):  # not mined: the ciphertext stored for it goes too
        if stored is not None:
            forget_ciphertext(db, stored)
            db.commit()
        raise
    return RelayedOut(**tx.__dict__)


def _store_ciphertext(service: FlexGridService, db: DbDep, body: CommitIn, sender: str) -> SealedCiphertext | None:
    """Store the ciphertext before its commitOffer is relayed (flexgrid.oracle.ciphertexts); returns
    the row if this call created it. A transaction that is not a decodable commitOffer stores
    nothing: relay_raw says what is wrong with it."""
    try:
        data = decode_raw(bytes.fromhex(body.raw_transaction.removeprefix("0x")))[2]
        fn, args = service.client.market.decode_function_input(data)
    except Exception:
        return None
    if fn.fn_name != "commitOffer":
        return None
    config = service.round_config(int(args["roundId"]))
    raw = check_ciphertext(str(body.ciphertext), config, bytes(args["ciphertext"]))
    row = store_ciphertext(db, chain_id=service.deployment.chain_id, market=service.deployment.market,
                           round_id=config.round_id, commitment=bytes(args["commitment_"]), provider=sender,
                           ciphertext=raw)
    created = row.id is None
    from sqlalchemy.exc import IntegrityError

    try:
        db.commit()
    except IntegrityError:  # the same commitment stored by a concurrent request
        db.rollback()
        raise InputError("commitment", "a ciphertext is already stored for this commitment") from None
    return row if created else None


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


def committed_trades(db: DbDep, service: FlexGridService, round_id: int | None) -> list[tuple[int, int, Trade]]:
    """(round, leaf index, trade) of every committed result the API has indexed, read from the
    publication at the URI the ClearingCommitted event names (the same source as the auditor's)."""
    q = select(ChainEvent).where(ChainEvent.event == "ClearingCommitted") \
        .where(ChainEvent.contract == service.deployment.market)
    if round_id is not None:
        q = q.where(ChainEvent.round_id == round_id)
    latest: dict[int, ChainEvent] = {}
    for ev in db.exec(q.order_by(col(ChainEvent.block_number), col(ChainEvent.log_index))).all():
        if ev.round_id is not None:
            latest[ev.round_id] = ev  # a result committed again after a dispute replaces the first
    out = []
    for rid, ev in sorted(latest.items()):
        for i, t in enumerate(_publication_trades(ev.tx_hash, str(json.loads(ev.args_json).get("uri", "")))):
            out.append((rid, i, t))
    return out


_trade_cache: dict[tuple[str, str], tuple[Trade, ...]] = {}


def _publication_trades(tx_hash: str, uri: str) -> tuple[Trade, ...]:
    key = (tx_hash, uri)
    if key not in _trade_cache:
        doc = load_round_publication(uri)
        if doc is None:
            return ()  # not readable (yet): nothing to show, try again next time
        if len(_trade_cache) > 1000:
            _trade_cache.clear()
        _trade_cache[key] = tuple(trades_from_publication(doc))
    return _trade_cache[key]


@router.get("/trades", response_model=Page[TradeOut], summary="My trades in committed results")
def my_trades(session: SessionDep, service: ServiceDep, db: DbDep, page: PageDep,
              round_id: Annotated[int | None, Query(ge=0, le=2**63)] = None) -> Page[TradeOut]:
    me = session.address.lower()
    return paginate([TradeOut(round_id=rid, leaf_index=i, order_hash=t.order_id, slot=t.slot, kw=t.kw,
                              price_eur_per_mwh=t.price_eur_per_mwh, payment_eur=t.payment_eur)
                     for rid, i, t in committed_trades(db, service, round_id) if t.participant.lower() == me], page)


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
