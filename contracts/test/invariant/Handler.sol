// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm, HEVM_ADDRESS} from "../utils/Vm.sol";
import {Merkle} from "../utils/Merkle.sol";
import {FlexToken} from "../../src/FlexToken.sol";
import {FlexRegistry} from "../../src/FlexRegistry.sol";
import {IFlexMarket} from "../../src/interfaces/IFlexMarket.sol";
import {FlexTypes} from "../../src/libraries/FlexTypes.sol";

/// @notice Drives the market through random rounds with honest and hostile actors, recording in
/// ghost variables what the market must hold and who may change what.
contract Handler {
    Vm internal constant vm = Vm(HEVM_ADDRESS);
    uint256 internal constant MAX_ROUNDS = 40;

    IFlexMarket public market;
    FlexToken public token;
    FlexRegistry public registry;
    address public operator;
    address public dso;
    address public meter;
    address public oracle;
    address public outsider;
    uint256[3] internal pks;
    address[3] public providers;

    // ------------------------------------------------------------------ ghosts
    uint256 public ghostIn; // tokens the market must have pulled
    uint256 public ghostWithdrawn; // tokens it paid out
    uint256 public ghostUnauthorizedSuccess; // restricted calls that succeeded for the wrong caller
    uint256 public calls;
    mapping(bytes32 action => uint256) public succeeded;
    uint256[] public rounds;
    mapping(uint256 roundId => mapping(address provider => uint64)) internal nextSeq;
    mapping(uint256 roundId => FlexTypes.Trade[]) internal tradesOf;
    mapping(uint256 roundId => uint64[]) internal deliveredOf;
    mapping(uint256 roundId => bool) internal metered;

    constructor(
        IFlexMarket market_,
        FlexToken token_,
        FlexRegistry registry_,
        address operator_,
        address dso_,
        address meter_,
        address oracle_,
        uint256[3] memory pks_
    ) {
        market = market_;
        token = token_;
        registry = registry_;
        operator = operator_;
        dso = dso_;
        meter = meter_;
        oracle = oracle_;
        outsider = address(0xBAD0);
        pks = pks_;
        for (uint256 i; i < 3; ++i) {
            providers[i] = vm.addr(pks_[i]);
        }
    }

    function roundCount() external view returns (uint256) {
        return rounds.length;
    }

    function actors() public view returns (address[6] memory a) {
        a = [dso, providers[0], providers[1], providers[2], outsider, operator];
    }

    function _round(uint256 seed) internal view returns (uint256) {
        return rounds[seed % rounds.length];
    }

    /// @dev A round in `state` if there is one (scanning from a random start), else a random round.
    function _roundIn(uint256 seed, FlexTypes.RoundState state) internal view returns (uint256) {
        uint256 n = rounds.length;
        for (uint256 k; k < n; ++k) {
            uint256 roundId = rounds[(seed % n + k) % n];
            if (market.roundState(roundId) == state) return roundId;
        }
        return rounds[seed % n];
    }

    /// @dev Orders go mostly to the newest rounds (the ones still open).
    function _recentRound(uint256 seed) internal view returns (uint256) {
        uint256 n = rounds.length;
        return rounds[n - 1 - (seed % (n < 2 ? n : 2))];
    }

    // ------------------------------------------------------------------ round life

    function createRound(uint256 seed) external {
        if (rounds.length >= MAX_ROUNDS) return;
        FlexTypes.RoundConfig memory c;
        c.gridId = keccak256("grid-a");
        c.gridModelHash = keccak256("model");
        // a short timeline so that random warps reach every state: gate +30 min, delivery +30..34 min,
        // commits until +60 min, metering until +64 min, claims until +94 min
        c.gateClosure = uint64(block.timestamp + 30 minutes);
        c.slotStart = c.gateClosure;
        c.slotSeconds = 60;
        c.slotCount = 4;
        c.clearingSeconds = 30 minutes;
        c.disputeWindow = uint32(seed % 2 == 0 ? 10 minutes : 0);
        c.settlementSeconds = 30 minutes;
        c.priceCapMicroPerMwh = 500e6;
        c.toleranceBps = uint16(seed % 1000);
        c.penaltyBps = uint16(seed % 5000);
        c.oracleQuorum = 1;
        c.bidDeposit = uint128(1e6 + seed % 10e6);
        c.disputeBond = 5e6;
        vm.prank(operator);
        rounds.push(market.createRound(c));
        calls++;
            succeeded["create"]++;
    }

    function request(uint256 seed, uint64 powerW) external {
        if (rounds.length == 0) return;
        uint256 roundId = _recentRound(seed);
        powerW = uint64(1 + powerW % 500_000);
        FlexTypes.FlexRequest memory q;
        q.roundId = roundId;
        q.bus = 1;
        q.slots = new uint16[](1);
        q.slots[0] = uint16(seed % 4);
        q.powerW = new uint64[](1);
        q.powerW[0] = powerW;
        q.priceCapMicroPerMwh = 400e6;
        uint256 budget = FlexTypes.valueUp(powerW, 60, 400e6);
        vm.prank(dso);
        try market.submitRequest(q) {
            ghostIn += budget;
            calls++;
            succeeded["request"]++;
        } catch {}
    }

    function deposit(uint256 seed) external {
        if (rounds.length == 0) return;
        uint256 roundId = _recentRound(seed);
        address p = providers[seed % 3];
        uint256 amount = market.roundConfig(roundId).bidDeposit;
        vm.prank(p);
        try market.depositBid(roundId) {
            ghostIn += amount;
            calls++;
            succeeded["deposit"]++;
        } catch {}
    }

    function offer(uint256 seed) external {
        if (rounds.length == 0) return;
        uint256 roundId = _recentRound(seed);
        uint256 i = seed % 3;
        FlexTypes.FlexOffer memory o;
        o.provider = providers[i];
        o.roundId = roundId;
        o.bus = 2;
        o.assetId = bytes32(seed);
        o.slots = new uint16[](1);
        o.slots[0] = uint16(seed % 4);
        o.minPowerW = new uint64[](1);
        o.maxPowerW = new uint64[](1);
        o.maxPowerW[0] = uint64(1000 + seed % 100_000);
        o.priceMicroPerMwh = uint64(seed % 400e6);
        o.nonce = (roundId << 64) | nextSeq[roundId][o.provider];
        o.expiry = uint64(block.timestamp + 1 days);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pks[i], market.hashOffer(o));
        try market.submitOffer(o, abi.encodePacked(r, s, v)) {
            nextSeq[roundId][o.provider]++;
            calls++;
            succeeded["offer"]++;
        } catch {}
    }

    function p2pBuy(uint256 seed) external {
        if (rounds.length == 0) return;
        uint256 roundId = _recentRound(seed);
        uint256 i = seed % 3;
        FlexTypes.P2POrder memory o;
        o.trader = providers[i];
        o.roundId = roundId;
        o.bus = 3;
        o.side = FlexTypes.SIDE_BUY;
        o.slot = uint16(seed % 4);
        o.powerW = uint64(1 + seed % 50_000);
        o.limitPriceMicroPerMwh = uint64(1 + seed % 300e6);
        o.nonce = (roundId << 64) | nextSeq[roundId][o.trader];
        o.expiry = uint64(block.timestamp + 1 days);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pks[i], market.hashP2POrder(o));
        FlexTypes.P2POrder[] memory orders = new FlexTypes.P2POrder[](1);
        orders[0] = o;
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = abi.encodePacked(r, s, v);
        uint256 escrow = FlexTypes.valueUp(o.powerW, 60, o.limitPriceMicroPerMwh);
        try market.submitP2POrders(orders, sigs) {
            nextSeq[roundId][o.trader]++;
            ghostIn += escrow;
            calls++;
            succeeded["p2p"]++;
        } catch {}
    }

    function warp(uint256 secondsAhead) external {
        vm.warp(block.timestamp + secondsAhead % 15 minutes);
    }

    /// @dev An honest oracle: the DSO pays `charge` out of its escrow, two providers share it.
    function commit(uint256 seed) external {
        if (rounds.length == 0) return;
        uint256 roundId = _roundIn(seed, FlexTypes.RoundState.CLOSED);
        if (tradesOf[roundId].length != 0) return;
        (uint256 escrow,) = market.escrowOf(roundId, dso);
        uint256 charge = escrow / 2;
        uint256 toFirst = charge / 3;
        FlexTypes.Trade[] memory t = new FlexTypes.Trade[](3);
        t[0] = FlexTypes.Trade(roundId, dso, bytes32(uint256(1)), 0, 1000, 1, -int256(charge));
        t[1] = FlexTypes.Trade(roundId, providers[0], bytes32(uint256(2)), 0, 1000, 1, int256(toFirst));
        t[2] = FlexTypes.Trade(roundId, providers[1], bytes32(uint256(3)), 1, 2000, 1, int256(charge - toFirst));
        bytes32[] memory leaves = _leaves(t);
        FlexTypes.ClearingResult memory res = FlexTypes.ClearingResult(Merkle.root(leaves), keccak256("in"), keccak256("cert"), uint128(charge), "");
        vm.prank(oracle);
        try market.commitClearing(roundId, res) {
            for (uint256 i; i < 3; ++i) {
                tradesOf[roundId].push(t[i]);
                deliveredOf[roundId].push(uint64((seed >> (8 * i)) % (t[i].powerW + 1)));
            }
            calls++;
            succeeded["commit"]++;
        } catch {}
    }

    function dispute(uint256 seed) external {
        if (rounds.length == 0) return;
        uint256 roundId = _roundIn(seed, FlexTypes.RoundState.COMMITTED);
        address who = providers[seed % 3];
        uint256 bond = market.roundConfig(roundId).disputeBond;
        vm.prank(who);
        try market.dispute(roundId, bytes32(seed)) {
            ghostIn += bond;
            calls++;
            succeeded["dispute"]++;
        } catch {}
    }

    function resolve(uint256 seed) external {
        if (rounds.length == 0) return;
        uint256 roundId = _roundIn(seed, FlexTypes.RoundState.DISPUTED);
        vm.prank(operator);
        try market.resolveDispute(roundId, seed % 2 == 0) {
            calls++;
            succeeded["resolve"]++;
        } catch {}
    }

    function approve(uint256 seed) external {
        if (rounds.length == 0) return;
        uint256 roundId = _roundIn(seed, FlexTypes.RoundState.COMMITTED);
        vm.prank(dso);
        try market.approveResult(roundId) {
            calls++;
            succeeded["approve"]++;
        } catch {}
    }

    function meterRound(uint256 seed) external {
        if (rounds.length == 0) return;
        uint256 roundId = _roundIn(seed, FlexTypes.RoundState.FINAL);
        FlexTypes.Trade[] memory t = tradesOf[roundId];
        if (t.length == 0 || metered[roundId]) return;
        vm.prank(meter);
        try market.commitMetering(roundId, Merkle.root(_meterLeaves(roundId)), "") {
            metered[roundId] = true;
            calls++;
            succeeded["meter"]++;
        } catch {}
    }

    function claim(uint256 seed) external {
        if (rounds.length == 0) return;
        uint256 roundId = _roundIn(seed, FlexTypes.RoundState.FINAL);
        FlexTypes.Trade[] memory t = tradesOf[roundId];
        if (t.length == 0) return;
        uint256 i = seed % t.length;
        bytes32[] memory proof = Merkle.proof(_leaves(t), i);
        if (t[i].paymentMicro < 0) {
            try market.claimCharge(t[i], proof) {
                calls++;
                succeeded["charge"]++;
            } catch {}
        } else {
            bytes32[] memory mProof = metered[roundId] ? Merkle.proof(_meterLeaves(roundId), i) : new bytes32[](0);
            try market.claimPayment(t[i], proof, deliveredOf[roundId][i], mProof) {
                calls++;
                succeeded["payment"]++;
            } catch {}
        }
    }

    function close(uint256 seed) external {
        if (rounds.length == 0) return;
        try market.closeRound(_roundIn(seed, FlexTypes.RoundState.FINAL)) {
            calls++;
            succeeded["close"]++;
        } catch {}
    }

    function cancel(uint256 seed) external {
        if (rounds.length == 0) return;
        vm.prank(seed % 2 == 0 ? operator : outsider);
        try market.cancelRound(_round(seed)) {
            calls++;
            succeeded["cancel"]++;
        } catch {}
    }

    function release(uint256 seed) external {
        if (rounds.length == 0) return;
        try market.release(
            _roundIn(seed, seed % 2 == 0 ? FlexTypes.RoundState.SETTLED : FlexTypes.RoundState.CANCELLED), actors()[(seed >> 8) % 6]
        ) {
            calls++;
            succeeded["release"]++;
        } catch {}
    }

    function withdraw(uint256 seed) external {
        _withdraw(actors()[seed % 6]);
    }

    /// @dev A random restricted call from a random caller that lacks the role: must never succeed.
    function hostile(uint256 seed, uint256 which) external {
        if (rounds.length == 0) return;
        uint256 roundId = _round(seed);
        address caller = actors()[(seed >> 8) % 6];
        which %= 6;
        bytes memory data;
        if (which == 0 && caller != operator) {
            data = abi.encodeCall(IFlexMarket.createRound, (market.roundConfig(roundId)));
        } else if (which == 1 && caller != oracle) {
            data = abi.encodeCall(
                IFlexMarket.commitClearing, (roundId, FlexTypes.ClearingResult(keccak256("evil"), keccak256("in"), 0, 0, ""))
            );
        } else if (which == 2 && caller != dso) {
            data = abi.encodeCall(IFlexMarket.approveResult, (roundId));
        } else if (which == 3 && caller != meter) {
            data = abi.encodeCall(IFlexMarket.commitMetering, (roundId, keccak256("evil"), ""));
        } else if (which == 4 && caller != operator) {
            data = abi.encodeCall(IFlexMarket.resolveDispute, (roundId, true));
        } else if (which == 5 && caller != operator) {
            data = abi.encodeCall(IFlexMarket.pause, ());
        } else {
            return;
        }
        vm.prank(caller);
        (bool ok,) = address(market).call(data);
        if (ok) ghostUnauthorizedSuccess++;
    }

    // ------------------------------------------------------------------ end of run

    /// @dev Ends every round (cancel or close), releases every account and withdraws everything.
    function drain() external {
        vm.warp(block.timestamp + 30 days);
        if (market.paused()) {
            vm.prank(operator);
            market.unpause();
        }
        address[6] memory a = actors();
        for (uint256 k; k < rounds.length; ++k) {
            uint256 roundId = rounds[k];
            FlexTypes.RoundState s = market.roundState(roundId);
            if (s == FlexTypes.RoundState.OPEN || s == FlexTypes.RoundState.CLOSED || s == FlexTypes.RoundState.DISPUTED) {
                vm.prank(operator);
                market.cancelRound(roundId);
            } else if (s == FlexTypes.RoundState.FINAL) {
                market.closeRound(roundId);
            }
            for (uint256 j; j < a.length; ++j) {
                try market.release(roundId, a[j]) {} catch {}
            }
        }
        for (uint256 j; j < a.length; ++j) {
            _withdraw(a[j]);
        }
    }

    function _withdraw(address who) internal {
        uint256 amount = market.balanceOf(who);
        if (amount == 0) return;
        vm.prank(who);
        market.withdraw();
        ghostWithdrawn += amount;
        calls++;
    }

    function _leaves(FlexTypes.Trade[] memory t) internal pure returns (bytes32[] memory leaves) {
        leaves = new bytes32[](t.length);
        for (uint256 i; i < t.length; ++i) {
            leaves[i] = keccak256(
                bytes.concat(
                    keccak256(
                        abi.encode(
                            t[i].roundId, t[i].participant, t[i].orderHash, t[i].slot, t[i].powerW, t[i].priceMicroPerMwh, t[i].paymentMicro
                        )
                    )
                )
            );
        }
    }

    function _meterLeaves(uint256 roundId) internal view returns (bytes32[] memory leaves) {
        FlexTypes.Trade[] memory t = tradesOf[roundId];
        leaves = new bytes32[](t.length);
        for (uint256 i; i < t.length; ++i) {
            leaves[i] = keccak256(
                bytes.concat(keccak256(abi.encode(roundId, t[i].participant, t[i].orderHash, t[i].slot, deliveredOf[roundId][i])))
            );
        }
    }
}
