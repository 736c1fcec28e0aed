//! The RFC 6962 / RFC 9162 Merkle tree behind the log: hashing, proof verification and
//! proof construction from stored hashes.
//!
//! Every leaf ever appended is a leaf of one Merkle tree. The tree is what makes the log
//! verifiable: an inclusion proof shows that an entry is in a signed tree head, a consistency
//! proof shows that a later tree head extends an earlier one without rewriting it (the same check
//! the anchor contract runs on chain).
//!
//! The module has two halves:
//!
//! - **Verifiers** ([`verify_inclusion`], [`verify_consistency`]) are written here from RFC 9162
//!   §2.1.3.2 and §2.1.4.2, with the algorithm steps in their doc comments. They are what
//!   auditors, receipts and the anchorer trust, so they live in one audited place.
//! - **Storage-side functions** ([`hashes_to_store`], [`root`], [`prove_inclusion`],
//!   [`prove_consistency`]) compute what to persist and build proofs from persisted hashes. They
//!   wrap `tlog_tiles::tlog` (a port of Go's `sumdb/tlog`), which keeps every hash of the tree
//!   at a dense "stored hash index" and reads only O(log n) of them per root or proof. The rest
//!   of the crate sees only [`HashSource`] and never imports `tlog_tiles` directly.
//!
//! Hashes (RFC 6962 §2.1):
//!
//! ```text
//! MTH({})        = SHA-256()
//! leaf hash      = SHA-256(0x00 || leaf bytes)
//! node hash      = SHA-256(0x01 || left || right)
//! MTH(D[n]), n>1 = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n
//! ```

use std::cell::RefCell;

use sha2::{Digest, Sha256};
use thiserror::Error;
use tlog_tiles::tlog;

/// A SHA-256 tree hash. A plain array so that it is `Copy`, hashable and comparable, and so that
/// no hash type of a dependency leaks into the rest of the crate.
pub type Hash = [u8; 32];

/// The longest inclusion proof any tree with a `u64` size can have: one hash per level, and a
/// tree of fewer than 2^64 leaves has at most 64 levels above its leaves.
pub const MAX_INCLUSION_PROOF_LEN: usize = 64;

/// The longest consistency proof any pair of `u64` tree sizes can have. A consistency proof is
/// one hash longer than an inclusion proof at most: when the old size is not a power of two the
/// proof also carries the old tree's largest complete subtree. 65 is reached only when the new
/// size exceeds 2^63 (for example 2^63 - 1 to 2^63 + 1); any longer proof is rejected before a
/// single hash is computed.
pub const MAX_CONSISTENCY_PROOF_LEN: usize = 65;

/// The largest tree the storage-side functions handle. The stored hash index of a node is about
/// twice its leaf number, and `tlog_tiles` computes it without overflow checks, so sizes are
/// capped well below the point where that arithmetic could wrap. No real log comes near it.
pub const MAX_STORED_TREE_SIZE: u64 = 1 << 62;

