"""Typed wrappers of the FlexGrid contracts (docs/contracts.md): one method per contract call.

Arguments and results are the trading models (`flexgrid.trading`) in user units; the integer
encoding happens here. Every transaction is signed by the client's local account; a revert
raises `flexgrid.errors.ContractRevert(error_name, args)` with the decoded custom error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract

from flexgrid.chain.artifacts import load_artifact
from flexgrid.chain.deploy import Deployment
from flexgrid.chain.transact import TxResult, TxSender, call_view
from flexgrid.errors import ChainError, InputError, SignatureError
from flexgrid.trading.eip712 import Eip712Domain, SignedOrder
from flexgrid.trading.models import (
    ZERO_BYTES32,
    ClearingResult,
    Direction,
    FlexOffer,
    FlexRequest,
    P2POrder,
    PricingRule,
    RoundConfig,
    RoundState,
    SealMode,
    Side,
    Trade,
    request_order_hash,
)
from flexgrid.trading.units import UINT256_MAX, eur_to_micro, kw_to_w, micro_to_eur_per_mwh, w_to_kw

# ---------------------------------------------------------------------------------------------
# Encoding between the trading models and the contract structs


def _b32(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x").rjust(64, "0"))


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def grid_id_hash(grid_id: str) -> bytes:
    """`gridId` on chain: `keccak256(utf8(grid_id))` (a bytes32 hex string is taken as is)."""
    if len(grid_id) == 66 and grid_id.startswith("0x"):
        return _b32(grid_id)
    return bytes(keccak(text=grid_id))


def round_config_struct(config: RoundConfig) -> dict[str, Any]:
    """A `RoundConfig` as the contract's `FlexTypes.RoundConfig`."""
    return {
        "gridId": grid_id_hash(config.grid_id),
        "gridModelHash": _b32(config.grid_model_hash),
        "encryptionKey": _b32(config.encryption_key),
        "slotStart": config.slot_start_s,
        "gateClosure": config.gate_closure_s,
        "slotSeconds": config.slot_seconds,
        "slotCount": config.slot_count,
        "revealSeconds": config.reveal_s,
        "clearingSeconds": config.clearing_s,
        "pricingRule": int(config.pricing_rule),
        "sealMode": int(config.seal_mode),
        "disputeWindow": config.dispute_window_s,
        "settlementSeconds": config.settlement_s,
        "priceCapMicroPerMwh": config.price_cap_micro_per_mwh,
        "toleranceBps": config.tolerance_bps,
        "penaltyBps": config.penalty_bps,
        "oracleQuorum": config.oracle_quorum,
        "bidDeposit": config.bid_deposit_micro,
        "disputeBond": config.dispute_bond_micro,
    }


def round_config_from_struct(round_id: int, s: dict[str, Any], grid_id: str | None = None) -> RoundConfig:
    """The contract's `RoundConfig` of `round_id` as the Python model.

    The chain keeps only `keccak256(grid_id)`: give `grid_id` to get the name back (it is checked);
    otherwise the model's `grid_id` is the hash as hex.
    """
    grid_hash = _hex(s["gridId"])
    if grid_id is not None and grid_id_hash(grid_id) != bytes(s["gridId"]):
        raise InputError("grid_id", f"{grid_id!r} is not the grid of round {round_id} ({grid_hash})")
    return RoundConfig(
        round_id=round_id,
        grid_id=grid_id or grid_hash,
        grid_model_hash=_hex(s["gridModelHash"]),
        encryption_key=_hex(s["encryptionKey"]),
        slot_start_s=s["slotStart"],
        gate_closure_s=s["gateClosure"],
        slot_seconds=s["slotSeconds"],
        slot_count=s["slotCount"],
        reveal_s=s["revealSeconds"],
        clearing_s=s["clearingSeconds"],
        pricing_rule=PricingRule(s["pricingRule"]),
        seal_mode=SealMode(s["sealMode"]),
        dispute_window_s=s["disputeWindow"],
        settlement_s=s["settlementSeconds"],
        price_cap_eur_per_mwh=micro_to_eur_per_mwh(s["priceCapMicroPerMwh"]),
        tolerance_bps=s["toleranceBps"],
        penalty_bps=s["penaltyBps"],
        oracle_quorum=s["oracleQuorum"],
        bid_deposit_eur=s["bidDeposit"] / 1_000_000,
        dispute_bond_eur=s["disputeBond"] / 1_000_000,
    )


