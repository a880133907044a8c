"""The typed order model of FlexGrid (docs/trading-language.md, "Python models").

Every model is a frozen pydantic v2 model validated on construction. Bad input raises
`flexgrid.errors.InputError` naming the field, the reason and, where known, the order id; never
a bare pydantic `ValidationError`. Fields are in user units (kW, EUR/MWh, EUR, seconds); the
on-chain integer encoding comes from properties and methods (`*_w`, `*_micro*`, `*_bps`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from enum import IntEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self, cast

from eth_utils import is_address, is_checksum_address, keccak, to_checksum_address
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator

from flexgrid.errors import InputError
from flexgrid.trading.units import (
    INT256_MAX,
    UINT16_MAX,
    UINT32_MAX,
    UINT64_MAX,
    UINT256_MAX,
    bps_to_fraction,
    eur_per_mwh_to_micro,
    eur_to_micro,
    fraction_to_bps,
    kw_to_w,
    scale_exact,
    value_micro_up,
)

if TYPE_CHECKING:
    from flexgrid.trading.eip712 import SignableOrder

ZERO_BYTES32 = "0x" + "00" * 32
BPS = 10_000


class Direction(IntEnum):
    """Direction of flexibility at a bus."""

    UP = 0  # more injection / less consumption
    DOWN = 1  # less injection / more consumption


class Side(IntEnum):
    """Side of a P2P energy order."""

    BUY = 0
    SELL = 1


class PricingRule(IntEnum):
    """How the clearing prices accepted trades."""

    PAY_AS_BID = 0
    UNIFORM = 1
    DLMP = 2
    VCG = 3


class SealMode(IntEnum):
    """How offers are kept confidential before gate closure."""

    OPEN = 0
    COMMIT_REVEAL = 1
    ENCRYPTED = 2


class RoundState(IntEnum):
    """State of a market round on chain (CLOSED is derived from time)."""

    NONE = 0
    OPEN = 1
    CLOSED = 2
    COMMITTED = 3
    DISPUTED = 4
    FINAL = 5
    SETTLED = 6
    CANCELLED = 7


# ---------------------------------------------------------------------------------------------
# Field validators. Each raises InputError naming the field; the model fills in the order id.


def _field(info: ValidationInfo) -> str:
    return info.field_name or "?"


def _address(value: str, info: ValidationInfo) -> str:
    """Any-case hex address -> checksummed; a mixed-case address must have a valid checksum."""
    if not isinstance(value, str):
        raise InputError(
            _field(info),
            f"{value!r} is not an Ethereum address (0x + 40 hex digits, valid EIP-55 checksum if mixed case)",
        )
    checksummed, problem = _checked_address(value)
    if problem:
        raise InputError(_field(info), problem)
    return checksummed


@lru_cache(maxsize=65536)
def _checked_address(value: str) -> tuple[str, str]:
    """(checksummed address, "") or ("", why not); cached: each check costs two keccaks, and the
    same few addresses come back in every order of a wallet."""
    if not is_address(value) or not value.startswith("0x"):
        return "", f"{value!r} is not an Ethereum address (0x + 40 hex digits, valid EIP-55 checksum if mixed case)"
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(value):
        return "", f"{value!r} has mixed case but an invalid EIP-55 checksum"
    return str(to_checksum_address(value)), ""


def _optional_address(value: str | None, info: ValidationInfo) -> str | None:
    return None if value is None else _address(value, info)


def _bytes32(value: str, info: ValidationInfo) -> str:
    """0x + 64 hex digits, normalised to lower case."""
    if isinstance(value, bytes | bytearray) and len(value) == 32:
        return "0x" + bytes(value).hex()
    if not isinstance(value, str) or len(value) != 66 or not value.startswith("0x"):
        raise InputError(_field(info), f"{value!r} is not a bytes32 (0x + 64 hex digits)")
    try:
        bytes.fromhex(value[2:])
    except ValueError as exc:
        raise InputError(_field(info), f"{value!r} is not a bytes32 (non-hex digits)") from exc
    return value.lower()


def _uint(max_value: int) -> Any:
    def check(value: int, info: ValidationInfo) -> int:
        if not 0 <= value <= max_value:
            raise InputError(_field(info), f"{value} is outside 0..{max_value}")
        return value

    return AfterValidator(check)


def _slots(value: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
    field = _field(info)
    if len(value) == 0:
        raise InputError(field, "needs at least one slot")
    for i, slot in enumerate(value):
        if not 0 <= slot <= UINT16_MAX:
            raise InputError(field, f"slot {slot} at position {i} is outside 0..{UINT16_MAX}")
        if i > 0 and slot <= value[i - 1]:
            raise InputError(field, f"slots must be strictly increasing: {value[i - 1]} then {slot}")
    return value


def _finite(value: float, info: ValidationInfo) -> float:
    if not math.isfinite(value):
        raise InputError(_field(info), f"must be a finite number, got {value}")
    return value


Address = Annotated[str, AfterValidator(_address)]
OptionalAddress = Annotated[str | None, AfterValidator(_optional_address)]
Bytes32 = Annotated[str, AfterValidator(_bytes32)]
Uint16 = Annotated[int, _uint(UINT16_MAX)]
Uint32 = Annotated[int, _uint(UINT32_MAX)]
Uint64 = Annotated[int, _uint(UINT64_MAX)]
Uint256 = Annotated[int, _uint(UINT256_MAX)]
Slots = Annotated[tuple[int, ...], AfterValidator(_slots)]
Finite = Annotated[float, AfterValidator(_finite)]


class FlexModel(BaseModel):
    """Base of the trading models: frozen, no unknown fields, errors as `InputError`."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _to_input_error(exc, data, type(self)) from None

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with `update` applied, validated like a new model (pydantic's own copy is not)."""
        if not update:
            return super().model_copy(deep=deep)
        data = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**data, **update})

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise _to_input_error(exc, obj if isinstance(obj, Mapping) else {}, cls) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            raise _to_input_error(exc, {}, cls) from None


