"""The optimality certificate, determinism under permutations, and bad input."""

from __future__ import annotations

import json
import math
import random

import pytest

from flexgrid.errors import InputError
from flexgrid.market import Certificate, clear_market, parse_orders_file, verify
from flexgrid.trading import Direction, Side
from tests.market.helpers import OTHER, PROVIDER, grid, offer, p2p, profiles, request, round_config


def _orders():  # type: ignore[no-untyped-def]
    return [
        offer("o1", 17, 150.0, 200.0, (0, 1)),
        offer("o2", 32, 120.0, 200.0, (0, 1)),
        offer("o3", 14, 110.0, 150.0, (1,)),
        offer("o4", 8, 95.0, 100.0, (0,), direction=Direction.DOWN),
        request("r1", 12, 150.0, 400.0, (0, 1)),
        request("r2", 25, 80.0, 300.0, (1,)),
        p2p("p1", 20, Side.SELL, 50.0, 30.0),
        p2p("p2", 30, Side.BUY, 40.0, 90.0, trader=PROVIDER),
        p2p("p3", 6, Side.BUY, 30.0, 70.0, slot=1),
        p2p("p4", 9, Side.SELL, 30.0, 40.0, slot=1),
    ]


@pytest.fixture(scope="module")
def cleared():  # type: ignore[no-untyped-def]
    net, _ = grid()
    rc = round_config(slots=2)
    return clear_market(net, profiles(rc, load=1.4), rc, _orders(), wholesale_eur_per_mwh=[60.0, 75.0],
                        ac_validation=False)


def test_certificate_verifies_without_a_solver(cleared) -> None:  # type: ignore[no-untyped-def]
    report = verify(cleared.certificate)
    assert report.ok, report.reasons
    assert report.kkt.duality_gap <= 1e-6
    assert cleared.certificate_hash == cleared.certificate.hash()
    again = Certificate.from_json(cleared.certificate.to_json())
    assert again.hash() == cleared.certificate_hash and verify(again).ok


@pytest.mark.parametrize("tamper", ["primal", "dual", "objective", "price"])
def test_a_tampered_certificate_fails(cleared, tamper: str) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(cleared.certificate.to_json())
    if tamper == "primal":
        doc["x"][3] += 0.01
    elif tamper == "dual":
        doc["z"]["balance_p"][5] += 0.5
    elif tamper == "objective":
        doc["objective"] *= 0.99
    else:
        doc["dlmp_eur_per_mwh"][17][1] -= 1.0  # a cheaper price at bus 17 in slot 1
    forged = Certificate(doc)
    report = verify(forged)
    assert not report.ok
    assert forged.hash() != cleared.certificate_hash


def test_fifty_permutations_give_the_same_trades_prices_and_root(cleared) -> None:  # type: ignore[no-untyped-def]
    net, _ = grid()
    rc = round_config(slots=2)
    prof = profiles(rc, load=1.4)
    orders = _orders()
    rng = random.Random(4)
    reference = {(t.order_id, t.slot, t.kw, t.price_eur_per_mwh, t.payment_eur) for t in cleared.trades}
    assert len(reference) >= 6
    for _ in range(50):
        rng.shuffle(orders)
        out = clear_market(net, prof, rc, orders, wholesale_eur_per_mwh=[60.0, 75.0], ac_validation=False,
                           certificate=False)
        assert out.merkle_root == cleared.merkle_root
        assert {(t.order_id, t.slot, t.kw, t.price_eur_per_mwh, t.payment_eur) for t in out.trades} == reference


def _expect(field: str, orders, order_id: str | None = None, **kw) -> None:  # type: ignore[no-untyped-def]
    net, _ = grid()
    rc = kw.pop("rc", round_config(slots=2))
    prof = kw.pop("prof", profiles(rc))
    with pytest.raises(InputError) as err:
        clear_market(net, prof, rc, orders, ac_validation=False, certificate=False, **kw)
    assert err.value.field == field
    if order_id is not None:
        assert err.value.order_id == order_id


def test_unknown_bus_is_named() -> None:
    _expect("bus", [offer("far", 999, 100.0, 10.0)], "far")


def test_slot_outside_the_round_is_named() -> None:
    _expect("slots", [offer("late", 5, 100.0, 10.0, (0, 2))], "late")
    _expect("slot", [p2p("late", 5, Side.BUY, 10.0, 50.0, slot=3)], "late")


def test_price_above_the_round_cap_is_named() -> None:
    _expect("price_eur_per_mwh", [offer("dear", 5, 5000.0, 10.0)], "dear")


def test_duplicate_order_ids_are_rejected() -> None:
    _expect("order_id", [offer("x", 5, 100.0, 10.0), request("x", 5, 10.0, 100.0)], "x")


def test_missing_order_id_is_rejected() -> None:
    o = offer("x", 5, 100.0, 10.0).model_copy(update={"order_id": None})
    _expect("order_id", [o])


def test_inconsistent_exclusive_options_are_rejected() -> None:
    group = "0x" + "ab" * 32
    _expect("exclusive_group", [offer("a", 5, 100.0, 10.0, exclusive_group=group),
                                offer("b", 5, 100.0, 10.0, exclusive_group=group, direction=Direction.DOWN)], "b")


def test_order_for_another_round_is_rejected() -> None:
    o = offer("x", 5, 100.0, 10.0).model_copy(update={"round_id": 8})
    _expect("round_id", [o], "x")


def test_profiles_of_the_wrong_length_are_rejected() -> None:
    _expect("profiles", [], prof=profiles(round_config(slots=3)))


def test_nan_wholesale_price_is_rejected() -> None:
    _expect("wholesale_eur_per_mwh", [], wholesale_eur_per_mwh=math.nan)


@pytest.mark.parametrize(("value", "reason"), [(math.nan, "finite"), (-5.0, "")])
def test_nan_or_negative_quantities_in_an_orders_file_name_the_entry(value: float, reason: str) -> None:
    rc = round_config(slots=2)
    entry = {"order_id": "bad", "provider": OTHER, "round_id": 7, "bus": 5, "asset_id": "0x" + "00" * 32,
             "direction": 0, "slots": [0], "min_kw": [0.0], "max_kw": [value], "price_eur_per_mwh": 100.0,
             "nonce": 1, "expiry_s": 2**40}
    doc = {"round": json.loads(rc.model_dump_json()), "offers": [entry]}
    with pytest.raises(InputError) as err:
        parse_orders_file(doc)
    assert err.value.field.startswith("offers[0].max_kw")
    assert err.value.order_id == "bad"
    assert reason in err.value.reason


def test_a_round_declaring_another_grid_is_rejected() -> None:
    rc = round_config(slots=2).model_copy(update={"grid_model_hash": "0x" + "00" * 32})
    _expect("grid_model_hash", [], rc=rc, prof=profiles(round_config(slots=2)))


def test_p2p_pool_balances_in_every_slot(cleared) -> None:  # type: ignore[no-untyped-def]
    sold: dict[int, float] = {}
    for a in cleared.accepted:
        if a.kind == "p2p":
            sign = -1.0 if a.order_id in ("p1", "p4") else 1.0  # p1 and p4 sell
            sold[a.slot] = sold.get(a.slot, 0.0) + sign * a.mw
    assert sold and all(abs(v) < 1e-7 for v in sold.values())
