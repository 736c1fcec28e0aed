// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {LedgerAnchor} from "../src/LedgerAnchor.sol";
import {TestBase} from "./utils/Vm.sol";
import {Tree, MerkleReference} from "./utils/MerkleReference.sol";

/// @notice Gas of anchor() and verifyInclusion() at tree sizes 10, 10^3, 10^6 and 10^9, with
/// valid proofs computed from compact trees (see MerkleReference). Figures are the execution gas
/// of the call as seen from the calling contract, with the contract's storage made cold first
/// (vm.cool), so one call costs what it would as the first call of a transaction; intrinsic
/// transaction gas and calldata are not included (scripts/anchor-gas.sh measures whole
/// transactions on anvil). The test bounds gas by a linear function of the proof length,
/// itself at most log2(size) + 2.
contract LedgerAnchorGasTest is TestBase {
    using MerkleReference for Tree;

    address internal constant OPERATOR = address(0xA11CE);
    /// @dev Bounds asserted below: fixed part and cost per proof hash of anchor() (two storage
    /// writes, one event; at most two SHA-256 precompile calls per hash).
    uint256 internal constant ANCHOR_FIXED = 36_000;
    uint256 internal constant ANCHOR_PER_HASH = 950;
    uint256 internal constant INCLUSION_FIXED = 5_000;
    uint256 internal constant INCLUSION_PER_HASH = 600;

    function none() internal pure returns (bytes32[] memory) {
        return new bytes32[](0);
    }

    /// @dev Gas of anchoring size n2 over an anchored size n1, and the proof length.
    function anchorGas(uint64 n1, uint64 n2) internal returns (uint256 used, uint256 hashes) {
        Tree memory t = MerkleReference.compactTree(keccak256(abi.encode(n1, n2)), n2, n1, 0);
        bytes32 r1 = t.rootOf(n1);
        bytes32 r2 = t.root();
        bytes32[] memory proof = t.consistencyProof(n1, n2);
        LedgerAnchor a = new LedgerAnchor(OPERATOR);
        vm.prank(OPERATOR);
        a.anchor(n1, r1, none());
        vm.cool(address(a));
        vm.prank(OPERATOR);
        uint256 before = gasleft();
        a.anchor(n2, r2, proof);
        used = before - gasleft();
        hashes = proof.length;
        vm.assertEq(a.rootAt(n2), r2, "anchored");
        vm.assertLe(used, ANCHOR_FIXED + ANCHOR_PER_HASH * hashes, "anchor gas bound");
    }

    /// @dev Gas of checking the inclusion of leaf `index` in the anchored tree of n leaves.
    function inclusionGas(uint64 n, uint64 index) internal returns (uint256 used, uint256 hashes) {
        Tree memory t = MerkleReference.compactTree(keccak256(abi.encode(n, index)), n, index, index + 1);
        bytes32 r = t.root();
        bytes32 leaf = t.leafAt(index);
        bytes32[] memory proof = t.inclusionProof(index, n);
        LedgerAnchor a = new LedgerAnchor(OPERATOR);
        vm.prank(OPERATOR);
        a.anchor(n, r, none());
        vm.cool(address(a));
        uint256 before = gasleft();
        bool ok = a.verifyInclusion(n, index, leaf, proof);
        used = before - gasleft();
        hashes = proof.length;
        vm.assertTrue(ok, "included");
        vm.assertLe(used, INCLUSION_FIXED + INCLUSION_PER_HASH * hashes, "inclusion gas bound");
    }

    function report(string memory what, uint256 used, uint256 hashes) internal view {
        log(string.concat(what, ", proof hashes"), hashes);
        log("  gas", used);
    }

    function test_AnchorGasBySize() public {
        uint64[4] memory sizes = [uint64(10), 1_000, 1_000_000, 1_000_000_000];
        for (uint256 i = 0; i < sizes.length; ++i) {
            uint64 n = sizes[i];
            // One entry since the last anchor, 100, 10,000, and the costliest proof for this size.
            uint64[4] memory previous = [n - 1, n > 100 ? n - 100 : 0, n > 10_000 ? n - 10_000 : 0, worst(n)];
            for (uint256 j = 0; j < previous.length; ++j) {
                if (previous[j] == 0) continue;
                (uint256 used, uint256 hashes) = anchorGas(previous[j], n);
                report(string.concat("anchor size ", vm.toString(n), " from ", vm.toString(previous[j])), used, hashes);
            }
        }
    }

    /// @dev The previous size whose proof to n is the longest and needs the most hashing:
    /// n - 1 if n is a power of two, else 2^(k-1) - 1 where k = bitLength(n - 1) (a seed, then
    /// two hashes per level for every level but the first and the last).
    function worst(uint64 n) internal pure returns (uint64) {
        if (n & (n - 1) == 0) return n - 1;
        return uint64((uint256(1) << (MerkleReference.bitLength(n - 1) - 1)) - 1);
    }

    function test_AnchorGasCostliestProof() public {
        (uint256 used, uint256 hashes) = anchorGas(worst(type(uint64).max), type(uint64).max);
        vm.assertEq(hashes, 65, "longest proof");
        report("anchor size 2^64-1 from 2^63-1", used, hashes);
    }

    /// No previous size needs more hashing or a longer proof than worst(n) (checked over all
    /// of them for n up to 130).
    function test_WorstPreviousSize() public pure {
        for (uint64 n = 3; n <= 130; ++n) {
            uint256 most;
            uint256 longest;
            for (uint64 m = 1; m < n; ++m) {
                uint256 c = hashing(m, n);
                if (c > most) most = c;
                uint256 l = MerkleReference.proofLength(m, n);
                if (l > longest) longest = l;
            }
            require(hashing(worst(n), n) == most, "worst(n) is not the costliest");
            require(MerkleReference.proofLength(worst(n), n) == longest, "worst(n) is not the longest");
        }
    }

    /// @dev SHA-256 calls the verifier makes for a proof from m to n.
    function hashing(uint64 m, uint64 n) internal pure returns (uint256 calls) {
        uint256 inner = MerkleReference.bitLength(uint256((m - 1) ^ (n - 1)));
        uint256 border = MerkleReference.popCount(uint256(m - 1) >> inner);
        uint256 shift = MerkleReference.trailingZeros(m);
        uint256 mask = uint256(m - 1) >> shift;
        for (uint256 i = 0; i < inner - shift; ++i) {
            calls += (mask >> i) & 1 == 1 ? 2 : 1;
        }
        calls += 2 * border;
    }

    function test_InclusionGasBySize() public {
        uint64[4] memory sizes = [uint64(10), 1_000, 1_000_000, 1_000_000_000];
        for (uint256 i = 0; i < sizes.length; ++i) {
            uint64 n = sizes[i];
            (uint256 used, uint256 hashes) = inclusionGas(n, n / 3);
            report(string.concat("verifyInclusion size ", vm.toString(n), " index ", vm.toString(n / 3)), used, hashes);
        }
    }

    /// Compact trees of any 64-bit sizes: the contract accepts their proofs, and refuses the
    /// proof for a changed new root.
    function testFuzz_AnchorsCompactTrees(uint64 n1, uint64 n2, bytes32 salt) public {
        vm.assume(n1 > 0 && n2 > n1);
        Tree memory t = MerkleReference.compactTree(salt, n2, n1, 0);
        bytes32 r1 = t.rootOf(n1);
        bytes32 r2 = t.root();
        bytes32[] memory proof = t.consistencyProof(n1, n2);
        LedgerAnchor a = new LedgerAnchor(OPERATOR);
        vm.prank(OPERATOR);
        a.anchor(n1, r1, none());
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.InconsistentProof.selector, n1, n2));
        a.anchor(n2, r2 ^ bytes32(uint256(1)), proof);
        vm.prank(OPERATOR);
        a.anchor(n2, r2, proof);
        vm.assertEq(a.root(), r2, "anchored");
    }

    function testFuzz_VerifiesInclusionInCompactTrees(uint64 n, uint64 index, bytes32 salt) public {
        vm.assume(n > 0 && index < n);
        Tree memory t = MerkleReference.compactTree(salt, n, index, index + 1);
        bytes32 r = t.root();
        bytes32 leaf = t.leafAt(index);
        bytes32[] memory proof = t.inclusionProof(index, n);
        LedgerAnchor a = new LedgerAnchor(OPERATOR);
        vm.prank(OPERATOR);
        a.anchor(n, r, none());
        vm.assertTrue(a.verifyInclusion(n, index, leaf, proof), "included");
        vm.assertFalse(a.verifyInclusion(n, index, leaf ^ bytes32(uint256(1)), proof), "other leaf");
    }
}
