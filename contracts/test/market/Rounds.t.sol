// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "../utils/Fixture.sol";
import {FlexTypes} from "../../src/libraries/FlexTypes.sol";
import {IFlexMarketEvents} from "../../src/interfaces/IFlexMarketEvents.sol";
import {IFlexRegistry} from "../../src/interfaces/IFlexRegistry.sol";
import {FlexMarket} from "../../src/FlexMarket.sol";
import {FlexMarketSettlement} from "../../src/FlexMarketSettlement.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @notice Follows constructor.tree, createRound.tree, pause.tree and module.tree in this folder.
contract RoundsTest is Fixture {
    bytes32 internal OPERATOR_ROLE;

    function setUp() public override {
        super.setUp();
        OPERATOR_ROLE = registry.OPERATOR_ROLE();
    }

    function _invalid(string memory field, uint256 value) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IFlexMarketEvents.InvalidRoundConfig.selector, field, value);
    }

    function _expectCreateReverts(FlexTypes.RoundConfig memory c, bytes memory err) internal {
        vm.expectRevert(err);
        vm.prank(operator);
        market.createRound(c);
    }

    // ------------------------------------------------------------------ constructor

    function test_constructor_reverts_for_a_zero_registry() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.MarketZeroAddress.selector, "registry"));
        new FlexMarket(IFlexRegistry(address(0)), IERC20(address(token)));
    }

    function test_constructor_reverts_for_a_zero_token() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.MarketZeroAddress.selector, "token"));
        new FlexMarket(IFlexRegistry(address(registry)), IERC20(address(0)));
    }

    function test_constructor_wires_registry_token_module_and_domain() public view {
        assertEq(address(market.registry()), address(registry), "registry");
        assertEq(address(market.token()), address(token), "token");
        assertTrue(market.settlementModule().code.length > 0, "module deployed");
        bytes32 expected = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("FlexGrid"),
                keccak256("1"),
                block.chainid,
                address(market)
            )
        );
        assertEq(market.domainSeparator(), expected, "EIP-712 domain of the market");
    }

    // ------------------------------------------------------------------ module

    function test_module_reverts_when_called_directly() public {
        FlexMarketSettlement module = FlexMarketSettlement(market.settlementModule());
        vm.expectRevert(IFlexMarketEvents.DirectCallToModule.selector);
        module.closeRound(1);
    }

    function test_market_rejects_ether_with_calldata_and_without() public {
        vm.deal(outsider, 1 ether);
        vm.prank(outsider);
        (bool ok,) = address(market).call{value: 1 ether}(abi.encodeWithSignature("closeRound(uint256)", 1));
        assertFalse(ok, "payable fallback must not accept ether into a module function");
        vm.prank(outsider);
        (ok,) = address(market).call{value: 1 ether}("");
        assertFalse(ok, "plain transfers revert");
        assertEq(address(market).balance, 0, "no ether held");
    }

    function test_module_views_use_the_markets_domain() public {
        uint256 roundId = _createRound();
        FlexTypes.FlexOffer[] memory offers = new FlexTypes.FlexOffer[](2);
        offers[0] = _offer(PK1, roundId, 0);
        offers[1] = _offer(PK2, roundId, 0);
        bytes32[] memory hashes = market.hashOffers(offers);
        assertEq(hashes[0], market.hashOffer(offers[0]), "offer 0");
        assertEq(hashes[1], market.hashOffer(offers[1]), "offer 1");
        FlexTypes.P2POrder[] memory orders = new FlexTypes.P2POrder[](1);
        orders[0] = _p2p(PK1, roundId, 0, 0);
        assertEq(market.hashP2POrders(orders)[0], market.hashP2POrder(orders[0]), "p2p");
    }

    // ------------------------------------------------------------------ createRound

    function test_createRound_reverts_when_paused() public {
        vm.prank(operator);
        market.pause();
        _expectCreateReverts(_config(), abi.encodeWithSelector(Pausable.EnforcedPause.selector));
    }

    function test_createRound_reverts_when_caller_is_not_operator() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, dso, OPERATOR_ROLE));
        vm.prank(dso);
        market.createRound(_config());
    }

    function test_createRound_reverts_for_each_invalid_field() public {
        FlexTypes.RoundConfig memory c;
        c = _config(); c.gridId = bytes32(0);
        _expectCreateReverts(c, _invalid("gridId", 0));
        c = _config(); c.gridId = keccak256("no dso");
        _expectCreateReverts(c, _invalid("dso", 0));
        c = _config(); c.slotSeconds = 0;
        _expectCreateReverts(c, _invalid("slotSeconds", 0));
        c = _config(); c.slotCount = 0;
        _expectCreateReverts(c, _invalid("slotCount", 0));
        c = _config(); c.gateClosure = uint64(block.timestamp);
        _expectCreateReverts(c, _invalid("gateClosure", block.timestamp));
        c = _config(); c.slotStart = c.gateClosure - 1;
        _expectCreateReverts(c, _invalid("slotStart", c.slotStart));
        c = _config(); c.pricingRule = 4;
        _expectCreateReverts(c, _invalid("pricingRule", 4));
        c = _config(); c.sealMode = 3;
        _expectCreateReverts(c, _invalid("sealMode", 3));
        c = _config(); c.sealMode = FlexTypes.SEAL_COMMIT_REVEAL;
        _expectCreateReverts(c, _invalid("revealSeconds", 0));
        c = _sealedConfig(FlexTypes.SEAL_ENCRYPTED); c.encryptionKey = bytes32(0);
        _expectCreateReverts(c, _invalid("encryptionKey", 0));
        c = _config(); c.clearingSeconds = 0;
        _expectCreateReverts(c, _invalid("clearingSeconds", 0));
        c = _config(); c.settlementSeconds = 0;
        _expectCreateReverts(c, _invalid("settlementSeconds", 0));
        c = _config(); c.priceCapMicroPerMwh = 0;
        _expectCreateReverts(c, _invalid("priceCapMicroPerMwh", 0));
        c = _config(); c.toleranceBps = 10_001;
        _expectCreateReverts(c, _invalid("toleranceBps", 10_001));
        c = _config(); c.penaltyBps = 10_001;
        _expectCreateReverts(c, _invalid("penaltyBps", 10_001));
        c = _config(); c.bidDeposit = uint128(type(uint64).max) + 1;
        _expectCreateReverts(c, _invalid("bidDeposit", uint256(type(uint64).max) + 1));
        c = _config(); c.oracleQuorum = 0;
        _expectCreateReverts(c, _invalid("oracleQuorum", 0));
        c = _config(); c.oracleQuorum = 4;
        _expectCreateReverts(c, _invalid("oracleQuorum", 4));
    }

    function test_createRound_stores_the_config_opens_and_emits() public {
        FlexTypes.RoundConfig memory c = _config();
        vm.expectEmit(true, true, false, true, address(market));
        emit IFlexMarketEvents.RoundCreated(1, GRID, c);
        uint256 roundId = _createRound(c);
        assertEq(roundId, 1, "first id");
        assertEq(market.roundCount(), 1, "count");
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.OPEN), "open");
        assertEq(keccak256(abi.encode(market.roundConfig(roundId))), keccak256(abi.encode(c)), "config round-trips");
        FlexTypes.RoundStatus memory st = market.roundStatus(roundId);
        assertEq(st.orderAccumulator, bytes32(roundId), "accumulator starts at bytes32(roundId)");
        assertEq(st.dso, dso, "DSO of the grid at creation");
        (uint256 revealEnd, uint256 commitDeadline, uint256 disputeDeadline, uint256 meteringDeadline, uint256 claimDeadline) =
            market.deadlines(roundId);
        assertEq(revealEnd, c.gateClosure, "open round: no reveal window");
        assertEq(commitDeadline, c.gateClosure + c.clearingSeconds, "commit deadline");
        assertEq(disputeDeadline, 0, "no commit yet");
        assertEq(meteringDeadline, c.slotStart + 4 * 900 + c.settlementSeconds, "metering deadline");
        assertEq(claimDeadline, c.slotStart + 4 * 900 + 2 * uint256(c.settlementSeconds), "claim deadline");
    }

    function test_round_state_is_closed_at_gate_closure() public {
        uint256 roundId = _createRound();
        vm.warp(_config().gateClosure - 1);
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.OPEN), "open before");
        vm.warp(_config().gateClosure);
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.CLOSED), "closed at");
    }

    function test_views_of_an_unknown_round() public {
        assertEq(_state(9), uint256(FlexTypes.RoundState.NONE), "none");
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.UnknownRound.selector, 9));
        market.roundConfig(9);
    }

    // ------------------------------------------------------------------ pause

    function test_pause_reverts_when_caller_is_not_operator() public {
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, outsider, OPERATOR_ROLE));
        vm.prank(outsider);
        market.pause();
    }

    function test_unpause_reverts_when_caller_is_not_operator() public {
        vm.prank(operator);
        market.pause();
        vm.expectRevert(abi.encodeWithSelector(IFlexMarketEvents.Unauthorized.selector, outsider, OPERATOR_ROLE));
        vm.prank(outsider);
        market.unpause();
    }

    function test_unpause_reverts_when_not_paused() public {
        vm.expectRevert(Pausable.ExpectedPause.selector);
        vm.prank(operator);
        market.unpause();
    }

    function test_pause_blocks_intake_and_clearing_but_not_withdraw() public {
        uint256 roundId = _createRound();
        _deposit(provider1, roundId);
        vm.prank(operator);
        market.pause();
        bytes memory paused = abi.encodeWithSelector(Pausable.EnforcedPause.selector);

        FlexTypes.FlexRequest memory q = _requestStruct(roundId, 1000, 100e6);
        vm.expectRevert(paused);
        vm.prank(dso);
        market.submitRequest(q);

        FlexTypes.FlexOffer memory o = _offer(PK1, roundId, 0);
        bytes memory sig = _signOffer(PK1, o);
        vm.expectRevert(paused);
        market.submitOffer(o, sig);

        vm.expectRevert(paused);
        vm.prank(provider2);
        market.depositBid(roundId);

        _toClearing(roundId);
        vm.expectRevert(paused);
        vm.prank(oracle);
        market.commitClearing(roundId, _result(keccak256("r"), 0));

        vm.prank(operator);
        market.unpause();
        vm.prank(oracle);
        market.commitClearing(roundId, _result(keccak256("r"), 0));
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.COMMITTED), "works again after unpause");
    }
}
