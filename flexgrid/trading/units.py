"""Conversions between user units and the on-chain integer encodings (docs/trading-language.md).

Power is kW in Python and whole watts on chain; prices are EUR/MWh in Python and token
micro-units per MWh on chain; money is EUR in Python and token base units (6 decimals) on chain.
A value with more decimals than the on-chain encoding holds is an error, never silently rounded.
Values of a slot are rounded down when the market pays out and up when it takes in, so rounding
always favours the escrow.
"""

from __future__ import annotations

import math
import numbers
from decimal import Decimal

from flexgrid.errors import InputError

UINT16_MAX = 2**16 - 1
UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
UINT256_MAX = 2**256 - 1
INT256_MIN = -(2**255)
INT256_MAX = 2**255 - 1

W_PER_KW = 1000
MICRO_PER_UNIT = 1_000_000
TOKEN_DECIMALS = 6
# power_w * slot_seconds / WS_PER_MWH = energy in MWh
WS_PER_MWH = 3_600_000_000
_POW10 = {d: 10**d for d in range(19)}  # the decimals of scale_exact's fast path


def _to_decimal(value: float | int, field: str, order_id: str | None) -> Decimal:
    # numbers.Integral/Real also cover numpy scalars (whose repr is not a plain number).
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(field, f"must be a number, got {type(value).__name__}", order_id=order_id)
    if isinstance(value, numbers.Integral):
        return Decimal(int(value))
    number = float(value)
    if not math.isfinite(number):
        raise InputError(field, f"must be a finite number, got {value}", order_id=order_id)
    # repr gives the shortest string that round-trips, so 0.1 is Decimal("0.1"), not 0.1000…05.
    return Decimal(repr(number))


def scale_exact(
    value: float | int,
    decimals: int,
    *,
    field: str,
    unit: str,
    order_id: str | None = None,
    signed: bool = False,
    max_int: int = UINT64_MAX,
) -> int:
    """Return `value * 10**decimals` as an exact integer, or raise `InputError`.

    Raises when the value is NaN or infinite, negative (unless `signed`), has more than
    `decimals` decimals, or does not fit the on-chain integer (`max_int`).
    """
    n = None
    if type(value) is float and decimals in _POW10 and -1e15 < value * _POW10[decimals] < 1e15:
        # Fast path, the same integer as the decimal one below (tests/trading/test_units.py checks
        # it against it): a candidate n from float arithmetic is the answer iff n / 10**decimals == value.
        # If Decimal(repr(value)) * 10**decimals is an integer n with |n| <= 10**15, n / 10**decimals
        # (correctly rounded) is the double nearest to that decimal, i.e. `value`, and so is the
        # rounded product. Conversely if n / 10**decimals == value, the decimal n * 10**-decimals
        # (<= 15 significant digits) and repr(value) (the shortest that round-trips, so also <= 15)
        # both map to `value`, and two decimals of <= 15 significant digits never map to one double:
        # they are equal. Anything else (other types, more decimals, huge values) takes the exact path.
        n = round(value * _POW10[decimals])
        if n / _POW10[decimals] != value:
            n = None
    elif type(value) is int and decimals in _POW10:
        n = value * _POW10[decimals]
    if n is not None:
        if n < 0 and not signed:
            raise InputError(field, f"must not be negative, got {value} {unit}", order_id=order_id)
        if n > max_int or n < -max_int - 1:
            raise InputError(field, f"{value} {unit} is out of the on-chain range", order_id=order_id)
        return n
    dec = _to_decimal(value, field, order_id)
    if not signed and dec < 0:
        raise InputError(field, f"must not be negative, got {value} {unit}", order_id=order_id)
    scaled = dec.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise InputError(
            field,
            f"{value} {unit} has more than {decimals} decimals, which the on-chain encoding cannot hold",
            order_id=order_id,
        )
    out = int(scaled)
    low = -max_int - 1 if signed else 0
    if not low <= out <= max_int:
        raise InputError(field, f"{value} {unit} is out of the on-chain range", order_id=order_id)
    return out


def kw_to_w(kw: float, *, field: str = "kw", order_id: str | None = None) -> int:
    """kW -> whole watts (`uint64`); more than 3 decimals of kW is an error."""
    return scale_exact(kw, 3, field=field, unit="kW", order_id=order_id)


def w_to_kw(power_w: int) -> float:
    """Whole watts -> kW."""
    return power_w / W_PER_KW


def eur_per_mwh_to_micro(
    price_eur_per_mwh: float, *, field: str = "price_eur_per_mwh", order_id: str | None = None
) -> int:
    """EUR/MWh -> token micro-units per MWh (`uint64`); more than 6 decimals is an error."""
    return scale_exact(price_eur_per_mwh, TOKEN_DECIMALS, field=field, unit="EUR/MWh", order_id=order_id)


def micro_to_eur_per_mwh(price_micro_per_mwh: int) -> float:
    """Token micro-units per MWh -> EUR/MWh."""
    return price_micro_per_mwh / MICRO_PER_UNIT


def eur_to_micro(
    eur: float,
    *,
    field: str = "eur",
    order_id: str | None = None,
    signed: bool = False,
) -> int:
    """EUR -> token base units (6 decimals); `signed` allows negative amounts (int256)."""
    return scale_exact(
        eur,
        TOKEN_DECIMALS,
        field=field,
        unit="EUR",
        order_id=order_id,
        signed=signed,
        max_int=INT256_MAX if signed else UINT256_MAX,
    )


def micro_to_eur(amount_micro: int) -> float:
    """Token base units -> EUR."""
    return amount_micro / MICRO_PER_UNIT


def energy_mwh(power_w: int, slot_seconds: int) -> float:
    """Energy of one slot at a constant power, in MWh."""
    return power_w * slot_seconds / WS_PER_MWH


def value_micro_down(power_w: int, slot_seconds: int, price_micro_per_mwh: int) -> int:
    """Value of one slot in token base units, rounded down (what the market pays out)."""
    return (power_w * slot_seconds * price_micro_per_mwh) // WS_PER_MWH


def value_micro_up(power_w: int, slot_seconds: int, price_micro_per_mwh: int) -> int:
    """Value of one slot in token base units, rounded up (what the market takes in)."""
    return -((-power_w * slot_seconds * price_micro_per_mwh) // WS_PER_MWH)


def fraction_to_bps(fraction: float, *, field: str, order_id: str | None = None) -> int:
    """A fraction 0..1 -> basis points 0..10000; more than 4 decimals is an error."""
    bps = scale_exact(fraction, 4, field=field, unit="(fraction)", order_id=order_id, max_int=10_000)
    return bps


def bps_to_fraction(bps: int) -> float:
    """Basis points -> fraction."""
    return bps / 10_000