def _to_input_error(exc: ValidationError, data: Mapping[str, Any], model: type[BaseModel]) -> InputError:
    order_id = data.get("order_id")
    order_id = order_id if isinstance(order_id, str) else None
    first = exc.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, InputError):
        if cause.order_id is None and order_id is not None:
            return type(cause)(cause.field, cause.reason, order_id=order_id)
        return cause
    loc = ".".join(str(p) for p in first["loc"]) or "?"
    reason = first["msg"]
    if first["type"] == "missing":
        reason = "is required"
    elif first["type"] == "extra_forbidden":
        reason = "is not a field of this model"
    elif first["type"] == "enum" and first["loc"] and str(first["loc"][0]) in model.model_fields:
        annotation = model.model_fields[str(first["loc"][0])].annotation
        if isinstance(annotation, type) and issubclass(annotation, IntEnum):
            reason += " (" + ", ".join(f"{m.value} = {m.name}" for m in annotation) + ")"
    return InputError(loc, reason, order_id=order_id)


def _check_quantities(
    values: Sequence[float], field: str, order_id: str | None, *, positive: bool
) -> tuple[int, ...]:
    out = []
    for i, kw in enumerate(values):
        name = f"{field}[{i}]"
        power_w = kw_to_w(kw, field=name, order_id=order_id)
        if positive and power_w == 0:
            raise InputError(name, "must be greater than 0 kW", order_id=order_id)
        out.append(power_w)
    return tuple(out)


def _check_per_slot(values: Sequence[float], field: str, slots: Sequence[int], order_id: str | None) -> None:
    """One value per slot in `field`, else an InputError naming the field."""
    if len(values) != len(slots):
        raise InputError(
            field, f"has {len(values)} values but there are {len(slots)} slots", order_id=order_id
        )


def _check_quantity(kw: float, field: str, order_id: str | None, *, positive: bool) -> int:
    power_w = kw_to_w(kw, field=field, order_id=order_id)
    if positive and power_w == 0:
        raise InputError(field, "must be greater than 0 kW", order_id=order_id)
    return power_w


# ---------------------------------------------------------------------------------------------
# Rounds and orders


