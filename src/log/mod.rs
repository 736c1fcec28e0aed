//! The append-only log on disk: the source of truth of the ledger. Leaves and tree hashes in
//! files of our own, served as C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>) entry bundles
//! and hash tiles.
//!
//! One [`LogWriter`] per directory appends groups of leaves; [`LogWriter::append`] returns
//! once the group is durable, having cost one `pwrite` and one `fdatasync`, however large the
//! group. Any number of [`LogReader`]s (cloneable, any thread) read sizes, leaves, entry
//! bundles, hash tiles and stored hashes (they implement [`HashSource`](crate::merkle::HashSource),
//! so [`merkle::prove_inclusion`](crate::merkle::prove_inclusion) and friends work over the log),
//! without ever blocking the writer.
//!
//! # The choice: one preallocated segment, tiles cut from it by offset
//!
//! Tessera's POSIX driver writes each entry bundle and each hash tile as its own file, and
//! rewrites the partial ones on every batch through a synced temporary file, a rename and a
//! directory sync, then does the same for its tree state. A batch thus costs a synced write
//! and a directory sync per file it touches (the partial bundle, one partial tile per tile
//! level, the tree state), and the partial bundle is rewritten whole each time: at batches of
//! one, a 0.8 KB leaf costs on average 100 KB of writes before its bundle is full. Our targets
//! put the log write on the whole acknowledgment path at about one `fdatasync` per group
//! (single-entry ingest 1.5x PostgreSQL's single-row commit, batched 3x), so this module
//! stores:
//!
//! - a **segment**: one preallocated, zero-filled file of group records, each framed with its
//!   length and a chained SHA-256 check. It is the only file synced per group. Because it is
//!   preallocated (written with zeros and synced ahead of use, not `set_len`, which leaves
//!   holes), a group's `fdatasync` writes data blocks only: the file's size and extents do not
//!   change, so no journal commit rides along. A torn tail is found on open by the framing and
//!   check, and cut.
//! - **derived files** written behind, synced only every [`LogOptions::flush_entries`] entries:
//!   `hashes` (every stored tree hash, at `32 * stored index`) and `offsets` (per leaf, where
//!   its framed bytes lie in the segment). They are a function of the segment, so a crash
//!   loses nothing: open re-derives them from the last durable watermark.
//!
//! Tiles are then cut from these files by offset, never stored twice: an entry bundle is the
//! concatenation of its leaves' framed bytes (the segment stores each leaf with the bundle's own
//! `u16` big-endian length prefix), read with one `pread` of the span they lie in; a hash tile
//! is 256 stored hashes of tree level `8 L`. Full and partial tiles are served the same way, so
//! a partial tile is never written at all. Per 0.8 KB leaf the directory holds the leaf and its
//! 2-byte prefix, 88 bytes of record header per group, about 64 bytes of hashes and 8 of
//! offsets: about 960 bytes at groups of one, 880 at larger groups, plus at most an eighth of
//! preallocated space (under the 1.5 KiB target). Open reads the watermark and re-derives at
//! most [`LogOptions::flush_entries`] entries or [`LogOptions::flush_bytes`] of segment (16,384
//! and 64 MiB by default), whatever the log's size: the 5 s open target at 10M entries does not
//! depend on the 10M. An inclusion proof reads about `log2(n)` stored hashes with `pread`, a
//! few runs per proof, from the page cache once warm. Readers take no lock: they `pread`
//! below a durable size the writer publishes with one atomic store, so they never block it.
//!
//! The `tlog_tiles` crate's `Tile` type was not used for paths: see [`layout`].
//!
//! # On disk
//!
//! ```text
//! <dir>/
//!   lock         held with flock(LOCK_EX) by the one writer; a second open fails (Locked)
//!                after trying for a second
//!   segment      group records, then zeros (preallocated):
//!                +--------+---------+---------+-----+----------+--------+
//!                | rec 0  | rec 1   | rec 2   | ... | torn?    | 0 0 0  |
//!                +--------+---------+---------+-----+----------+--------+
//!                rec = header (88 bytes: magic, count, first index, payload length,
//!                      root after the group, check chained to the previous record)
//!                      payload: count x (u16 BE length || leaf bytes)    (see record.rs)
//!   hashes       stored hash i at bytes 32 i .. 32 i + 32 (RFC 6962 nodes, Go sumdb order)
//!   offsets      leaf n at bytes 8 n: (segment offset of its length prefix) << 16 | length
//!   watermark    size, segment offset, check and root up to which hashes and offsets are
//!                synced, with a SHA-256; replaced atomically
//!   checkpoint   the latest checkpoint note (tlog-tiles `checkpoint`), replaced atomically
//! ```
//!
//! Served as tlog-tiles ([`LogReader::read_path`]):
//!
//! ```text
//! tile/entries/<N>[.p/<W>]  = framed bytes of leaves 256 N .. 256 N + W        (segment)
//! tile/<L>/<N>[.p/<W>]      = stored hashes of tree level 8 L, nodes 256 N ..  (hashes)
//! checkpoint                = the checkpoint file
//! ```
//!
//! # Durability
//!
//! A group is acknowledged (append returns) only after:
//!
//! 1. its hashes and offsets are written to the derived files (not synced: they can be
//!    re-derived, and a failure here, such as a full volume, leaves nothing in the segment);
//! 2. the segment has room: if not, the next step is zero-filled and synced first, so the
//!    segment's size is durable before any record lies past the old end;
//! 3. its record is written at the end of the segment with one `pwrite`;
//! 4. `fdatasync` of the segment returned. This is the one sync per group.
//!
//! Only then is the new size published to readers (an atomic store with release ordering), so
//! no reader ever sees an entry a crash could take away. New files (at creation) are synced
//! and so is their directory before the watermark that marks the log as created is renamed
//! into place; the watermark and the checkpoint are replaced by temporary file, `fdatasync`,
//! rename, directory `fsync`. `sync_file_range` is never used.
//!
//! Every acknowledged group is in the segment in full and its check chains to the previous
//! record, so the open below finds it. The derived files are trusted only up to the watermark,
//! which is written only after both were synced. If syncing them fails, the watermark stops
//! advancing for the life of the writer (a failed `fsync` may drop dirty pages, so a later
//! success proves nothing), and the next open re-derives from the old one.
//!
//! # Recovery (open)
//!
//! 1. Take the exclusive lock (`Locked` if another writer holds it).
//! 2. No watermark: create an empty log (refused if the segment already holds a record: a
//!    missing watermark never wipes a log).
//! 3. Check the derived files against the watermark (root of its size from `hashes`, its last
//!    offsets entry); on disagreement rebuild them from entry 0.
//! 4. From the watermark's segment offset, read records while each has a plausible header,
//!    lies inside the file, starts at the next index, has well-formed framing and its check
//!    matches (chained to the previous one). Re-derive hashes and offsets for each; the root
//!    each record carries must match the recomputed one (if not, rebuild from 0 once, then
//!    fail as corrupt).
//! 5. Whatever non-zero bytes follow the last whole record are a torn or partial group: they
//!    are zeroed and synced, and a `warn` line says how many bytes and (when its header was
//!    readable) entries were cut. The chain, not the zeroing, is what keeps stale bytes from
//!    ever being taken for a record.
//! 6. Sync the derived files and advance the watermark, so the next open re-reads nothing.
//!
//! The caller then checks the log against the last signed checkpoint with
//! [`LogWriter::verify_against`]: the log must hold at least that many entries and reproduce
//! its root.
//!
//! All file I/O goes through [`io::LogFs`]; [`sim::PowerCutFs`] implements it in memory,
//! keeping only what was synced, for the power-loss tests.

