// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {LedgerAnchor} from "../src/LedgerAnchor.sol";
import {TestBase} from "./utils/Vm.sol";
import {Tree, MerkleReference} from "./utils/MerkleReference.sol";
import {ProofsHarness} from "./utils/ProofsHarness.sol";
import {ConsistencyVector, InclusionVector, Vectors} from "./Vectors.sol";

contract LedgerAnchorTest is TestBase {
    using MerkleReference for Tree;

    address internal constant OPERATOR = address(0xA11CE);
    address internal constant NEXT = address(0xB0B);
    /// @dev Largest real tree built by the fuzz tests.
    uint64 internal constant MAX_LEAVES = 160;

    LedgerAnchor internal anchor;
    ProofsHarness internal proofs;

    function setUp() public {
        anchor = new LedgerAnchor(OPERATOR);
        proofs = new ProofsHarness();
    }

    // ------------------------------------------------------------------ helpers

    function none() internal pure returns (bytes32[] memory) {
        return new bytes32[](0);
    }

    function anchorAs(LedgerAnchor a, uint64 size, bytes32 r, bytes32[] memory proof) internal {
        vm.prank(OPERATOR);
        a.anchor(size, r, proof);
    }

    function tryAnchor(LedgerAnchor a, uint64 size, bytes32 r, bytes32[] memory proof) internal returns (bool) {
        vm.prank(OPERATOR);
        try a.anchor(size, r, proof) {
            return true;
        } catch {
            return false;
        }
    }

    /// @dev A fresh contract whose first anchor is (size, r).
    function anchoredAt(uint64 size, bytes32 r) internal returns (LedgerAnchor a) {
        a = new LedgerAnchor(OPERATOR);
        anchorAs(a, size, r, none());
    }

    /// @dev 1 <= n1 < n2 <= MAX_LEAVES.
    function sizes(uint256 x, uint256 y) internal pure returns (uint64 n1, uint64 n2) {
        n2 = uint64(bound(y, 2, MAX_LEAVES));
        n1 = uint64(bound(x, 1, n2 - 1));
    }

    function copy(bytes32[] memory a) internal pure returns (bytes32[] memory b) {
        b = new bytes32[](a.length);
        for (uint256 i = 0; i < a.length; ++i) {
            b[i] = a[i];
        }
    }

    function flipBit(bytes32 h, uint256 bit) internal pure returns (bytes32) {
        return h ^ bytes32(uint256(1) << (bit % 256));
    }

    function expectInconsistent(uint64 n1, uint64 n2) internal {
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.InconsistentProof.selector, n1, n2));
    }

    // ------------------------------------------------------------------ deployment, first anchor

    function test_ConstructorSetsOperator() public {
        vm.expectEmit(true, true, true, true);
        emit LedgerAnchor.OperatorTransferred(address(0), NEXT);
        LedgerAnchor a = new LedgerAnchor(NEXT);
        vm.assertEq(a.operator(), NEXT, "operator");
        vm.assertEq(a.pendingOperator(), address(0), "pending operator");
        vm.assertEq(uint256(a.treeSize()), 0, "tree size");
        vm.assertEq(a.root(), bytes32(0), "root");
    }

    function test_ConstructorRefusesZeroOperator() public {
        vm.expectRevert(LedgerAnchor.ZeroOperator.selector);
        new LedgerAnchor(address(0));
    }

    function testFuzz_FirstAnchorTakesAnyRootWithoutProof(uint64 size, bytes32 r) public {
        vm.assume(size > 0 && r != bytes32(0));
        vm.expectEmit(true, true, true, true, address(anchor));
        emit LedgerAnchor.Anchored(size, r, 0);
        anchorAs(anchor, size, r, none());
        vm.assertEq(uint256(anchor.treeSize()), size, "tree size");
        vm.assertEq(anchor.root(), r, "root");
        vm.assertEq(anchor.rootAt(size), r, "rootAt(size)");
        vm.assertEq(anchor.rootAt(size - 1), bytes32(0), "rootAt(size - 1)");
        vm.assertEq(anchor.rootAt(0), bytes32(0), "rootAt(0)");
    }

    function testFuzz_FirstAnchorRefusesAProof(uint256 length, bytes32 h) public {
        bytes32[] memory proof = new bytes32[](bound(length, 1, 70));
        for (uint256 i = 0; i < proof.length; ++i) {
            proof[i] = h;
        }
        vm.prank(OPERATOR);
        vm.expectRevert(LedgerAnchor.FirstAnchorTakesNoProof.selector);
        anchor.anchor(5, keccak256("root"), proof);
    }

    function test_RefusesZeroRoot() public {
        vm.prank(OPERATOR);
        vm.expectRevert(LedgerAnchor.ZeroRoot.selector);
        anchor.anchor(1, bytes32(0), none());
    }

    function test_RefusesSizeZero() public {
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.SizeNotGrowing.selector, 0, 0));
        anchor.anchor(0, keccak256("root"), none());
    }

    function testFuzz_OnlyTheOperatorAnchors(address caller, uint64 size) public {
        vm.assume(caller != OPERATOR && size > 0);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.NotOperator.selector, caller));
        anchor.anchor(size, keccak256("root"), none());
    }

    function testFuzz_SizeMustGrow(bytes32 seed, uint256 x, uint256 y) public {
        (uint64 n1,) = sizes(x, y);
        Tree memory t = MerkleReference.real(seed, n1);
        anchorAs(anchor, n1, t.root(), none());
        uint64 n = uint64(bound(y, 0, n1));
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.SizeNotGrowing.selector, n1, n));
        anchor.anchor(n, keccak256("another root"), none());
    }

    function test_ProofLengthIsBounded() public {
        anchorAs(anchor, 3, keccak256("root"), none());
        bytes32[] memory proof = new bytes32[](66);
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.ProofTooLong.selector, 66, 65));
        anchor.anchor(type(uint64).max, keccak256("new root"), proof);
        // 65 hashes is the longest a proof can be, and only for size pairs that need them.
        proof = new bytes32[](65);
        expectInconsistent(3, type(uint64).max);
        vm.prank(OPERATOR);
        anchor.anchor(type(uint64).max, keccak256("new root"), proof);
    }

    function test_LongestProofLength() public view {
        vm.assertEq(proofs.consistencyProofLength(3, type(uint64).max), 65, "3 -> 2^64-1");
        vm.assertEq(proofs.consistencyProofLength(1, 2), 1, "1 -> 2");
        vm.assertEq(proofs.consistencyProofLength(2, 5), 2, "2 -> 5");
        vm.assertEq(proofs.consistencyProofLength(6, 8), 3, "6 -> 8");
    }

    // ------------------------------------------------------------------ consistency, fuzzed

    function testFuzz_AnchorsAConsistentTree(bytes32 seed, uint256 x, uint256 y) public {
        (uint64 n1, uint64 n2) = sizes(x, y);
        Tree memory t = MerkleReference.real(seed, n2);
        bytes32 r1 = t.rootOf(n1);
        bytes32 r2 = t.root();
        bytes32[] memory proof = t.consistencyProof(n1, n2);
        vm.assertEq(proof.length, proofs.consistencyProofLength(n1, n2), "proof length");
        vm.assertTrue(proofs.verifyConsistency(n1, n2, r1, r2, proof), "library accepts");

        anchorAs(anchor, n1, r1, none());
        vm.expectEmit(true, true, true, true, address(anchor));
        emit LedgerAnchor.Anchored(n2, r2, n1);
        anchorAs(anchor, n2, r2, proof);

        vm.assertEq(uint256(anchor.treeSize()), n2, "tree size");
        vm.assertEq(anchor.root(), r2, "root");
        vm.assertEq(anchor.rootAt(n1), r1, "rootAt(n1)");
        vm.assertEq(anchor.rootAt(n2), r2, "rootAt(n2)");
        vm.assertTrue(anchor.verifyConsistency(n1, r1, n2, proof), "verifyConsistency");
    }

    function testFuzz_AnchorsASequence(bytes32 seed, uint256[5] calldata steps) public {
        Tree memory t = MerkleReference.real(seed, MAX_LEAVES);
        uint64[6] memory anchored;
        uint64 size = uint64(bound(steps[0], 1, 8));
        anchorAs(anchor, size, t.rootOf(size), none());
        anchored[0] = size;
        for (uint256 i = 1; i < 5; ++i) {
            uint64 next = size + uint64(bound(steps[i], 1, (MAX_LEAVES - size) / (5 - i)));
            anchorAs(anchor, next, t.rootOf(next), t.consistencyProof(size, next));
            size = next;
            anchored[i] = size;
        }
        vm.assertEq(uint256(anchor.treeSize()), size, "tree size");
        for (uint256 i = 0; i < 5; ++i) {
            vm.assertEq(anchor.rootAt(anchored[i]), t.rootOf(anchored[i]), "rootAt");
            if (anchored[i] < size) {
                bytes32[] memory proof = t.consistencyProof(anchored[i], size);
                vm.assertTrue(anchor.verifyConsistency(anchored[i], t.rootOf(anchored[i]), size, proof), "to latest");
            }
        }
    }

    function testFuzz_RefusesAFlippedHash(bytes32 seed, uint256 x, uint256 y, uint256 which, uint256 bit) public {
        (uint64 n1, uint64 n2) = sizes(x, y);
        Tree memory t = MerkleReference.real(seed, n2);
        bytes32[] memory proof = t.consistencyProof(n1, n2);
        proof[which % proof.length] = flipBit(proof[which % proof.length], bit);
        bytes32 r2 = t.root();
        LedgerAnchor a = anchoredAt(n1, t.rootOf(n1));
        vm.assertFalse(proofs.verifyConsistency(n1, n2, t.rootOf(n1), r2, proof), "library refuses");
        vm.prank(OPERATOR);
        expectInconsistent(n1, n2);
        a.anchor(n2, r2, proof);
    }

    function testFuzz_RefusesAWrongNewRoot(bytes32 seed, uint256 x, uint256 y, uint256 bit) public {
        (uint64 n1, uint64 n2) = sizes(x, y);
        Tree memory t = MerkleReference.real(seed, n2);
        LedgerAnchor a = anchoredAt(n1, t.rootOf(n1));
        bytes32[] memory proof = t.consistencyProof(n1, n2);
        bytes32 wrong = flipBit(t.root(), bit);
        vm.prank(OPERATOR);
        expectInconsistent(n1, n2);
        a.anchor(n2, wrong, proof);
    }

    function testFuzz_RefusesATruncatedProof(bytes32 seed, uint256 x, uint256 y, bool front) public {
        (uint64 n1, uint64 n2) = sizes(x, y);
        Tree memory t = MerkleReference.real(seed, n2);
        bytes32[] memory full = t.consistencyProof(n1, n2);
        bytes32[] memory proof = new bytes32[](full.length - 1);
        for (uint256 i = 0; i < proof.length; ++i) {
            proof[i] = full[front ? i + 1 : i];
        }
        bytes32 r2 = t.root();
        LedgerAnchor a = anchoredAt(n1, t.rootOf(n1));
        vm.prank(OPERATOR);
        expectInconsistent(n1, n2);
        a.anchor(n2, r2, proof);
    }

    function testFuzz_RefusesAnExtendedProof(bytes32 seed, uint256 x, uint256 y, uint256 at, bytes32 extra) public {
        (uint64 n1, uint64 n2) = sizes(x, y);
        Tree memory t = MerkleReference.real(seed, n2);
        bytes32[] memory full = t.consistencyProof(n1, n2);
        at = bound(at, 0, full.length);
        bytes32[] memory proof = new bytes32[](full.length + 1);
        for (uint256 i = 0; i < proof.length; ++i) {
            proof[i] = i < at ? full[i] : i == at ? extra : full[i - 1];
        }
        bytes32 r2 = t.root();
        LedgerAnchor a = anchoredAt(n1, t.rootOf(n1));
        vm.prank(OPERATOR);
        expectInconsistent(n1, n2);
        a.anchor(n2, r2, proof);
    }

    /// A proof for (n1, n2) sent with another new size: refused unless the two size pairs have the
    /// same verification shape (then the verifier does the very same hashing, see
    /// MerkleReference.consistencyShape), which the test checks both ways.
    function testFuzz_RefusesAWrongNewSize(bytes32 seed, uint256 x, uint256 y, uint256 z) public {
        (uint64 n1, uint64 n2) = sizes(x, y);
        uint64 wrong = uint64(bound(z, n1 + 1, 2 * MAX_LEAVES));
        vm.assume(wrong != n2);
        Tree memory t = MerkleReference.real(seed, n2);
        LedgerAnchor a = anchoredAt(n1, t.rootOf(n1));
        bytes32[] memory proof = t.consistencyProof(n1, n2);
        bool sameShape = MerkleReference.consistencyShape(n1, n2) == MerkleReference.consistencyShape(n1, wrong);
        vm.assertEq(tryAnchor(a, wrong, t.root(), proof), sameShape, "accepted iff same shape");
    }

    /// The same with a wrong old size: the contract holds root(n1) under another size.
    function testFuzz_RefusesAWrongOldSize(bytes32 seed, uint256 x, uint256 y, uint256 z) public {
        (uint64 n1, uint64 n2) = sizes(x, y);
        uint64 wrong = uint64(bound(z, 1, n2 - 1));
        vm.assume(wrong != n1);
        Tree memory t = MerkleReference.real(seed, n2);
        LedgerAnchor a = anchoredAt(wrong, t.rootOf(n1));
        bytes32[] memory proof = t.consistencyProof(n1, n2);
        bool sameShape = MerkleReference.consistencyShape(n1, n2) == MerkleReference.consistencyShape(wrong, n2);
        vm.assertEq(tryAnchor(a, n2, t.root(), proof), sameShape, "accepted iff same shape");
    }

    /// A fork: another history that differs in one anchored leaf is refused, with its own
    /// (internally valid) consistency proof.
    function testFuzz_RefusesAForkedHistory(bytes32 seed, uint256 x, uint256 y, uint256 j, bytes32 other) public {
        (uint64 n1, uint64 n2) = sizes(x, y);
        Tree memory t = MerkleReference.real(seed, n2);
        Tree memory fork = MerkleReference.real(seed, n2);
        uint64 changed = uint64(bound(j, 0, n1 - 1));
        fork.leaves[changed] = MerkleReference.leafHash(abi.encode(other, "fork"));
        bytes32[] memory proof = fork.consistencyProof(n1, n2);
        vm.assertTrue(proofs.verifyConsistency(n1, n2, fork.rootOf(n1), fork.root(), proof), "fork is self-consistent");
        bytes32 forkRoot = fork.root();
        LedgerAnchor a = anchoredAt(n1, t.rootOf(n1));
        vm.prank(OPERATOR);
        expectInconsistent(n1, n2);
        a.anchor(n2, forkRoot, proof);
    }

    // ------------------------------------------------------------------ inclusion, fuzzed

    function testFuzz_VerifiesInclusion(bytes32 seed, uint256 x, uint256 y) public {
        uint64 n = uint64(bound(y, 1, MAX_LEAVES));
        uint64 index = uint64(bound(x, 0, n - 1));
        Tree memory t = MerkleReference.real(seed, n);
        anchorAs(anchor, n, t.root(), none());
        vm.assertTrue(anchor.verifyInclusion(n, index, t.leaves[index], t.inclusionProof(index, n)), "included");
    }

    function testFuzz_InclusionRefusesTampering(bytes32 seed, uint256 x, uint256 y, uint256 k, uint256 bit) public {
        uint64 n = uint64(bound(y, 2, MAX_LEAVES));
        uint64 index = uint64(bound(x, 0, n - 1));
        Tree memory t = MerkleReference.real(seed, n);
        anchorAs(anchor, n, t.root(), none());
        bytes32[] memory good = t.inclusionProof(index, n);
        bytes32 leaf = t.leaves[index];

        bytes32[] memory p = copy(good);
        p[k % p.length] = flipBit(p[k % p.length], bit);
        vm.assertFalse(anchor.verifyInclusion(n, index, leaf, p), "flipped proof hash");
        vm.assertFalse(anchor.verifyInclusion(n, index, flipBit(leaf, bit), good), "flipped leaf");

        p = new bytes32[](good.length - 1);
        for (uint256 i = 0; i < p.length; ++i) {
            p[i] = good[k % 2 == 0 ? i : i + 1];
        }
        vm.assertFalse(anchor.verifyInclusion(n, index, leaf, p), "truncated");

        p = new bytes32[](good.length + 1);
        uint256 at = k % p.length;
        for (uint256 i = 0; i < p.length; ++i) {
            p[i] = i < at ? good[i] : i == at ? bytes32(bit) : good[i - 1];
        }
        vm.assertFalse(anchor.verifyInclusion(n, index, leaf, p), "extended");

        uint64 other = uint64(bound(k, 0, n - 1));
        if (other != index) {
            vm.assertFalse(anchor.verifyInclusion(n, other, leaf, good), "other index");
        }
        vm.assertFalse(anchor.verifyInclusion(n, n, leaf, good), "index = size");
        vm.assertFalse(anchor.verifyInclusion(n + 1, index, leaf, good), "size never anchored");
        vm.assertFalse(anchor.verifyInclusion(n - 1, index, leaf, good), "size never anchored");
    }

    /// A proof against another anchored size of the same log is refused both ways.
    function testFuzz_InclusionRefusesAnotherAnchoredSize(bytes32 seed, uint256 x, uint256 y, uint256 z) public {
        (uint64 n1, uint64 n2) = sizes(x, y);
        uint64 index = uint64(bound(z, 0, n1 - 1));
        Tree memory t = MerkleReference.real(seed, n2);
        anchorAs(anchor, n1, t.rootOf(n1), none());
        anchorAs(anchor, n2, t.root(), t.consistencyProof(n1, n2));
        bytes32[] memory p1 = t.inclusionProof(index, n1);
        bytes32[] memory p2 = t.inclusionProof(index, n2);
        vm.assertTrue(anchor.verifyInclusion(n1, index, t.leaves[index], p1), "in n1");
        vm.assertTrue(anchor.verifyInclusion(n2, index, t.leaves[index], p2), "in n2");
        vm.assertFalse(anchor.verifyInclusion(n2, index, t.leaves[index], p1), "n1 proof against n2");
        vm.assertFalse(anchor.verifyInclusion(n1, index, t.leaves[index], p2), "n2 proof against n1");
    }

    // ------------------------------------------------------------------ the verifier's pieces

    function testFuzz_HashChildrenIsSha256(bytes32 left, bytes32 right) public view {
        vm.assertEq(proofs.hashChildren(left, right), MerkleReference.nodeHash(left, right), "node hash");
    }

    function testFuzz_BitHelpers(uint64 x) public view {
        vm.assertEq(proofs.bitLength(x), MerkleReference.bitLength(x), "bitLength");
        vm.assertEq(proofs.popCount(x), MerkleReference.popCount(x), "popCount");
        if (x != 0) vm.assertEq(proofs.trailingZeros(x), MerkleReference.trailingZeros(x), "trailingZeros");
    }

    function test_BitHelpersAtTheEdges() public view {
        vm.assertEq(proofs.bitLength(0), 0, "bitLength(0)");
        vm.assertEq(proofs.bitLength(type(uint64).max), 64, "bitLength(max)");
        vm.assertEq(proofs.popCount(type(uint64).max), 64, "popCount(max)");
        vm.assertEq(proofs.trailingZeros(1 << 63), 63, "trailingZeros(2^63)");
    }

    // ------------------------------------------------------------------ reference vectors

    function test_ConsistencyVectors() public {
        ConsistencyVector[] memory v = Vectors.consistency();
        vm.assertEq(v.length, Vectors.CONSISTENCY_COUNT, "vector count");
        uint256 viaAnchor;
        for (uint256 i = 0; i < v.length; ++i) {
            ConsistencyVector memory c = v[i];
            bool got = proofs.verifyConsistency(c.size1, c.size2, c.root1, c.root2, c.proof);
            vm.assertEq(got, !c.wantErr, c.name);

            // Through the contract: hold (size1, root1), then anchor (size2, root2). The
            // contract also refuses a size that does not grow, which the verifier allows.
            if (c.size1 == 0) {
                if (c.proof.length > 0) {
                    LedgerAnchor empty = new LedgerAnchor(OPERATOR);
                    vm.prank(OPERATOR);
                    vm.expectRevert(LedgerAnchor.FirstAnchorTakesNoProof.selector);
                    empty.anchor(c.size2 == 0 ? 1 : c.size2, keccak256("r"), c.proof);
                    ++viaAnchor;
                }
                continue;
            }
            if (c.root1 == bytes32(0)) continue; // cannot be anchored; the library check above covers it
            LedgerAnchor a = anchoredAt(c.size1, c.root1);
            bool want = !c.wantErr && c.size2 > c.size1;
            vm.assertEq(tryAnchor(a, c.size2, c.root2, c.proof), want, string.concat("anchor: ", c.name));
            ++viaAnchor;
        }
        log("consistency vectors run", v.length);
        log("  of them also through anchor()", viaAnchor);
    }

    function test_InclusionVectors() public {
        InclusionVector[] memory v = Vectors.inclusion();
        vm.assertEq(v.length, Vectors.INCLUSION_COUNT, "vector count");
        uint256 viaAnchor;
        for (uint256 i = 0; i < v.length; ++i) {
            InclusionVector memory c = v[i];
            bool got = proofs.verifyInclusion(c.index, c.size, c.leafHash, c.root, c.proof);
            vm.assertEq(got, !c.wantErr, c.name);

            // Through the contract: anchor (size, root), then check against it.
            LedgerAnchor a = new LedgerAnchor(OPERATOR);
            if (c.size > 0 && c.root != bytes32(0)) {
                anchorAs(a, c.size, c.root, none());
                ++viaAnchor;
            } else {
                vm.assertTrue(c.wantErr, string.concat("unanchorable vector must be an error: ", c.name));
            }
            vm.assertEq(
                a.verifyInclusion(c.size, c.index, c.leafHash, c.proof), !c.wantErr, string.concat("anchor: ", c.name)
            );
        }
        log("inclusion vectors run", v.length);
        log("  of them also against an anchored root", viaAnchor);
    }

    // ------------------------------------------------------------------ operator hand-over

    function test_HandOver() public {
        anchorAs(anchor, 1, keccak256("r1"), none());

        vm.expectEmit(true, true, true, true, address(anchor));
        emit LedgerAnchor.OperatorTransferStarted(OPERATOR, NEXT);
        vm.prank(OPERATOR);
        anchor.transferOperator(NEXT);
        vm.assertEq(anchor.pendingOperator(), NEXT, "pending");
        vm.assertEq(anchor.operator(), OPERATOR, "operator until accepted");

        // Until it accepts, the new operator cannot anchor and the old one still can.
        vm.prank(NEXT);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.NotOperator.selector, NEXT));
        anchor.anchor(2, keccak256("r2"), new bytes32[](1));

        vm.prank(address(0xBAD));
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.NotPendingOperator.selector, address(0xBAD)));
        anchor.acceptOperator();

        vm.expectEmit(true, true, true, true, address(anchor));
        emit LedgerAnchor.OperatorTransferred(OPERATOR, NEXT);
        vm.prank(NEXT);
        anchor.acceptOperator();
        vm.assertEq(anchor.operator(), NEXT, "operator");
        vm.assertEq(anchor.pendingOperator(), address(0), "pending cleared");

        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.NotOperator.selector, OPERATOR));
        anchor.anchor(2, keccak256("r2"), new bytes32[](1));
        vm.prank(OPERATOR);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.NotOperator.selector, OPERATOR));
        anchor.transferOperator(OPERATOR);

        // The new operator anchors (the junk proof is refused on its merits, not for the caller).
        vm.prank(NEXT);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.InconsistentProof.selector, 1, 2));
        anchor.anchor(2, keccak256("r2"), new bytes32[](1));

        // Accepting twice is refused.
        vm.prank(NEXT);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.NotPendingOperator.selector, NEXT));
        anchor.acceptOperator();
    }

    function test_HandOverToTheNewOperatorAnchors() public {
        Tree memory t = MerkleReference.real(keccak256("log"), 9);
        anchorAs(anchor, 4, t.rootOf(4), none());
        vm.prank(OPERATOR);
        anchor.transferOperator(NEXT);
        vm.prank(NEXT);
        anchor.acceptOperator();
        bytes32 r9 = t.root();
        bytes32[] memory proof = t.consistencyProof(4, 9);
        vm.prank(NEXT);
        anchor.anchor(9, r9, proof);
        vm.assertEq(anchor.root(), t.root(), "anchored by the new operator");
    }

    function test_HandOverCanBeWithdrawnOrRedirected() public {
        address third = address(0xCA7);
        vm.startPrank(OPERATOR);
        anchor.transferOperator(NEXT);
        vm.expectEmit(true, true, true, true, address(anchor));
        emit LedgerAnchor.OperatorTransferStarted(OPERATOR, third);
        anchor.transferOperator(third);
        vm.stopPrank();

        vm.prank(NEXT);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.NotPendingOperator.selector, NEXT));
        anchor.acceptOperator();

        vm.prank(OPERATOR);
        anchor.transferOperator(address(0));
        vm.prank(third);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.NotPendingOperator.selector, third));
        anchor.acceptOperator();
        vm.assertEq(anchor.operator(), OPERATOR, "operator kept");
    }

    function testFuzz_OnlyTheOperatorHandsOver(address caller, address to) public {
        vm.assume(caller != OPERATOR);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.NotOperator.selector, caller));
        anchor.transferOperator(to);
    }

    function test_TheZeroAddressCannotAcceptTheEmptyOffer() public {
        vm.prank(address(0));
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.NotPendingOperator.selector, address(0)));
        anchor.acceptOperator();
    }

    function testFuzz_NoOneAcceptsWithoutAnOffer(address caller) public {
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(LedgerAnchor.NotPendingOperator.selector, caller));
        anchor.acceptOperator();
    }
}
