// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice A reference RFC 6962 tree, written straight from RFC 9162 §2.1.1 (MTH), §2.1.3.1
/// (PATH) and §2.1.4.1 (SUBPROOF), with sha256(abi.encodePacked(...)) hashing. It computes
/// roots and proofs; the contract under test only verifies them.
///
/// A tree is either
/// - real: its leaf hashes are listed (small trees, for the fuzz tests), or
/// - compact: a tree of any 64-bit size described by a salt. A perfect subtree (2^k leaves)
///   that does not straddle a cut point gets an opaque hash derived from the salt and its
///   range; every other node is hashed from its children as in MTH. A proof only ever shows
///   such perfect subtrees and the nodes above them, so roots and proofs of a compact tree
///   are computed with O(log n) hashes and are consistent with each other: with the cut point
///   at size1, the trees of size1 and size2 leaves share every subtree they have in common.
struct Tree {
    uint64 size;
    bytes32[] leaves;
    bool compact;
    uint64 cut1;
    uint64 cut2;
    bytes32 salt;
}

library MerkleReference {
    function leafHash(bytes memory data) internal pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x00), data));
    }

    function nodeHash(bytes32 left, bytes32 right) internal pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x01), left, right));
    }

    /// @notice A real tree of `size` leaves: leaf i is the leaf hash of abi.encode(seed, i).
    function real(bytes32 seed, uint64 size) internal pure returns (Tree memory t) {
        t.size = size;
        t.leaves = new bytes32[](size);
        for (uint64 i = 0; i < size; ++i) {
            t.leaves[i] = leafHash(abi.encode(seed, i));
        }
    }

    /// @notice A compact tree of `size` leaves with cut points `cut1` and `cut2` (see above).
    function compactTree(bytes32 salt, uint64 size, uint64 cut1, uint64 cut2) internal pure returns (Tree memory t) {
        t.size = size;
        t.compact = true;
        t.cut1 = cut1;
        t.cut2 = cut2;
        t.salt = salt;
    }

    /// @notice The largest power of two smaller than n (n >= 2).
    function split(uint64 n) internal pure returns (uint64 k) {
        k = 1;
        for (uint256 i = 0; i < 64 && k < n - k; ++i) {
            k <<= 1;
        }
    }

    /// @notice MTH of the leaves [a, b).
    function mth(Tree memory t, uint64 a, uint64 b) internal pure returns (bytes32) {
        uint64 n = b - a;
        if (t.compact) {
            bool perfect = n & (n - 1) == 0;
            bool straddles = (a < t.cut1 && t.cut1 < b) || (a < t.cut2 && t.cut2 < b);
            if (perfect && !straddles) return keccak256(abi.encode(t.salt, a, b));
        } else if (n == 1) {
            return t.leaves[a];
        }
        uint64 k = split(n);
        return nodeHash(mth(t, a, a + k), mth(t, a + k, b));
    }

    /// @notice The root of the first `size` leaves of the tree.
    function rootOf(Tree memory t, uint64 size) internal pure returns (bytes32) {
        return mth(t, 0, size);
    }

    function root(Tree memory t) internal pure returns (bytes32) {
        return mth(t, 0, t.size);
    }

    /// @notice The leaf hash at `index` (for compact trees, with a cut point at index).
    function leafAt(Tree memory t, uint64 index) internal pure returns (bytes32) {
        return mth(t, index, index + 1);
    }

    /// @notice PATH(index, D[0:size]): the inclusion proof of leaf `index` in the first `size` leaves.
    function inclusionProof(Tree memory t, uint64 index, uint64 size) internal pure returns (bytes32[] memory proof) {
        proof = new bytes32[](66);
        uint256 n = _path(t, index, 0, size, proof, 0);
        assembly ("memory-safe") {
            mstore(proof, n)
        }
    }

    function _path(Tree memory t, uint64 m, uint64 a, uint64 b, bytes32[] memory out, uint256 n)
        private
        pure
        returns (uint256)
    {
        if (b - a == 1) return n;
        uint64 k = split(b - a);
        if (m < k) {
            n = _path(t, m, a, a + k, out, n);
            out[n] = mth(t, a + k, b);
        } else {
            n = _path(t, m - k, a + k, b, out, n);
            out[n] = mth(t, a, a + k);
        }
        return n + 1;
    }

    /// @notice PROOF(size1, D[0:size2]): the consistency proof from the first `size1` leaves to
    /// the first `size2` leaves (0 < size1 < size2).
    function consistencyProof(Tree memory t, uint64 size1, uint64 size2)
        internal
        pure
        returns (bytes32[] memory proof)
    {
        proof = new bytes32[](66);
        uint256 n = _subproof(t, size1, 0, size2, true, proof, 0);
        assembly ("memory-safe") {
            mstore(proof, n)
        }
    }

    function _subproof(Tree memory t, uint64 m, uint64 a, uint64 b, bool whole, bytes32[] memory out, uint256 n)
        private
        pure
        returns (uint256)
    {
        if (m == b - a) {
            if (whole) return n;
            out[n] = mth(t, a, b);
            return n + 1;
        }
        uint64 k = split(b - a);
        if (m <= k) {
            n = _subproof(t, m, a, a + k, whole, out, n);
            out[n] = mth(t, a + k, b);
        } else {
            n = _subproof(t, m - k, a + k, b, false, out, n);
            out[n] = mth(t, a, a + k);
        }
        return n + 1;
    }

    /// @notice What a verifier does with a consistency proof from size1 to size2, as a value:
    /// whether the old root seeds the computation, the proof length, and for each proof hash
    /// whether it only extends the new root (an inner hash to the right of the old tree's
    /// border). Two size pairs with the same shape verify exactly the same proofs against the
    /// same roots: RFC 9162 proofs bind the sizes only through this shape.
    function consistencyShape(uint64 size1, uint64 size2) internal pure returns (bytes32) {
        uint256 inner = bitLength(uint256((size1 - 1) ^ (size2 - 1)));
        uint256 border = popCount(uint256(size1 - 1) >> inner);
        uint256 shift = trailingZeros(size1);
        inner -= shift;
        bool seeded = size1 & (size1 - 1) == 0;
        uint256 mask = uint256(size1 - 1) >> shift;
        uint256 rightOnly = 0;
        for (uint256 i = 0; i < inner; ++i) {
            rightOnly = (rightOnly << 1) | (((mask >> i) & 1) ^ 1);
        }
        return keccak256(abi.encode(seeded, inner + border, rightOnly));
    }

    /// @notice The length of the consistency proof from size1 to size2 (0 < size1 < size2).
    function proofLength(uint64 size1, uint64 size2) internal pure returns (uint256) {
        uint256 inner = bitLength(uint256((size1 - 1) ^ (size2 - 1)));
        uint256 border = popCount(uint256(size1 - 1) >> inner);
        uint256 shift = trailingZeros(size1);
        return (size1 & (size1 - 1) == 0 ? 0 : 1) + inner - shift + border;
    }

    function bitLength(uint256 x) internal pure returns (uint256 n) {
        for (uint256 i = 0; i < 256 && x != 0; ++i) {
            x >>= 1;
            ++n;
        }
    }

    function popCount(uint256 x) internal pure returns (uint256 n) {
        for (uint256 i = 0; i < 256 && x != 0; ++i) {
            n += x & 1;
            x >>= 1;
        }
    }

    function trailingZeros(uint64 x) internal pure returns (uint256 n) {
        for (uint256 i = 0; i < 64 && (x >> i) & 1 == 0; ++i) {
            ++n;
        }
    }
}