class RoundConfig(FlexModel):
    """One market round as configured by the operator."""

    round_id: Uint256
    grid_id: str
    grid_model_hash: Bytes32
    slot_start_s: Uint64
    slot_seconds: Uint64
    slot_count: int
    gate_closure_s: Uint64
    pricing_rule: PricingRule
    seal_mode: SealMode
    oracle_quorum: int = 1
    dispute_window_s: Uint64
    price_cap_eur_per_mwh: Finite
    tolerance_bps: int
    penalty_bps: int
    bid_deposit_eur: Finite
    # Further fields of the on-chain RoundConfig (docs/contracts.md, "Round state machine").
    reveal_s: Uint64 = 0  # reveal window after gate closure (sealed rounds)
    clearing_s: Uint64 = 3600  # time after the reveal window for the oracles to commit
    settlement_s: Uint64 = 86_400  # metering window after delivery end, and again the claim window
    dispute_bond_eur: Finite = 0.0
    encryption_key: Bytes32 = ZERO_BYTES32  # X25519 public key of an ENCRYPTED round

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.grid_id:
            raise InputError("grid_id", "must not be empty")
        if self.slot_seconds <= 0:
            raise InputError("slot_seconds", f"must be positive, got {self.slot_seconds}")
        if not 1 <= self.slot_count <= UINT16_MAX + 1:
            raise InputError("slot_count", f"must be 1..{UINT16_MAX + 1}, got {self.slot_count}")
        if self.gate_closure_s > self.slot_start_s:
            raise InputError(
                "gate_closure_s",
                f"gate closure {self.gate_closure_s} is after the first slot starts ({self.slot_start_s})",
            )
        if not 1 <= self.oracle_quorum <= 255:
            raise InputError("oracle_quorum", f"must be 1..255, got {self.oracle_quorum}")
        for name in ("tolerance_bps", "penalty_bps"):
            value = getattr(self, name)
            if not 0 <= value <= BPS:
                raise InputError(name, f"must be 0..{BPS}, got {value}")
        if self.price_cap_micro_per_mwh == 0:
            raise InputError("price_cap_eur_per_mwh", "must be greater than 0")
        if self.seal_mode != SealMode.OPEN and self.reveal_s == 0:
            raise InputError("reveal_s", f"a {self.seal_mode.name} round needs a reveal window")
        if self.seal_mode == SealMode.ENCRYPTED and self.encryption_key == ZERO_BYTES32:
            raise InputError("encryption_key", "an ENCRYPTED round needs the round's public key")
        for name in ("clearing_s", "settlement_s"):
            if getattr(self, name) == 0:
                raise InputError(name, "must be positive")
        _ = self.bid_deposit_micro
        _ = self.dispute_bond_micro
        for name in ("slot_seconds", "dispute_window_s", "reveal_s", "clearing_s", "settlement_s"):
            if getattr(self, name) > UINT32_MAX:
                raise InputError(name, f"must be at most {UINT32_MAX} s, got {getattr(self, name)}")
        return self

    @property
    def grid_id_hash(self) -> str:
        """`gridId` on chain: `keccak256(utf8(grid_id))`; a grid id that is already a bytes32 is kept."""
        if len(self.grid_id) == 66 and self.grid_id.startswith("0x"):
            return self.grid_id.lower()
        return "0x" + bytes(keccak(text=self.grid_id)).hex()

    @property
    def dispute_bond_micro(self) -> int:
        return eur_to_micro(self.dispute_bond_eur, field="dispute_bond_eur")

    @property
    def slot_end_s(self) -> int:
        """Unix second at which the last slot ends."""
        return self.slot_start_s + self.slot_seconds * self.slot_count

    @property
    def price_cap_micro_per_mwh(self) -> int:
        return eur_per_mwh_to_micro(self.price_cap_eur_per_mwh, field="price_cap_eur_per_mwh")

    @property
    def bid_deposit_micro(self) -> int:
        return eur_to_micro(self.bid_deposit_eur, field="bid_deposit_eur")

    def slot_start(self, slot: int) -> int:
        """Unix second at which `slot` starts."""
        return self.slot_start_s + slot * self.slot_seconds