/// Everything that can go wrong when checking a proof or reading the stored tree: one enum so a
/// caller can tell a forged proof from a broken disk.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MerkleError {
    /// The leaf index is not inside the tree (`index >= size`), so no proof can exist.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The leaf index asked about.
        index: u64,
        /// The size of the tree it was asked about.
        size: u64,
    },
    /// A consistency proof from the empty tree was given or asked for. It proves nothing (every
    /// tree extends the empty tree), so it is refused rather than silently accepted.
    #[error("a consistency proof from tree size 0 proves nothing and is refused")]
    SizeZero,
    /// A consistency proof was given or asked for from a larger tree to a smaller one.
    #[error("tree size {size1} is larger than tree size {size2}")]
    SizesOutOfOrder {
        /// The older (first) tree size.
        size1: u64,
        /// The newer (second) tree size.
        size2: u64,
    },
    /// The proof has more hashes than any tree of `u64` size needs; refused before hashing so a
    /// hostile proof costs nothing.
    #[error("proof has {len} hashes, more than the {max} any tree can need")]
    ProofTooLong {
        /// Number of hashes in the proof.
        len: usize,
        /// The bound for this kind of proof.
        max: usize,
    },
    /// The proof does not have the number of hashes the tree shape implies.
    #[error("proof has {got} hashes, the tree shape needs {want}")]
    WrongProofLength {
        /// Number of hashes in the proof.
        got: usize,
        /// Number of hashes the sizes and index imply.
        want: usize,
    },
    /// The proof leads to a root other than the (new) root it was checked against.
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    /// A consistency proof does not reproduce the old tree's root.
    #[error("the consistency proof does not reproduce the old root")]
    OldRootMismatch,
    /// A byte string meant to be a SHA-256 hash has the wrong length.
    #[error("a hash must be 32 bytes, got {0}")]
    WrongHashLength(usize),
    /// The tree size is beyond [`MAX_STORED_TREE_SIZE`].
    #[error("tree size {0} is beyond the supported maximum")]
    TreeTooLarge(u64),
    /// A stored hash the tree needs is not in the store: the store holds fewer leaves than the
    /// size asked about, or it lost data.
    #[error("no hash at stored index {0}")]
    MissingHash(u64),
    /// A [`HashSource`] answered with a different number of hashes than it was asked for.
    #[error("hash source returned {got} hashes for {want} indexes")]
    ShortRead {
        /// Number of hashes asked for.
        want: usize,
        /// Number of hashes returned.
        got: usize,
    },
    /// The backing store failed (I/O error, corrupt record); the message comes from the store.
    #[error("hash storage failed: {0}")]
    Storage(String),
    /// The storage-side tree code refused a request that passed the checks here. This is a bug,
    /// reported as an error rather than a panic.
    #[error("tree computation failed: {0}")]
    Internal(String),
}

/// Returns the RFC 6962 leaf hash `SHA-256(0x00 || data)`. The 0x00 prefix keeps a leaf from
/// ever being mistaken for an interior node (second-preimage protection).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// Returns the RFC 6962 interior node hash `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Returns the root of the empty tree, `SHA-256()` (RFC 6962 §2.1): the root a log has before its
/// first entry.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Turns a decoded byte string into a [`Hash`](type@Hash), refusing any length but 32. Parsers
/// of proofs, checkpoints and stored records use it so that a truncated or padded hash is an
/// error.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, MerkleError> {
    Hash::try_from(bytes).map_err(|_| MerkleError::WrongHashLength(bytes.len()))
}

/// Number of bits needed to write `x` (0 for 0).
fn bit_len(x: u64) -> u32 {
    u64::BITS - x.leading_zeros()
}

/// The number of hashes an inclusion proof for leaf `index` in a tree of `size` leaves has
/// (`0 <= index < size`): the levels where the leaf's path and the last leaf's path diverge
/// ("inner"), plus one hash per left-hand complete subtree above that ("border").
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = bit_len(index ^ (size - 1));
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// The number of hashes a consistency proof from `size1` to `size2` has (`0 < size1 < size2`):
/// the inclusion proof of the old tree's last leaf, minus the levels inside the old tree's
/// largest complete subtree ("shift"), plus that subtree's root unless it is the whole old tree.
fn consistency_proof_len(size1: u64, size2: u64) -> usize {
    let last = size1 - 1;
    let inner = bit_len(last ^ (size2 - 1));
    let border = last.checked_shr(inner).unwrap_or(0).count_ones();
    let shift = size1.trailing_zeros();
    let start = u32::from(!size1.is_power_of_two());
    (start + inner.saturating_sub(shift) + border) as usize
}

