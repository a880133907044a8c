"""`scale_exact`'s float fast path gives the integer (or the error) of the exact decimal path."""

from __future__ import annotations

import math
import numbers
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexgrid.errors import InputError
from flexgrid.trading.units import INT256_MAX, UINT64_MAX, scale_exact


def _reference(value: float | int, decimals: int, *, field: str, unit: str, order_id: str | None = None,
               signed: bool = False, max_int: int = UINT64_MAX) -> int:
    """`scale_exact` as it was before its fast path: everything through Decimal(repr(value))."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(field, f"must be a number, got {type(value).__name__}", order_id=order_id)
    if isinstance(value, numbers.Integral):
        dec = Decimal(int(value))
    else:
        number = float(value)
        if not math.isfinite(number):
            raise InputError(field, f"must be a finite number, got {value}", order_id=order_id)
        dec = Decimal(repr(number))
    if not signed and dec < 0:
        raise InputError(field, f"must not be negative, got {value} {unit}", order_id=order_id)
    scaled = dec.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise InputError(field, f"{value} {unit} has more than {decimals} decimals, which the on-chain encoding "
                         "cannot hold", order_id=order_id)
    out = int(scaled)
    low = -max_int - 1 if signed else 0
    if not low <= out <= max_int:
        raise InputError(field, f"{value} {unit} is out of the on-chain range", order_id=order_id)
    return out


def _outcome(fn, value, decimals: int, signed: bool, max_int: int):  # type: ignore[no-untyped-def]
    try:
        return fn(value, decimals, field="f", unit="u", order_id="o", signed=signed, max_int=max_int)
    except InputError as exc:
        return (exc.field, exc.reason, exc.order_id)


# decimals with a few digits more or less than the encoding holds, at every magnitude up to 1e16
_decimal_floats = st.builds(
    lambda digits, exp, neg: float(Decimal(digits).scaleb(exp)) * (-1 if neg else 1),
    st.integers(0, 10**17), st.integers(-10, 2), st.booleans())
_values = st.one_of(
    _decimal_floats, st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e-3, 1e-3),
    st.integers(-(2**70), 2**70), st.sampled_from([0.0, -0.0, 1e15, 999999999.999999, 1e-6, 5e-7, 0.1, 0.7, 1.005]))


@settings(max_examples=1500, deadline=None)
@given(_values, st.sampled_from([0, 3, 4, 6]), st.booleans(),
       st.sampled_from([UINT64_MAX, INT256_MAX, 10_000, 2**53, 10**12]))
def test_scale_exact_equals_the_decimal_path(value: float | int, decimals: int, signed: bool, max_int: int) -> None:
    assert _outcome(scale_exact, value, decimals, signed, max_int) == _outcome(_reference, value, decimals, signed,
                                                                                 max_int)


@pytest.mark.parametrize("value", [np.float64(0.1), np.int64(7), True, "1.5", None])
def test_other_types_keep_their_answers(value: object) -> None:
    assert _outcome(scale_exact, value, 3, False, UINT64_MAX) == _outcome(_reference, value, 3, False, UINT64_MAX)


def test_whole_watts_in_kw_come_back_exactly() -> None:
    """The clearing writes a trade's kW as power_w / 1000 and its prices as micro / 1e6: they come back."""
    rng = np.random.default_rng(0)
    for w in [0, 1, 999, 10**15 - 1, *rng.integers(0, 10**15, 2000).tolist()]:
        assert scale_exact(w / 1000, 3, field="kw", unit="kW") == w
        assert scale_exact(-w / 10**6, 6, field="p", unit="EUR", signed=True, max_int=INT256_MAX) == -w