class FlexRequest(FlexModel):
    """A DSO's need for flexibility at a bus over some slots, with a price cap."""

    order_id: str | None = None
    dso: OptionalAddress = None
    round_id: Uint256
    bus: Uint32
    direction: Direction
    slots: Slots
    kw: tuple[float, ...]
    price_cap_eur_per_mwh: float

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_per_slot(self.kw, "kw", self.slots, self.order_id)
        _check_quantities(self.kw, "kw", self.order_id, positive=True)
        _ = self.price_cap_micro_per_mwh
        return self

    @property
    def power_w(self) -> tuple[int, ...]:
        return _check_quantities(self.kw, "kw", self.order_id, positive=True)

    @property
    def price_cap_micro_per_mwh(self) -> int:
        return eur_per_mwh_to_micro(
            self.price_cap_eur_per_mwh, field="price_cap_eur_per_mwh", order_id=self.order_id
        )

    def struct(self) -> dict[str, Any]:
        """The contract's `FlexTypes.FlexRequest` (on-chain integer encoding, Solidity field names)."""
        return {
            "roundId": self.round_id,
            "bus": self.bus,
            "direction": int(self.direction),
            "slots": list(self.slots),
            "powerW": list(self.power_w),
            "priceCapMicroPerMwh": self.price_cap_micro_per_mwh,
        }

    def budget_micro(self, slot_seconds: int) -> int:
        """The budget the market escrows for this request (rounded up, in token base units)."""
        return value_micro_up(sum(self.power_w), slot_seconds, self.price_cap_micro_per_mwh)


class SignedOrderModel(FlexModel):
    """Base of the orders a participant signs (FlexOffer, P2POrder): EIP-712 typed data, digest, signing.

    A subclass defines `message()` (the EIP-712 message) and names its signer's field in `signer_field`.
    """

    signer_field: ClassVar[str]

    def message(self) -> dict[str, Any]:
        raise NotImplementedError

    def typed_data(self, domain: Any) -> dict[str, Any]:
        """Full EIP-712 typed data for `domain` (an `flexgrid.trading.eip712.Eip712Domain`)."""
        from flexgrid.trading.eip712 import typed_data

        return typed_data(cast("SignableOrder", self), domain)

    def digest(self, domain: Any) -> str:
        """The order hash: the EIP-712 digest, `0x` hex."""
        from flexgrid.trading.eip712 import digest

        return digest(cast("SignableOrder", self), domain)

    def sign(self, account: Any, domain: Any) -> Any:
        """Sign with an eth-account `LocalAccount`; returns a `SignedOrder`."""
        from flexgrid.trading.eip712 import sign

        return sign(cast("SignableOrder", self), account, domain)

    @property
    def signer(self) -> str:
        """The address that must sign the order."""
        return str(getattr(self, self.signer_field))