pub mod bench;
pub mod io;
pub mod layout;
mod record;
pub mod sim;
mod store;
pub mod tamper;

use thiserror::Error;

use crate::merkle::MerkleError;

pub use bench::{bench_append, AppendFigures};
pub use layout::{Resource, MAX_LEAF_LEN, TILE_WIDTH};
pub use record::MAX_GROUP_BYTES;
pub use store::{LogOptions, LogReader, LogWriter, Recovery, MAX_READ_LEAVES};

/// Everything that can go wrong in the log, one enum for the layer.
#[derive(Debug, Error)]
pub enum LogError {
    /// A leaf is longer than an entry bundle can frame (its length is a `u16`). The group was
    /// refused before anything was written.
    #[error("leaf {position} of the group is {len} bytes; an entry bundle holds leaves of at most 65535 bytes")]
    LeafTooLarge {
        /// Position of the leaf in the group.
        position: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// The group's leaves add up to more than one record may hold ([`MAX_GROUP_BYTES`]), or
    /// the segment would pass its addressable size. Refused before anything was written.
    #[error("a group of {leaves} leaves and {bytes} bytes is larger than one record may hold")]
    GroupTooLarge {
        /// Leaves in the group.
        leaves: usize,
        /// Their framed size in bytes.
        bytes: usize,
    },
    /// Another writer (this process or another) holds the directory's lock.
    #[error("the log directory is already open by another writer")]
    Locked,
    /// The volume is full. Nothing of the group was acknowledged; reads go on, and appends
    /// succeed again once space returns, without reopening.
    #[error("the volume is full ({op})")]
    StorageFull {
        /// What was being done.
        op: &'static str,
    },
    /// A file operation failed.
    #[error("log I/O failed while {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The files contradict each other in a way no crash explains (tampering, a bad disk, a
    /// bug). The log refuses to open rather than guess.
    #[error("the log is corrupt: {0}")]
    Corrupt(String),
    /// A signed checkpoint covers more entries than the log holds: acknowledged entries are
    /// missing.
    #[error("the checkpoint covers {checkpoint} entries but the log holds only {log}")]
    CheckpointAhead {
        /// The checkpoint's size.
        checkpoint: u64,
        /// The log's size.
        log: u64,
    },
    /// The log's first `size` entries do not have the checkpoint's root: the log was rewritten.
    #[error("the log's root at size {size} differs from the checkpoint's")]
    RootMismatch {
        /// The checkpoint's size.
        size: u64,
    },
    /// A leaf index or tree size past the durable end of the log.
    #[error("index {index} is beyond the log's size {size}")]
    Beyond {
        /// The index asked for.
        index: u64,
        /// The log's size when asked.
        size: u64,
    },
    /// A tile or bundle the log is not large enough to have yet.
    #[error("{resource} does not exist at log size {size}")]
    NotYet {
        /// The resource's path.
        resource: String,
        /// The log's size when asked.
        size: u64,
    },
    /// More leaves asked for in one read than [`MAX_READ_LEAVES`].
    #[error("{count} leaves asked for in one read; at most {max}")]
    RangeTooLarge {
        /// Leaves asked for.
        count: u64,
        /// The bound.
        max: u64,
    },
    /// Not a tlog-tiles path this log serves (the text is cut at 80 characters).
    #[error("not a tlog-tiles path: {0:?}")]
    BadPath(String),
    /// A failed append could not be undone; appends are refused until the log is reopened,
    /// which finds out whether that group reached the disk.
    #[error("a failed append could not be undone; reopen the log")]
    Poisoned,
    /// Computing or reading the tree failed.
    #[error(transparent)]
    Tree(#[from] MerkleError),
}

#[cfg(test)]
mod tests;
