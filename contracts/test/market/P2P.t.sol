// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "../utils/Fixture.sol";
import {FlexTypes} from "../../src/libraries/FlexTypes.sol";
import {IFlexMarketEvents} from "../../src/interfaces/IFlexMarketEvents.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

/// @notice Follows submitP2POrders.tree.
contract P2PTest is Fixture {
    uint256 internal roundId;

    function setUp() public override {
        super.setUp();
        roundId = _createRound();
    }

    function _expectP2PReverts(uint256 pk, FlexTypes.P2POrder memory o, bytes memory err) internal {
        FlexTypes.P2POrder[] memory orders = new FlexTypes.P2POrder[](1);
        orders[0] = o;
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = _sign(pk, market.hashP2POrder(o));
        vm.expectRevert(err);
        market.submitP2POrders(orders, sigs);
    }

    function test_submitP2POrders_reverts_when_paused() public {
        FlexTypes.P2POrder memory o = _p2p(PK1, roundId, 0, 0);
        vm.prank(operator);
        market.pause();
        _expectP2PReverts(PK1, o, abi.encodeWithSelector(Pausable.EnforcedPause.selector));
    }

    function test_submitP2POrders_reverts_for_an_empty_batch_or_length_mismatch() public {
        vm.expectRevert(IFlexMarketEvents.EmptyBatch.selector);
        market.submitP2POrders(new FlexTypes.P2POrder[](0), new bytes[](0));
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.LengthMismatch.selector, 1, 2));
        market.submitP2POrders(new FlexTypes.P2POrder[](1), new bytes[](2));
    }

    function test_submitP2POrders_reverts_for_an_unknown_round() public {
        _expectP2PReverts(PK1, _p2p(PK1, 9, 0, 0), abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
    }

    function test_submitP2POrders_reverts_after_gate_closure() public {
        FlexTypes.P2POrder memory o = _p2p(PK1, roundId, 0, 0);
        _toGateClosure(roundId);
        uint256 gate = _config().gateClosure;
        _expectP2PReverts(PK1, o, abi.encodeWithSelector(IFlexMarketEvents.TooLate.selector, roundId, gate, gate));
    }

    function test_submitP2POrders_reverts_for_each_invalid_field() public {
        bytes4 sel = IFlexMarketEvents.InvalidOrder.selector;
        FlexTypes.P2POrder memory o;
        o = _p2p(PK1, roundId, 2, 0);
        _expectP2PReverts(PK1, o, abi.encodeWithSelector(sel, market.hashP2POrder(o), "side", 2));
        o = _p2p(PK1, roundId, 0, 0); o.slot = 4;
        _expectP2PReverts(PK1, o, abi.encodeWithSelector(sel, market.hashP2POrder(o), "slot", 4));
        o = _p2p(PK1, roundId, 0, 0); o.powerW = 0;
        _expectP2PReverts(PK1, o, abi.encodeWithSelector(sel, market.hashP2POrder(o), "powerW", 0));
        o = _p2p(PK1, roundId, 0, 0); o.limitPriceMicroPerMwh = 500e6 + 1;
        _expectP2PReverts(PK1, o, abi.encodeWithSelector(sel, market.hashP2POrder(o), "limitPriceMicroPerMwh", 500e6 + 1));
    }

    function test_submitP2POrders_reverts_when_expired() public {
        FlexTypes.P2POrder memory o = _p2p(PK1, roundId, 0, 0);
        o.expiry = uint64(block.timestamp - 1);
        _expectP2PReverts(
            PK1, o, abi.encodeWithSelector(IFlexMarketEvents.OrderExpired.selector, market.hashP2POrder(o), o.expiry, block.timestamp)
        );
    }

    function test_submitP2POrders_reverts_for_an_unregistered_trader() public {
        _expectP2PReverts(
            PK_UNREGISTERED,
            _p2p(PK_UNREGISTERED, roundId, 0, 0),
            abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, unregistered, registry.PROVIDER_ROLE())
        );
    }

    function test_submitP2POrders_reverts_for_another_signer() public {
        FlexTypes.P2POrder memory o = _p2p(PK1, roundId, 0, 0);
        _expectP2PReverts(PK2, o, abi.encodeWithSelector(IFlexMarketEvents.InvalidSignature.selector, market.hashP2POrder(o), provider1));
    }

    function test_submitP2POrders_reverts_for_a_replayed_nonce() public {
        FlexTypes.P2POrder memory o = _p2p(PK1, roundId, 1, 0);
        _submitP2P(PK1, o);
        _expectP2PReverts(PK1, o, abi.encodeWithSelector(Nonces.InvalidAccountNonce.selector, provider1, (roundId << 64) | 1));
    }

    function test_submitP2POrders_escrows_buys_not_sells_and_emits() public {
        FlexTypes.P2POrder memory buy = _p2p(PK1, roundId, FlexTypes.SIDE_BUY, 0);
        FlexTypes.P2POrder memory sell = _p2p(PK2, roundId, FlexTypes.SIDE_SELL, 0);
        uint256 value = 1_250_000; // 50 kW x 900 s x 100 EUR/MWh / 3.6e9 = 1.25 EUR
        vm.expectEmit(true, true, true, true, address(market));
        emit IFlexMarketEvents.P2POrderSubmitted(roundId, market.hashP2POrder(buy), provider1, buy, value);
        _submitP2P(PK1, buy);
        _submitP2P(PK2, sell);
        (uint256 escrow,) = market.escrowOf(roundId, provider1);
        assertEq(escrow, value, "buy escrowed");
        (uint256 sellEscrow,) = market.escrowOf(roundId, provider2);
        assertEq(sellEscrow, 0, "sell escrows nothing");
        assertEq(token.balanceOf(address(market)), value, "held");
        FlexTypes.RoundStatus memory st = market.roundStatus(roundId);
        assertEq(st.pot, value, "pot");
        assertEq(st.orderCount, 2, "two orders");
    }

    function test_submitP2POrders_accepted_in_sealed_rounds_too() public {
        uint256 sealedId = _createRound(_sealedConfig(FlexTypes.SEAL_COMMIT_REVEAL));
        _submitP2P(PK2, _p2p(PK2, sealedId, FlexTypes.SIDE_SELL, 0));
        assertEq(market.roundStatus(sealedId).orderCount, 1, "P2P orders are open in every seal mode");
    }
}