class FlexOffer(SignedOrderModel):
    """A provider's signed flexibility offer (USEF UFTP FlexOffer with options and activation)."""

    signer_field: ClassVar[str] = "provider"

    order_id: str | None = None
    provider: Address
    round_id: Uint256
    bus: Uint32
    asset_id: Bytes32
    direction: Direction
    slots: Slots
    min_kw: tuple[float, ...]
    max_kw: tuple[float, ...]
    price_eur_per_mwh: float
    exclusive_group: Bytes32 = ZERO_BYTES32
    min_activation: float = 0.0
    nonce: Uint256
    expiry_s: Uint64

    @model_validator(mode="after")
    def _check(self) -> Self:
        oid = self.order_id
        _check_per_slot(self.min_kw, "min_kw", self.slots, oid)
        _check_per_slot(self.max_kw, "max_kw", self.slots, oid)
        min_w = _check_quantities(self.min_kw, "min_kw", oid, positive=False)
        max_w = _check_quantities(self.max_kw, "max_kw", oid, positive=True)
        for i, (lo, hi) in enumerate(zip(min_w, max_w, strict=True)):
            if lo > hi:
                raise InputError(
                    f"min_kw[{i}]",
                    f"{self.min_kw[i]} kW is above max_kw[{i}] = {self.max_kw[i]} kW",
                    order_id=oid,
                )
        _ = self.price_micro_per_mwh
        if isinstance(self.min_activation, float) and not math.isfinite(self.min_activation):
            raise InputError(
                "min_activation", f"must be a finite number, got {self.min_activation}", order_id=oid
            )
        if not 0.0 <= self.min_activation <= 1.0:
            raise InputError(
                "min_activation", f"must be between 0 and 1, got {self.min_activation}", order_id=oid
            )
        _ = self.min_activation_bps
        return self

    @property
    def min_power_w(self) -> tuple[int, ...]:
        return _check_quantities(self.min_kw, "min_kw", self.order_id, positive=False)

    @property
    def max_power_w(self) -> tuple[int, ...]:
        return _check_quantities(self.max_kw, "max_kw", self.order_id, positive=True)

    @property
    def price_micro_per_mwh(self) -> int:
        return eur_per_mwh_to_micro(self.price_eur_per_mwh, field="price_eur_per_mwh", order_id=self.order_id)

    @property
    def min_activation_bps(self) -> int:
        return fraction_to_bps(self.min_activation, field="min_activation", order_id=self.order_id)

    def message(self) -> dict[str, Any]:
        """The EIP-712 message (on-chain integer encoding, field names of the Solidity struct)."""
        return {
            "provider": self.provider,
            "roundId": self.round_id,
            "bus": self.bus,
            "assetId": bytes.fromhex(self.asset_id[2:]),
            "direction": int(self.direction),
            "slots": list(self.slots),
            "minPowerW": list(self.min_power_w),
            "maxPowerW": list(self.max_power_w),
            "priceMicroPerMwh": self.price_micro_per_mwh,
            "exclusiveGroup": bytes.fromhex(self.exclusive_group[2:]),
            "minActivationBps": self.min_activation_bps,
            "nonce": self.nonce,
            "expiry": self.expiry_s,
        }


class P2POrder(SignedOrderModel):
    """A prosumer's signed order to buy or sell energy at a bus in one slot."""

    signer_field: ClassVar[str] = "trader"

    order_id: str | None = None
    trader: Address
    round_id: Uint256
    bus: Uint32
    side: Side
    slot: Uint16
    kw: float
    limit_price_eur_per_mwh: float
    nonce: Uint256
    expiry_s: Uint64

    @model_validator(mode="after")
    def _check(self) -> Self:
        _ = self.power_w
        _ = self.limit_price_micro_per_mwh
        return self

    @property
    def power_w(self) -> int:
        return _check_quantity(self.kw, "kw", self.order_id, positive=True)

    @property
    def limit_price_micro_per_mwh(self) -> int:
        return eur_per_mwh_to_micro(
            self.limit_price_eur_per_mwh, field="limit_price_eur_per_mwh", order_id=self.order_id
        )

    @property
    def slots(self) -> tuple[int, ...]:
        return (self.slot,)

    def message(self) -> dict[str, Any]:
        """The EIP-712 message (on-chain integer encoding, field names of the Solidity struct)."""
        return {
            "trader": self.trader,
            "roundId": self.round_id,
            "bus": self.bus,
            "side": int(self.side),
            "slot": self.slot,
            "powerW": self.power_w,
            "limitPriceMicroPerMwh": self.limit_price_micro_per_mwh,
            "nonce": self.nonce,
            "expiry": self.expiry_s,
        }


# ---------------------------------------------------------------------------------------------
# Results and settlement

TRADE_LEAF_TYPES = ["uint256", "address", "bytes32", "uint16", "uint64", "uint64", "int256"]
_EXACT = 10**15  # integers below this come back exactly from their float / 10**decimals (units.scale_exact)
METERING_LEAF_TYPES = ["uint256", "address", "bytes32", "uint16", "uint64"]


