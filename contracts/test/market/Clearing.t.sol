// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "../utils/Fixture.sol";
import {FlexTypes} from "../../src/libraries/FlexTypes.sol";
import {IFlexMarketEvents} from "../../src/interfaces/IFlexMarketEvents.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

/// @notice Follows commitClearing.tree, publishRoundKey.tree, dispute.tree, resolveDispute.tree,
/// approveResult.tree and cancelRound.tree.
contract ClearingTest is Fixture {
    uint256 internal roundId;
    bytes32 internal constant ROOT = keccak256("root");

    function setUp() public override {
        super.setUp();
        roundId = _createRound();
        _request(roundId, 200_000, 300e6); // pot 30 EUR
    }

    function _vote(address who, uint256 id, bytes32 root, uint128 payout) internal {
        vm.prank(who);
        market.commitClearing(id, _result(root, payout));
    }

    function _expectVoteReverts(address who, uint256 id, FlexTypes.ClearingResult memory res, bytes memory err) internal {
        vm.expectRevert(err);
        vm.prank(who);
        market.commitClearing(id, res);
    }

    function _committed() internal {
        _toClearing(roundId);
        _vote(oracle, roundId, ROOT, 10e6);
    }

    function _wrongState(uint256 id, FlexTypes.RoundState s) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IFlexMarketEvents.WrongRoundState.selector, id, s);
    }

    // ------------------------------------------------------------------ commitClearing

    function test_commitClearing_reverts_when_paused() public {
        _toClearing(roundId);
        vm.prank(operator);
        market.pause();
        _expectVoteReverts(oracle, roundId, _result(ROOT, 0), abi.encodeWithSelector(Pausable.EnforcedPause.selector));
    }

    function test_commitClearing_reverts_when_caller_is_not_oracle() public {
        _toClearing(roundId);
        _expectVoteReverts(
            operator, roundId, _result(ROOT, 0), abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, operator, registry.ORACLE_ROLE())
        );
    }

    function test_commitClearing_reverts_for_an_unknown_round() public {
        _expectVoteReverts(oracle, 9, _result(ROOT, 0), abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
    }

    function test_commitClearing_reverts_before_gate_closure() public {
        uint256 gate = _config().gateClosure;
        _expectVoteReverts(
            oracle, roundId, _result(ROOT, 0), abi.encodeWithSelector(IFlexMarketEvents.TooEarly.selector, roundId, gate, block.timestamp)
        );
    }

    function test_commitClearing_reverts_before_the_reveal_window_ends() public {
        uint256 sealedId = _createRound(_sealedConfig(FlexTypes.SEAL_COMMIT_REVEAL));
        _toGateClosure(sealedId);
        (uint256 revealEnd,,,) = _deadlines(sealedId);
        _expectVoteReverts(
            oracle, sealedId, _result(ROOT, 0), abi.encodeWithSelector(IFlexMarketEvents.TooEarly.selector, sealedId, revealEnd, block.timestamp)
        );
    }

    function test_commitClearing_reverts_at_the_commit_deadline() public {
        (, uint256 commitDeadline,,) = _deadlines(roundId);
        vm.warp(commitDeadline);
        _expectVoteReverts(
            oracle, roundId, _result(ROOT, 0), abi.encodeWithSelector(IFlexMarketEvents.TooLate.selector, roundId, commitDeadline, commitDeadline)
        );
    }

    function test_commitClearing_reverts_for_zero_root_or_input_hash() public {
        _toClearing(roundId);
        _expectVoteReverts(oracle, roundId, _result(bytes32(0), 0), abi.encodeWithSelector(IFlexMarketEvents.ZeroValue.selector, "tradeRoot"));
        FlexTypes.ClearingResult memory res = _result(ROOT, 0);
        res.inputHash = bytes32(0);
        _expectVoteReverts(oracle, roundId, res, abi.encodeWithSelector(IFlexMarketEvents.ZeroValue.selector, "inputHash"));
    }

    function test_commitClearing_reverts_when_payout_exceeds_the_pot() public {
        _toClearing(roundId);
        _expectVoteReverts(
            oracle, roundId, _result(ROOT, 30e6 + 1), abi.encodeWithSelector(IFlexMarketEvents.PayoutExceedsPot.selector, roundId, 30e6 + 1, 30e6)
        );
    }

    function test_commitClearing_reverts_once_committed() public {
        _committed();
        _expectVoteReverts(oracle2, roundId, _result(ROOT, 0), _wrongState(roundId, FlexTypes.RoundState.COMMITTED));
    }

    function test_commitClearing_with_quorum_one_commits_and_emits() public {
        _toClearing(roundId);
        FlexTypes.RoundStatus memory before = market.roundStatus(roundId);
        vm.expectEmit(true, true, false, true, address(market));
        emit IFlexMarketEvents.ClearingCommitted(
            roundId, ROOT, keccak256("inputs"), keccak256("certificate"), 10e6, before.orderAccumulator, 1, "ipfs://result"
        );
        _vote(oracle, roundId, ROOT, 10e6);
        FlexTypes.RoundStatus memory st = market.roundStatus(roundId);
        assertEq(uint256(st.state), uint256(FlexTypes.RoundState.COMMITTED), "committed");
        assertEq(st.tradeRoot, ROOT, "root");
        assertEq(st.totalPayout, 10e6, "payout");
        assertEq(st.committedAt, block.timestamp, "time");
    }

    function test_commitClearing_k_of_n_needs_k_equal_votes() public {
        FlexTypes.RoundConfig memory c = _config();
        c.oracleQuorum = 2;
        uint256 id = _createRound(c);
        _toClearing(id);
        _vote(oracle, id, ROOT, 0);
        assertEq(_state(id), uint256(FlexTypes.RoundState.CLOSED), "one vote is not enough");
        assertTrue(market.hasVoted(id, oracle), "voted");
        _expectVoteReverts(oracle, id, _result(ROOT, 0), abi.encodeWithSelector(IFlexMarketEvents.AlreadyVoted.selector, id, oracle));
        _vote(oracle2, id, keccak256("another root"), 0);
        assertEq(_state(id), uint256(FlexTypes.RoundState.CLOSED), "different results do not add up");
        assertEq(market.roundStatus(id).votes, 1, "leading result has one vote");
        _vote(oracle3, id, ROOT, 0);
        assertEq(_state(id), uint256(FlexTypes.RoundState.COMMITTED), "two equal votes commit");
        assertEq(market.roundStatus(id).tradeRoot, ROOT, "the agreed root");
    }

    // ------------------------------------------------------------------ publishRoundKey

    function test_publishRoundKey_reverts_for_a_non_oracle_unknown_round_or_wrong_mode() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, outsider, registry.ORACLE_ROLE()));
        vm.prank(outsider);
        market.publishRoundKey(roundId, bytes32(uint256(1)));
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
        vm.prank(oracle);
        market.publishRoundKey(9, bytes32(uint256(1)));
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.WrongSealMode.selector, roundId, 0));
        vm.prank(oracle);
        market.publishRoundKey(roundId, bytes32(uint256(1)));
    }

    function test_publishRoundKey_reverts_before_the_commit_and_when_paused() public {
        uint256 encId = _createRound(_sealedConfig(FlexTypes.SEAL_ENCRYPTED));
        _toClearing(encId);
        vm.expectRevert(_wrongState(encId, FlexTypes.RoundState.CLOSED));
        vm.prank(oracle);
        market.publishRoundKey(encId, bytes32(uint256(1)));
        vm.prank(operator);
        market.pause();
        vm.expectRevert(Pausable.EnforcedPause.selector);
        vm.prank(oracle);
        market.publishRoundKey(encId, bytes32(uint256(1)));
    }

    function test_publishRoundKey_reverts_in_a_cancelled_round() public {
        uint256 encId = _createRound(_sealedConfig(FlexTypes.SEAL_ENCRYPTED));
        _toClearing(encId);
        _vote(oracle, encId, ROOT, 0);
        vm.prank(disputer);
        market.dispute(encId, bytes32(0));
        vm.prank(operator);
        market.resolveDispute(encId, true);
        vm.expectRevert(_wrongState(encId, FlexTypes.RoundState.CANCELLED));
        vm.prank(oracle);
        market.publishRoundKey(encId, bytes32(uint256(1)));
    }

    function test_publishRoundKey_emits_after_the_commit() public {
        uint256 encId = _createRound(_sealedConfig(FlexTypes.SEAL_ENCRYPTED));
        _toClearing(encId);
        _vote(oracle, encId, ROOT, 0);
        vm.expectEmit(true, true, false, true, address(market));
        emit IFlexMarketEvents.RoundKeyPublished(encId, oracle2, bytes32(uint256(7)));
        vm.prank(oracle2);
        market.publishRoundKey(encId, bytes32(uint256(7)));
    }

    // ------------------------------------------------------------------ dispute

    function test_dispute_reverts_for_an_unknown_round() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
        market.dispute(9, bytes32(0));
    }

    function test_dispute_reverts_before_the_commit() public {
        _toClearing(roundId);
        vm.expectRevert(_wrongState(roundId, FlexTypes.RoundState.CLOSED));
        market.dispute(roundId, bytes32(0));
    }

    function test_dispute_reverts_after_the_dispute_window() public {
        _committed();
        _toFinal(roundId);
        vm.expectRevert(_wrongState(roundId, FlexTypes.RoundState.FINAL));
        vm.prank(disputer);
        market.dispute(roundId, bytes32(0));
    }

    function test_dispute_reverts_a_second_time() public {
        _committed();
        vm.prank(disputer);
        market.dispute(roundId, bytes32(0));
        vm.expectRevert(_wrongState(roundId, FlexTypes.RoundState.DISPUTED));
        vm.prank(outsider);
        market.dispute(roundId, bytes32(0));
    }

    function test_dispute_locks_the_bond_and_emits() public {
        _committed();
        vm.expectEmit(true, true, false, true, address(market));
        emit IFlexMarketEvents.ResultDisputed(roundId, disputer, 50e6, keccak256("why"));
        vm.prank(disputer);
        market.dispute(roundId, keccak256("why"));
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.DISPUTED), "disputed");
        assertEq(token.balanceOf(disputer), MINT - 50e6, "bond paid");
        assertEq(market.roundStatus(roundId).disputer, disputer, "disputer");
    }

    // ------------------------------------------------------------------ resolveDispute

    function test_resolveDispute_reverts_for_a_non_operator_or_unknown_round() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, dso, registry.OPERATOR_ROLE()));
        vm.prank(dso);
        market.resolveDispute(roundId, true);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
        vm.prank(operator);
        market.resolveDispute(9, true);
    }

    function test_resolveDispute_reverts_when_not_disputed() public {
        _committed();
        vm.expectRevert(_wrongState(roundId, FlexTypes.RoundState.COMMITTED));
        vm.prank(operator);
        market.resolveDispute(roundId, false);
    }

    function test_resolveDispute_upheld_cancels_and_returns_the_bond() public {
        _committed();
        vm.prank(disputer);
        market.dispute(roundId, bytes32(0));
        vm.expectEmit(true, true, true, true, address(market));
        emit IFlexMarketEvents.DisputeResolved(roundId, true, operator, disputer);
        vm.prank(operator);
        market.resolveDispute(roundId, true);
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.CANCELLED), "cancelled");
        assertEq(market.balanceOf(disputer), 50e6, "bond back");
    }

    function test_resolveDispute_rejected_finalises_and_pays_the_bond_to_the_dso() public {
        _committed();
        vm.prank(disputer);
        market.dispute(roundId, bytes32(0));
        vm.prank(operator);
        market.resolveDispute(roundId, false);
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.FINAL), "final");
        assertEq(market.balanceOf(dso), 50e6, "bond to the DSO");
        assertEq(market.balanceOf(disputer), 0, "disputer loses it");
    }

    // ------------------------------------------------------------------ approveResult

    function test_approveResult_reverts_for_an_unknown_round_or_non_dso() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
        vm.prank(dso);
        market.approveResult(9);
        _committed();
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, otherDso, keccak256("DSO")));
        vm.prank(otherDso);
        market.approveResult(roundId);
    }

    function test_approveResult_reverts_unless_committed() public {
        vm.expectRevert(_wrongState(roundId, FlexTypes.RoundState.OPEN));
        vm.prank(dso);
        market.approveResult(roundId);
        _committed();
        _toFinal(roundId);
        vm.expectRevert(_wrongState(roundId, FlexTypes.RoundState.FINAL));
        vm.prank(dso);
        market.approveResult(roundId);
    }

    function test_approveResult_finalises_before_the_window_ends() public {
        _committed();
        vm.expectEmit(true, true, false, true, address(market));
        emit IFlexMarketEvents.ResultApproved(roundId, dso);
        vm.prank(dso);
        market.approveResult(roundId);
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.FINAL), "final");
        vm.expectRevert(_wrongState(roundId, FlexTypes.RoundState.FINAL));
        vm.prank(disputer);
        market.dispute(roundId, bytes32(0));
    }

    // ------------------------------------------------------------------ cancelRound

    function test_cancelRound_reverts_for_an_unknown_round() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
        market.cancelRound(9);
    }

    function test_cancelRound_open_round_only_by_operator() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, outsider, registry.OPERATOR_ROLE()));
        vm.prank(outsider);
        market.cancelRound(roundId);
        vm.expectEmit(true, true, false, true, address(market));
        emit IFlexMarketEvents.RoundCancelled(roundId, operator, 0);
        vm.prank(operator);
        market.cancelRound(roundId);
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.CANCELLED), "cancelled");
    }

    function test_cancelRound_closed_round_by_anyone_after_the_commit_deadline() public {
        _toClearing(roundId);
        (, uint256 commitDeadline,,) = _deadlines(roundId);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.TooEarly.selector, roundId, commitDeadline, block.timestamp));
        vm.prank(outsider);
        market.cancelRound(roundId);
        vm.warp(commitDeadline);
        vm.prank(outsider);
        market.cancelRound(roundId);
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.CANCELLED), "cancelled by anyone");
    }

    function test_cancelRound_closed_round_by_operator_any_time() public {
        _toClearing(roundId);
        vm.prank(operator);
        market.cancelRound(roundId);
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.CANCELLED), "cancelled");
    }

    function test_cancelRound_reverts_for_committed_final_settled_or_cancelled() public {
        _committed();
        vm.expectRevert(_wrongState(roundId, FlexTypes.RoundState.COMMITTED));
        vm.prank(operator);
        market.cancelRound(roundId);
        _toFinal(roundId);
        vm.expectRevert(_wrongState(roundId, FlexTypes.RoundState.FINAL));
        vm.prank(operator);
        market.cancelRound(roundId);
        (,,, uint256 claimDeadline) = _deadlines(roundId);
        vm.warp(claimDeadline);
        market.closeRound(roundId);
        vm.expectRevert(_wrongState(roundId, FlexTypes.RoundState.SETTLED));
        market.cancelRound(roundId);
        uint256 other = _createRound(_configAt(block.timestamp));
        vm.prank(operator);
        market.cancelRound(other);
        vm.expectRevert(_wrongState(other, FlexTypes.RoundState.CANCELLED));
        vm.prank(operator);
        market.cancelRound(other);
    }

    function test_cancelRound_disputed_round_after_the_resolution_timeout_returns_the_bond() public {
        _committed();
        vm.prank(disputer);
        market.dispute(roundId, bytes32(0));
        (,, uint256 disputeDeadline,,) = market.deadlines(roundId);
        uint256 timeout = disputeDeadline + _config().clearingSeconds;
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.TooEarly.selector, roundId, timeout, block.timestamp));
        market.cancelRound(roundId);
        vm.warp(timeout);
        vm.expectEmit(true, true, false, true, address(market));
        emit IFlexMarketEvents.RoundCancelled(roundId, outsider, 50e6);
        vm.prank(outsider);
        market.cancelRound(roundId);
        assertEq(market.balanceOf(disputer), 50e6, "bond back");
    }

    function _configAt(uint256 nowS) internal pure returns (FlexTypes.RoundConfig memory c) {
        c = _config();
        c.gateClosure = uint64(nowS + 1 hours);
        c.slotStart = uint64(nowS + 2 hours);
    }
}
