// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProofs} from "./MerkleProofs.sol";

/// @title LedgerAnchor: a witness for the pointsledger log.
/// @notice Keeps the roots of the log's RFC 6962 Merkle tree by tree size. Every new root must
/// come with a consistency proof from the last anchored one, checked here with the SHA-256
/// precompile, so the chain refuses a rewritten or forked history, even from the operator.
/// Anyone (another contract included) can check an inclusion proof against an anchored root.
///
/// Gas per anchor depends only on the proof length (at most 65 hashes, about 2·log2(size)):
/// two storage writes, one event and at most two SHA-256 calls per proof hash, whatever the
/// number of entries added since the last anchor.
contract LedgerAnchor {
    /// @notice The caller is not the operator.
    error NotOperator(address caller);
    /// @notice The caller is not the pending operator.
    error NotPendingOperator(address caller);
    /// @notice The zero address cannot be the operator.
    error ZeroOperator();
    /// @notice The new tree size does not exceed the anchored one.
    error SizeNotGrowing(uint64 treeSize, uint64 newSize);
    /// @notice A zero root is not a tree root (and zero means "never anchored" in rootAt).
    error ZeroRoot();
    /// @notice The first anchor has nothing to be consistent with and takes an empty proof.
    error FirstAnchorTakesNoProof();
    /// @notice The proof is longer than any consistency proof between 64-bit sizes.
    error ProofTooLong(uint256 length, uint256 max);
    /// @notice The proof does not show that the anchored tree is a prefix of the new one.
    error InconsistentProof(uint64 treeSize, uint64 newSize);

    /// @notice A root was anchored for `size`; `previousSize` is the size anchored before
    /// (0 for the first anchor), the starting point of the consistency proof that was checked.
    event Anchored(uint64 indexed size, bytes32 root, uint64 previousSize);
    /// @notice The operator offered its role to `pendingOperator` (zero: offer withdrawn).
    event OperatorTransferStarted(address indexed operator, address indexed pendingOperator);
    /// @notice The role passed from `previousOperator` to `newOperator`.
    event OperatorTransferred(address indexed previousOperator, address indexed newOperator);

    /// @notice The account allowed to anchor.
    address public operator;
    /// @notice The size of the latest anchored tree (0 before the first anchor).
    uint64 public treeSize;
    /// @notice The account offered the operator role, until it accepts (zero: none).
    address public pendingOperator;
    mapping(uint64 size => bytes32 root) private _roots;

    constructor(address initialOperator) {
        if (initialOperator == address(0)) revert ZeroOperator();
        operator = initialOperator;
        emit OperatorTransferred(address(0), initialOperator);
    }

    /// @notice Anchors `newRoot` as the root of the tree of `newSize` leaves. Operator only.
    /// @param consistencyProof The RFC 9162 consistency proof from (treeSize(), root()) to
    /// (newSize, newRoot); empty for the first anchor.
    /// @dev As with any RFC 9162 verifier, a proof binds newSize only through the sequence of
    /// hashing steps it drives: some other sizes drive the very same steps, and the same proof
    /// and root then pass for them too. Such an anchor files a real root of the log under a
    /// size it does not have, which anyone holding the log's checkpoint for that size sees.
    /// History before the anchored size cannot be changed either way.
    function anchor(uint64 newSize, bytes32 newRoot, bytes32[] calldata consistencyProof) external {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        uint64 size = treeSize;
        if (newSize <= size) revert SizeNotGrowing(size, newSize);
        if (newRoot == bytes32(0)) revert ZeroRoot();
        uint256 length = consistencyProof.length;
        if (size == 0) {
            if (length != 0) revert FirstAnchorTakesNoProof();
        } else {
            if (length > MerkleProofs.MAX_CONSISTENCY_PROOF) {
                revert ProofTooLong(length, MerkleProofs.MAX_CONSISTENCY_PROOF);
            }
            if (!MerkleProofs.verifyConsistency(size, newSize, _roots[size], newRoot, consistencyProof)) {
                revert InconsistentProof(size, newSize);
            }
        }
        treeSize = newSize;
        _roots[newSize] = newRoot;
        emit Anchored(newSize, newRoot, size);
    }

    /// @notice The latest anchored root (zero before the first anchor).
    function root() external view returns (bytes32) {
        return _roots[treeSize];
    }

    /// @notice The root anchored for `size`, or zero if no root was anchored for that size.
    function rootAt(uint64 size) external view returns (bytes32) {
        return _roots[size];
    }

    /// @notice Whether `proof` proves that `leafHash` is the leaf at `index` of the anchored
    /// tree of `size` leaves (RFC 9162 §2.1.3.2). False if no root was anchored for `size`.
    function verifyInclusion(uint64 size, uint64 index, bytes32 leafHash, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        bytes32 anchored = _roots[size];
        if (anchored == bytes32(0)) return false;
        return MerkleProofs.verifyInclusion(index, size, leafHash, anchored, proof);
    }

    /// @notice Whether `proof` proves that the tree of `size` leaves with root `treeRoot` (a
    /// checkpoint, say) is a prefix of the anchored tree of `anchoredSize` leaves
    /// (RFC 9162 §2.1.4.2). False if no root was anchored for `anchoredSize`.
    function verifyConsistency(uint64 size, bytes32 treeRoot, uint64 anchoredSize, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        bytes32 anchored = _roots[anchoredSize];
        if (anchored == bytes32(0)) return false;
        return MerkleProofs.verifyConsistency(size, anchoredSize, treeRoot, anchored, proof);
    }

    /// @notice Offers the operator role to `newOperator`, who must accept it with
    /// acceptOperator(). The zero address withdraws a pending offer. Operator only.
    function transferOperator(address newOperator) external {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        pendingOperator = newOperator;
        emit OperatorTransferStarted(msg.sender, newOperator);
    }

    /// @notice Takes the operator role offered to the caller.
    function acceptOperator() external {
        if (msg.sender != pendingOperator || msg.sender == address(0)) revert NotPendingOperator(msg.sender);
        address previous = operator;
        operator = msg.sender;
        pendingOperator = address(0);
        emit OperatorTransferred(previous, msg.sender);
    }
}