def request_struct(request: FlexRequest) -> dict[str, Any]:
    """A `FlexRequest` as the contract's `FlexTypes.FlexRequest`."""
    return request.struct()


def request_from_struct(request_id: int, dso: str, s: dict[str, Any]) -> FlexRequest:
    """A request read from chain; its `order_id` is `bytes32(requestId)`."""
    return FlexRequest(
        order_id=request_order_hash(request_id),
        dso=dso,
        round_id=s["roundId"],
        bus=s["bus"],
        direction=Direction(s["direction"]),
        slots=tuple(s["slots"]),
        kw=tuple(w_to_kw(w) for w in s["powerW"]),
        price_cap_eur_per_mwh=micro_to_eur_per_mwh(s["priceCapMicroPerMwh"]),
    )


def offer_struct(offer: FlexOffer) -> dict[str, Any]:
    """A `FlexOffer` as the contract's `FlexTypes.FlexOffer` (the EIP-712 message)."""
    return offer.message()


def offer_from_struct(s: dict[str, Any], order_hash: str | None = None) -> FlexOffer:
    """An offer read from chain; its `order_id` is its order hash."""
    return FlexOffer(
        order_id=order_hash,
        provider=s["provider"],
        round_id=s["roundId"],
        bus=s["bus"],
        asset_id=_hex(s["assetId"]),
        direction=Direction(s["direction"]),
        slots=tuple(s["slots"]),
        min_kw=tuple(w_to_kw(w) for w in s["minPowerW"]),
        max_kw=tuple(w_to_kw(w) for w in s["maxPowerW"]),
        price_eur_per_mwh=micro_to_eur_per_mwh(s["priceMicroPerMwh"]),
        exclusive_group=_hex(s["exclusiveGroup"]),
        min_activation=s["minActivationBps"] / 10_000,
        nonce=s["nonce"],
        expiry_s=s["expiry"],
    )


def p2p_struct(order: P2POrder) -> dict[str, Any]:
    """A `P2POrder` as the contract's `FlexTypes.P2POrder` (the EIP-712 message)."""
    return order.message()


def p2p_from_struct(s: dict[str, Any], order_hash: str | None = None) -> P2POrder:
    """A P2P order read from chain; its `order_id` is its order hash."""
    return P2POrder(
        order_id=order_hash,
        trader=s["trader"],
        round_id=s["roundId"],
        bus=s["bus"],
        side=Side(s["side"]),
        slot=s["slot"],
        kw=w_to_kw(s["powerW"]),
        limit_price_eur_per_mwh=micro_to_eur_per_mwh(s["limitPriceMicroPerMwh"]),
        nonce=s["nonce"],
        expiry_s=s["expiry"],
    )


def trade_struct(trade: Trade) -> dict[str, Any]:
    """A `Trade` as the contract's `FlexTypes.Trade` (the leaf values)."""
    values = trade.leaf_values()
    keys = ("roundId", "participant", "orderHash", "slot", "powerW", "priceMicroPerMwh", "paymentMicro")
    return dict(zip(keys, values, strict=True))


def total_payout_micro(trades: Sequence[Trade]) -> int:
    """Σ of the positive payments of the trades (the committed `totalPayout`)."""
    return sum(t.payment_micro for t in trades if t.payment_micro > 0)


