// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "../utils/Fixture.sol";
import {FlexTypes} from "../../src/libraries/FlexTypes.sol";
import {IFlexMarketEvents} from "../../src/interfaces/IFlexMarketEvents.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

/// @notice A contract account (ERC-1271) whose owner key signs for it.
contract Wallet1271 is IERC1271 {
    address internal immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        return ECDSA.recover(hash, signature) == owner ? IERC1271.isValidSignature.selector : bytes4(0xffffffff);
    }
}

/// @notice Follows submitRequest.tree, depositBid.tree, submitOffer.tree and submitOffers.tree.
contract IntakeTest is Fixture {
    uint256 internal roundId;

    function setUp() public override {
        super.setUp();
        roundId = _createRound();
    }

    function _err(bytes4 sel, bytes memory args) internal pure returns (bytes memory) {
        return bytes.concat(sel, args);
    }

    // ------------------------------------------------------------------ submitRequest

    function _expectRequestReverts(FlexTypes.FlexRequest memory q, bytes memory err) internal {
        vm.expectRevert(err);
        vm.prank(dso);
        market.submitRequest(q);
    }

    function test_submitRequest_reverts_for_an_unknown_round() public {
        _expectRequestReverts(_requestStruct(9, 1000, 100e6), abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
    }

    function test_submitRequest_reverts_when_caller_is_not_the_rounds_dso() public {
        FlexTypes.FlexRequest memory q = _requestStruct(roundId, 1000, 100e6);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, otherDso, keccak256("DSO")));
        vm.prank(otherDso);
        market.submitRequest(q);
    }

    function test_submitRequest_reverts_at_gate_closure() public {
        _toGateClosure(roundId);
        uint256 gate = _config().gateClosure;
        _expectRequestReverts(
            _requestStruct(roundId, 1000, 100e6), abi.encodeWithSelector(IFlexMarketEvents.TooLate.selector, roundId, gate, gate)
        );
    }

    function test_submitRequest_reverts_in_a_cancelled_round() public {
        vm.prank(operator);
        market.cancelRound(roundId);
        _expectRequestReverts(
            _requestStruct(roundId, 1000, 100e6),
            abi.encodeWithSelector(IFlexMarketEvents.WrongRoundState.selector, roundId, FlexTypes.RoundState.CANCELLED)
        );
    }

    function test_submitRequest_reverts_for_each_invalid_field() public {
        bytes4 sel = IFlexMarketEvents.InvalidRequest.selector;
        FlexTypes.FlexRequest memory q;
        q = _requestStruct(roundId, 1000, 100e6); q.slots = new uint16[](0);
        _expectRequestReverts(q, abi.encodeWithSelector(sel, "slots", 0));
        q = _requestStruct(roundId, 1000, 100e6); q.powerW = new uint64[](1); q.powerW[0] = 1;
        _expectRequestReverts(q, abi.encodeWithSelector(sel, "powerW", 1));
        q = _requestStruct(roundId, 1000, 100e6); q.direction = 2;
        _expectRequestReverts(q, abi.encodeWithSelector(sel, "direction", 2));
        q = _requestStruct(roundId, 1000, 0);
        _expectRequestReverts(q, abi.encodeWithSelector(sel, "priceCapMicroPerMwh", 0));
        q = _requestStruct(roundId, 1000, 500e6 + 1);
        _expectRequestReverts(q, abi.encodeWithSelector(sel, "priceCapMicroPerMwh", 500e6 + 1));
        q = _requestStruct(roundId, 1000, 100e6); q.slots[1] = 4;
        _expectRequestReverts(q, abi.encodeWithSelector(sel, "slots", 4));
        q = _requestStruct(roundId, 1000, 100e6); q.slots[0] = 1;
        _expectRequestReverts(q, abi.encodeWithSelector(sel, "slots", 1));
        q = _requestStruct(roundId, 1000, 100e6); q.powerW[1] = 0;
        _expectRequestReverts(q, abi.encodeWithSelector(sel, "powerW", 0));
    }

    function test_submitRequest_reverts_without_allowance() public {
        vm.prank(dso);
        token.approve(address(market), 0);
        _expectRequestReverts(
            _requestStruct(roundId, 200_000, 300e6),
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, 30e6)
        );
    }

    function test_submitRequest_escrows_the_budget_rounded_up_and_emits() public {
        FlexTypes.FlexRequest memory q = _requestStruct(roundId, 1, 1); // 2 W x 900 s x 1 micro / 3.6e9 -> 1
        vm.expectEmit(true, true, true, true, address(market));
        emit IFlexMarketEvents.FlexRequestSubmitted(roundId, 1, dso, q, 1);
        vm.prank(dso);
        uint256 id = market.submitRequest(q);
        assertEq(id, 1, "request id");
        (uint256 escrow,) = market.escrowOf(roundId, dso);
        assertEq(escrow, 1, "a value below one micro-unit still escrows one (rounded up)");
        FlexTypes.RoundStatus memory st = market.roundStatus(roundId);
        assertEq(st.pot, 1, "pot");
        assertEq(st.orderCount, 1, "one order");
        assertEq(st.orderAccumulator, keccak256(abi.encode(bytes32(roundId), bytes32(id))), "accumulator");
        assertEq(token.balanceOf(address(market)), 1, "tokens held");
    }

    // ------------------------------------------------------------------ depositBid

    function test_depositBid_reverts_for_an_unknown_round() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
        vm.prank(provider1);
        market.depositBid(9);
    }

    function test_depositBid_reverts_after_gate_closure() public {
        _toGateClosure(roundId);
        uint256 gate = _config().gateClosure;
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.TooLate.selector, roundId, gate, gate));
        vm.prank(provider1);
        market.depositBid(roundId);
    }

    function test_depositBid_reverts_in_a_sealed_round() public {
        uint256 sealedId = _createRound(_sealedConfig(FlexTypes.SEAL_COMMIT_REVEAL));
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.WrongSealMode.selector, sealedId, 1));
        vm.prank(provider1);
        market.depositBid(sealedId);
    }

    function test_depositBid_reverts_when_the_round_has_no_deposit() public {
        FlexTypes.RoundConfig memory c = _config();
        c.bidDeposit = 0;
        uint256 id = _createRound(c);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.ZeroValue.selector, "bidDeposit"));
        vm.prank(provider1);
        market.depositBid(id);
    }

    function test_depositBid_reverts_for_an_unregistered_account() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, unregistered, registry.PROVIDER_ROLE()));
        vm.prank(unregistered);
        market.depositBid(roundId);
    }

    function test_depositBid_reverts_when_already_deposited() public {
        _deposit(provider1, roundId);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.AlreadyDeposited.selector, roundId, provider1));
        vm.prank(provider1);
        market.depositBid(roundId);
    }

    function test_depositBid_pulls_the_deposit_and_emits() public {
        vm.expectEmit(true, true, false, true, address(market));
        emit IFlexMarketEvents.BidDeposited(roundId, provider1, 10e6);
        _deposit(provider1, roundId);
        assertEq(market.depositOf(roundId, provider1), 10e6, "deposit");
        assertEq(token.balanceOf(provider1), MINT - 10e6, "paid");
    }

    // ------------------------------------------------------------------ submitOffer

    function _expectOfferReverts(uint256 pk, FlexTypes.FlexOffer memory o, bytes memory err) internal {
        bytes memory sig = _signOffer(pk, o);
        vm.expectRevert(err);
        vm.prank(relayer);
        market.submitOffer(o, sig);
    }

    function test_submitOffer_reverts_for_an_unknown_round() public {
        FlexTypes.FlexOffer memory o = _offer(PK1, 9, 0);
        _expectOfferReverts(PK1, o, abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
    }

    function test_submitOffer_reverts_after_gate_closure() public {
        _deposit(provider1, roundId);
        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        _toGateClosure(roundId);
        uint256 gate = _config().gateClosure;
        _expectOfferReverts(PK1, o, abi.encodeWithSelector(IFlexMarketEvents.TooLate.selector, roundId, gate, gate));
    }

    function test_submitOffer_reverts_in_a_sealed_round() public {
        uint256 sealedId = _createRound(_sealedConfig(FlexTypes.SEAL_COMMIT_REVEAL));
        _expectOfferReverts(PK1, _offer(PK1, sealedId, 0), abi.encodeWithSelector(IFlexMarketEvents.WrongSealMode.selector, sealedId, 1));
    }

    function test_submitOffer_reverts_for_each_invalid_field() public {
        _deposit(provider1, roundId);
        bytes4 sel = IFlexMarketEvents.InvalidOrder.selector;
        FlexTypes.FlexOffer memory o;
        o = _offer(PK1, roundId, 0); o.slots = new uint16[](0);
        _expectOfferReverts(PK1, o, abi.encodeWithSelector(sel, market.hashOffer(o), "slots", 0));
        o = _offer(PK1, roundId, 0); o.minPowerW = new uint64[](1);
        _expectOfferReverts(PK1, o, abi.encodeWithSelector(sel, market.hashOffer(o), "minPowerW", 1));
        o = _offer(PK1, roundId, 0); o.maxPowerW = new uint64[](3);
        _expectOfferReverts(PK1, o, abi.encodeWithSelector(sel, market.hashOffer(o), "maxPowerW", 3));
        o = _offer(PK1, roundId, 0); o.direction = 2;
        _expectOfferReverts(PK1, o, abi.encodeWithSelector(sel, market.hashOffer(o), "direction", 2));
        o = _offer(PK1, roundId, 0); o.priceMicroPerMwh = 500e6 + 1;
        _expectOfferReverts(PK1, o, abi.encodeWithSelector(sel, market.hashOffer(o), "priceMicroPerMwh", 500e6 + 1));
        o = _offer(PK1, roundId, 0); o.minActivationBps = 10_001;
        _expectOfferReverts(PK1, o, abi.encodeWithSelector(sel, market.hashOffer(o), "minActivationBps", 10_001));
        o = _offer(PK1, roundId, 0); o.slots[1] = 4;
        _expectOfferReverts(PK1, o, abi.encodeWithSelector(sel, market.hashOffer(o), "slots", 4));
        o = _offer(PK1, roundId, 0); o.slots[1] = 0;
        _expectOfferReverts(PK1, o, abi.encodeWithSelector(sel, market.hashOffer(o), "slots", 0));
        o = _offer(PK1, roundId, 0); o.maxPowerW[0] = 0;
        _expectOfferReverts(PK1, o, abi.encodeWithSelector(sel, market.hashOffer(o), "maxPowerW", 0));
        o = _offer(PK1, roundId, 0); o.minPowerW[1] = 100_001;
        _expectOfferReverts(PK1, o, abi.encodeWithSelector(sel, market.hashOffer(o), "minPowerW", 100_001));
    }

    function test_submitOffer_reverts_when_expired() public {
        _deposit(provider1, roundId);
        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        o.expiry = uint64(block.timestamp - 1);
        _expectOfferReverts(
            PK1, o, abi.encodeWithSelector(IFlexMarketEvents.OrderExpired.selector, market.hashOffer(o), o.expiry, block.timestamp)
        );
    }

    function test_submitOffer_reverts_for_an_unregistered_provider() public {
        _expectOfferReverts(
            PK_UNREGISTERED,
            _offer(PK_UNREGISTERED, roundId, 0),
            abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, unregistered, registry.PROVIDER_ROLE())
        );
    }

    function test_submitOffer_reverts_without_the_deposit() public {
        _expectOfferReverts(
            PK1, _offer(PK1, roundId, 0), abi.encodeWithSelector(IFlexMarketEvents.MissingDeposit.selector, roundId, provider1, 0, 10e6)
        );
    }

    function test_submitOffer_reverts_for_another_signer() public {
        _deposit(provider1, roundId);
        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        bytes memory sig = _signOffer(PK2, o);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.InvalidSignature.selector, market.hashOffer(o), provider1));
        market.submitOffer(o, sig);
    }

    function test_submitOffer_reverts_for_a_replayed_or_skipped_nonce() public {
        _deposit(provider1, roundId);
        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        _submit(PK1, o);
        uint256 next = (roundId << 64) | 1;
        _expectOfferReverts(PK1, o, abi.encodeWithSelector(Nonces.InvalidAccountNonce.selector, provider1, next));
        FlexTypes.FlexOffer memory skipped = _offer(PK1, roundId, 2);
        _expectOfferReverts(PK1, skipped, abi.encodeWithSelector(Nonces.InvalidAccountNonce.selector, provider1, next));
    }

    function test_submitOffer_accepts_emits_and_folds_the_hash() public {
        _deposit(provider1, roundId);
        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        bytes32 h = market.hashOffer(o);
        vm.expectEmit(true, true, true, true, address(market));
        emit IFlexMarketEvents.FlexOfferSubmitted(roundId, h, provider1, o);
        assertEq(_submit(PK1, o), h, "returns the order hash");
        FlexTypes.RoundStatus memory st = market.roundStatus(roundId);
        assertEq(st.orderAccumulator, keccak256(abi.encode(bytes32(roundId), h)), "accumulator");
        assertEq(st.orderCount, 1, "count");
        assertEq(NoncesView(address(market)).nonces(provider1, uint192(roundId)), (roundId << 64) | 1, "nonce used");
    }

    function test_submitOffer_nonce_keys_of_different_rounds_are_independent() public {
        uint256 other = _createRound();
        _deposit(provider1, roundId);
        _deposit(provider1, other);
        _submit(PK1, _offer(PK1, other, 0));
        _submit(PK1, _offer(PK1, roundId, 0));
        assertEq(market.roundStatus(roundId).orderCount, 1, "round 1");
        assertEq(market.roundStatus(other).orderCount, 1, "round 2");
    }

    function test_submitOffer_accepts_an_erc1271_contract_account() public {
        Wallet1271 wallet = new Wallet1271(provider3);
        vm.prank(operator);
        registry.approveProvider(address(wallet), bytes32("wallet"));
        token.mint(address(wallet), 100e6);
        vm.prank(address(wallet));
        token.approve(address(market), type(uint256).max);
        _deposit(address(wallet), roundId);
        FlexTypes.FlexOffer memory o = _offer(PK3, roundId, 0);
        o.provider = address(wallet);
        bytes memory sig = _sign(PK3, market.hashOffer(o));
        market.submitOffer(o, sig);
        assertEq(market.roundStatus(roundId).orderCount, 1, "accepted");
        FlexTypes.FlexOffer memory bad = _offer(PK3, roundId, 1);
        bad.provider = address(wallet);
        bytes memory badSig = _sign(PK2, market.hashOffer(bad));
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.InvalidSignature.selector, market.hashOffer(bad), address(wallet)));
        market.submitOffer(bad, badSig);
    }

    // ------------------------------------------------------------------ submitOffers

    function test_submitOffers_reverts_for_an_empty_batch() public {
        vm.expectRevert(IFlexMarketEvents.EmptyBatch.selector);
        market.submitOffers(new FlexTypes.FlexOffer[](0), new bytes[](0));
    }

    function test_submitOffers_reverts_for_a_length_mismatch() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.LengthMismatch.selector, 1, 0));
        market.submitOffers(new FlexTypes.FlexOffer[](1), new bytes[](0));
    }

    function test_submitOffers_reverts_whole_batch_for_one_bad_offer() public {
        _deposit(provider1, roundId);
        FlexTypes.FlexOffer[] memory offers = new FlexTypes.FlexOffer[](2);
        bytes[] memory sigs = new bytes[](2);
        offers[0] = _offer(PK1, roundId, 0);
        offers[1] = _offer(PK1, roundId, 1);
        sigs[0] = _signOffer(PK1, offers[0]);
        sigs[1] = _signOffer(PK2, offers[1]);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.InvalidSignature.selector, market.hashOffer(offers[1]), provider1));
        market.submitOffers(offers, sigs);
        assertEq(market.roundStatus(roundId).orderCount, 0, "nothing accepted");
    }

    function test_submitOffers_checks_every_provider_and_round_of_a_mixed_batch() public {
        uint256 other = _createRound();
        _deposit(provider1, roundId);
        _deposit(provider2, roundId);
        _deposit(provider1, other);
        FlexTypes.FlexOffer[] memory offers = new FlexTypes.FlexOffer[](4);
        offers[0] = _offer(PK1, roundId, 0);
        offers[1] = _offer(PK1, roundId, 1);
        offers[2] = _offer(PK2, roundId, 0);
        offers[3] = _offer(PK1, other, 0);
        bytes[] memory sigs = new bytes[](4);
        sigs[0] = _signOffer(PK1, offers[0]);
        sigs[1] = _signOffer(PK1, offers[1]);
        sigs[2] = _signOffer(PK2, offers[2]);
        sigs[3] = _signOffer(PK1, offers[3]);
        market.submitOffers(offers, sigs);
        assertEq(market.roundStatus(roundId).orderCount, 3, "three in round 1");
        assertEq(market.roundStatus(other).orderCount, 1, "one in round 2");

        // the cache must not let a provider without a deposit follow one with a deposit
        FlexTypes.FlexOffer[] memory bad = new FlexTypes.FlexOffer[](2);
        bad[0] = _offer(PK1, roundId, 2);
        bad[1] = _offer(PK3, roundId, 0);
        bytes[] memory badSigs = new bytes[](2);
        badSigs[0] = _signOffer(PK1, bad[0]);
        badSigs[1] = _signOffer(PK3, bad[1]);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.MissingDeposit.selector, roundId, provider3, 0, 10e6));
        market.submitOffers(bad, badSigs);

        // nor an offer into a closed round follow one into an open round
        FlexTypes.RoundConfig memory c = _config();
        c.gateClosure = uint64(block.timestamp + 10);
        c.slotStart = c.gateClosure;
        uint256 shortRound = _createRound(c);
        _deposit(provider1, shortRound);
        FlexTypes.FlexOffer[] memory late = new FlexTypes.FlexOffer[](2);
        late[0] = _offer(PK1, roundId, 2);
        late[1] = _offer(PK1, shortRound, 0);
        bytes[] memory lateSigs = new bytes[](2);
        lateSigs[0] = _signOffer(PK1, late[0]);
        lateSigs[1] = _signOffer(PK1, late[1]);
        vm.warp(c.gateClosure);
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.TooLate.selector, shortRound, c.gateClosure, c.gateClosure));
        market.submitOffers(late, lateSigs);
    }
}

interface NoncesView {
    function nonces(address owner, uint192 key) external view returns (uint256);
}