/// Verifies that `proof` shows the leaf with hash `leaf_hash` at position `index` in the tree of
/// `size` leaves whose root is `root`.
///
/// This is the algorithm of RFC 9162 §2.1.3.2, with `fn`/`sn` named `f`/`s`:
///
/// 0. (Bounds, before any hashing.) A proof longer than [`MAX_INCLUSION_PROOF_LEN`] fails; a
///    proof whose length differs from the one the tree shape implies fails (the steps below
///    would reject it too, this only names the reason).
/// 1. If `index >= size`, fail.
/// 2. Set `f = index` and `s = size - 1`.
/// 3. Set `r = leaf_hash`.
/// 4. For each value `p` in the proof:
///    1. If `s` is 0, stop and fail.
///    2. If `LSB(f)` is set, or if `f == s`: set `r = HASH(0x01 || p || r)`, and then, if
///       `LSB(f)` is not set, right-shift `f` and `s` equally until either `LSB(f)` is set or
///       `f` is 0. Otherwise: set `r = HASH(0x01 || r || p)`.
///    3. Right-shift both `f` and `s` once.
/// 5. Succeed only if `s` is 0 and `r == root`.
///
/// This verifier, not `tlog_tiles::tlog::check_record`, is the one the crate uses: it is the one
/// place whose formulas are audited against the RFC (the anchor contract runs the same steps
/// on chain), it returns
/// errors where `tlog_tiles` asserts, and it does not copy the proof at every level.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if inclusion_root(index, size, leaf_hash, proof)? != *root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// The root that `proof` takes `leaf_hash` at `index` to in a tree of `size` leaves: steps 0
/// to 4 of [`verify_inclusion`] and the check of `s` in step 5, without the comparison with a
/// root. What a tree of `size` leaves that holds this leaf at `index` must have as its root.
pub fn inclusion_root(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
) -> Result<Hash, MerkleError> {
    // Step 0: bound the work before looking at the contents.
    if proof.len() > MAX_INCLUSION_PROOF_LEN {
        return Err(MerkleError::ProofTooLong {
            len: proof.len(),
            max: MAX_INCLUSION_PROOF_LEN,
        });
    }
    // Step 1.
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let want = inclusion_proof_len(index, size);
    let wrong_length = MerkleError::WrongProofLength {
        got: proof.len(),
        want,
    };
    if proof.len() != want {
        return Err(wrong_length);
    }
    // Steps 2 and 3.
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf_hash;
    // Step 4.
    for p in proof {
        if s == 0 {
            return Err(wrong_length);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 5, but for the comparison.
    if s != 0 {
        return Err(wrong_length);
    }
    Ok(r)
}

/// Verifies that `proof` shows the tree of `size2` leaves with root `root2` to be an append-only
/// extension of the tree of `size1` leaves with root `root1`.
///
/// Edge cases decided for this ledger (RFC 9162 only defines `0 < size1 < size2`):
/// `size1 == 0` fails, even to size 0 (a proof from the empty tree proves nothing, and the first
/// anchored checkpoint carries none); `size1 > size2` fails; `size1 == size2` succeeds only with
/// an empty proof and `root1 == root2`.
///
/// Otherwise this is the algorithm of RFC 9162 §2.1.4.2, with `fn`/`sn` named `f`/`s`:
///
/// 0. (Bounds, before any hashing.) A proof longer than [`MAX_CONSISTENCY_PROOF_LEN`] fails; a
///    proof whose length differs from the one the sizes imply fails.
/// 1. If the proof is empty, fail.
/// 2. If `size1` is an exact power of two, prepend `root1` to the proof.
/// 3. Set `f = size1 - 1` and `s = size2 - 1`.
/// 4. If `LSB(f)` is set, right-shift `f` and `s` equally until `LSB(f)` is not set.
/// 5. Set both `fr` and `sr` to the first value of the proof.
/// 6. For each subsequent value `c` of the proof:
///    1. If `s` is 0, stop and fail.
///    2. If `LSB(f)` is set, or if `f == s`: set `fr = HASH(0x01 || c || fr)` and
///       `sr = HASH(0x01 || c || sr)`, and then, if `LSB(f)` is not set, right-shift `f` and `s`
///       equally until either `LSB(f)` is set or `f` is 0. Otherwise: set
///       `sr = HASH(0x01 || sr || c)`.
///    3. Right-shift both `f` and `s` once.
/// 7. Succeed only if `fr == root1`, `sr == root2` and `s` is 0.
///
/// As with [`verify_inclusion`], this is used instead of `tlog_tiles::tlog::check_tree` so that
/// the decided edge cases and the formulas sit in one audited place that returns errors instead
/// of asserting.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    // Step 0: bound the work before looking at the contents.
    if proof.len() > MAX_CONSISTENCY_PROOF_LEN {
        return Err(MerkleError::ProofTooLong {
            len: proof.len(),
            max: MAX_CONSISTENCY_PROOF_LEN,
        });
    }
    // Decided edge cases.
    if size1 == 0 {
        return Err(MerkleError::SizeZero);
    }
    if size1 > size2 {
        return Err(MerkleError::SizesOutOfOrder { size1, size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(MerkleError::WrongProofLength {
                got: proof.len(),
                want: 0,
            });
        }
        if root1 != root2 {
            return Err(MerkleError::RootMismatch);
        }
        return Ok(());
    }
    let want = consistency_proof_len(size1, size2);
    let wrong_length = MerkleError::WrongProofLength {
        got: proof.len(),
        want,
    };
    if proof.len() != want {
        return Err(wrong_length);
    }
    // Step 1.
    if proof.is_empty() {
        return Err(wrong_length);
    }
    // Steps 2 and 5: the seed is root1 when size1 is a power of two (the "prepended" value),
    // otherwise the first proof hash.
    let (seed, rest) = if size1.is_power_of_two() {
        (root1, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (first, rest),
            None => return Err(wrong_length),
        }
    };
    // Step 3.
    let (mut f, mut s) = (size1 - 1, size2 - 1);
    // Step 4.
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // Step 5 (seed chosen above).
    let (mut fr, mut sr) = (*seed, *seed);
    // Step 6.
    for c in rest {
        if s == 0 {
            return Err(wrong_length);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 7.
    if s != 0 {
        return Err(wrong_length);
    }
    if fr != *root1 {
        return Err(MerkleError::OldRootMismatch);
    }
    if sr != *root2 {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Where the tree's stored hashes come from. A stored hash index numbers every node of the tree
/// in the order nodes become complete (Crosby and Wallach §3.3, the layout of Go's
/// `sumdb/tlog`): appending leaf `n` writes its leaf hash and the roots of the subtrees it
/// completes at consecutive indexes. The sled store implements this trait; [`MemoryHashes`] does
/// for tests and tools. Every function here asks for O(log n) indexes at a time, in increasing
/// order, so an implementation can answer with point reads.
pub trait HashSource {
    /// Returns the hashes at the given stored hash indexes, in the same order and the same
    /// number. A missing index is an error ([`MerkleError::MissingHash`]), never a default hash.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError>;
}

/// Lets `tlog_tiles` read from any [`HashSource`]. `tlog_tiles` speaks its own error type, so
/// the first [`MerkleError`] the source returns is kept here and handed back to the caller
/// instead of the `tlog_tiles` error that carried it. It also checks the number of hashes
/// returned, because `tlog_tiles` asserts on it.
struct Reader<'a, S: ?Sized> {
    /// The store being read.
    src: &'a S,
    /// The first error the store returned, if any.
    failure: RefCell<Option<MerkleError>>,
}

impl<'a, S: HashSource + ?Sized> Reader<'a, S> {
    /// Wraps a store for one `tlog_tiles` call.
    fn new(src: &'a S) -> Self {
        Self {
            src,
            failure: RefCell::new(None),
        }
    }

    /// Turns the result of a `tlog_tiles` call into ours, preferring the store's own error.
    fn finish<T>(self, result: Result<T, tlog::Error>) -> Result<T, MerkleError> {
        result.map_err(|e| {
            self.failure
                .into_inner()
                .unwrap_or_else(|| MerkleError::Internal(e.to_string()))
        })
    }

    /// Records a store error (the first one wins) and returns the error `tlog_tiles` will carry.
    fn fail(&self, e: MerkleError) -> tlog::Error {
        let mut failure = self.failure.borrow_mut();
        if failure.is_none() {
            *failure = Some(e);
        }
        tlog::Error::IndexesNotInTree
    }
}

impl<S: HashSource + ?Sized> tlog::HashReader for Reader<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, tlog::Error> {
        match self.src.read_hashes(indexes) {
            Ok(hashes) if hashes.len() == indexes.len() => {
                Ok(hashes.into_iter().map(tlog::Hash).collect())
            }
            Ok(hashes) => Err(self.fail(MerkleError::ShortRead {
                want: indexes.len(),
                got: hashes.len(),
            })),
            Err(e) => Err(self.fail(e)),
        }
    }
}

/// Refuses tree sizes the storage-side arithmetic is not meant for.
fn check_stored_size(size: u64) -> Result<(), MerkleError> {
    if size > MAX_STORED_TREE_SIZE {
        return Err(MerkleError::TreeTooLarge(size));
    }
    Ok(())
}

/// Returns the `(stored index, hash)` pairs to persist when appending leaf number `n` (0-based)
/// with hash `leaf_hash`: the leaf hash itself and the root of every subtree it completes, at
/// consecutive indexes. `src` must already hold every hash of leaves `0..n`; at most `log2(n)` of
/// them are read. The sequencer writes these pairs in the same batch as the entry, so the tree
/// and the entries can never disagree after a crash.
pub fn hashes_to_store<S: HashSource + ?Sized>(
    n: u64,
    leaf_hash: &Hash,
    src: &S,
) -> Result<Vec<(u64, Hash)>, MerkleError> {
    if n >= MAX_STORED_TREE_SIZE {
        return Err(MerkleError::TreeTooLarge(n.saturating_add(1)));
    }
    let reader = Reader::new(src);
    let result = tlog::stored_hashes_for_record_hash(n, tlog::Hash(*leaf_hash), &reader);
    let hashes = reader.finish(result)?;
    let start = tlog::stored_hash_index(0, n);
    Ok((start..).zip(hashes.into_iter().map(|h| h.0)).collect())
}

/// Returns the root of the first `size` leaves of the stored tree ([`empty_root`] for 0), reading
/// at most `1 + log2(size)` stored hashes. Checkpoints are signed over this value, and on start
/// the store compares it with the last checkpoint.
pub fn root<S: HashSource + ?Sized>(size: u64, src: &S) -> Result<Hash, MerkleError> {
    if size == 0 {
        return Ok(empty_root());
    }
    check_stored_size(size)?;
    let reader = Reader::new(src);
    let result = tlog::tree_hash(size, &reader);
    Ok(reader.finish(result)?.0)
}

/// Returns the inclusion proof (RFC 9162 §2.1.3.1, leaf's sibling first) of leaf `index` in the
/// tree of the first `size` leaves, for receipts. Reads O(log size) stored hashes.
pub fn prove_inclusion<S: HashSource + ?Sized>(
    size: u64,
    index: u64,
    src: &S,
) -> Result<Vec<Hash>, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    check_stored_size(size)?;
    let reader = Reader::new(src);
    let result = tlog::prove_record(size, index, &reader);
    Ok(reader.finish(result)?.into_iter().map(|h| h.0).collect())
}

/// Returns the consistency proof (RFC 9162 §2.1.4.1) from the tree of `size1` leaves to the tree
/// of `size2` leaves, for anchoring and for monitors. `size1 == 0` and `size1 > size2` are errors
/// (the verifier refuses them too); `size1 == size2` gives the empty proof. Reads O(log size2)
/// stored hashes.
pub fn prove_consistency<S: HashSource + ?Sized>(
    size1: u64,
    size2: u64,
    src: &S,
) -> Result<Vec<Hash>, MerkleError> {
    if size1 == 0 {
        return Err(MerkleError::SizeZero);
    }
    if size1 > size2 {
        return Err(MerkleError::SizesOutOfOrder { size1, size2 });
    }
    check_stored_size(size2)?;
    if size1 == size2 {
        return Ok(Vec::new());
    }
    let reader = Reader::new(src);
    let result = tlog::prove_tree(size2, size1, &reader);
    Ok(reader.finish(result)?.into_iter().map(|h| h.0).collect())
}

/// A whole stored tree in memory, laid out by stored hash index. Tests, benchmarks and offline
/// tools (an auditor rebuilding the tree from downloaded entries) use it where no database is
/// wanted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryHashes {
    /// Every stored hash, position = stored hash index.
    hashes: Vec<Hash>,
    /// Number of leaves appended, kept because it cannot be read off `hashes.len()` cheaply.
    size: u64,
}

impl MemoryHashes {
    /// Returns an empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the number of leaves appended so far, the size of the current tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf by its leaf hash and returns its index.
    pub fn append(&mut self, leaf_hash: &Hash) -> Result<u64, MerkleError> {
        let n = self.size;
        for (index, hash) in hashes_to_store(n, leaf_hash, self)? {
            if usize::try_from(index).ok() != Some(self.hashes.len()) {
                return Err(MerkleError::Internal(format!(
                    "stored index {index} does not follow {}",
                    self.hashes.len()
                )));
            }
            self.hashes.push(hash);
        }
        self.size += 1;
        Ok(n)
    }

    /// Returns the root of the current tree.
    pub fn root(&self) -> Result<Hash, MerkleError> {
        root(self.size, self)
    }
}

impl HashSource for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|u| self.hashes.get(u))
                    .copied()
                    .ok_or(MerkleError::MissingHash(i))
            })
            .collect()
    }
}

