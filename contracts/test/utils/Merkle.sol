// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Hashes} from "@openzeppelin/contracts/utils/cryptography/Hashes.sol";

/// @notice Builds sorted-pair Merkle trees over given leaves (as OpenZeppelin's MerkleProof expects)
/// and their proofs, for tests. A level with an odd count carries its last node up unchanged.
library Merkle {
    function root(bytes32[] memory leaves) internal pure returns (bytes32) {
        require(leaves.length > 0, "Merkle: no leaves");
        bytes32[] memory level = leaves;
        while (level.length > 1) level = _up(level);
        return level[0];
    }

    function proof(bytes32[] memory leaves, uint256 index) internal pure returns (bytes32[] memory) {
        require(index < leaves.length, "Merkle: index");
        bytes32[] memory path = new bytes32[](64);
        uint256 depth;
        bytes32[] memory level = leaves;
        while (level.length > 1) {
            uint256 sibling = index ^ 1;
            if (sibling < level.length) path[depth++] = level[sibling];
            level = _up(level);
            index /= 2;
        }
        bytes32[] memory out = new bytes32[](depth);
        for (uint256 i; i < depth; ++i) {
            out[i] = path[i];
        }
        return out;
    }

    function _up(bytes32[] memory level) private pure returns (bytes32[] memory next) {
        next = new bytes32[]((level.length + 1) / 2);
        for (uint256 i; i < next.length; ++i) {
            uint256 a = 2 * i;
            next[i] = a + 1 < level.length ? Hashes.commutativeKeccak256(level[a], level[a + 1]) : level[a];
        }
    }
}