def request_order_hash(request_id: int) -> str:
    """The order hash of a FlexRequest in trade leaves: `bytes32(requestId)`."""
    if not 0 <= request_id <= UINT256_MAX:
        raise InputError("request_id", f"{request_id} is outside the uint256 range")
    return "0x" + request_id.to_bytes(32, "big").hex()


def _order_hash_bytes(order_id: str, field: str = "order_id") -> bytes:
    if not (isinstance(order_id, str) and len(order_id) == 66 and order_id.startswith("0x")):
        raise InputError(field, f"{order_id!r} is not an order hash (0x + 64 hex digits)", order_id=order_id)
    try:
        return bytes.fromhex(order_id[2:])
    except ValueError as exc:
        raise InputError(
            field, f"{order_id!r} is not an order hash (non-hex digits)", order_id=order_id
        ) from exc


class Trade(FlexModel):
    """One accepted quantity in one slot: one leaf of the clearing root."""

    round_id: Uint256
    participant: Address
    order_id: str
    slot: Uint16
    kw: float
    price_eur_per_mwh: float
    payment_eur: float  # > 0 paid to the participant, < 0 paid by it

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.order_id:
            raise InputError("order_id", "must not be empty")
        _ = self.power_w
        _ = self.price_micro_per_mwh
        _ = self.payment_micro
        return self

    @property
    def power_w(self) -> int:
        return _check_quantity(self.kw, "kw", self.order_id, positive=False)

    @property
    def price_micro_per_mwh(self) -> int:
        return eur_per_mwh_to_micro(self.price_eur_per_mwh, field="price_eur_per_mwh", order_id=self.order_id)

    @property
    def payment_micro(self) -> int:
        return eur_to_micro(self.payment_eur, field="payment_eur", order_id=self.order_id, signed=True)

    @classmethod
    def of_leaf(cls, round_id: int, participant: str, order_id: str, slot: int, power_w: int,
                price_micro_per_mwh: int, payment_micro: int) -> Trade:
        """`Trade(kw=power_w / 1e3, price_eur_per_mwh=price_micro_per_mwh / 1e6, payment_eur=payment_micro /
        1e6, ...)`, the trade of a leaf's integers: the same model (equal fields) and the same errors.

        Where the values pass the constructor's checks as they stand (integers of the field's range, an
        address the field takes, |integers| below 10**15 so that the floats give them back exactly, see
        `units.scale_exact`), it is made without running them again (pydantic's `model_construct`: ~4 us
        against ~9 us per trade, 8,058 trades in a round of the clearing benchmark); else validated."""
        kw, price, payment = power_w / 1e3, price_micro_per_mwh / 1e6, payment_micro / 1_000_000
        if (type(round_id) is int and 0 <= round_id <= UINT256_MAX and type(participant) is str
                and type(order_id) is str and order_id and type(slot) is int and 0 <= slot <= UINT16_MAX
                and type(power_w) is int and 0 <= power_w < _EXACT
                and type(price_micro_per_mwh) is int and 0 <= price_micro_per_mwh < _EXACT
                and type(payment_micro) is int and -_EXACT < payment_micro < _EXACT):
            checksummed, problem = _checked_address(participant)
            if not problem:
                return cls.model_construct(round_id=round_id, participant=checksummed, order_id=order_id, slot=slot,
                                           kw=kw, price_eur_per_mwh=price, payment_eur=payment)
        return cls(round_id=round_id, participant=participant, order_id=order_id, slot=slot, kw=kw,
                   price_eur_per_mwh=price, payment_eur=payment)

    def leaf_values(self) -> list[Any]:
        """Values of the trade leaf, typed as `TRADE_LEAF_TYPES` (the order id must be a bytes32)."""
        return [
            self.round_id,
            self.participant,
            _order_hash_bytes(self.order_id),
            self.slot,
            self.power_w,
            self.price_micro_per_mwh,
            self.payment_micro,
        ]


