// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProofs} from "../../src/MerkleProofs.sol";

/// @notice Exposes the MerkleProofs library (with calldata proofs, as the contract uses it).
contract ProofsHarness {
    function verifyInclusion(uint64 index, uint64 size, bytes32 leafHash, bytes32 root, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        return MerkleProofs.verifyInclusion(index, size, leafHash, root, proof);
    }

    function verifyConsistency(uint64 size1, uint64 size2, bytes32 root1, bytes32 root2, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        return MerkleProofs.verifyConsistency(size1, size2, root1, root2, proof);
    }

    function consistencyProofLength(uint64 size1, uint64 size2) external pure returns (uint256) {
        return MerkleProofs.consistencyProofLength(size1, size2);
    }

    function hashChildren(bytes32 left, bytes32 right) external view returns (bytes32) {
        return MerkleProofs.hashChildren(left, right);
    }

    function bitLength(uint256 x) external pure returns (uint256) {
        return MerkleProofs.bitLength(x);
    }

    function popCount(uint256 x) external pure returns (uint256) {
        return MerkleProofs.popCount(x);
    }

    function trailingZeros(uint64 x) external pure returns (uint256) {
        return MerkleProofs.trailingZeros(x);
    }
}
