"""The wrappers of the sealed-bid, dispute, cancel and pause paths, against the real contracts."""

from __future__ import annotations

import pytest

from flexgrid.chain.market import commitment
from flexgrid.errors import ContractRevert
from flexgrid.trading import ClearingResult, FlexRequest, RoundState, SealMode
from tests.chain.test_market import make_offer, make_request
from tests.conftest import MarketEnv

pytestmark = pytest.mark.chain

SALT_A = "0x" + "5a" * 32
SALT_B = "0x" + "5b" * 32


def test_sealed_offer_is_revealed_and_an_unrevealed_one_forfeits_its_deposit(market: MarketEnv) -> None:
    op = market.client()
    cfg = op.create_round(
        market.round_config(seal_mode=SealMode.COMMIT_REVEAL, reveal_s=600, bid_deposit_eur=10.0)
    )
    a, b = market.providers[0], market.providers[1]
    domain = market.deployment.domain
    signed_a = make_offer(market, cfg.round_id, 0, expiry_s=cfg.gate_closure_s + 10_000).sign(a, domain)
    signed_b = make_offer(market, cfg.round_id, 1, expiry_s=cfg.gate_closure_s + 10_000).sign(b, domain)
    commit_a = commitment(signed_a.order_hash, a.address, SALT_A)
    commit_b = commitment(signed_b.order_hash, b.address, SALT_B)
    market.client(a).commit_offer(cfg.round_id, commit_a)
    market.client(b).commit_offer(cfg.round_id, commit_b)
    assert op.commitment_info(cfg.round_id, commit_a) == (a.address, False)
    assert op.deposit_of_micro(cfg.round_id, a.address) == 10_000_000

    with pytest.raises(ContractRevert) as info:  # reveals wait for gate closure
        op.reveal_offers([signed_a], [SALT_A])
    assert info.value.error_name == "TooEarly"

    market.time_travel(cfg.gate_closure_s)
    result = op.reveal_offers([signed_a], [SALT_A])
    assert "0x" + bytes(result.event("FlexOfferSubmitted")["orderHash"]).hex() == signed_a.order_hash
    assert op.commitment_info(cfg.round_id, commit_a) == (a.address, True)

    with pytest.raises(ContractRevert) as info:  # a wrong salt does not open the commitment
        op.reveal_offers([signed_b], [SALT_A])
    assert info.value.error_name == "UnknownCommitment"

    dso_before = op.balance_of_micro(market.dso.address)
    market.time_travel(op.deadlines(cfg.round_id)["reveal_end_s"])
    op.forfeit_commitment(cfg.round_id, commit_b)
    assert op.balance_of_micro(market.dso.address) == dso_before + 10_000_000
    with pytest.raises(ContractRevert) as info:
        op.forfeit_commitment(cfg.round_id, commit_b)
    assert info.value.error_name == "CommitmentClosed"


def _committed_round(market: MarketEnv) -> tuple[int, FlexRequest]:
    op = market.client()
    cfg = op.create_round(market.round_config())
    request = market.client(market.dso).submit_request(
        make_request(cfg.round_id, bus=2, kw=(100.0,), price_cap_eur_per_mwh=400.0)
    )  # 100 kW * 0.25 h * 0.4 EUR/kWh = 10 EUR escrowed
    market.time_travel(cfg.gate_closure_s)
    market.client(market.oracle).commit_clearing(
        ClearingResult(
            round_id=cfg.round_id,
            trades=(),
            merkle_root="0x" + "aa" * 32,
            input_hash="0x" + "bb" * 32,
            certificate_hash="0x" + "cc" * 32,
        )
    )
    return cfg.round_id, request


def test_upheld_dispute_cancels_the_round_and_returns_budget_and_bond(market: MarketEnv) -> None:
    op = market.client()
    round_id, _ = _committed_round(market)
    challenger = market.providers[3]
    market.client(challenger).dispute(round_id, "0x" + "de" * 32)
    assert op.round_state(round_id) == RoundState.DISPUTED
    with pytest.raises(ContractRevert) as info:
        market.client(market.dso).approve_result(round_id)
    assert info.value.error_name == "WrongRoundState"

    op.resolve_dispute(round_id, upheld=True)
    assert op.round_state(round_id) == RoundState.CANCELLED
    assert op.balance_of_micro(challenger.address) == 5_000_000  # the dispute bond comes back
    assert op.release(round_id, market.dso.address) == 10_000_000
    before = op.token_balance_micro(market.dso.address)
    assert market.client(market.dso).withdraw() == 10_000_000
    assert op.token_balance_micro(market.dso.address) == before + 10_000_000
    with pytest.raises(ContractRevert) as info:
        op.release(round_id, market.dso.address)
    assert info.value.error_name == "NothingToRelease"


def test_rejected_dispute_makes_the_result_final_and_the_bond_goes_to_the_dso(market: MarketEnv) -> None:
    op = market.client()
    round_id, _ = _committed_round(market)
    dso_before = op.balance_of_micro(market.dso.address)
    market.client(market.providers[3]).dispute(round_id, "0x" + "de" * 32)
    op.resolve_dispute(round_id, upheld=False)
    assert op.round_state(round_id) == RoundState.FINAL
    assert op.balance_of_micro(market.dso.address) == dso_before + 5_000_000


def test_operator_cancels_an_open_round_and_only_the_operator_may(market: MarketEnv) -> None:
    op = market.client()
    cfg = op.create_round(market.round_config())
    with pytest.raises(ContractRevert) as info:
        market.client(market.providers[0]).cancel_round(cfg.round_id)
    assert info.value.error_name == "Unauthorized"
    op.cancel_round(cfg.round_id)
    assert op.round_state(cfg.round_id) == RoundState.CANCELLED


def test_paused_market_refuses_offers_until_unpaused(market: MarketEnv) -> None:
    op = market.client()
    cfg = op.create_round(market.round_config())
    signed = make_offer(market, cfg.round_id).sign(market.providers[0], market.deployment.domain)
    op.pause()
    with pytest.raises(ContractRevert) as info:
        op.submit_offer(signed)
    assert info.value.error_name == "EnforcedPause"
    op.unpause()
    assert op.submit_offer(signed) == signed.order_hash


def test_reused_nonce_is_rejected(market: MarketEnv) -> None:
    op = market.client()
    cfg = op.create_round(market.round_config())
    provider = market.providers[0]
    op.submit_offer(make_offer(market, cfg.round_id).sign(provider, market.deployment.domain))
    assert op.nonce(provider.address, cfg.round_id) == (cfg.round_id << 64) | 1
    again = make_offer(market, cfg.round_id, price_eur_per_mwh=90.0).sign(provider, market.deployment.domain)
    with pytest.raises(ContractRevert) as info:
        op.submit_offer(again)
    assert info.value.error_name == "InvalidAccountNonce"