class MeterReading(FlexModel):
    """Measured delivery of one trade in one slot: one leaf of the metering root."""

    round_id: Uint256
    participant: Address
    order_id: str
    slot: Uint16
    delivered_kw: float

    @model_validator(mode="after")
    def _check(self) -> Self:
        _ = self.delivered_power_w
        return self

    @property
    def delivered_power_w(self) -> int:
        return kw_to_w(self.delivered_kw, field="delivered_kw", order_id=self.order_id)

    def leaf_values(self) -> list[Any]:
        """Values of the metering leaf, typed as `METERING_LEAF_TYPES`."""
        return [
            self.round_id,
            self.participant,
            _order_hash_bytes(self.order_id),
            self.slot,
            self.delivered_power_w,
        ]


class ClearingResult(FlexModel):
    """What an oracle commits for a round: the trades' root, the input hash and the certificate."""

    round_id: Uint256
    trades: tuple[Trade, ...]
    merkle_root: Bytes32
    input_hash: Bytes32
    certificate_hash: Bytes32
    uri: str = ""

    @model_validator(mode="after")
    def _check(self) -> Self:
        for i, trade in enumerate(self.trades):
            if trade.round_id != self.round_id:
                raise InputError(
                    f"trades[{i}].round_id",
                    f"trade is for round {trade.round_id}, the result for round {self.round_id}",
                    order_id=trade.order_id,
                )
        return self


class Settlement(FlexModel):
    """The settlement of one trade leaf against its measured delivery."""

    round_id: Uint256
    participant: Address
    order_id: str
    slot: Uint16
    accepted_kw: float
    delivered_kw: float  # measured delivery, capped at the accepted power
    payment_eur: float  # the trade's payment (the leaf's paymentMicro)
    paid_eur: float  # what the participant is credited (negative: what it is charged)
    penalty_eur: float  # the under-delivery penalty, first taken from the reduced payment
    deposit_penalty_eur: float  # the part of the penalty above the reduced payment, from the bid deposit

    @property
    def paid_micro(self) -> int:
        return eur_to_micro(self.paid_eur, field="paid_eur", order_id=self.order_id, signed=True)

    @property
    def penalty_micro(self) -> int:
        return eur_to_micro(self.penalty_eur, field="penalty_eur", order_id=self.order_id)

    @property
    def deposit_penalty_micro(self) -> int:
        return eur_to_micro(self.deposit_penalty_eur, field="deposit_penalty_eur", order_id=self.order_id)


def settle(trade: Trade, delivered_kw: float, *, tolerance_bps: int, penalty_bps: int) -> Settlement:
    """Settle one trade against its measured delivery (docs/trading-language.md, `FlexTypes.settle`).

    Within the tolerance the full payment is credited. Below it the payment is reduced in
    proportion to delivery (rounded down) and a penalty of `penalty_bps` on the undelivered part
    is subtracted; a penalty larger than the reduced payment is taken from the bid deposit.
    A trade in which the participant pays (`payment <= 0`) is settled as committed.
    """
    for name, bps in (("tolerance_bps", tolerance_bps), ("penalty_bps", penalty_bps)):
        if not 0 <= bps <= BPS:
            raise InputError(name, f"must be 0..{BPS}, got {bps}", order_id=trade.order_id)
    accepted = trade.power_w
    measured = kw_to_w(delivered_kw, field="delivered_kw", order_id=trade.order_id)
    delivered = min(measured, accepted)
    payment = trade.payment_micro
    penalty = excess = 0
    if payment <= 0 or accepted == 0 or delivered * BPS >= accepted * (BPS - tolerance_bps):
        paid = payment
    else:
        reduced = payment * delivered // accepted
        penalty = payment * (accepted - delivered) // accepted * penalty_bps // BPS
        paid, excess = (reduced - penalty, 0) if penalty <= reduced else (0, penalty - reduced)
    return Settlement(
        round_id=trade.round_id,
        participant=trade.participant,
        order_id=trade.order_id,
        slot=trade.slot,
        accepted_kw=trade.kw,
        delivered_kw=delivered / 1000,
        payment_eur=trade.payment_eur,
        paid_eur=paid / 1_000_000,
        penalty_eur=penalty / 1_000_000,
        deposit_penalty_eur=excess / 1_000_000,
    )


# ---------------------------------------------------------------------------------------------
# Checks against a round

Order = FlexRequest | FlexOffer | P2POrder


