// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {LedgerAnchor} from "../src/LedgerAnchor.sol";
import {TestBase} from "../test/utils/Vm.sol";
import {Tree, MerkleReference} from "../test/utils/MerkleReference.sol";
import {PointsToken} from "../test/utils/PointsToken.sol";

/// @notice Sends real anchor transactions for the gas figures (run by scripts/anchor-gas.sh
/// against a local anvil). For each tree size 10, 10^3, 10^6, 10^9 and each previous size
/// (1, 100 and 10,000 entries before it, and the previous size with the costliest proof) it deploys
/// a LedgerAnchor, anchors the previous size (first anchor, no proof), then anchors the size
/// with a valid consistency proof computed from a compact tree (see MerkleReference). Then the
/// costliest proof of all, to size 2^64 - 1. Last, the per-entry on-chain design beside it: an
/// ERC-20 mint per purchase (PointsToken), to a new holder and to an existing one.
contract AnchorGas is TestBase {
    using MerkleReference for Tree;

    function run() external {
        uint256 key = vm.envUint("ANCHOR_GAS_KEY");
        uint64[4] memory sizes = [uint64(10), 1_000, 1_000_000, 1_000_000_000];
        for (uint256 i = 0; i < sizes.length; ++i) {
            uint64 n = sizes[i];
            uint64[4] memory previous = [n - 1, n > 100 ? n - 100 : 0, n > 10_000 ? n - 10_000 : 0, worst(n)];
            for (uint256 j = 0; j < previous.length; ++j) {
                if (previous[j] != 0) measure(key, previous[j], n);
            }
        }
        // The most expensive consistency proof there is: 65 hashes, 126 SHA-256 calls.
        measure(key, worst(type(uint64).max), type(uint64).max);
        measureMints(key);
    }

    /// @dev The previous size whose proof to n is the longest and needs the most hashing:
    /// n - 1 if n is a power of two, else 2^(k-1) - 1 where k = bitLength(n - 1) (a seed, then
    /// two hashes per level for every level but the first and the last).
    function worst(uint64 n) internal pure returns (uint64) {
        if (n & (n - 1) == 0) return n - 1;
        return uint64((uint256(1) << (MerkleReference.bitLength(n - 1) - 1)) - 1);
    }

    function measure(uint256 key, uint64 m, uint64 n) internal {
        Tree memory t = MerkleReference.compactTree(keccak256(abi.encode(m, n)), n, m, 0);
        bytes32 r1 = t.rootOf(m);
        bytes32 r2 = t.root();
        bytes32[] memory proof = t.consistencyProof(m, n);
        vm.startBroadcast(key);
        LedgerAnchor a = new LedgerAnchor(vm.addr(key));
        a.anchor(m, r1, new bytes32[](0));
        a.anchor(n, r2, proof);
        vm.stopBroadcast();
    }

    /// @dev Deploys a PointsToken and sends three mints of one purchase's points: the token's
    /// first (total supply from zero; not a figure), one to a consumer with no balance (a first
    /// purchase: the balance slot goes from zero), then another to that consumer (a repeat
    /// purchase: the balance slot is already non-zero).
    function measureMints(uint256 key) internal {
        address earlier = address(uint160(uint256(keccak256("pointsledger earlier consumer"))));
        address consumer = address(uint160(uint256(keccak256("pointsledger consumer"))));
        uint256 points = 120;
        vm.startBroadcast(key);
        PointsToken token = new PointsToken(vm.addr(key));
        token.mint(earlier, points);
        token.mint(consumer, points);
        token.mint(consumer, points);
        vm.stopBroadcast();
    }
}
