// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "../utils/Fixture.sol";
import {FlexTypes} from "../../src/libraries/FlexTypes.sol";

/// @notice One round from creation to the last withdrawal, with the money checked at each step.
contract LifecycleTest is Fixture {
    function test_full_round_pays_providers_by_delivery_and_returns_the_rest_to_the_dso() public {
        uint256 roundId = _createRound();
        uint256 requestId = _request(roundId, 200_000, 300e6);
        assertEq(market.requestInfo(requestId).budget, 30e6, "budget = ceil(400 kW x 900 s x 300 EUR/MWh)");

        _deposit(provider1, roundId);
        _deposit(provider2, roundId);
        bytes32 h1 = _submit(PK1, _offer(PK1, roundId, 0));
        bytes32 h2 = _submit(PK2, _offer(PK2, roundId, 0));
        assertEq(token.balanceOf(address(market)), 50e6, "budget and two deposits held");
        assertEq(market.roundStatus(roundId).orderCount, 3, "three orders");

        FlexTypes.Trade[] memory t = new FlexTypes.Trade[](5);
        t[0] = _trade(roundId, dso, bytes32(requestId), 0, 200_000, -10e6);
        t[1] = _trade(roundId, dso, bytes32(requestId), 1, 100_000, -5e6);
        t[2] = _trade(roundId, provider1, h1, 0, 100_000, 5e6);
        t[3] = _trade(roundId, provider1, h1, 1, 100_000, 5e6);
        t[4] = _trade(roundId, provider2, h2, 0, 100_000, 5e6);
        _commit(roundId, t, 15e6);
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.COMMITTED), "committed");
        _toFinal(roundId);
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.FINAL), "final after the dispute window");

        uint64[] memory delivered = new uint64[](5);
        delivered[0] = 200_000;
        delivered[1] = 100_000;
        delivered[2] = 100_000; // full
        delivered[3] = 50_000; // half: 2.5 minus penalty 0.5
        delivered[4] = 0; // nothing: penalty 1.0 from the deposit
        bytes32[] memory mLeaves = _meter(roundId, t, delivered);

        vm.startPrank(outsider);
        market.claimCharge(t[0], _proof(t, 0));
        market.claimCharge(t[1], _proof(t, 1));
        for (uint256 i = 2; i < 5; ++i) {
            market.claimPayment(t[i], _proof(t, i), delivered[i], _meteringProof(mLeaves, i));
        }
        vm.stopPrank();
        assertEq(market.balanceOf(provider1), 7e6, "5 + 2 EUR");
        assertEq(market.balanceOf(provider2), 0, "nothing delivered");
        assertEq(market.balanceOf(dso), 1e6, "penalty excess from provider2's deposit");
        assertEq(market.depositOf(roundId, provider2), 9e6, "deposit minus penalty");

        (,,, uint256 claimDeadline) = _deadlines(roundId);
        vm.warp(claimDeadline);
        market.closeRound(roundId);
        assertEq(_state(roundId), uint256(FlexTypes.RoundState.SETTLED), "settled");
        assertEq(market.balanceOf(dso), 9e6, "1 + unpaid pool 15 - 7");

        market.release(roundId, dso);
        market.release(roundId, provider1);
        market.release(roundId, provider2);
        assertEq(market.balanceOf(dso), 24e6, "plus uncharged budget 15");
        assertEq(market.balanceOf(provider1), 17e6, "plus deposit 10");
        assertEq(market.balanceOf(provider2), 9e6, "remaining deposit");

        uint256 dsoBefore = token.balanceOf(dso);
        vm.prank(dso);
        market.withdraw();
        vm.prank(provider1);
        market.withdraw();
        vm.prank(provider2);
        market.withdraw();
        assertEq(token.balanceOf(dso) - dsoBefore, 24e6, "dso withdrew");
        assertEq(token.balanceOf(address(market)), 0, "nothing stuck");
        assertEq(token.balanceOf(provider1), MINT + 7e6, "provider1 gained its payments");
        assertEq(token.balanceOf(provider2), MINT - 1e6, "provider2 lost its penalty");
    }

    function _meteringProof(bytes32[] memory mLeaves, uint256 i) internal pure returns (bytes32[] memory) {
        return MerkleLib.proof(mLeaves, i);
    }
}

import {Merkle as MerkleLib} from "../utils/Merkle.sol";
