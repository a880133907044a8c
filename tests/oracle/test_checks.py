"""The oracle's pure checks: signatures, order hashes and nonce order of accepted orders; the risk
check of an AC result against the AC state before it."""

from __future__ import annotations

import numpy as np
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from flexgrid.grid import build_view, load_net, synthetic_profiles
from flexgrid.monitoring import build_model
from flexgrid.opf.validate import ACReport
from flexgrid.oracle.inputs import AcceptedOrder, check_signed_orders
from flexgrid.oracle.risk_check import load_margin_percent, n1_summary, risk_check
from flexgrid.trading import Direction, FlexOffer, FlexRequest
from flexgrid.trading.eip712 import Eip712Domain, SignedOrder, signable_message

DOMAIN = Eip712Domain(chain_id=31337, verifying_contract="0x" + "12" * 20)
ALICE: LocalAccount = Account.from_key("0x" + "a1" * 32)
BOB: LocalAccount = Account.from_key("0x" + "b2" * 32)


def _signed(account: LocalAccount, sequence: int, price: float = 100.0, round_id: int = 7) -> SignedOrder:
    offer = FlexOffer(
        provider=account.address, round_id=round_id, bus=5,
        asset_id="0x" + Web3.keccak(text="asset").hex().removeprefix("0x"), direction=Direction.UP,
        slots=(0, 1), min_kw=(0.0, 0.0), max_kw=(50.0, 50.0), price_eur_per_mwh=price,
        nonce=(round_id << 64) | sequence, expiry_s=2_000_000_000,
    )
    return offer.sign(account, DOMAIN)


def _accepted(s: SignedOrder, order_hash: str | None = None) -> AcceptedOrder:
    order = s.order.model_copy(update={"order_id": order_hash or s.order_hash})
    return AcceptedOrder(kind="offer", order=order, participant=s.order.signer, tx_hash="0x" + "00" * 32)


def _check(items: list[AcceptedOrder], sigs: dict[str, str | None]):  # type: ignore[no-untyped-def]
    return check_signed_orders(items, DOMAIN, lambda a: sigs.get(a.order_hash))


def test_valid_signatures_in_nonce_order_are_kept() -> None:
    a0, a1, b0 = _signed(ALICE, 0), _signed(ALICE, 1), _signed(BOB, 0)
    kept, dropped, sigs, checks = _check([_accepted(a0), _accepted(b0), _accepted(a1)],
                                          {s.order_hash: s.signature for s in (a0, a1, b0)})
    assert [k.order_hash for k in kept] == [a0.order_hash, b0.order_hash, a1.order_hash]
    assert dropped == [] and set(checks.values()) == {"ecdsa"} and len(sigs) == 3


def test_a_signature_by_another_key_is_dropped_with_the_reason() -> None:
    a0 = _signed(ALICE, 0)
    forged_sig = "0x" + bytes(BOB.sign_message(signable_message(a0.order, DOMAIN)).signature).hex()  # Alice's order, Bob's key
    kept, dropped, _, _ = _check([_accepted(a0)], {a0.order_hash: forged_sig})
    assert kept == []
    [d] = dropped
    assert d.order_hash == a0.order_hash and "signature does not verify" in d.reason and BOB.address in d.reason


def test_an_order_whose_content_does_not_match_its_hash_is_dropped() -> None:
    a0, other = _signed(ALICE, 0), _signed(ALICE, 0, price=101.0)
    kept, dropped, _, _ = _check([_accepted(a0, order_hash=other.order_hash)], {other.order_hash: a0.signature})
    assert kept == [] and "does not match the order's content" in dropped[0].reason


def test_nonces_out_of_order_are_dropped() -> None:
    a0, a2 = _signed(ALICE, 0), _signed(ALICE, 2)
    kept, dropped, _, _ = _check([_accepted(a0), _accepted(a2)], {a0.order_hash: a0.signature, a2.order_hash: a2.signature})
    assert [k.order_hash for k in kept] == [a0.order_hash]
    assert "nonce out of order: sequence 2 of key 7 follows 0" in dropped[0].reason


def test_a_signature_missing_from_calldata_is_recorded_as_checked_by_the_contract_only() -> None:
    a0 = _signed(ALICE, 0)
    kept, dropped, sigs, checks = _check([_accepted(a0)], {})
    assert len(kept) == 1 and dropped == [] and sigs == {} and checks == {a0.order_hash: "contract-only"}


def test_requests_need_no_signature() -> None:
    request = FlexRequest(order_id="0x" + "00" * 31 + "01", dso=ALICE.address, round_id=7, bus=5,
                          direction=Direction.UP, slots=(0,), kw=(10.0,), price_cap_eur_per_mwh=100.0)
    item = AcceptedOrder(kind="request", order=request, participant=ALICE.address, tx_hash="0x" + "00" * 32)
    kept, dropped, _, _ = _check([item], {})
    assert kept == [item] and dropped == []