def validate_for_round(order: Order, round_config: RoundConfig, now_s: int | None = None) -> None:
    """Check an order against its round; raise `InputError` naming the field and the reason.

    Checks: the round id matches, every slot lies inside the round, the price is not above the
    round's cap, and (for signed orders) the order has not expired at `now_s` (default: the
    current time; pass the round's gate closure to re-check a past round).
    """
    check_for_round(order, round_config, None, now_s)


_KINDS: dict[type, tuple[bool, bool, bool]] = {}


def order_kinds(cls: type) -> tuple[bool, bool, bool]:
    """(is a FlexRequest, a FlexOffer, a P2POrder) for instances of `cls`, as isinstance says, once per
    class: isinstance on pydantic models goes through ABCMeta (~0.2 us each, six per order checked)."""
    kinds = _KINDS.get(cls)
    if kinds is None:
        kinds = _KINDS[cls] = (issubclass(cls, FlexRequest), issubclass(cls, FlexOffer), issubclass(cls, P2POrder))
    return kinds


def check_for_round(order: Order, round_config: RoundConfig, cap_micro: int | None, now_s: int | None) -> int:
    """`validate_for_round`, given the round's price cap in micro-units per MWh when it is known (None:
    computed here, where `validate_for_round` needs it); returns that cap, for the next order's check."""
    oid = order.order_id
    if order.round_id != round_config.round_id:
        raise InputError(
            "round_id",
            f"order is for round {order.round_id}, not round {round_config.round_id}",
            order_id=oid,
        )
    is_request, is_offer, is_p2p = order_kinds(type(order))
    slots = order.slots
    if slots and max(slots) >= round_config.slot_count:
        for slot in slots:
            if slot >= round_config.slot_count:
                raise InputError(
                    "slot" if is_p2p else "slots",
                    f"slot {slot} is outside the round (slots 0..{round_config.slot_count - 1})",
                    order_id=oid,
                )
    cap = round_config.price_cap_micro_per_mwh if cap_micro is None else cap_micro
    if is_request:
        price_field, price = "price_cap_eur_per_mwh", cast(FlexRequest, order).price_cap_micro_per_mwh
    elif is_offer:
        price_field, price = "price_eur_per_mwh", cast(FlexOffer, order).price_micro_per_mwh
    else:
        price_field, price = "limit_price_eur_per_mwh", cast(P2POrder, order).limit_price_micro_per_mwh
    if price > cap:
        raise InputError(
            price_field,
            f"{getattr(order, price_field)} EUR/MWh is above the round's price cap of "
            f"{round_config.price_cap_eur_per_mwh} EUR/MWh",
            order_id=oid,
        )
    if is_offer or is_p2p:
        now = int(time.time()) if now_s is None else now_s
        expiry = cast(FlexOffer | P2POrder, order).expiry_s
        if now > expiry:
            raise InputError("expiry_s", f"order expired at {expiry}, it is now {now}", order_id=oid)
    return cap


def validate_orders(
    orders: Sequence[Order], rounds: Mapping[int, RoundConfig], now_s: int | None = None
) -> None:
    """Check every order against its round in `rounds`; an order for an unknown round is an error."""
    for order in orders:
        round_config = rounds.get(order.round_id)
        if round_config is None:
            raise InputError("round_id", f"unknown round {order.round_id}", order_id=order.order_id)
        validate_for_round(order, round_config, now_s)


__all__ = [
    "INT256_MAX",
    "METERING_LEAF_TYPES",
    "TRADE_LEAF_TYPES",
    "ZERO_BYTES32",
    "ClearingResult",
    "Direction",
    "FlexModel",
    "FlexOffer",
    "FlexRequest",
    "MeterReading",
    "Order",
    "P2POrder",
    "PricingRule",
    "RoundConfig",
    "RoundState",
    "SealMode",
    "Settlement",
    "Side",
    "SignedOrderModel",
    "Trade",
    "bps_to_fraction",
    "request_order_hash",
    "scale_exact",
    "settle",
    "validate_for_round",
    "validate_orders",
]
