// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "../utils/Test.sol";
import {FlexTypes} from "../../src/libraries/FlexTypes.sol";

/// @notice Exposes FlexTypes' calldata functions to the tests.
contract FlexTypesExposer {
    function hashFlexOffer(FlexTypes.FlexOffer calldata o) external pure returns (bytes32) {
        return FlexTypes.hashFlexOffer(o);
    }

    function hashP2POrder(FlexTypes.P2POrder calldata o) external pure returns (bytes32) {
        return FlexTypes.hashP2POrder(o);
    }

    function tradeLeaf(FlexTypes.Trade calldata t) external pure returns (bytes32) {
        return FlexTypes.tradeLeaf(t);
    }
}

/// @notice FlexTypes against independent references: eth-account's EIP-712 struct hashes (fixed
/// vectors computed with `eth_account.messages.encode_typed_data`), the plain `abi.encode`
/// definition of the struct hash (fuzzed), and the settlement rule's properties (fuzzed).
/// Follows hashFlexOffer.tree and settle.tree in this folder.
contract FlexTypesTest is Test {
    FlexTypesExposer internal x;

    function setUp() public {
        x = new FlexTypesExposer();
    }

    function _vectorOffer() internal pure returns (FlexTypes.FlexOffer memory o) {
        o.provider = address(0xa11ce);
        o.roundId = 3;
        o.bus = 17;
        o.assetId = bytes32(0x0101010101010101010101010101010101010101010101010101010101010101);
        o.direction = 1;
        o.slots = new uint16[](3);
        (o.slots[0], o.slots[1], o.slots[2]) = (2, 5, 7);
        o.minPowerW = new uint64[](3);
        (o.minPowerW[0], o.minPowerW[1], o.minPowerW[2]) = (0, 1000, 2000);
        o.maxPowerW = new uint64[](3);
        (o.maxPowerW[0], o.maxPowerW[1], o.maxPowerW[2]) = (5000, 6000, 7000);
        o.priceMicroPerMwh = 123456789;
        o.exclusiveGroup = bytes32(0x0202020202020202020202020202020202020202020202020202020202020202);
        o.minActivationBps = 2500;
        o.nonce = (3 << 64) | 4;
        o.expiry = 1700000000;
    }

    function test_hashFlexOffer_equals_eth_account_struct_hash() public view {
        assertEq(
            x.hashFlexOffer(_vectorOffer()),
            0x2180c31e391c2c3d9f50469520bfe746a752865b54799a63576e768cf9ae3605,
            "eth-account encode_typed_data body"
        );
    }

    function test_hashP2POrder_equals_eth_account_struct_hash() public view {
        FlexTypes.P2POrder memory o = FlexTypes.P2POrder({
            trader: address(0xb0b00),
            roundId: 3,
            bus: 9,
            side: 0,
            slot: 2,
            powerW: 50000,
            limitPriceMicroPerMwh: 100000000,
            nonce: (3 << 64) | 1,
            expiry: 1700086400
        });
        assertEq(
            x.hashP2POrder(o),
            0xe28d69afb74f16b3163f094a3fc9dc35563e9d6deb9c6b9bfde48fb3f2ef5312,
            "eth-account encode_typed_data body"
        );
    }

    function testFuzz_hashFlexOffer_equals_the_abi_encode_definition(
        FlexTypes.FlexOffer memory o,
        uint16[] memory slots,
        uint64[] memory minW,
        uint64[] memory maxW
    ) public view {
        o.slots = slots;
        o.minPowerW = minW;
        o.maxPowerW = maxW;
        bytes32 expected = keccak256(
            bytes.concat(
                abi.encode(
                    keccak256(
                        "FlexOffer(address provider,uint256 roundId,uint32 bus,bytes32 assetId,uint8 direction,uint16[] slots,uint64[] minPowerW,uint64[] maxPowerW,uint64 priceMicroPerMwh,bytes32 exclusiveGroup,uint16 minActivationBps,uint256 nonce,uint64 expiry)"
                    ),
                    o.provider,
                    o.roundId,
                    o.bus,
                    o.assetId,
                    o.direction,
                    keccak256(abi.encodePacked(slots))
                ),
                abi.encode(
                    keccak256(abi.encodePacked(minW)),
                    keccak256(abi.encodePacked(maxW)),
                    o.priceMicroPerMwh,
                    o.exclusiveGroup,
                    o.minActivationBps,
                    o.nonce,
                    o.expiry
                )
            )
        );
        assertEq(x.hashFlexOffer(o), expected, "struct hash");
    }

    function test_hashFlexOffer_rejects_dirty_narrow_fields() public view {
        bytes memory data = abi.encodeCall(FlexTypesExposer.hashFlexOffer, (_vectorOffer()));
        // the `bus` word (uint32) sits at 4 + 0x20 (offset word) + 0x40; set a high bit
        assembly {
            let p := add(add(data, 0x20), add(4, 0x60))
            mstore(p, or(mload(p), shl(200, 1)))
        }
        (bool ok,) = address(x).staticcall(data);
        assertFalse(ok, "a dirty uint32 must not hash");
    }

    function test_tradeLeaf_is_the_double_hash_of_the_abi_encoded_values() public view {
        FlexTypes.Trade memory t = FlexTypes.Trade(7, address(0xabc), bytes32(uint256(5)), 3, 1000, 2e8, -42);
        bytes32 inner = keccak256(abi.encode(uint256(7), address(0xabc), bytes32(uint256(5)), uint16(3), uint64(1000), uint64(2e8), int256(-42)));
        assertEq(x.tradeLeaf(t), keccak256(bytes.concat(inner)), "leaf");
    }

    // ------------------------------------------------------------------ settle

    function test_settle_pays_in_full_within_tolerance() public pure {
        (uint256 payout, uint256 excess) = FlexTypes.settle(5e6, 100_000, 95_000, 500, 2000);
        assertEq(payout, 5e6, "5 % short with 5 % tolerance");
        assertEq(excess, 0, "no penalty");
    }

    function test_settle_reduces_and_penalises_below_tolerance() public pure {
        (uint256 payout, uint256 excess) = FlexTypes.settle(5e6, 100_000, 50_000, 500, 2000);
        assertEq(payout, 2e6, "2.5 paid minus 0.5 penalty");
        assertEq(excess, 0, "penalty covered by the payment");
    }

    function test_settle_takes_the_excess_penalty_from_the_deposit() public pure {
        (uint256 payout, uint256 excess) = FlexTypes.settle(5e6, 100_000, 0, 0, 2000);
        assertEq(payout, 0, "nothing delivered");
        assertEq(excess, 1e6, "20 % of 5");
    }

    function test_settle_caps_delivery_at_the_accepted_power() public pure {
        (uint256 payout,) = FlexTypes.settle(5e6, 100_000, 500_000, 0, 2000);
        assertEq(payout, 5e6, "over-delivery is not paid extra");
    }

    function test_settle_pays_a_zero_power_leaf_in_full() public pure {
        (uint256 payout,) = FlexTypes.settle(5e6, 0, 0, 0, 2000);
        assertEq(payout, 5e6, "accepted = 0");
    }

    function testFuzz_settle_never_pays_more_than_the_payment_and_is_monotonic(
        uint128 payment,
        uint64 accepted,
        uint64 delivered,
        uint16 tolerance,
        uint16 penalty
    ) public pure {
        tolerance = uint16(_bound(tolerance, 0, 10_000));
        penalty = uint16(_bound(penalty, 0, 10_000));
        (uint256 payout, uint256 excess) = FlexTypes.settle(payment, accepted, delivered, tolerance, penalty);
        assertLe(payout, payment, "payout <= payment");
        assertLe(excess, payment, "penalty excess <= payment");
        assertTrue(payout == 0 || excess == 0, "either a payout or an excess");
        if (delivered < accepted) {
            (uint256 more,) = FlexTypes.settle(payment, accepted, delivered + 1, tolerance, penalty);
            assertGe(more, payout, "more delivery never pays less");
        }
        if (penalty == 0) {
            assertEq(excess, 0, "no penalty, no excess");
            uint256 d = delivered > accepted ? accepted : delivered;
            bool full = accepted == 0 || d * 10_000 >= uint256(accepted) * (10_000 - tolerance);
            assertEq(payout, full ? uint256(payment) : uint256(payment) * d / accepted, "pro rata below tolerance");
        }
    }

    function testFuzz_valueUp_rounds_up(uint64 powerW, uint32 slotSeconds, uint64 price) public pure {
        uint256 v = FlexTypes.valueUp(powerW, slotSeconds, price);
        uint256 exact = uint256(powerW) * slotSeconds * price;
        assertGe(v * FlexTypes.WATT_SECONDS_PER_MWH, exact, "never below the exact value");
        if (v > 0) assertTrue((v - 1) * FlexTypes.WATT_SECONDS_PER_MWH < exact, "the smallest such integer");
    }
}
