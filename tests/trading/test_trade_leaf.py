"""`Trade.of_leaf` is the Trade constructor on a leaf's integers: the same model or the same error."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flexgrid.errors import InputError
from flexgrid.trading import Trade
from flexgrid.trading.units import INT256_MAX, UINT64_MAX

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
_ints = st.one_of(st.integers(0, 10**15 + 5), st.integers(-(10**15) - 5, 10**15 + 5),
                  st.sampled_from([10**15 - 1, 10**15, UINT64_MAX, UINT64_MAX + 1, 2**70, INT256_MAX]))


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        t = fn(*args)
    except InputError as exc:
        return ("error", exc.field, exc.reason, exc.order_id)
    try:
        leaf: Any = t.leaf_values()
    except InputError as exc:  # a Trade whose order id is no order hash has no leaf
        leaf = (exc.field, exc.reason)
    return (t, t.model_dump(), t.__pydantic_fields_set__, leaf)


@settings(max_examples=800, deadline=None)
@given(st.one_of(st.integers(0, 10), st.just(2**256), st.just(-1)),
       st.sampled_from([ADDRESS, ADDRESS.lower(), ADDRESS.upper().replace("0X", "0x"), ADDRESS[:-1] + "c",
                        "0x0000000000000000000000000000000000000000", "nope", 7]),
       st.sampled_from(["0x" + "ab" * 32, "", "0x" + "zz" * 32, "x"]),
       st.one_of(st.integers(0, 95), st.just(2**16), st.just(-1), st.just(True)),
       _ints, _ints, _ints)
def test_of_leaf_equals_the_constructor(round_id: int, participant: Any, order_id: str, slot: int, power_w: int,
                                        price_micro: int, payment_micro: int) -> None:
    def construct(*a: Any) -> Trade:
        r, p, o, s, w, pm, m = a
        return Trade(round_id=r, participant=p, order_id=o, slot=s, kw=w / 1e3, price_eur_per_mwh=pm / 1e6,
                     payment_eur=m / 1_000_000)

    args = (round_id, participant, order_id, slot, power_w, price_micro, payment_micro)
    got, want = _outcome(Trade.of_leaf, *args), _outcome(construct, *args)
    assert got == want
    if got[0] != "error" and isinstance(got[3], list) and max(power_w, price_micro, abs(payment_micro)) < 10**15:
        assert got[3][4:] == [power_w, price_micro, payment_micro]  # the leaf carries the integers given
