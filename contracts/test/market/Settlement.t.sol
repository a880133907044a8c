// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "../utils/Fixture.sol";
import {Merkle} from "../utils/Merkle.sol";
import {FlexTypes} from "../../src/libraries/FlexTypes.sol";
import {IFlexMarketEvents} from "../../src/interfaces/IFlexMarketEvents.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

/// @notice Follows commitMetering.tree, claimCharge.tree, claimPayment.tree, closeRound.tree,
/// release.tree and withdraw.tree.
contract SettlementTest is Fixture {
    uint256 internal roundId;
    FlexTypes.Trade[] internal trades;
    uint64[] internal delivered;
    bytes32[] internal meterLeaves;
    bytes32 internal METERING;

    function setUp() public override {
        super.setUp();
        METERING = keccak256("METERING");
        roundId = _createRound();
        uint256 requestId = _request(roundId, 200_000, 300e6);
        _deposit(provider1, roundId);
        _deposit(provider2, roundId);
        bytes32 h1 = _submit(PK1, _offer(PK1, roundId, 0));
        bytes32 h2 = _submit(PK2, _offer(PK2, roundId, 0));
        trades.push(_trade(roundId, dso, bytes32(requestId), 0, 200_000, -10e6));
        trades.push(_trade(roundId, dso, bytes32(requestId), 1, 100_000, -5e6));
        trades.push(_trade(roundId, provider1, h1, 0, 100_000, 5e6));
        trades.push(_trade(roundId, provider1, h1, 1, 100_000, 5e6));
        trades.push(_trade(roundId, provider2, h2, 0, 100_000, 5e6));
        delivered = [uint64(200_000), 100_000, 100_000, 96_000, 0];
        _commit(roundId, trades, 15e6);
    }

    function _t() internal view returns (FlexTypes.Trade[] memory) {
        return trades;
    }

    function _final() internal {
        _toFinal(roundId);
    }

    function _metered() internal {
        _final();
        meterLeaves = _meter(roundId, _t(), delivered);
    }

    function _charges() internal {
        FlexTypes.Trade[] memory t = _t();
        market.claimCharge(t[0], _proof(t, 0));
        market.claimCharge(t[1], _proof(t, 1));
    }

    function _pay(uint256 i) internal {
        FlexTypes.Trade[] memory t = _t();
        market.claimPayment(t[i], _proof(t, i), delivered[i], Merkle.proof(meterLeaves, i));
    }

    function _wrongState(FlexTypes.RoundState s) internal view returns (bytes memory) {
        return abi.encodeWithSelector(IFlexMarketEvents.WrongRoundState.selector, roundId, s);
    }

    // ------------------------------------------------------------------ commitMetering

    function test_commitMetering_reverts_when_paused() public {
        _final();
        vm.prank(operator);
        market.pause();
        vm.expectRevert(Pausable.EnforcedPause.selector);
        vm.prank(meter);
        market.commitMetering(roundId, keccak256("m"), "");
    }

    function test_commitMetering_reverts_for_an_unknown_round() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
        vm.prank(meter);
        market.commitMetering(9, keccak256("m"), "");
    }

    function test_commitMetering_reverts_when_caller_is_not_the_grids_agent() public {
        _final();
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, dso, METERING));
        vm.prank(dso);
        market.commitMetering(roundId, keccak256("m"), "");
    }

    function test_commitMetering_reverts_when_the_grid_has_no_agent() public {
        vm.prank(dso);
        registry.setMeteringAgent(GRID, address(0));
        _final();
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, address(0), METERING));
        vm.prank(address(0));
        market.commitMetering(roundId, keccak256("m"), "");
    }

    function test_commitMetering_reverts_before_the_result_is_final() public {
        vm.expectRevert(_wrongState(FlexTypes.RoundState.COMMITTED));
        vm.prank(meter);
        market.commitMetering(roundId, keccak256("m"), "");
    }

    function test_commitMetering_reverts_when_already_committed() public {
        _metered();
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.MeteringAlreadyCommitted.selector, roundId));
        vm.prank(meter);
        market.commitMetering(roundId, keccak256("m"), "");
    }

    function test_commitMetering_reverts_after_the_metering_deadline() public {
        _final();
        (,, uint256 meteringDeadline,) = _deadlines(roundId);
        vm.warp(meteringDeadline);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.TooLate.selector, roundId, meteringDeadline, meteringDeadline));
        vm.prank(meter);
        market.commitMetering(roundId, keccak256("m"), "");
    }

    function test_commitMetering_reverts_for_a_zero_root() public {
        _final();
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.ZeroValue.selector, "meteringRoot"));
        vm.prank(meter);
        market.commitMetering(roundId, bytes32(0), "");
    }

    function test_commitMetering_stores_and_emits() public {
        _final();
        vm.expectEmit(true, true, true, true, address(market));
        emit IFlexMarketEvents.MeteringCommitted(roundId, keccak256("m"), meter, "uri");
        vm.prank(meter);
        market.commitMetering(roundId, keccak256("m"), "uri");
        assertEq(market.roundStatus(roundId).meteringRoot, keccak256("m"), "root");
    }

    // ------------------------------------------------------------------ claimCharge

    function test_claimCharge_reverts_for_an_unknown_round() public {
        FlexTypes.Trade memory t = trades[0];
        t.roundId = 9;
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
        market.claimCharge(t, new bytes32[](0));
    }

    function test_claimCharge_reverts_before_final() public {
        FlexTypes.Trade[] memory t = _t();
        vm.expectRevert(_wrongState(FlexTypes.RoundState.COMMITTED));
        market.claimCharge(t[0], _proof(t, 0));
    }

    function test_claimCharge_reverts_after_the_claim_deadline() public {
        FlexTypes.Trade[] memory t = _t();
        (,,, uint256 claimDeadline) = _deadlines(roundId);
        vm.warp(claimDeadline);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.TooLate.selector, roundId, claimDeadline, claimDeadline));
        market.claimCharge(t[0], _proof(t, 0));
    }

    function test_claimCharge_reverts_for_a_payee_leaf() public {
        _final();
        FlexTypes.Trade[] memory t = _t();
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.WrongPaymentSign.selector, roundId, int256(5e6)));
        market.claimCharge(t[2], _proof(t, 2));
    }

    function test_claimCharge_reverts_for_a_wrong_proof_or_altered_leaf() public {
        _final();
        FlexTypes.Trade[] memory t = _t();
        t[0].paymentMicro = -1;
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.InvalidTradeProof.selector, roundId, _leaf(t[0])));
        market.claimCharge(t[0], _proof(_t(), 0));
    }

    function test_claimCharge_reverts_when_claimed_twice() public {
        _final();
        FlexTypes.Trade[] memory t = _t();
        market.claimCharge(t[0], _proof(t, 0));
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.AlreadyClaimed.selector, roundId, _leaf(t[0])));
        market.claimCharge(t[0], _proof(t, 0));
    }

    function test_claimCharge_reverts_beyond_the_payers_escrow() public {
        uint256 id = _createRound(_configAt(block.timestamp));
        uint256 requestId = _request(id, 1000, 100e6); // budget 0.05 EUR
        FlexTypes.Trade[] memory t = new FlexTypes.Trade[](2);
        t[0] = _trade(id, dso, bytes32(requestId), 0, 1000, -1e6);
        t[1] = _trade(id, provider1, bytes32(0), 0, 1000, 0);
        _commit(id, t, 0);
        _toFinal(id);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.InsufficientEscrow.selector, id, dso, 50_000, 1e6));
        market.claimCharge(t[0], _proof(t, 0));
    }

    function test_claimCharge_moves_escrow_into_the_pool_and_emits() public {
        _final();
        FlexTypes.Trade[] memory t = _t();
        vm.expectEmit(true, true, true, true, address(market));
        emit IFlexMarketEvents.ChargeSettled(roundId, dso, t[0].orderHash, 0, 10e6);
        vm.prank(outsider);
        market.claimCharge(t[0], _proof(t, 0));
        (uint256 escrow, uint256 charged) = market.escrowOf(roundId, dso);
        assertEq(escrow, 30e6, "escrow unchanged");
        assertEq(charged, 10e6, "charged");
        assertEq(market.roundStatus(roundId).charged, 10e6, "pool");
        assertTrue(market.isClaimed(_leaf(t[0])), "claimed");
    }

    // ------------------------------------------------------------------ claimPayment

    function test_claimPayment_reverts_before_final_or_after_the_deadline() public {
        FlexTypes.Trade[] memory t = _t();
        vm.expectRevert(_wrongState(FlexTypes.RoundState.COMMITTED));
        market.claimPayment(t[2], _proof(t, 2), 0, new bytes32[](0));
        (,,, uint256 claimDeadline) = _deadlines(roundId);
        vm.warp(claimDeadline);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.TooLate.selector, roundId, claimDeadline, claimDeadline));
        market.claimPayment(t[2], _proof(t, 2), 0, new bytes32[](0));
    }

    function test_claimPayment_reverts_for_a_payer_leaf() public {
        _metered();
        FlexTypes.Trade[] memory t = _t();
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.WrongPaymentSign.selector, roundId, int256(-10e6)));
        market.claimPayment(t[0], _proof(t, 0), 0, new bytes32[](0));
    }

    function test_claimPayment_reverts_for_a_wrong_trade_proof() public {
        _metered();
        FlexTypes.Trade[] memory t = _t();
        t[2].powerW = 100_001;
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.InvalidTradeProof.selector, roundId, _leaf(t[2])));
        market.claimPayment(t[2], _proof(_t(), 2), 100_000, Merkle.proof(meterLeaves, 2));
    }

    function test_claimPayment_reverts_without_metering_before_the_metering_deadline() public {
        _final();
        _charges();
        FlexTypes.Trade[] memory t = _t();
        (,, uint256 meteringDeadline,) = _deadlines(roundId);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.MeteringMissing.selector, roundId, meteringDeadline));
        market.claimPayment(t[2], _proof(t, 2), 100_000, new bytes32[](0));
    }

    function test_claimPayment_reverts_for_a_wrong_metering_value() public {
        _metered();
        _charges();
        FlexTypes.Trade[] memory t = _t();
        bytes32 forged = _meterLeaf(t[3], 100_000);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.InvalidMeteringProof.selector, roundId, forged));
        market.claimPayment(t[3], _proof(t, 3), 100_000, Merkle.proof(meterLeaves, 3));
    }

    function test_claimPayment_reverts_until_payer_leaves_fund_the_pool() public {
        _metered();
        FlexTypes.Trade[] memory t = _t();
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.RoundUnderfunded.selector, roundId, 0, 5e6));
        market.claimPayment(t[2], _proof(t, 2), delivered[2], Merkle.proof(meterLeaves, 2));
    }

    function test_claimPayment_reverts_beyond_the_committed_total() public {
        uint256 id = _createRound(_configAt(block.timestamp));
        uint256 requestId = _request(id, 200_000, 300e6);
        FlexTypes.Trade[] memory t = new FlexTypes.Trade[](2);
        t[0] = _trade(id, dso, bytes32(requestId), 0, 200_000, -10e6);
        t[1] = _trade(id, provider1, bytes32(uint256(77)), 0, 100_000, 5e6);
        _commit(id, t, 4e6); // the oracle committed less than the leaves claim
        _toFinal(id);
        (,, uint256 meteringDeadline,) = _deadlines(id);
        vm.warp(meteringDeadline);
        market.claimCharge(t[0], _proof(t, 0));
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.RoundUnderfunded.selector, id, 4e6, 5e6));
        market.claimPayment(t[1], _proof(t, 1), 0, new bytes32[](0));
    }

    function test_claimPayment_reverts_when_claimed_twice() public {
        _metered();
        _charges();
        _pay(2);
        FlexTypes.Trade[] memory t = _t();
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.AlreadyClaimed.selector, roundId, _leaf(t[2])));
        _pay(2);
    }

    function test_claimPayment_pays_in_full_within_tolerance_and_emits() public {
        _metered();
        _charges();
        FlexTypes.Trade[] memory t = _t();
        vm.expectEmit(true, true, true, true, address(market));
        emit IFlexMarketEvents.PaymentSettled(roundId, provider1, t[3].orderHash, 1, 96_000, 5e6, 0);
        _pay(3); // 96 % with 5 % tolerance
        assertEq(market.balanceOf(provider1), 5e6, "full payment");
        assertEq(market.roundStatus(roundId).paid, 5e6, "paid");
    }

    function test_claimPayment_takes_the_penalty_excess_from_the_deposit() public {
        _metered();
        _charges();
        _pay(4); // nothing delivered: 0 paid, penalty 1 EUR from the deposit to the DSO
        assertEq(market.balanceOf(provider2), 0, "nothing paid");
        assertEq(market.depositOf(roundId, provider2), 9e6, "deposit minus penalty");
        assertEq(market.balanceOf(dso), 1e6, "penalty to the DSO");
    }

    function test_claimPayment_pays_in_full_when_metering_lapsed() public {
        _final();
        _charges();
        (,, uint256 meteringDeadline,) = _deadlines(roundId);
        vm.warp(meteringDeadline);
        FlexTypes.Trade[] memory t = _t();
        market.claimPayment(t[4], _proof(t, 4), 0, new bytes32[](0));
        assertEq(market.balanceOf(provider2), 5e6, "paid in full without metering");
    }

    // ------------------------------------------------------------------ closeRound

    function test_closeRound_reverts_for_an_unknown_round_or_before_final() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
        market.closeRound(9);
        vm.expectRevert(_wrongState(FlexTypes.RoundState.COMMITTED));
        market.closeRound(roundId);
    }

    function test_closeRound_reverts_before_the_claim_deadline() public {
        _final();
        (,,, uint256 claimDeadline) = _deadlines(roundId);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.TooEarly.selector, roundId, claimDeadline, block.timestamp));
        market.closeRound(roundId);
    }

    function test_closeRound_credits_the_unpaid_pool_to_the_dso_once() public {
        _metered();
        _charges();
        _pay(2);
        (,,, uint256 claimDeadline) = _deadlines(roundId);
        vm.warp(claimDeadline);
        vm.expectEmit(true, true, false, true, address(market));
        emit IFlexMarketEvents.RoundSettled(roundId, dso, 10e6);
        market.closeRound(roundId);
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.SETTLED), "settled");
        assertEq(market.balanceOf(dso), 10e6, "15 charged - 5 paid");
        vm.expectRevert(_wrongState(FlexTypes.RoundState.SETTLED));
        market.closeRound(roundId);
    }

    // ------------------------------------------------------------------ release

    function test_release_reverts_for_an_unknown_round_or_a_live_round() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
        market.release(9, dso);
        vm.expectRevert(_wrongState(FlexTypes.RoundState.COMMITTED));
        market.release(roundId, dso);
        _final();
        vm.expectRevert(_wrongState(FlexTypes.RoundState.FINAL));
        market.release(roundId, dso);
    }

    function test_release_reverts_when_nothing_is_left() public {
        (,,, uint256 claimDeadline) = _deadlines(roundId);
        vm.warp(claimDeadline);
        market.closeRound(roundId);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.NothingToRelease.selector, roundId, outsider));
        market.release(roundId, outsider);
        market.release(roundId, provider1);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.NothingToRelease.selector, roundId, provider1));
        market.release(roundId, provider1);
    }

    function test_release_returns_uncharged_escrow_and_deposits() public {
        _final();
        _charges();
        (,,, uint256 claimDeadline) = _deadlines(roundId);
        vm.warp(claimDeadline);
        market.closeRound(roundId);
        vm.expectEmit(true, true, false, true, address(market));
        emit IFlexMarketEvents.Released(roundId, dso, 15e6);
        assertEq(market.release(roundId, dso), 15e6, "30 escrowed - 15 charged");
        assertEq(market.release(roundId, provider1), 10e6, "deposit");
    }

    function test_release_after_cancel_returns_everything() public {
        uint256 id = _createRound(_configAt(block.timestamp));
        _request(id, 200_000, 300e6);
        _deposit(provider1, id);
        vm.prank(operator);
        market.cancelRound(id);
        assertEq(market.release(id, dso), 30e6, "budget");
        assertEq(market.release(id, provider1), 10e6, "deposit");
    }

    // ------------------------------------------------------------------ withdraw

    function test_withdraw_reverts_with_nothing_to_withdraw() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.NothingToWithdraw.selector, outsider));
        vm.prank(outsider);
        market.withdraw();
    }

    function test_withdraw_transfers_the_whole_balance_and_emits() public {
        _metered();
        _charges();
        _pay(2);
        vm.expectEmit(true, false, false, true, address(market));
        emit IFlexMarketEvents.Withdrawn(provider1, 5e6);
        vm.prank(provider1);
        assertEq(market.withdraw(), 5e6, "amount");
        assertEq(market.balanceOf(provider1), 0, "balance cleared");
        assertEq(token.balanceOf(provider1), MINT - 10e6 + 5e6, "deposit still held, payment out");
    }

    function test_withdraw_works_while_paused() public {
        _metered();
        _charges();
        _pay(2);
        vm.prank(operator);
        market.pause();
        vm.prank(provider1);
        market.withdraw();
        assertEq(market.balanceOf(provider1), 0, "withdrawn during a pause");
    }

    function _configAt(uint256 nowS) internal pure returns (FlexTypes.RoundConfig memory c) {
        c = _config();
        c.gateClosure = uint64(nowS + 1 hours);
        c.slotStart = uint64(nowS + 2 hours);
    }
}