/// The stored hash index of leaf `n`'s own hash (level 0), for checking a leaf against the
/// stored tree without computing a proof.
pub fn stored_index_of_leaf(n: u64) -> u64 {
    tlog::stored_hash_index(0, n)
}

/// The stored hash index of the node at tree `level` (0 = leaves) and position `n` within that
/// level: the root of leaves `n 2^level .. (n + 1) 2^level`. Hash tiles are read this way.
pub fn stored_index(level: u8, n: u64) -> u64 {
    tlog::stored_hash_index(level, n)
}

/// The number of stored hashes a tree of `size` leaves has (about `2 size`): where the hashes of
/// the next leaf start.
pub fn stored_hash_count(size: u64) -> u64 {
    tlog::stored_hash_count(size)
}

/// The tree level of the hash at stored index `index` (0 = leaf hashes).
pub fn stored_index_level(index: u64) -> u8 {
    tlog::split_stored_hash_index(index).0
}

impl MemoryHashes {
    /// Every stored hash, position = stored hash index (to copy the tree into a store).
    pub fn stored(&self) -> &[Hash] {
        &self.hashes
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 6962 §2.1 MTH, written from the definition as a reference for the proptests.
    fn mth(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
    }

    fn tree(leaves: &[Vec<u8>]) -> MemoryHashes {
        let mut t = MemoryHashes::new();
        for l in leaves {
            t.append(&leaf_hash(l)).unwrap();
        }
        t
    }

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// The eight leaves of tests/vectors/README.md.
    fn readme_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| unhex(h))
        .collect()
    }

    #[test]
    fn empty_root_known_answer() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(MemoryHashes::new().root().unwrap(), empty_root());
    }

    #[test]
    fn eight_leaf_root_known_answer() {
        let want = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328";
        let leaves = readme_leaves();
        assert_eq!(hex::encode(mth(&leaves)), want);
        assert_eq!(hex::encode(tree(&leaves).root().unwrap()), want);
    }

    #[test]
    fn leaf_and_node_known_answers() {
        // Leaf hash of the empty leaf and of 0x00 (RFC 6962 test data).
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            hex::encode(leaf_hash(&[0])),
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
        );
        let l = leaf_hash(b"");
        let r = leaf_hash(&[0]);
        let mut pre = vec![1u8];
        pre.extend_from_slice(&l);
        pre.extend_from_slice(&r);
        assert_eq!(node_hash(&l, &r), <[u8; 32]>::from(Sha256::digest(&pre)));
    }

    #[test]
    fn proof_lengths_match_built_proofs() {
        let t = tree(&leaves(70));
        for size in 1..=70 {
            for index in 0..size {
                let p = prove_inclusion(size, index, &t).unwrap();
                assert_eq!(p.len(), inclusion_proof_len(index, size));
            }
            for size1 in 1..size {
                let p = prove_consistency(size1, size, &t).unwrap();
                assert_eq!(p.len(), consistency_proof_len(size1, size));
            }
        }
    }

    #[test]
    fn longest_proofs_for_u64_sizes() {
        assert_eq!(inclusion_proof_len(0, u64::MAX), 64);
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), 63);
        assert_eq!(consistency_proof_len((1 << 63) - 1, (1 << 63) + 1), 65);
        let mut max = 0;
        for s1 in [1, 2, 3, (1 << 63) - 1, 1 << 63, (1 << 63) + 1, u64::MAX - 1] {
            for s2 in [s1 + 1, (1 << 63) + 1, u64::MAX] {
                if s1 < s2 {
                    max = max.max(consistency_proof_len(s1, s2));
                }
            }
        }
        assert_eq!(max, MAX_CONSISTENCY_PROOF_LEN);
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        let leaves = leaves(13);
        let t = tree(&leaves);
        let root13 = t.root().unwrap();
        let root5 = root(5, &t).unwrap();
        let mut p = prove_inclusion(13, 6, &t).unwrap();
        let mut c = prove_consistency(5, 13, &t).unwrap();
        let lh = leaf_hash(&leaves[6]);
        verify_inclusion(6, 13, &lh, &p, &root13).unwrap();
        verify_consistency(5, 13, &root5, &root13, &c).unwrap();
        for i in 0..p.len() {
            for bit in 0..256 {
                p[i][bit / 8] ^= 1 << (bit % 8);
                assert!(verify_inclusion(6, 13, &lh, &p, &root13).is_err());
                p[i][bit / 8] ^= 1 << (bit % 8);
            }
        }
        for i in 0..c.len() {
            for bit in 0..256 {
                c[i][bit / 8] ^= 1 << (bit % 8);
                assert!(verify_consistency(5, 13, &root5, &root13, &c).is_err());
                c[i][bit / 8] ^= 1 << (bit % 8);
            }
        }
    }

    #[test]
    fn decided_edge_cases() {
        let t = tree(&leaves(4));
        let r = t.root().unwrap();
        let e = empty_root();
        assert_eq!(
            verify_consistency(0, 0, &e, &e, &[]),
            Err(MerkleError::SizeZero)
        );
        assert_eq!(
            verify_consistency(0, 4, &e, &r, &[]),
            Err(MerkleError::SizeZero)
        );
        assert_eq!(
            verify_consistency(4, 3, &r, &r, &[]),
            Err(MerkleError::SizesOutOfOrder { size1: 4, size2: 3 })
        );
        assert_eq!(verify_consistency(4, 4, &r, &r, &[]), Ok(()));
        assert_eq!(
            verify_consistency(4, 4, &r, &r, &[r]),
            Err(MerkleError::WrongProofLength { got: 1, want: 0 })
        );
        assert_eq!(
            verify_consistency(4, 4, &r, &e, &[]),
            Err(MerkleError::RootMismatch)
        );
        assert_eq!(prove_consistency(0, 4, &t), Err(MerkleError::SizeZero));
        assert_eq!(
            prove_consistency(5, 4, &t),
            Err(MerkleError::SizesOutOfOrder { size1: 5, size2: 4 })
        );
        assert_eq!(prove_consistency(4, 4, &t), Ok(vec![]));
        assert_eq!(
            prove_inclusion(4, 4, &t),
            Err(MerkleError::IndexOutOfRange { index: 4, size: 4 })
        );
        assert_eq!(
            verify_inclusion(0, 0, &e, &[], &e),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        );
        let long = vec![e; MAX_INCLUSION_PROOF_LEN + 1];
        assert_eq!(
            verify_inclusion(0, u64::MAX, &e, &long, &e),
            Err(MerkleError::ProofTooLong { len: 65, max: 64 })
        );
        let long = vec![e; MAX_CONSISTENCY_PROOF_LEN + 1];
        assert_eq!(
            verify_consistency(1, u64::MAX, &e, &e, &long),
            Err(MerkleError::ProofTooLong { len: 66, max: 65 })
        );
    }

    #[test]
    fn storage_errors_are_reported_not_panicked() {
        let t = tree(&leaves(4));
        // The store holds 4 leaves; asking about 5 needs hashes it does not have.
        assert!(matches!(root(5, &t), Err(MerkleError::MissingHash(_))));
        assert!(matches!(
            prove_inclusion(8, 0, &t),
            Err(MerkleError::MissingHash(_))
        ));
        struct Short;
        impl HashSource for Short {
            fn read_hashes(&self, _: &[u64]) -> Result<Vec<Hash>, MerkleError> {
                Ok(vec![])
            }
        }
        assert_eq!(
            root(3, &Short),
            Err(MerkleError::ShortRead { want: 2, got: 0 })
        );
        struct Broken;
        impl HashSource for Broken {
            fn read_hashes(&self, _: &[u64]) -> Result<Vec<Hash>, MerkleError> {
                Err(MerkleError::Storage("disk on fire".into()))
            }
        }
        assert_eq!(
            prove_consistency(1, 3, &Broken),
            Err(MerkleError::Storage("disk on fire".into()))
        );
        assert_eq!(
            root(MAX_STORED_TREE_SIZE + 1, &t),
            Err(MerkleError::TreeTooLarge(MAX_STORED_TREE_SIZE + 1))
        );
        assert_eq!(
            hashes_to_store(u64::MAX, &empty_root(), &t),
            Err(MerkleError::TreeTooLarge(u64::MAX))
        );
    }

    #[test]
    fn stored_indexes_are_consecutive() {
        let mut t = MemoryHashes::new();
        let mut next = 0u64;
        for i in 0..40u64 {
            let pairs = hashes_to_store(i, &leaf_hash(&i.to_be_bytes()), &t).unwrap();
            for (k, (index, _)) in pairs.iter().enumerate() {
                assert_eq!(*index, next + k as u64);
            }
            next += pairs.len() as u64;
            t.append(&leaf_hash(&i.to_be_bytes())).unwrap();
        }
        assert_eq!(t.hashes.len() as u64, next);
    }

    const MAX_SIZE: usize = 300;

    /// (size2, size1, index, other index, bit) with 1 <= size1 <= size2 and index < size2.
    fn case() -> impl Strategy<Value = (usize, usize, usize, usize, usize)> {
        (1..=MAX_SIZE).prop_flat_map(|size| (Just(size), 1..=size, 0..size, 0..size, 0..256usize))
    }

    proptest! {
        #[test]
        fn proofs_match_reference_and_tampering_fails(
            (size, size1, index, other, bit) in case(),
            wrong_size in 1..=MAX_SIZE,
        ) {
            let all = leaves(MAX_SIZE);
            let data = &all[..size];
            let t = tree(data);
            let (n, n1, i) = (size as u64, size1 as u64, index as u64);
            let want_root = mth(data);
            prop_assert_eq!(root(n, &t).unwrap(), want_root);
            let root1 = mth(&data[..size1]);
            prop_assert_eq!(root(n1, &t).unwrap(), root1);

            // Inclusion.
            let lh = leaf_hash(&data[index]);
            let mut p = prove_inclusion(n, i, &t).unwrap();
            prop_assert_eq!(verify_inclusion(i, n, &lh, &p, &want_root), Ok(()));
            for k in 0..p.len() {
                p[k][bit / 8] ^= 1 << (bit % 8);
                prop_assert!(verify_inclusion(i, n, &lh, &p, &want_root).is_err());
                p[k][bit / 8] ^= 1 << (bit % 8);
            }
            if other != index {
                prop_assert!(verify_inclusion(other as u64, n, &lh, &p, &want_root).is_err());
                let olh = leaf_hash(&data[other]);
                prop_assert!(verify_inclusion(i, n, &olh, &p, &want_root).is_err());
            }
            // A proof does not bind the tree size by itself (leaf 0's proof is the same in trees
            // of 65 and 66 leaves); the size is bound by the root it comes with. So a wrong size
            // is claimed with that size's real root, as a signed checkpoint would carry it.
            if wrong_size != size {
                let wrong_root = mth(&all[..wrong_size]);
                prop_assert!(
                    verify_inclusion(i, wrong_size as u64, &lh, &p, &wrong_root).is_err()
                );
            }

            // Consistency.
            let mut c = prove_consistency(n1, n, &t).unwrap();
            prop_assert_eq!(verify_consistency(n1, n, &root1, &want_root, &c), Ok(()));
            for k in 0..c.len() {
                c[k][bit / 8] ^= 1 << (bit % 8);
                prop_assert!(verify_consistency(n1, n, &root1, &want_root, &c).is_err());
                c[k][bit / 8] ^= 1 << (bit % 8);
            }
            if wrong_size != size1 && wrong_size <= size {
                let wrong_root1 = mth(&data[..wrong_size]);
                prop_assert!(
                    verify_consistency(wrong_size as u64, n, &wrong_root1, &want_root, &c).is_err()
                );
            }
            if wrong_size != size && wrong_size >= size1 {
                let wrong_root2 = mth(&all[..wrong_size]);
                prop_assert!(
                    verify_consistency(n1, wrong_size as u64, &root1, &wrong_root2, &c).is_err()
                );
            }
            if size1 < size {
                // A proof of the wrong tree pair, or with the roots swapped, fails.
                prop_assert!(verify_consistency(n1, n, &want_root, &root1, &c).is_err());
            }
        }
    }
}