def clearing_struct(result: ClearingResult) -> dict[str, Any]:
    """A `ClearingResult` as the contract's `FlexTypes.ClearingResult`."""
    return {
        "tradeRoot": _b32(result.merkle_root),
        "inputHash": _b32(result.input_hash),
        "certificateHash": _b32(result.certificate_hash),
        "totalPayout": total_payout_micro(result.trades),
        "uri": result.uri,
    }


def commitment(order_hash: str, provider: str, salt: str) -> str:
    """Sealed-bid commitment `keccak256(abi.encode(orderHash, provider, salt))`, `0x` hex."""
    encoded = abi_encode(["bytes32", "address", "bytes32"], [_b32(order_hash), provider, _b32(salt)])
    return _hex(keccak(encoded))


def plain(value: Any) -> Any:
    """Web3 return values (named tuples, AttributeDicts, bytes) as plain dicts/lists/hex."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# The client


@dataclass(frozen=True)
class RoundStatus:
    """The mutable state of a round (`IFlexMarket.roundStatus`), bytes32 as hex."""

    state: RoundState
    values: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


class MarketClient:
    """The FlexGrid contracts of one deployment, called as one account.

    `as_(account)` gives the same client for another signer. Methods that send a transaction
    return a `TxResult` (hash, block, gas, decoded events) unless they return an id.
    """

    def __init__(self, w3: Web3, deployment: Deployment, account: LocalAccount | None = None) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.account = account
        self.market: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(deployment.market),
            abi=load_artifact("FlexMarket").abi,
            decode_tuples=True,
        )
        self.registry: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(deployment.registry),
            abi=load_artifact("FlexRegistry").abi,
            decode_tuples=True,
        )
        self.token: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(deployment.token),
            abi=load_artifact("FlexToken").abi,
            decode_tuples=True,
        )

    def as_(self, account: LocalAccount) -> Self:
        """This client acting as `account`."""
        return type(self)(self.w3, self.deployment, account)

    @property
    def domain(self) -> Eip712Domain:
        return self.deployment.domain

    @property
    def address(self) -> str:
        if self.account is None:
            raise ChainError("this client has no account: use as_(account) to send transactions")
        return str(self.account.address)

    def _tx(self, fn: Any, gas: int | None = None) -> TxResult:
        if self.account is None:
            raise ChainError("this client has no account: use as_(account) to send transactions")
        return TxSender(self.w3, self.account).transact(fn, gas=gas)

    # -- registry (operator, DSO) --------------------------------------------------------------

    def set_dso(self, grid_id: str, dso: str) -> TxResult:
        """Operator: make `dso` the DSO of the grid `grid_id`."""
        return self._tx(self.registry.functions.setDso(grid_id_hash(grid_id), Web3.to_checksum_address(dso)))

    def approve_provider(self, account: str, profile_hash: str = ZERO_BYTES32) -> TxResult:
        """Operator: approve `account` as a provider/prosumer after prequalifying `profile_hash`."""
        return self._tx(
            self.registry.functions.approveProvider(Web3.to_checksum_address(account), _b32(profile_hash))
        )

    def revoke_provider(self, account: str) -> TxResult:
        """Operator: revoke `account` as a provider."""
        return self._tx(self.registry.functions.revokeProvider(Web3.to_checksum_address(account)))

    def grant_oracle(self, account: str) -> TxResult:
        """Operator: give `account` the oracle role."""
        role = call_view(self.registry.functions.ORACLE_ROLE().call)
        return self._tx(self.registry.functions.grantRole(role, Web3.to_checksum_address(account)))

    def set_metering_agent(self, grid_id: str, agent: str) -> TxResult:
        """DSO of the grid: choose the account that commits metering roots."""
        return self._tx(
            self.registry.functions.setMeteringAgent(grid_id_hash(grid_id), Web3.to_checksum_address(agent))
        )

    def dso_of(self, grid_id: str) -> str:
        return str(call_view(self.registry.functions.dsoOf(grid_id_hash(grid_id)).call))

    def is_provider(self, account: str) -> bool:
        return bool(call_view(self.registry.functions.isProvider(Web3.to_checksum_address(account)).call))

    def is_oracle(self, account: str) -> bool:
        return bool(call_view(self.registry.functions.isOracle(Web3.to_checksum_address(account)).call))

    # -- token ---------------------------------------------------------------------------------

    def mint(self, to: str, amount_eur: float) -> TxResult:
        """Token owner: mint test euros to `to`."""
        amount = eur_to_micro(amount_eur, field="amount_eur")
        return self._tx(self.token.functions.mint(Web3.to_checksum_address(to), amount))

    def approve_market(self, amount_eur: float | None = None) -> TxResult:
        """Allow the market to pull `amount_eur` (default: unlimited) of the caller's tokens."""
        amount = UINT256_MAX if amount_eur is None else eur_to_micro(amount_eur, field="amount_eur")
        return self._tx(self.token.functions.approve(self.market.address, amount))

    def token_balance_micro(self, account: str) -> int:
        return int(call_view(self.token.functions.balanceOf(Web3.to_checksum_address(account)).call))

    # -- operator ------------------------------------------------------------------------------

    def create_round(self, config: RoundConfig) -> RoundConfig:
        """Operator: open a round; returns the config with the round id the market assigned."""
        result = self._tx(self.market.functions.createRound(round_config_struct(config)))
        round_id = int(result.event("RoundCreated")["roundId"])
        return config.model_copy(update={"round_id": round_id})

    def cancel_round(self, round_id: int) -> TxResult:
        return self._tx(self.market.functions.cancelRound(round_id))

    def resolve_dispute(self, round_id: int, upheld: bool) -> TxResult:
        return self._tx(self.market.functions.resolveDispute(round_id, upheld))

    def pause(self) -> TxResult:
        return self._tx(self.market.functions.pause())

    def unpause(self) -> TxResult:
        return self._tx(self.market.functions.unpause())

    # -- DSO and metering ----------------------------------------------------------------------

    def submit_request(self, request: FlexRequest) -> FlexRequest:
        """DSO: post a FlexRequest (its budget is escrowed); returns it with `order_id` and `dso` set."""
        result = self._tx(self.market.functions.submitRequest(request_struct(request)))
        request_id = int(result.event("FlexRequestSubmitted")["requestId"])
        return request.model_copy(update={"order_id": request_order_hash(request_id), "dso": self.address})

    def approve_result(self, round_id: int) -> TxResult:
        return self._tx(self.market.functions.approveResult(round_id))

    def commit_metering(self, round_id: int, metering_root: str, uri: str = "") -> TxResult:
        return self._tx(self.market.functions.commitMetering(round_id, _b32(metering_root), uri))

    # -- providers, prosumers, relayers --------------------------------------------------------

    def deposit_bid(self, round_id: int) -> TxResult:
        return self._tx(self.market.functions.depositBid(round_id))

    def _check_signed(self, signed: Sequence[SignedOrder], kind: type) -> None:
        if not signed:
            raise InputError("orders", "the batch is empty")
        for i, item in enumerate(signed):
            if not isinstance(item.order, kind):
                raise InputError(
                    f"orders[{i}]", f"is a {type(item.order).__name__}, expected {kind.__name__}"
                )
            try:
                item.domain.check_matches(self.domain)
            except SignatureError as exc:
                raise SignatureError(exc.field, exc.reason, order_id=item.order.order_id) from None

    def submit_offer(self, signed: SignedOrder) -> str:
        """Relay one signed offer; returns its order hash."""
        self._check_signed([signed], FlexOffer)
        assert isinstance(signed.order, FlexOffer)
        result = self._tx(
            self.market.functions.submitOffer(offer_struct(signed.order), signed.signature_bytes)
        )
        return _hex(result.event("FlexOfferSubmitted")["orderHash"])

    def submit_offers(self, signed: Sequence[SignedOrder]) -> TxResult:
        """Relay many signed offers in one transaction."""
        self._check_signed(signed, FlexOffer)
        offers = [offer_struct(s.order) for s in signed if isinstance(s.order, FlexOffer)]
        return self._tx(self.market.functions.submitOffers(offers, [s.signature_bytes for s in signed]))

    def commit_offer(self, round_id: int, commitment_hash: str, ciphertext: bytes = b"") -> TxResult:
        """Seal an offer (sealed rounds); the round's bid deposit is pulled from the caller."""
        return self._tx(self.market.functions.commitOffer(round_id, _b32(commitment_hash), ciphertext))

    def reveal_offers(self, signed: Sequence[SignedOrder], salts: Sequence[str]) -> TxResult:
        """Reveal sealed offers with their salts in the reveal window."""
        self._check_signed(signed, FlexOffer)
        if len(salts) != len(signed):
            raise InputError("salts", f"{len(salts)} salts for {len(signed)} offers")
        offers = [offer_struct(s.order) for s in signed if isinstance(s.order, FlexOffer)]
        return self._tx(
            self.market.functions.revealOffers(
                offers, [s.signature_bytes for s in signed], [_b32(salt) for salt in salts]
            )
        )

    def forfeit_commitment(self, round_id: int, commitment_hash: str) -> TxResult:
        return self._tx(self.market.functions.forfeitCommitment(round_id, _b32(commitment_hash)))

    def submit_p2p_orders(self, signed: Sequence[SignedOrder]) -> TxResult:
        """Relay signed P2P orders (buy orders escrow their value from the trader)."""
        self._check_signed(signed, P2POrder)
        orders = [p2p_struct(s.order) for s in signed if isinstance(s.order, P2POrder)]
        return self._tx(self.market.functions.submitP2POrders(orders, [s.signature_bytes for s in signed]))

    # -- oracles -------------------------------------------------------------------------------

    def commit_clearing(self, result: ClearingResult) -> TxResult:
        """Oracle: vote for a clearing result (committed once the quorum agrees)."""
        return self._tx(self.market.functions.commitClearing(result.round_id, clearing_struct(result)))

    def publish_round_key(self, round_id: int, secret_key: str) -> TxResult:
        return self._tx(self.market.functions.publishRoundKey(round_id, _b32(secret_key)))

    # -- anyone --------------------------------------------------------------------------------

    def dispute(self, round_id: int, reason_hash: str) -> TxResult:
        """Challenge a committed result (the round's dispute bond is pulled from the caller)."""
        return self._tx(self.market.functions.dispute(round_id, _b32(reason_hash)))

    def claim_charge(self, trade: Trade, proof: Sequence[str]) -> TxResult:
        """Settle a payer leaf (payment < 0) with its proof against the trade root."""
        return self._tx(self.market.functions.claimCharge(trade_struct(trade), [_b32(p) for p in proof]))

    def claim_payment(
        self,
        trade: Trade,
        proof: Sequence[str],
        delivered_kw: float,
        metering_proof: Sequence[str] = (),
    ) -> TxResult:
        """Settle a payee leaf (payment > 0) against its metered delivery."""
        delivered_w = kw_to_w(delivered_kw, field="delivered_kw", order_id=trade.order_id)
        return self._tx(
            self.market.functions.claimPayment(
                trade_struct(trade), [_b32(p) for p in proof], delivered_w, [_b32(p) for p in metering_proof]
            )
        )

    def close_round(self, round_id: int) -> TxResult:
        return self._tx(self.market.functions.closeRound(round_id))

    def release(self, round_id: int, account: str) -> int:
        """Credit `account`'s deposit and uncharged escrow of a finished round; returns the amount."""
        result = self._tx(self.market.functions.release(round_id, Web3.to_checksum_address(account)))
        return sum(int(e["amount"]) for e in result.all("Released"))

    def withdraw(self) -> int:
        """Transfer the caller's whole market balance to it; returns the amount (token base units)."""
        result = self._tx(self.market.functions.withdraw())
        return int(result.event("Withdrawn")["amount"])

    # -- views ---------------------------------------------------------------------------------

    def round_count(self) -> int:
        return int(call_view(self.market.functions.roundCount().call))

    def request_count(self) -> int:
        return int(call_view(self.market.functions.requestCount().call))

    def round_config(self, round_id: int, grid_id: str | None = None) -> RoundConfig:
        s = plain(call_view(self.market.functions.roundConfig(round_id).call))
        return round_config_from_struct(round_id, s, grid_id)

    def round_state(self, round_id: int) -> RoundState:
        return RoundState(int(call_view(self.market.functions.roundState(round_id).call)))

    def round_status(self, round_id: int) -> RoundStatus:
        s = plain(call_view(self.market.functions.roundStatus(round_id).call))
        values = {k: (_hex(v) if isinstance(v, bytes) else v) for k, v in s.items()}
        return RoundStatus(state=RoundState(int(values["state"])), values=values)

    def deadlines(self, round_id: int) -> dict[str, int]:
        names = (
            "reveal_end_s",
            "commit_deadline_s",
            "dispute_deadline_s",
            "metering_deadline_s",
            "claim_deadline_s",
        )
        values = call_view(self.market.functions.deadlines(round_id).call)
        return dict(zip(names, (int(v) for v in values), strict=True))

    def request_info(self, request_id: int) -> dict[str, Any]:
        return dict(plain(call_view(self.market.functions.requestInfo(request_id).call)))

    def hash_offer(self, offer: FlexOffer) -> str:
        """The contract's order hash of `offer` (equals `offer.digest(domain)`)."""
        return _hex(call_view(self.market.functions.hashOffer(offer_struct(offer)).call))

    def hash_p2p_order(self, order: P2POrder) -> str:
        return _hex(call_view(self.market.functions.hashP2POrder(p2p_struct(order)).call))

    def domain_separator(self) -> str:
        return _hex(call_view(self.market.functions.domainSeparator().call))

    def nonce(self, owner: str, key: int) -> int:
        """The next keyed nonce of `owner` under `key` (`key << 64 | sequence`)."""
        return int(call_view(self.market.functions.nonces(Web3.to_checksum_address(owner), key).call))

    def commitment_info(self, round_id: int, commitment_hash: str) -> tuple[str, bool]:
        provider, closed = call_view(
            self.market.functions.commitmentInfo(round_id, _b32(commitment_hash)).call
        )
        return str(provider), bool(closed)

    def deposit_of_micro(self, round_id: int, account: str) -> int:
        return int(
            call_view(self.market.functions.depositOf(round_id, Web3.to_checksum_address(account)).call)
        )

    def escrow_of_micro(self, round_id: int, account: str) -> tuple[int, int]:
        """(escrow, charged) of `account` in the round, token base units."""
        escrow, charged = call_view(
            self.market.functions.escrowOf(round_id, Web3.to_checksum_address(account)).call
        )
        return int(escrow), int(charged)

    def balance_of_micro(self, account: str) -> int:
        """`account`'s withdrawable market balance, token base units."""
        return int(call_view(self.market.functions.balanceOf(Web3.to_checksum_address(account)).call))

    def is_claimed(self, leaf: str) -> bool:
        return bool(call_view(self.market.functions.isClaimed(_b32(leaf)).call))

    def has_voted(self, round_id: int, oracle: str) -> bool:
        return bool(
            call_view(self.market.functions.hasVoted(round_id, Web3.to_checksum_address(oracle)).call)
        )


__all__ = [
    "MarketClient",
    "RoundStatus",
    "clearing_struct",
    "commitment",
    "grid_id_hash",
    "offer_from_struct",
    "offer_struct",
    "p2p_from_struct",
    "p2p_struct",
    "plain",
    "request_from_struct",
    "request_struct",
    "round_config_from_struct",
    "round_config_struct",
    "total_payout_micro",
    "trade_struct",
]
