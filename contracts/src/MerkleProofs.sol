// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title RFC 6962 / RFC 9162 Merkle proof verification with the SHA-256 precompile.
/// @notice Leaf hash = SHA-256(0x00 || data), node hash = SHA-256(0x01 || left || right).
/// Both verifiers follow RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency), in the
/// formulation of the reference implementation (transparency-dev/merkle): the expected proof
/// length is computed from the sizes and any other length is refused, so the work done is
/// bounded by the proof length, itself at most 64 (inclusion) or 65 (consistency) hashes for
/// 64-bit tree sizes.
///
/// Decided edge case: a consistency proof from size 0 is refused (there is nothing to be
/// consistent with); the first anchored root of a log carries no proof.
library MerkleProofs {
    /// @dev Longest inclusion proof for a 64-bit tree size.
    uint256 internal constant MAX_INCLUSION_PROOF = 64;
    /// @dev Longest consistency proof for 64-bit tree sizes (an optional seed plus 64 hashes).
    uint256 internal constant MAX_CONSISTENCY_PROOF = 65;

    /// @notice SHA-256(0x01 || left || right) through the precompile at address 0x02, without
    /// allocating memory (the same value as `sha256(abi.encodePacked(bytes1(0x01), left, right))`).
    function hashChildren(bytes32 left, bytes32 right) internal view returns (bytes32 h) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore8(ptr, 0x01)
            mstore(add(ptr, 0x01), left)
            mstore(add(ptr, 0x21), right)
            if iszero(staticcall(gas(), 0x02, ptr, 0x41, 0x00, 0x20)) { revert(0, 0) }
            h := mload(0x00)
        }
    }

    /// @notice Whether `proof` proves that `leafHash` is the leaf at `index` of the tree of
    /// `size` leaves whose root is `root` (RFC 9162 §2.1.3.2).
    function verifyInclusion(uint64 index, uint64 size, bytes32 leafHash, bytes32 root, bytes32[] calldata proof)
        internal
        view
        returns (bool)
    {
        if (index >= size || proof.length > MAX_INCLUSION_PROOF) return false;
        (uint256 inner, uint256 border) = decompose(index, size);
        if (proof.length != inner + border) return false;
        bytes32 h = leafHash;
        uint256 idx = index;
        for (uint256 i = 0; i < inner; ++i) {
            h = (idx >> i) & 1 == 0 ? hashChildren(h, proof[i]) : hashChildren(proof[i], h);
        }
        for (uint256 i = inner; i < proof.length; ++i) {
            h = hashChildren(proof[i], h);
        }
        return h == root;
    }

    /// @notice Whether `proof` proves that the tree of `size1` leaves with root `root1` is a
    /// prefix of the tree of `size2` leaves with root `root2` (RFC 9162 §2.1.4.2).
    function verifyConsistency(uint64 size1, uint64 size2, bytes32 root1, bytes32 root2, bytes32[] calldata proof)
        internal
        view
        returns (bool)
    {
        if (size1 == 0 || size2 < size1) return false;
        if (size1 == size2) return proof.length == 0 && root1 == root2;
        if (proof.length == 0 || proof.length > MAX_CONSISTENCY_PROOF) return false;

        (uint256 inner, uint256 border) = decompose(size1 - 1, size2);
        uint256 shift = trailingZeros(size1);
        inner -= shift; // shift < inner because size1 < size2

        // Unless size1 is a power of two (then the old root is itself a node of the new tree),
        // the proof starts with the hash of the subtree of 2^shift leaves ending at size1.
        bytes32 seed;
        uint256 start;
        if (size1 & (size1 - 1) == 0) {
            seed = root1;
        } else {
            seed = proof[0];
            start = 1;
        }
        if (proof.length != start + inner + border) return false;

        uint256 mask = uint256(size1 - 1) >> shift;
        bytes32 h1 = seed; // rebuilds root1
        bytes32 h2 = seed; // rebuilds root2
        for (uint256 i = 0; i < inner; ++i) {
            bytes32 p = proof[start + i];
            if ((mask >> i) & 1 == 1) {
                h1 = hashChildren(p, h1);
                h2 = hashChildren(p, h2);
            } else {
                h2 = hashChildren(h2, p);
            }
        }
        for (uint256 i = start + inner; i < proof.length; ++i) {
            bytes32 p = proof[i];
            h1 = hashChildren(p, h1);
            h2 = hashChildren(p, h2);
        }
        return h1 == root1 && h2 == root2;
    }

    /// @notice The expected length of a consistency proof from `size1` to `size2`
    /// (0 < size1 < size2), as the anchorer must send it.
    function consistencyProofLength(uint64 size1, uint64 size2) internal pure returns (uint256) {
        (uint256 inner, uint256 border) = decompose(size1 - 1, size2);
        uint256 shift = trailingZeros(size1);
        return (size1 & (size1 - 1) == 0 ? 0 : 1) + inner - shift + border;
    }

    /// @dev Splits the inclusion proof of leaf `index` in a tree of `size` leaves into the part
    /// below the split from the right border (`inner`) and the part on the border (`border`).
    function decompose(uint64 index, uint64 size) internal pure returns (uint256 inner, uint256 border) {
        inner = bitLength(uint256(index ^ (size - 1)));
        border = popCount(uint256(index) >> inner);
    }

    /// @dev Number of bits needed to write x (0 for 0); x < 2^64.
    function bitLength(uint256 x) internal pure returns (uint256 n) {
        if (x >= 1 << 32) {
            x >>= 32;
            n += 32;
        }
        if (x >= 1 << 16) {
            x >>= 16;
            n += 16;
        }
        if (x >= 1 << 8) {
            x >>= 8;
            n += 8;
        }
        if (x >= 1 << 4) {
            x >>= 4;
            n += 4;
        }
        if (x >= 1 << 2) {
            x >>= 2;
            n += 2;
        }
        if (x >= 1 << 1) {
            x >>= 1;
            n += 1;
        }
        return n + x;
    }

    /// @dev Number of set bits of x; x < 2^64.
    function popCount(uint256 x) internal pure returns (uint256) {
        unchecked {
            x = x - ((x >> 1) & 0x5555555555555555);
            x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333);
            x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0f;
            return ((x * 0x0101010101010101) & 0xffffffffffffffff) >> 56;
        }
    }

    /// @dev Number of trailing zero bits of x; 0 < x < 2^64.
    function trailingZeros(uint64 x) internal pure returns (uint256) {
        unchecked {
            uint256 v = uint256(x);
            return bitLength(v & (~v + 1)) - 1;
        }
    }
}