@pytest.fixture(scope="module")
def view():  # type: ignore[no-untyped-def]
    return build_view(load_net("case33bw"), "case33bw")


def _report(loading: list[list[float]], flags: tuple[str, ...] = (), v_min: float = 0.95) -> ACReport:
    arr = np.asarray(loading, dtype=float)
    return ACReport(slots=tuple(range(arr.shape[1])), max_v_error_pu=None, max_loading_percent=float(arr.max()),
                    v_min_pu=v_min, v_max_pu=1.0, flags=flags, loading_percent=arr)


def test_risk_check_passes_a_result_that_relieves_the_grid(view) -> None:  # type: ignore[no-untyped-def]
    before = _report([[120.0, 90.0], [50.0, 60.0]], ("slot 0: voltage 0.8900 pu at bus 17 below its limit",), 0.89)
    after = _report([[95.0, 90.0], [55.0, 60.0]], (), 0.93)
    check = risk_check(before, after, view)
    assert check.ok
    assert check.margins["thermalPercent"] == pytest.approx(5.0)
    assert check.margins["voltageLowPu"] == pytest.approx(0.93 - 0.90)


def test_risk_check_flags_a_new_overload_and_a_new_voltage_violation(view) -> None:  # type: ignore[no-untyped-def]
    before = _report([[90.0, 90.0], [50.0, 60.0]])
    after = _report([[90.0, 130.0], [50.0, 60.0]], ("slot 1: voltage 0.8800 pu at bus 17 below its limit",), 0.88)
    check = risk_check(before, after, view)
    assert not check.ok
    assert check.new_violations == ["slot 1: branch 0 loaded 130.0% (was 90.0%)",
                                    "slot 1: voltage 0.8800 pu at bus 17 below its limit"]
    assert check.margins["thermalPercent"] == pytest.approx(-30.0)


def test_risk_check_flags_a_worsened_existing_violation(view) -> None:  # type: ignore[no-untyped-def]
    before = _report([[110.0]], ("slot 0: voltage 0.8900 pu at bus 17 below its limit",), 0.89)
    after = _report([[110.5]], ("slot 0: voltage 0.8700 pu at bus 17 below its limit",), 0.87)
    check = risk_check(before, after, view)
    assert not check.ok and check.new_violations == []
    assert check.worsened == ["slot 0: voltage 0.8700 pu at bus 17 below its limit (was 0.8900 pu)"]


def test_load_margin_shrinks_when_load_is_added_and_is_zero_when_already_violated(view) -> None:  # type: ignore[no-untyped-def]
    net = load_net("case33bw")
    profiles = synthetic_profiles(net, view, slot_start_s=17 * 3600, slot_seconds=3600, slot_count=1)
    base = profiles.load_p_mw - profiles.pv_p_mw
    margin = load_margin_percent(net, view, base, profiles.load_q_mvar, profiles.load_p_mw, profiles.load_q_mvar, 0)
    end = np.zeros_like(base)
    end[int(view.node(17)), 0] = 0.3  # 300 kW more at the end of the main feeder
    smaller = load_margin_percent(net, view, base + end, profiles.load_q_mvar, profiles.load_p_mw,
                                  profiles.load_q_mvar, 0)
    assert 0.0 < smaller < margin <= 100.0
    assert load_margin_percent(net, view, 3 * base, profiles.load_q_mvar, profiles.load_p_mw,
                               profiles.load_q_mvar, 0) == 0.0


def test_n1_summary_sees_fewer_violating_outages_under_lighter_load_or_with_relief(view) -> None:  # type: ignore[no-untyped-def]
    net = load_net("case33bw")
    model = build_model(net)
    profiles = synthetic_profiles(net, view, slot_start_s=17 * 3600, slot_seconds=3600, slot_count=1)
    base = profiles.load_p_mw - profiles.pv_p_mw
    evening = n1_summary(model, view, base, profiles.load_q_mvar, 0)
    light = n1_summary(model, view, 0.5 * base, 0.5 * profiles.load_q_mvar, 0)
    relief = np.zeros_like(base)
    relief[int(view.node(17)), 0] = -0.2  # 200 kW of UP flexibility at the end of the main feeder
    relieved = n1_summary(model, view, base + relief, profiles.load_q_mvar, 0)
    assert evening["outages"] == light["outages"] == relieved["outages"] == 32
    assert light["outagesWithViolations"] < evening["outagesWithViolations"]
    assert light["flexNeededKw"] < relieved["flexNeededKw"] < evening["flexNeededKw"]
