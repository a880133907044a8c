"""The market operator: compose a round from a configuration, open and cancel rounds, approve
participants. The operator signs its own transactions with its wallet: `compose` returns the
validated configuration and the unsigned transaction, `transactions` relays the signed one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from flexgrid.chain.market import round_config_struct
from flexgrid.trading import PricingRule, RoundConfig, SealMode
from frontend_api.api.deps import OperatorDep, ServiceDep
from frontend_api.api.routes.prosumer import PreparedOut, RawTxIn, RelayedOut
from frontend_api.core.rawtx import prepare_tx, relay_raw

router = APIRouter(prefix="/operator", tags=["operator"])

MARKET_FUNCTIONS = ("createRound", "cancelRound", "resolveDispute", "pause", "unpause")
REGISTRY_FUNCTIONS = ("approveProvider", "revokeProvider", "setDso", "grantRole", "revokeRole")


class RoundIn(BaseModel):
    grid_id: str = Field(min_length=1, max_length=66)
    grid_model_hash: str = Field(description="bytes32 hash of the grid model (see GET /dso/grids)")
    slot_start_s: int = Field(ge=0, le=2**64 - 1)
    slot_seconds: int = Field(900, ge=1, le=2**32 - 1)
    slot_count: int = Field(ge=1, le=65536)
    gate_closure_s: int = Field(ge=0, le=2**64 - 1)
    pricing_rule: PricingRule = PricingRule.PAY_AS_BID
    seal_mode: SealMode = SealMode.OPEN
    oracle_quorum: int = Field(1, ge=1, le=255)
    dispute_window_s: int = Field(3600, ge=0, le=2**32 - 1)
    price_cap_eur_per_mwh: float = Field(gt=0, le=1e9)
    tolerance_bps: int = Field(500, ge=0, le=10_000)
    penalty_bps: int = Field(2000, ge=0, le=10_000)
    bid_deposit_eur: float = Field(0.0, ge=0, le=1e9)
    reveal_s: int = Field(0, ge=0, le=2**32 - 1)
    clearing_s: int = Field(3600, ge=1, le=2**32 - 1)
    settlement_s: int = Field(86_400, ge=1, le=2**32 - 1)
    dispute_bond_eur: float = Field(0.0, ge=0, le=1e9)
    encryption_key: str = Field("0x" + "00" * 32, description="X25519 public key of an ENCRYPTED round")


class ComposedOut(BaseModel):
    round_config: dict[str, Any]
    transaction: dict[str, Any] = Field(description="unsigned createRound transaction: sign it with the "
                                        "operator's wallet and POST it to /operator/transactions")


@router.post("/rounds/compose", response_model=ComposedOut,
             summary="Validate a round configuration and prepare its createRound transaction")
def compose_round(body: RoundIn, roles: OperatorDep, service: ServiceDep) -> ComposedOut:
    config = RoundConfig(round_id=0, **body.model_dump())
    fn = service.client.market.functions.createRound(round_config_struct(config))
    return ComposedOut(round_config=config.model_dump(mode="json"), transaction=prepare_tx(service, roles.address, fn))


@router.post("/rounds/{round_id}/cancel/prepare", response_model=PreparedOut,
             summary="Prepare the cancelRound transaction for the operator's wallet")
def prepare_cancel(round_id: Annotated[int, Path(ge=1, le=2**63)], roles: OperatorDep,
                   service: ServiceDep) -> PreparedOut:
    service.round_config(round_id)
    fn = service.client.market.functions.cancelRound(round_id)
    return PreparedOut(transaction=prepare_tx(service, roles.address, fn))


@router.post("/participants/{address}/approve/prepare", response_model=PreparedOut,
             summary="Prepare the registry's approveProvider transaction for the operator's wallet")
def prepare_approve(address: Annotated[str, Path(pattern=r"^0x[0-9a-fA-F]{40}$")], roles: OperatorDep,
                    service: ServiceDep) -> PreparedOut:
    from web3 import Web3

    fn = service.client.registry.functions.approveProvider(Web3.to_checksum_address(address), b"\x00" * 32)
    return PreparedOut(transaction=prepare_tx(service, roles.address, fn))


@router.post("/transactions", response_model=RelayedOut,
             summary="Relay the operator's signed market transaction (createRound, cancelRound, ...)")
def relay_market_tx(body: RawTxIn, roles: OperatorDep, service: ServiceDep) -> RelayedOut:
    tx = relay_raw(service, body.raw_transaction, roles.address, service.client.market, MARKET_FUNCTIONS)
    return RelayedOut(**tx.__dict__)


@router.post("/participants", response_model=RelayedOut,
             summary="Relay the operator's signed registry transaction (approveProvider, setDso, ...)")
def relay_registry_tx(body: RawTxIn, roles: OperatorDep, service: ServiceDep) -> RelayedOut:
    tx = relay_raw(service, body.raw_transaction, roles.address, service.client.registry, REGISTRY_FUNCTIONS)
    return RelayedOut(**tx.__dict__)
