// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "../utils/Fixture.sol";
import {Merkle} from "../utils/Merkle.sol";
import {FlexTypes} from "../../src/libraries/FlexTypes.sol";
import {IFlexMarket} from "../../src/interfaces/IFlexMarket.sol";

/// @notice One test per operation for `make gas` (contracts/.gas-snapshot). Each test replays a call
/// whose calldata was prepared in setUp and stored as code (vm.etch), so a test's gas is the
/// operation plus a fixed harness cost (`test_gas_harness_overhead`: reading the stored calldata
/// and the outer call). Storage touched by the operation is cold, as in a real transaction.
contract GasTest is Fixture {
    uint256 internal constant BATCH = 100;
    uint256 internal constant TREE_LEAVES = 1024;
    uint256 internal constant GATE_CLOSURE = T0 + 1 hours;

    uint256 internal openRound;
    uint256 internal clearingRound;
    uint256 internal finalRound;
    uint256 internal sealedRound;
    uint256 internal settledRound;
    uint256 internal closedRound;
    FlexTypes.Trade[] internal trades;
    bytes32[] internal meterLeaves;

    function setUp() public override {
        super.setUp();
        openRound = _createRound();
        sealedRound = _createRound(_sealedConfig(FlexTypes.SEAL_COMMIT_REVEAL));
        clearingRound = _createRound();
        finalRound = _createRound();
        settledRound = _createRound();
        closedRound = _createRound();
        _deposit(provider1, openRound);
        _deposit(provider2, openRound);

        // one offer: provider2's first offer in the round
        FlexTypes.FlexOffer memory one = _offer(PK2, openRound, 0);
        _stashCall("offer", relayer, abi.encodeCall(IFlexMarket.submitOffer, (one, _signOffer(PK2, one))));
        // one offer of a provider whose nonce key is already in use (its second offer in the round)
        {
            uint256 pk4 = 0x4444;
            vm.prank(operator);
            registry.approveProvider(vm.addr(pk4), bytes32("p4"));
            token.mint(vm.addr(pk4), 100e6);
            vm.startPrank(vm.addr(pk4));
            token.approve(address(market), type(uint256).max);
            market.depositBid(openRound);
            vm.stopPrank();
            _submit(pk4, _offer(pk4, openRound, 0));
            FlexTypes.FlexOffer memory next = _offer(pk4, openRound, 1);
            _stashCall("offer_next", relayer, abi.encodeCall(IFlexMarket.submitOffer, (next, _signOffer(pk4, next))));
        }

        // batch of 100 from one aggregator (provider1, sequential nonces in one key)
        {
            FlexTypes.FlexOffer[] memory offers = new FlexTypes.FlexOffer[](BATCH);
            bytes[] memory sigs = new bytes[](BATCH);
            for (uint256 i; i < BATCH; ++i) {
                offers[i] = _offer(PK1, openRound, uint64(i));
                sigs[i] = _signOffer(PK1, offers[i]);
            }
            _stashCall("batch100_oneProvider", relayer, abi.encodeCall(IFlexMarket.submitOffers, (offers, sigs)));
        }
        // batch of 100 from 100 providers, each its first offer of the round
        {
            FlexTypes.FlexOffer[] memory offers = new FlexTypes.FlexOffer[](BATCH);
            bytes[] memory sigs = new bytes[](BATCH);
            for (uint256 i; i < BATCH; ++i) {
                uint256 pk = 0x10000 + i;
                address p = vm.addr(pk);
                vm.prank(operator);
                registry.approveProvider(p, bytes32(i));
                token.mint(p, 100e6);
                vm.startPrank(p);
                token.approve(address(market), type(uint256).max);
                market.depositBid(openRound);
                vm.stopPrank();
                offers[i] = _offer(pk, openRound, 0);
                sigs[i] = _signOffer(pk, offers[i]);
            }
            _stashCall("batch100_distinctProviders", relayer, abi.encodeCall(IFlexMarket.submitOffers, (offers, sigs)));
        }
        _stashCall("request", dso, abi.encodeCall(IFlexMarket.submitRequest, (_requestStruct(openRound, 200_000, 300e6))));
        _stashCall("depositBid", provider3, abi.encodeCall(IFlexMarket.depositBid, (openRound)));

        // sealed round: commit now, reveal later
        FlexTypes.FlexOffer memory sealedOffer = _offer(PK3, sealedRound, 0);
        bytes32 salt = keccak256("salt");
        bytes32 commitment = keccak256(abi.encode(market.hashOffer(sealedOffer), provider3, salt));
        vm.prank(provider3);
        market.commitOffer(sealedRound, commitment, "");
        bytes32 otherCommitment = keccak256(abi.encode(market.hashOffer(sealedOffer), provider3, keccak256("other")));
        _stashCall("commitOffer", provider3, abi.encodeCall(IFlexMarket.commitOffer, (sealedRound, otherCommitment, "")));
        {
            FlexTypes.FlexOffer[] memory offers = new FlexTypes.FlexOffer[](1);
            offers[0] = sealedOffer;
            bytes[] memory sigs = new bytes[](1);
            sigs[0] = _signOffer(PK3, sealedOffer);
            bytes32[] memory salts = new bytes32[](1);
            salts[0] = salt;
            _stashCall("revealOffer", relayer, abi.encodeCall(IFlexMarket.revealOffers, (offers, sigs, salts)));
        }

        // a round with a request and an offer, ready for the clearing commit of any number of trades
        _request(clearingRound, 200_000, 300e6);
        _deposit(provider1, clearingRound);
        _submit(PK1, _offer(PK1, clearingRound, 0));
        _stashCall(
            "commitClearing",
            oracle,
            abi.encodeCall(IFlexMarket.commitClearing, (clearingRound, _result(keccak256("root of any size"), 1e6)))
        );

        // a final round whose trade and metering trees have 1024 leaves each
        uint256 requestId = _request(finalRound, 200_000, 300e6);
        _deposit(provider1, finalRound);
        bytes32 h1 = _submit(PK1, _offer(PK1, finalRound, 0));
        trades.push(_trade(finalRound, dso, bytes32(requestId), 0, 200_000, -10e6));
        trades.push(_trade(finalRound, provider1, h1, 0, 100_000, 5e6));
        trades.push(_trade(finalRound, dso, bytes32(requestId), 1, 100_000, -1e6));
        for (uint256 i = 3; i < TREE_LEAVES; ++i) {
            trades.push(_trade(finalRound, address(uint160(0x5000 + i)), bytes32(i), uint16(i % 4), 1000, 1));
        }
        uint256 settledRequest = _request(settledRound, 200_000, 300e6);
        _request(closedRound, 200_000, 300e6);
        _deposit(provider2, closedRound);
        _deposit(provider2, settledRound);
        bytes32 h2 = _submit(PK2, _offer(PK2, settledRound, 0));
        FlexTypes.Trade[] memory t = trades;
        _commit(finalRound, t, 5e6 + uint128(TREE_LEAVES));
        // a settled round for release and withdraw
        FlexTypes.Trade[] memory s = new FlexTypes.Trade[](2);
        s[0] = _trade(settledRound, dso, bytes32(settledRequest), 0, 100_000, -5e6);
        s[1] = _trade(settledRound, provider2, h2, 0, 100_000, 5e6);
        vm.prank(oracle);
        market.commitClearing(settledRound, _result(Merkle.root(_leaves(s)), 5e6));
        vm.prank(oracle);
        market.commitClearing(closedRound, _result(keccak256("no trades paid"), 0));
        _toFinal(finalRound);
        uint64[] memory delivered = new uint64[](TREE_LEAVES);
        for (uint256 i; i < TREE_LEAVES; ++i) {
            delivered[i] = t[i].powerW;
        }
        delivered[1] = 90_000; // 10 % short (tolerance 5 %): reduced payment and penalty
        meterLeaves = _meter(finalRound, t, delivered);
        vm.warp(block.timestamp + 2 hours); // past delivery, claims open
        market.claimCharge(t[0], _proof(t, 0));
        _stashCall("claimCharge", outsider, abi.encodeCall(IFlexMarket.claimCharge, (t[2], _proof(t, 2))));
        // the claimPayment test settles the charge first (outside the replay), then replays the claim
        _stashCall(
            "claimPayment",
            outsider,
            abi.encodeCall(IFlexMarket.claimPayment, (t[1], _proof(t, 1), 90_000, Merkle.proof(meterLeaves, 1)))
        );

        _toFinal(settledRound);
        (,,, uint256 claimDeadline) = _deadlines(settledRound);
        vm.warp(claimDeadline);
        _stashCall("closeRound", outsider, abi.encodeCall(IFlexMarket.closeRound, (settledRound)));
        market.closeRound(closedRound);
        market.release(closedRound, provider2); // provider2's balance: its deposit, for the withdraw test
        _stashCall("release", outsider, abi.encodeCall(IFlexMarket.release, (closedRound, dso)));
        _stashCall("withdraw", provider2, abi.encodeCall(IFlexMarket.withdraw, ()));
        _stashCall("overhead", outsider, abi.encodeCall(IFlexMarket.registry, ()));
        vm.warp(T0);
    }

    // ------------------------------------------------------------------ intake (at T0, round open)

    function test_gas_harness_overhead() public {
        _replay("overhead");
    }

    function test_gas_submitOffer_one() public {
        _replay("offer");
    }

    function test_gas_submitOffer_one_nextOfProvider() public {
        _replay("offer_next");
    }

    function test_gas_submitOffers_batch100_oneProvider() public {
        _replay("batch100_oneProvider");
    }

    function test_gas_submitOffers_batch100_distinctProviders() public {
        _replay("batch100_distinctProviders");
    }

    function test_gas_submitRequest_twoSlots() public {
        _replay("request");
    }

    function test_gas_depositBid() public {
        _replay("depositBid");
    }

    function test_gas_commitOffer() public {
        _replay("commitOffer");
    }

    // ------------------------------------------------------------------ later steps

    function test_gas_revealOffers_one() public {
        vm.warp(GATE_CLOSURE);
        _replay("revealOffer");
    }

    function test_gas_commitClearing_anyNumberOfTrades() public {
        vm.warp(GATE_CLOSURE);
        _replay("commitClearing");
    }

    function test_gas_claimCharge_1024leafTree() public {
        vm.warp(block.timestamp + 3 hours);
        _replay("claimCharge");
    }

    function test_gas_claimPayment_1024leafTrees() public {
        vm.warp(block.timestamp + 3 hours);
        _replay("claimPayment");
    }

    function test_gas_closeRound() public {
        vm.warp(block.timestamp + 1 days);
        _replay("closeRound");
    }

    function test_gas_release() public {
        vm.warp(block.timestamp + 1 days);
        _replay("release");
    }

    function test_gas_withdraw() public {
        _replay("withdraw");
    }

    // ------------------------------------------------------------------ harness

    function _stashCall(string memory name, address from, bytes memory data) internal {
        vm.etch(_where(name), abi.encodePacked(from, data));
    }

    function _where(string memory name) internal pure returns (address) {
        return address(uint160(uint256(keccak256(bytes(name)))));
    }

    function _replay(string memory name) internal {
        address where = _where(name);
        address from;
        bytes memory data;
        assembly {
            let size := sub(extcodesize(where), 20)
            extcodecopy(where, 12, 0, 20)
            from := mload(0)
            data := mload(0x40)
            mstore(data, size)
            extcodecopy(where, add(data, 0x20), 20, size)
            mstore(0x40, add(add(data, 0x20), size))
        }
        address target = address(market);
        vm.prank(from);
        (bool ok, bytes memory ret) = target.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 0x20), mload(ret))
            }
        }
    }
}
