// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "../utils/Fixture.sol";
import {FlexTypes} from "../../src/libraries/FlexTypes.sol";
import {IFlexMarketEvents} from "../../src/interfaces/IFlexMarketEvents.sol";

/// @notice Follows commitOffer.tree, revealOffers.tree and forfeitCommitment.tree.
contract SealedTest is Fixture {
    uint256 internal roundId;
    bytes32 internal constant SALT = keccak256("salt");

    function setUp() public override {
        super.setUp();
        roundId = _createRound(_sealedConfig(FlexTypes.SEAL_COMMIT_REVEAL));
    }

    function _commitment(FlexTypes.FlexOffer memory o, bytes32 salt) internal view returns (bytes32) {
        return keccak256(abi.encode(market.hashOffer(o), o.provider, salt));
    }

    function _commitOffer(address provider, bytes32 c) internal {
        vm.prank(provider);
        market.commitOffer(roundId, c, "");
    }

    function _reveal(uint256 pk, FlexTypes.FlexOffer memory o, bytes32 salt) internal {
        _revealExpect(pk, o, salt, "");
    }

    /// @dev Signs first (a view call), then expects `err` (if any) on the reveal itself.
    function _revealExpect(uint256 pk, FlexTypes.FlexOffer memory o, bytes32 salt, bytes memory err) internal {
        FlexTypes.FlexOffer[] memory offers = new FlexTypes.FlexOffer[](1);
        offers[0] = o;
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = _signOffer(pk, o);
        bytes32[] memory salts = new bytes32[](1);
        salts[0] = salt;
        if (err.length != 0) vm.expectRevert(err);
        market.revealOffers(offers, sigs, salts);
    }

    // ------------------------------------------------------------------ commitOffer

    function test_commitOffer_reverts_for_an_unknown_round() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
        vm.prank(provider1);
        market.commitOffer(9, SALT, "");
    }

    function test_commitOffer_reverts_after_gate_closure() public {
        _toGateClosure(roundId);
        uint256 gate = _config().gateClosure;
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.TooLate.selector, roundId, gate, gate));
        _commitOffer(provider1, SALT);
    }

    function test_commitOffer_reverts_in_an_open_round() public {
        uint256 openId = _createRound();
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.WrongSealMode.selector, openId, 0));
        vm.prank(provider1);
        market.commitOffer(openId, SALT, "");
    }

    function test_commitOffer_reverts_for_a_zero_commitment() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownCommitment.selector, roundId, bytes32(0)));
        _commitOffer(provider1, bytes32(0));
    }

    function test_commitOffer_reverts_for_an_unregistered_account() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, unregistered, registry.PROVIDER_ROLE()));
        _commitOffer(unregistered, SALT);
    }

    function test_commitOffer_reverts_for_a_repeated_commitment() public {
        _commitOffer(provider1, SALT);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.CommitmentExists.selector, roundId, SALT));
        _commitOffer(provider2, SALT);
    }

    function test_commitOffer_pulls_one_deposit_per_commitment_and_emits_the_ciphertext() public {
        uint256 encId = _createRound(_sealedConfig(FlexTypes.SEAL_ENCRYPTED));
        vm.expectEmit(true, true, true, true, address(market));
        emit IFlexMarketEvents.OfferCommitted(encId, SALT, provider1, 10e6, hex"c1c2");
        vm.prank(provider1);
        market.commitOffer(encId, SALT, hex"c1c2");
        vm.prank(provider1);
        market.commitOffer(encId, keccak256("second"), hex"c3");
        assertEq(market.depositOf(encId, provider1), 20e6, "two deposits");
        (address p, bool closed) = market.commitmentInfo(encId, SALT);
        assertEq(p, provider1, "provider");
        assertFalse(closed, "open");
    }

    // ------------------------------------------------------------------ revealOffers

    function test_revealOffers_reverts_for_an_empty_batch_or_length_mismatch() public {
        vm.expectRevert(IFlexMarketEvents.EmptyBatch.selector);
        market.revealOffers(new FlexTypes.FlexOffer[](0), new bytes[](0), new bytes32[](0));
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.LengthMismatch.selector, 1, 0));
        market.revealOffers(new FlexTypes.FlexOffer[](1), new bytes[](0), new bytes32[](1));
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.LengthMismatch.selector, 1, 2));
        market.revealOffers(new FlexTypes.FlexOffer[](1), new bytes[](1), new bytes32[](2));
    }

    function test_revealOffers_reverts_in_an_open_round() public {
        uint256 openId = _createRound();
        _revealExpect(PK1, _offer(PK1, openId, 0), SALT, abi.encodeWithSelector(IFlexMarketEvents.WrongSealMode.selector, openId, 0));
    }

    function test_revealOffers_reverts_before_gate_closure() public {
        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        _commitOffer(provider1, _commitment(o, SALT));
        _revealExpect(PK1, o, SALT, abi.encodeWithSelector(IFlexMarketEvents.TooEarly.selector, roundId, _config().gateClosure, block.timestamp));
    }

    function test_revealOffers_reverts_after_the_reveal_window() public {
        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        _commitOffer(provider1, _commitment(o, SALT));
        (uint256 revealEnd,,,) = _deadlines(roundId);
        vm.warp(revealEnd);
        _revealExpect(PK1, o, SALT, abi.encodeWithSelector(IFlexMarketEvents.TooLate.selector, roundId, revealEnd, revealEnd));
    }

    function test_revealOffers_reverts_in_a_cancelled_round() public {
        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        vm.prank(operator);
        market.cancelRound(roundId);
        _toGateClosure(roundId);
        _revealExpect(PK1, o, SALT, abi.encodeWithSelector(IFlexMarketEvents.WrongRoundState.selector, roundId, FlexTypes.RoundState.CANCELLED));
    }

    function test_revealOffers_reverts_for_a_wrong_salt() public {
        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        _commitOffer(provider1, _commitment(o, SALT));
        _toGateClosure(roundId);
        bytes32 wrong = _commitment(o, keccak256("wrong"));
        _revealExpect(PK1, o, keccak256("wrong"), abi.encodeWithSelector(IFlexMarketEvents.UnknownCommitment.selector, roundId, wrong));
    }

    function test_revealOffers_reverts_for_a_second_reveal() public {
        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        bytes32 c = _commitment(o, SALT);
        _commitOffer(provider1, c);
        _toGateClosure(roundId);
        _reveal(PK1, o, SALT);
        _revealExpect(PK1, o, SALT, abi.encodeWithSelector(IFlexMarketEvents.CommitmentClosed.selector, roundId, c));
    }

    function test_revealOffers_reverts_for_an_invalid_or_unsigned_offer() public {
        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        o.priceMicroPerMwh = 500e6 + 1;
        _commitOffer(provider1, _commitment(o, SALT));
        FlexTypes.FlexOffer memory p = _offer(PK1, roundId, 1);
        _commitOffer(provider1, _commitment(p, SALT));
        _toGateClosure(roundId);
        _revealExpect(PK1, o, SALT, abi.encodeWithSelector(IFlexMarketEvents.InvalidOrder.selector, market.hashOffer(o), "priceMicroPerMwh", 500e6 + 1));
        FlexTypes.FlexOffer[] memory offers = new FlexTypes.FlexOffer[](1);
        offers[0] = p;
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = _signOffer(PK2, p);
        bytes32[] memory salts = new bytes32[](1);
        salts[0] = SALT;
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.InvalidSignature.selector, market.hashOffer(p), provider1));
        market.revealOffers(offers, sigs, salts);
    }

    function test_revealOffers_accepts_closes_the_commitment_and_emits_both_events() public {
        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        bytes32 c = _commitment(o, SALT);
        _commitOffer(provider1, c);
        _toGateClosure(roundId);
        bytes32 h = market.hashOffer(o);
        vm.expectEmit(true, true, true, true, address(market));
        emit IFlexMarketEvents.OfferRevealed(roundId, c, h);
        vm.expectEmit(true, true, true, true, address(market));
        emit IFlexMarketEvents.FlexOfferSubmitted(roundId, h, provider1, o);
        _reveal(PK1, o, SALT);
        (, bool closed) = market.commitmentInfo(roundId, c);
        assertTrue(closed, "closed");
        assertEq(market.roundStatus(roundId).orderAccumulator, keccak256(abi.encode(bytes32(roundId), h)), "folded");
    }

    // ------------------------------------------------------------------ forfeitCommitment

    function test_forfeitCommitment_reverts_for_an_unknown_round() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
        market.forfeitCommitment(9, SALT);
    }

    function test_forfeitCommitment_reverts_outside_commit_reveal_rounds() public {
        uint256 openId = _createRound();
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.WrongSealMode.selector, openId, 0));
        market.forfeitCommitment(openId, SALT);
        uint256 encId = _createRound(_sealedConfig(FlexTypes.SEAL_ENCRYPTED));
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.WrongSealMode.selector, encId, 2));
        market.forfeitCommitment(encId, SALT);
    }

    function test_forfeitCommitment_reverts_in_a_cancelled_round() public {
        _commitOffer(provider1, SALT);
        vm.prank(operator);
        market.cancelRound(roundId);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.WrongRoundState.selector, roundId, FlexTypes.RoundState.CANCELLED));
        market.forfeitCommitment(roundId, SALT);
    }

    function test_forfeitCommitment_reverts_before_the_reveal_window_ends() public {
        _commitOffer(provider1, SALT);
        (uint256 revealEnd,,,) = _deadlines(roundId);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.TooEarly.selector, roundId, revealEnd, block.timestamp));
        market.forfeitCommitment(roundId, SALT);
    }

    function test_forfeitCommitment_reverts_for_an_unknown_commitment() public {
        _toClearing(roundId);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownCommitment.selector, roundId, SALT));
        market.forfeitCommitment(roundId, SALT);
    }

    function test_forfeitCommitment_reverts_for_a_revealed_commitment() public {
        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        bytes32 c = _commitment(o, SALT);
        _commitOffer(provider1, c);
        _toGateClosure(roundId);
        _reveal(PK1, o, SALT);
        _toClearing(roundId);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.CommitmentClosed.selector, roundId, c));
        market.forfeitCommitment(roundId, c);
    }

    function test_forfeitCommitment_moves_the_deposit_to_the_dso_once() public {
        _commitOffer(provider1, SALT);
        _toClearing(roundId);
        vm.expectEmit(true, true, true, true, address(market));
        emit IFlexMarketEvents.CommitmentForfeited(roundId, SALT, provider1, dso, 10e6);
        vm.prank(outsider);
        market.forfeitCommitment(roundId, SALT);
        assertEq(market.depositOf(roundId, provider1), 0, "deposit gone");
        assertEq(market.balanceOf(dso), 10e6, "to the DSO");
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.CommitmentClosed.selector, roundId, SALT));
        market.forfeitCommitment(roundId, SALT);
    }
}
