// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {FlexTypes} from "../../src/libraries/FlexTypes.sol";

/// @title FlexTypesHarness
/// @notice Exposes the pure functions of `FlexTypes` for the Python parity tests (the Python
/// trading language must hash, prove and settle exactly as the contracts do). Test-only: it is
/// never deployed by FlexGrid itself.
contract FlexTypesHarness {
    /// @notice The StandardMerkleTree leaf of a trade.
    function tradeLeaf(FlexTypes.Trade calldata t) external pure returns (bytes32) {
        return FlexTypes.tradeLeaf(t);
    }

    /// @notice The leaves of many trades in one call.
    function tradeLeaves(FlexTypes.Trade[] calldata ts) external pure returns (bytes32[] memory leaves) {
        leaves = new bytes32[](ts.length);
        for (uint256 i = 0; i < ts.length; ++i) {
            leaves[i] = FlexTypes.tradeLeaf(ts[i]);
        }
    }

    /// @notice The StandardMerkleTree leaf of a metering value.
    function meteringLeaf(uint256 roundId, address participant, bytes32 orderHash, uint16 slot, uint64 deliveredPowerW)
        external
        pure
        returns (bytes32)
    {
        return FlexTypes.meteringLeaf(roundId, participant, orderHash, slot, deliveredPowerW);
    }

    /// @notice Whether `proof` proves the trade `t` under `root` (OpenZeppelin MerkleProof).
    function verifyTrade(bytes32 root, bytes32[] calldata proof, FlexTypes.Trade calldata t)
        external
        pure
        returns (bool)
    {
        return MerkleProof.verifyCalldata(proof, root, FlexTypes.tradeLeaf(t));
    }

    /// @notice Whether `proof` proves the metering value under `root`.
    function verifyMetering(
        bytes32 root,
        bytes32[] calldata proof,
        uint256 roundId,
        address participant,
        bytes32 orderHash,
        uint16 slot,
        uint64 deliveredPowerW
    ) external pure returns (bool) {
        return MerkleProof.verifyCalldata(
            proof, root, FlexTypes.meteringLeaf(roundId, participant, orderHash, slot, deliveredPowerW)
        );
    }

    /// @notice The settlement of one trade leaf (see docs/trading-language.md).
    function settle(uint256 paymentMicro, uint256 acceptedW, uint256 deliveredW, uint256 toleranceBps, uint256 penaltyBps)
        external
        pure
        returns (uint256 payout, uint256 penaltyExcess)
    {
        return FlexTypes.settle(paymentMicro, acceptedW, deliveredW, toleranceBps, penaltyBps);
    }

    /// @notice The value of a quantity, rounded up (money taken into escrow).
    function valueUp(uint256 powerW, uint256 slotSeconds, uint256 priceMicroPerMwh) external pure returns (uint256) {
        return FlexTypes.valueUp(powerW, slotSeconds, priceMicroPerMwh);
    }

    /// @notice The sealed-bid commitment of an order.
    function commitment(bytes32 orderHash, address provider, bytes32 salt) external pure returns (bytes32) {
        return FlexTypes.commitment(orderHash, provider, salt);
    }
}
