"""Property test: Python and Solidity agree on order hashes and Merkle proofs (docs/trading-language.md).

Hypothesis (derandomised, so every run checks the same cases) draws random offers and P2P
orders over the whole range of every field: 50 examples × 10 offers and 50 × 10 P2P orders,
1,000 orders in all, whose
Python EIP-712 digest must equal the contract's `hashOffer` / `hashP2POrder`. It also draws
20 trees of 50 random trade leaves (1,000 leaves); each tree is committed as a round's clearing
root and every Python proof must pass the contract's `MerkleProof` check in `claimCharge`
(run as `eth_call`, so the leaves stay unclaimed and the checks are independent).
A third test checks metering proofs and the settlement rule against `claimPayment` (100 leaves,
30 real claims whose payouts must equal `flexgrid.trading.settle`).
Calls are sent as JSON-RPC batches to keep this fast.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from web3 import Web3

from flexgrid.chain.artifacts import decode_revert
from flexgrid.chain.market import offer_struct, p2p_struct, trade_struct
from flexgrid.chain.node import revert_to, snapshot
from flexgrid.trading import (
    ClearingResult,
    Direction,
    FlexOffer,
    MeterReading,
    P2POrder,
    Side,
    Trade,
    settle,
)
from flexgrid.trading.merkle import MeteringTree, TradeTree
from flexgrid.trading.units import UINT16_MAX, UINT32_MAX, UINT64_MAX, UINT256_MAX
from tests.chain.test_market import make_request
from tests.conftest import MarketEnv

# Hypothesis settings of the tests that build one round on chain per example. No shrinking: every
# example builds a round on chain, and a failure prints its trees anyway.
ON_CHAIN_ROUNDS = settings(
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

pytestmark = pytest.mark.chain

PER_EXAMPLE = 10
EXAMPLES = 50
TREES = 20
LEAVES = 50

addresses = st.binary(min_size=20, max_size=20).map(lambda b: Web3.to_checksum_address(b))
bytes32 = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())
# Python holds kW and EUR/MWh as floats: 15 significant digits round-trip exactly, so powers go
# up to 10^15 W (10^12 kW) and prices up to 10^15 micro (10^9 EUR/MWh); the small end is covered too.
MAX_EXACT = 10**15
watts = st.integers(0, MAX_EXACT)
kw = watts.map(lambda w: w / 1000)
price = st.integers(0, MAX_EXACT).map(lambda m: m / 1_000_000)


@st.composite
def offers(draw: st.DrawFn) -> FlexOffer:
    slots = sorted(draw(st.sets(st.integers(0, UINT16_MAX), min_size=1, max_size=6)))
    max_w = [draw(st.integers(1, MAX_EXACT)) for _ in slots]
    min_w = [draw(st.integers(0, m)) for m in max_w]
    return FlexOffer(
        provider=draw(addresses),
        round_id=draw(st.integers(0, UINT256_MAX)),
        bus=draw(st.integers(0, UINT32_MAX)),
        asset_id=draw(bytes32),
        direction=draw(st.sampled_from(Direction)),
        slots=tuple(slots),
        min_kw=tuple(w / 1000 for w in min_w),
        max_kw=tuple(w / 1000 for w in max_w),
        price_eur_per_mwh=draw(price),
        exclusive_group=draw(bytes32),
        min_activation=draw(st.integers(0, 10_000)) / 10_000,
        nonce=draw(st.integers(0, UINT256_MAX)),
        expiry_s=draw(st.integers(0, UINT64_MAX)),
    )


@st.composite
def p2p_orders(draw: st.DrawFn) -> P2POrder:
    return P2POrder(
        trader=draw(addresses),
        round_id=draw(st.integers(0, UINT256_MAX)),
        bus=draw(st.integers(0, UINT32_MAX)),
        side=draw(st.sampled_from(Side)),
        slot=draw(st.integers(0, UINT16_MAX)),
        kw=draw(st.integers(1, MAX_EXACT)) / 1000,
        limit_price_eur_per_mwh=draw(price),
        nonce=draw(st.integers(0, UINT256_MAX)),
        expiry_s=draw(st.integers(0, UINT64_MAX)),
    )


def _eth_calls(w3: Web3, to: str, calldata: list[str], sender: str | None = None) -> list[dict[str, Any]]:
    """One JSON-RPC batch of `eth_call`s (web3's per-call overhead is 40× anvil's own time)."""
    tx: dict[str, Any] = {"to": to}
    if sender is not None:
        tx["from"] = sender
    responses = w3.provider.make_batch_request(  # type: ignore[attr-defined]
        [("eth_call", [{**tx, "data": data}, "latest"]) for data in calldata]
    )
    return [dict(r) for r in responses]


@pytest.mark.parametrize("kind", ["offer", "p2p"])
def test_python_digest_equals_contract_digest(market_env: MarketEnv, kind: str) -> None:
    client = market_env.client()
    domain = market_env.deployment.domain
    checked: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        st.lists(offers() if kind == "offer" else p2p_orders(), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE)
    )
    def check(orders: list[FlexOffer] | list[P2POrder]) -> None:
        if kind == "offer":
            data = [client.market.encode_abi("hashOffer", [offer_struct(o)]) for o in orders]  # type: ignore[arg-type]
        else:
            data = [client.market.encode_abi("hashP2POrder", [p2p_struct(o)]) for o in orders]  # type: ignore[arg-type]
        on_chain = [r["result"] for r in _eth_calls(market_env.w3, client.market.address, data)]
        assert on_chain == [o.digest(domain) for o in orders]
        checked.append(len(orders))

    check()
    assert sum(checked) == EXAMPLES * PER_EXAMPLE


def test_python_merkle_proofs_verify_on_chain(market_env: MarketEnv) -> None:
    env = market_env
    op, dso = env.client(), env.client(env.dso)
    checked: list[int] = []

    @settings(ON_CHAIN_ROUNDS, max_examples=TREES)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        snap = snapshot(env.w3)
        try:
            cfg = op.create_round(env.round_config())
            request = dso.submit_request(
                make_request(
                    cfg.round_id, bus=0, slots=(0, 1, 2, 3), kw=(1000.0,) * 4, price_cap_eur_per_mwh=500.0
                )
            )  # 500 EUR escrowed: every single charge below fits
            leaf = st.builds(
                Trade,
                round_id=st.just(cfg.round_id),
                participant=st.just(env.dso.address),
                order_id=bytes32,
                slot=st.integers(0, UINT16_MAX),
                kw=kw,
                price_eur_per_mwh=price,
                payment_eur=st.integers(-500_000_000, -1).map(lambda m: m / 1_000_000),
            )
            trades = data.draw(
                st.lists(leaf, min_size=LEAVES, max_size=LEAVES, unique_by=lambda t: t.order_id)
            )
            tree = TradeTree(trades)
            env.time_travel(cfg.gate_closure_s)
            env.client(env.oracle).commit_clearing(
                ClearingResult(
                    round_id=cfg.round_id,
                    trades=tuple(trades),
                    merkle_root=tree.root,
                    input_hash="0x" + "01" * 32,
                    certificate_hash="0x" + "02" * 32,
                )
            )
            dso.approve_result(cfg.round_id)

            def claim(trade: Trade, proof: list[str]) -> str:
                return op.market.encode_abi(
                    "claimCharge", [trade_struct(trade), [bytes.fromhex(p[2:]) for p in proof]]
                )

            # eth_call of claimCharge: no revert means the proof verified and the charge would apply.
            responses = _eth_calls(
                env.w3, op.market.address, [claim(t, tree.proof(t)) for t in trades], env.providers[0].address
            )
            assert [r.get("error") for r in responses] == [None] * len(trades)
            # The same proofs with a leaf changed in one field are refused with InvalidTradeProof.
            forged = [t.model_copy(update={"kw": (t.power_w ^ 1) / 1000}) for t in trades[:5]]
            responses = _eth_calls(
                env.w3,
                op.market.address,
                [claim(f, tree.proof(t)) for f, t in zip(forged, trades, strict=False)],
                env.providers[0].address,
            )
            for r in responses:
                assert decode_revert(r["error"]["data"]).error_name == "InvalidTradeProof"
            checked.append(len(trades))
            assert request.order_id is not None
        finally:
            revert_to(env.w3, snap)

    check()
    assert sum(checked) == TREES * LEAVES


def test_python_metering_proofs_and_settlement_agree_with_chain(market_env: MarketEnv) -> None:
    """10 rounds × 10 payee leaves with random metering: every Python metering proof verifies in
    `claimPayment`, a changed reading is refused, and the payouts of real claims equal `settle()`."""
    env = market_env
    op, dso = env.client(), env.client(env.dso)
    checked: list[int] = []

    @settings(ON_CHAIN_ROUNDS, max_examples=10)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        snap = snapshot(env.w3)
        try:
            tolerance_bps = data.draw(st.integers(0, 10_000))
            penalty_bps = data.draw(st.integers(0, 10_000))
            cfg = op.create_round(env.round_config(tolerance_bps=tolerance_bps, penalty_bps=penalty_bps))
            request = dso.submit_request(
                make_request(
                    cfg.round_id, bus=0, slots=(0, 1, 2, 3), kw=(1000.0,) * 4, price_cap_eur_per_mwh=500.0
                )
            )
            assert request.order_id is not None
            payee = st.builds(
                Trade,
                round_id=st.just(cfg.round_id),
                participant=st.sampled_from([p.address for p in env.providers]),
                order_id=bytes32,
                slot=st.integers(0, 3),
                kw=st.integers(1, 10**9).map(lambda w: w / 1000),
                price_eur_per_mwh=price,
                payment_eur=st.integers(1, 10_000_000).map(lambda m: m / 1_000_000),
            )
            payees = data.draw(st.lists(payee, min_size=10, max_size=10, unique_by=lambda t: t.order_id))
            delivered_w = [data.draw(st.integers(0, 2 * t.power_w)) for t in payees]
            fund = Trade(
                round_id=cfg.round_id,
                participant=env.dso.address,
                order_id=request.order_id,
                slot=0,
                kw=1.0,
                price_eur_per_mwh=1.0,
                payment_eur=-sum(t.payment_micro for t in payees) / 1e6,
            )
            tree = TradeTree([*payees, fund])
            readings = [
                MeterReading(
                    round_id=cfg.round_id,
                    participant=t.participant,
                    order_id=t.order_id,
                    slot=t.slot,
                    delivered_kw=w / 1000,
                )
                for t, w in zip(payees, delivered_w, strict=True)
            ]
            mtree = MeteringTree(readings)
            env.time_travel(cfg.gate_closure_s)
            env.client(env.oracle).commit_clearing(
                ClearingResult(
                    round_id=cfg.round_id,
                    trades=(*payees, fund),
                    merkle_root=tree.root,
                    input_hash="0x" + "01" * 32,
                    certificate_hash="0x" + "02" * 32,
                )
            )
            dso.approve_result(cfg.round_id)
            env.client(env.metering).commit_metering(cfg.round_id, mtree.root)
            op.claim_charge(fund, tree.proof(fund))

            def claim(t: Trade, r: MeterReading, proof: list[str]) -> str:
                return op.market.encode_abi(
                    "claimPayment",
                    [
                        trade_struct(t),
                        [bytes.fromhex(p[2:]) for p in tree.proof(t)],
                        r.delivered_power_w,
                        [bytes.fromhex(p[2:]) for p in proof],
                    ],
                )

            sender = env.providers[0].address
            responses = _eth_calls(
                env.w3,
                op.market.address,
                [claim(t, r, mtree.proof(r)) for t, r in zip(payees, readings, strict=True)],
                sender,
            )
            assert [r.get("error") for r in responses] == [None] * len(payees)
            wrong = [
                r.model_copy(update={"delivered_kw": (r.delivered_power_w + 1) / 1000}) for r in readings[:3]
            ]
            responses = _eth_calls(
                env.w3,
                op.market.address,
                [claim(t, w, mtree.proof(r)) for t, w, r in zip(payees, wrong, readings, strict=False)],
                sender,
            )
            for response in responses:
                assert decode_revert(response["error"]["data"]).error_name == "InvalidMeteringProof"
            for t, r in list(zip(payees, readings, strict=True))[:3]:
                before = op.balance_of_micro(t.participant)
                op.claim_payment(t, tree.proof(t), r.delivered_kw, mtree.proof(r))
                expected = settle(t, r.delivered_kw, tolerance_bps=tolerance_bps, penalty_bps=penalty_bps)
                assert op.balance_of_micro(t.participant) - before == expected.paid_micro
            checked.append(len(payees))
        finally:
            revert_to(env.w3, snap)

    check()
    assert sum(checked) == 100
