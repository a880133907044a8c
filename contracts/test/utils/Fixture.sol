// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./Test.sol";
import {Merkle} from "./Merkle.sol";
import {FlexToken} from "../../src/FlexToken.sol";
import {FlexRegistry} from "../../src/FlexRegistry.sol";
import {FlexMarket} from "../../src/FlexMarket.sol";
import {IFlexMarket} from "../../src/interfaces/IFlexMarket.sol";
import {IFlexMarketEvents} from "../../src/interfaces/IFlexMarketEvents.sol";
import {IFlexRegistry} from "../../src/interfaces/IFlexRegistry.sol";
import {FlexTypes} from "../../src/libraries/FlexTypes.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @notice A deployed FlexGrid (token, registry, market) with its participants and helpers to
/// create rounds, sign orders, commit results and build Merkle proofs.
abstract contract Fixture is Test {
    uint256 internal constant T0 = 1_700_000_000;
    bytes32 internal constant GRID = keccak256("grid-a");
    bytes32 internal constant OTHER_GRID = keccak256("grid-b");
    uint256 internal constant MINT = 1_000_000e6;

    FlexToken internal token;
    FlexRegistry internal registry;
    IFlexMarket internal market;

    address internal operator = address(0x0FE4A70);
    address internal dso = address(0xD50);
    address internal otherDso = address(0xD51);
    address internal meter = address(0x3E7E4);
    address internal oracle = address(0x04AC1E);
    address internal oracle2 = address(0x04AC2E);
    address internal oracle3 = address(0x04AC3E);
    address internal relayer = address(0x4E1A7);
    address internal outsider = address(0xBAD);
    address internal disputer = address(0xD15);

    uint256 internal constant PK1 = 0xA11CE;
    uint256 internal constant PK2 = 0xB0B;
    uint256 internal constant PK3 = 0xCA201;
    uint256 internal constant PK_UNREGISTERED = 0xE7E;
    address internal provider1;
    address internal provider2;
    address internal provider3;
    address internal unregistered;

    function setUp() public virtual {
        vm.warp(T0);
        provider1 = vm.addr(PK1);
        provider2 = vm.addr(PK2);
        provider3 = vm.addr(PK3);
        unregistered = vm.addr(PK_UNREGISTERED);

        token = new FlexToken(address(this));
        registry = new FlexRegistry(operator);
        market = IFlexMarket(address(new FlexMarket(IFlexRegistry(address(registry)), IERC20(address(token)))));

        vm.startPrank(operator);
        registry.grantRole(registry.ORACLE_ROLE(), oracle);
        registry.grantRole(registry.ORACLE_ROLE(), oracle2);
        registry.grantRole(registry.ORACLE_ROLE(), oracle3);
        registry.setDso(GRID, dso);
        registry.setDso(OTHER_GRID, otherDso);
        registry.approveProvider(provider1, keccak256("p1"));
        registry.approveProvider(provider2, keccak256("p2"));
        registry.approveProvider(provider3, keccak256("p3"));
        vm.stopPrank();
        vm.prank(dso);
        registry.setMeteringAgent(GRID, meter);

        address[9] memory funded = [dso, otherDso, provider1, provider2, provider3, unregistered, disputer, outsider, relayer];
        for (uint256 i; i < funded.length; ++i) {
            token.mint(funded[i], MINT);
            vm.prank(funded[i]);
            token.approve(address(market), type(uint256).max);
        }
        vm.label(address(market), "FlexMarket");
        vm.label(address(registry), "FlexRegistry");
        vm.label(address(token), "FlexToken");
    }

    // ------------------------------------------------------------------ rounds

    function _config() internal pure returns (FlexTypes.RoundConfig memory c) {
        c.gridId = GRID;
        c.gridModelHash = keccak256("case33bw");
        c.slotStart = uint64(T0 + 2 hours);
        c.gateClosure = uint64(T0 + 1 hours);
        c.slotSeconds = 900;
        c.slotCount = 4;
        c.revealSeconds = 0;
        c.clearingSeconds = 600;
        c.pricingRule = 0;
        c.sealMode = FlexTypes.SEAL_OPEN;
        c.disputeWindow = 300;
        c.settlementSeconds = 3600;
        c.priceCapMicroPerMwh = 500e6;
        c.toleranceBps = 500;
        c.penaltyBps = 2000;
        c.oracleQuorum = 1;
        c.bidDeposit = 10e6;
        c.disputeBond = 50e6;
    }

    function _sealedConfig(uint8 mode) internal pure returns (FlexTypes.RoundConfig memory c) {
        c = _config();
        c.sealMode = mode;
        c.revealSeconds = 600;
        if (mode == FlexTypes.SEAL_ENCRYPTED) c.encryptionKey = keccak256("x25519-public-key");
    }

    function _createRound(FlexTypes.RoundConfig memory c) internal returns (uint256 roundId) {
        vm.prank(operator);
        roundId = market.createRound(c);
    }

    function _createRound() internal returns (uint256) {
        return _createRound(_config());
    }

    function _deadlines(uint256 roundId)
        internal
        view
        returns (uint256 revealEnd, uint256 commitDeadline, uint256 meteringDeadline, uint256 claimDeadline)
    {
        (revealEnd, commitDeadline,, meteringDeadline, claimDeadline) = market.deadlines(roundId);
    }

    function _toGateClosure(uint256 roundId) internal {
        vm.warp(market.roundConfig(roundId).gateClosure);
    }

    function _toClearing(uint256 roundId) internal {
        (uint256 revealEnd,,,) = _deadlines(roundId);
        vm.warp(revealEnd);
    }

    function _toFinal(uint256 roundId) internal {
        (,, uint256 disputeDeadline,,) = market.deadlines(roundId);
        if (block.timestamp < disputeDeadline) vm.warp(disputeDeadline);
    }

    // ------------------------------------------------------------------ orders

    function _request(uint256 roundId, uint64 powerW, uint64 cap) internal returns (uint256 requestId) {
        FlexTypes.FlexRequest memory q = _requestStruct(roundId, powerW, cap);
        vm.prank(dso);
        requestId = market.submitRequest(q);
    }

    function _requestStruct(uint256 roundId, uint64 powerW, uint64 cap)
        internal
        pure
        returns (FlexTypes.FlexRequest memory q)
    {
        q.roundId = roundId;
        q.bus = 7;
        q.direction = FlexTypes.DIRECTION_UP;
        q.slots = new uint16[](2);
        q.slots[0] = 0;
        q.slots[1] = 1;
        q.powerW = new uint64[](2);
        q.powerW[0] = powerW;
        q.powerW[1] = powerW;
        q.priceCapMicroPerMwh = cap;
    }

    function _offer(uint256 pk, uint256 roundId, uint64 seq) internal view returns (FlexTypes.FlexOffer memory o) {
        o.provider = vm.addr(pk);
        o.roundId = roundId;
        o.bus = 7;
        o.assetId = keccak256(abi.encode("battery", pk, seq));
        o.direction = FlexTypes.DIRECTION_UP;
        o.slots = new uint16[](2);
        o.slots[0] = 0;
        o.slots[1] = 1;
        o.minPowerW = new uint64[](2);
        o.maxPowerW = new uint64[](2);
        o.maxPowerW[0] = 100_000;
        o.maxPowerW[1] = 100_000;
        o.priceMicroPerMwh = 200e6;
        o.exclusiveGroup = bytes32(0);
        o.minActivationBps = 0;
        o.nonce = (roundId << 64) | seq;
        o.expiry = uint64(block.timestamp + 1 days);
    }

    function _sign(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    function _signOffer(uint256 pk, FlexTypes.FlexOffer memory o) internal view returns (bytes memory) {
        return _sign(pk, market.hashOffer(o));
    }

    function _deposit(address provider, uint256 roundId) internal {
        vm.prank(provider);
        market.depositBid(roundId);
    }

    function _submit(uint256 pk, FlexTypes.FlexOffer memory o) internal returns (bytes32) {
        bytes memory sig = _signOffer(pk, o);
        vm.prank(relayer);
        return market.submitOffer(o, sig);
    }

    function _p2p(uint256 pk, uint256 roundId, uint8 side, uint64 seq) internal view returns (FlexTypes.P2POrder memory o) {
        o.trader = vm.addr(pk);
        o.roundId = roundId;
        o.bus = 9;
        o.side = side;
        o.slot = 2;
        o.powerW = 50_000;
        o.limitPriceMicroPerMwh = 100e6;
        o.nonce = (roundId << 64) | seq;
        o.expiry = uint64(block.timestamp + 1 days);
    }

    function _submitP2P(uint256 pk, FlexTypes.P2POrder memory o) internal {
        FlexTypes.P2POrder[] memory orders = new FlexTypes.P2POrder[](1);
        orders[0] = o;
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = _sign(pk, market.hashP2POrder(o));
        vm.prank(relayer);
        market.submitP2POrders(orders, sigs);
    }

    // ------------------------------------------------------------------ clearing and settlement

    function _trade(uint256 roundId, address who, bytes32 orderHash, uint16 slot, uint64 powerW, int256 payment)
        internal
        pure
        returns (FlexTypes.Trade memory t)
    {
        t = FlexTypes.Trade({
            roundId: roundId,
            participant: who,
            orderHash: orderHash,
            slot: slot,
            powerW: powerW,
            priceMicroPerMwh: 200e6,
            paymentMicro: payment
        });
    }

    function _leaf(FlexTypes.Trade memory t) internal pure returns (bytes32) {
        return keccak256(
            bytes.concat(
                keccak256(
                    abi.encode(t.roundId, t.participant, t.orderHash, t.slot, t.powerW, t.priceMicroPerMwh, t.paymentMicro)
                )
            )
        );
    }

    function _meterLeaf(FlexTypes.Trade memory t, uint64 deliveredW) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(t.roundId, t.participant, t.orderHash, t.slot, deliveredW))));
    }

    function _leaves(FlexTypes.Trade[] memory trades) internal pure returns (bytes32[] memory leaves) {
        leaves = new bytes32[](trades.length);
        for (uint256 i; i < trades.length; ++i) {
            leaves[i] = _leaf(trades[i]);
        }
    }

    function _result(bytes32 root, uint128 totalPayout) internal pure returns (FlexTypes.ClearingResult memory) {
        return FlexTypes.ClearingResult({
            tradeRoot: root,
            inputHash: keccak256("inputs"),
            certificateHash: keccak256("certificate"),
            totalPayout: totalPayout,
            uri: "ipfs://result"
        });
    }

    function _commit(uint256 roundId, FlexTypes.Trade[] memory trades, uint128 totalPayout) internal {
        _toClearing(roundId);
        vm.prank(oracle);
        market.commitClearing(roundId, _result(Merkle.root(_leaves(trades)), totalPayout));
    }

    function _proof(FlexTypes.Trade[] memory trades, uint256 i) internal pure returns (bytes32[] memory) {
        return Merkle.proof(_leaves(trades), i);
    }

    function _meter(uint256 roundId, FlexTypes.Trade[] memory trades, uint64[] memory deliveredW)
        internal
        returns (bytes32[] memory mLeaves)
    {
        mLeaves = new bytes32[](trades.length);
        for (uint256 i; i < trades.length; ++i) {
            mLeaves[i] = _meterLeaf(trades[i], deliveredW[i]);
        }
        vm.prank(meter);
        market.commitMetering(roundId, Merkle.root(mLeaves), "ipfs://metering");
    }

    function _expectRevert(bytes memory data) internal {
        vm.expectRevert(data);
    }

    function _state(uint256 roundId) internal view returns (uint256) {
        return uint256(market.roundState(roundId));
    }
}
