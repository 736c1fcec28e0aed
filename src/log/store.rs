//! The writer ([`LogWriter`]: open, recovery, group append) and the readers ([`LogReader`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::merkle::{
    self, empty_root, hashes_to_store, leaf_hash, stored_hash_count, stored_index, Hash,
    HashSource, MerkleError, MAX_STORED_TREE_SIZE,
};

use super::io::{LockGuard, LogFile, LogFs, OpenMode, StdFs};
use super::layout::{Resource, MAX_LEAF_LEN, TILE_HEIGHT, TILE_WIDTH};
use super::record::{self, Header, CHAIN_START, HEADER_LEN, MAX_GROUP_BYTES};
use super::LogError;

/// File names inside the log directory (see the module doc's drawing).
pub(super) const SEGMENT: &str = "segment";
/// Every stored tree hash, 32 bytes at `32 * stored index`.
const HASHES: &str = "hashes";
/// Per leaf, `segment offset << 16 | length` as a u64 BE.
pub(super) const OFFSETS: &str = "offsets";
/// How far the derived files are durable.
const WATERMARK: &str = "watermark";
/// The watermark's temporary file during its atomic replacement.
const WATERMARK_TMP: &str = "watermark.tmp";
/// How long an open waits for a held lock before it reports [`LogError::Locked`].
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// The tlog-tiles checkpoint.
const CHECKPOINT: &str = "checkpoint";
/// The checkpoint's temporary file.
const CHECKPOINT_TMP: &str = "checkpoint.tmp";
/// The lock file held by the writer.
const LOCK: &str = "lock";

/// Segment offsets are packed into 48 bits of an offsets entry.
const MAX_SEGMENT_LEN: u64 = 1 << 48;

/// Most leaves one [`LogReader::leaves`] call returns: bounds the memory one call can take.
pub const MAX_READ_LEAVES: u64 = 4096;

/// The watermark file: magic, size, segment offset, chain check, root, SHA-256 of the rest.
const WATERMARK_LEN: usize = 4 + 8 + 8 + 32 + 32 + 32;

/// Wraps an I/O error with what was being done; a full volume gets its own variant so the
/// server can answer 503 `storage_full` and keep serving reads.
fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> LogError {
    move |source| {
        if source.kind() == io::ErrorKind::StorageFull {
            LogError::StorageFull { op }
        } else {
            LogError::Io { op, source }
        }
    }
}

/// Tuning of a log; the defaults are what the ledger uses.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Smallest step by which the segment is preallocated (zero-filled and synced ahead of use).
    pub min_grow: u64,
    /// Largest preallocation step. Steps are an eighth of the segment between the two bounds,
    /// so preallocated but unused space stays under 1/8 of the log plus `min_grow`.
    pub max_grow: u64,
    /// The derived files (`hashes`, `offsets`) are synced and the watermark advanced once this
    /// many entries were appended since the last time: bounds what open re-reads after a crash.
    pub flush_entries: u64,
    /// Same, counted in segment bytes.
    pub flush_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            min_grow: 1 << 20,
            max_grow: 64 << 20,
            flush_entries: 16_384,
            flush_bytes: 64 << 20,
        }
    }
}

/// What open found and did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Whether the directory held no log and one was created.
    pub created: bool,
    /// Groups past the watermark that were re-read and re-derived.
    pub replayed_groups: u64,
    /// Entries in those groups.
    pub replayed_entries: u64,
    /// Whether the derived files disagreed with the segment and were rebuilt from entry 0.
    pub rebuilt: bool,
    /// Bytes of a torn or partial tail that were cut (zeroed) after the last whole group.
    pub cut_bytes: u64,
    /// Entries the cut group claimed, when its header was still readable.
    pub cut_entries: Option<u64>,
}

/// The durable position of the derived files.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Watermark {
    /// Entries whose hashes and offsets are synced.
    size: u64,
    /// Segment offset of the first record after them.
    offset: u64,
    /// Check of the last record before `offset`.
    check: Hash,
    /// Tree root at `size`.
    root: Hash,
}

impl Watermark {
    /// The empty log.
    fn genesis() -> Self {
        Self {
            size: 0,
            offset: 0,
            check: CHAIN_START,
            root: empty_root(),
        }
    }

    /// Serializes with a trailing SHA-256, so a damaged file is noticed rather than trusted.
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(WATERMARK_LEN);
        b.extend_from_slice(b"PLW1");
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.offset.to_be_bytes());
        b.extend_from_slice(&self.check);
        b.extend_from_slice(&self.root);
        let d: Hash = Sha256::digest(&b).into();
        b.extend_from_slice(&d);
        b
    }

    /// Parses what [`Watermark::encode`] wrote.
    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != WATERMARK_LEN || &b[..4] != b"PLW1" {
            return None;
        }
        let d: Hash = Sha256::digest(&b[..WATERMARK_LEN - 32]).into();
        if d[..] != b[WATERMARK_LEN - 32..] {
            return None;
        }
        Some(Self {
            size: u64::from_be_bytes(b[4..12].try_into().ok()?),
            offset: u64::from_be_bytes(b[12..20].try_into().ok()?),
            check: b[20..52].try_into().ok()?,
            root: b[52..84].try_into().ok()?,
        })
    }
}

/// What the writer and every reader share: the open files and the published size.
#[derive(Debug)]
struct Shared {
    /// The file system, for the checkpoint file.
    fs: Arc<dyn LogFs>,
    /// The log directory.
    dir: PathBuf,
    /// The group records.
    segment: Arc<dyn LogFile>,
    /// Stored tree hashes.
    hashes: Arc<dyn LogFile>,
    /// Leaf offsets into the segment.
    offsets: Arc<dyn LogFile>,
    /// The durable size: stored (Release) only after the group's sync returned and its hashes
    /// and offsets were written, so a reader that loads it (Acquire) finds everything below it.
    size: AtomicU64,
}

/// Reads stored hashes from the `hashes` file, one `pread` per run of nearby indexes (the
/// indexes of one proof or tile come sorted and often close together).
fn read_stored(file: &dyn LogFile, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
    let mut out = Vec::with_capacity(indexes.len());
    let mut i = 0;
    while i < indexes.len() {
        let start = indexes[i];
        let mut j = i + 1;
        while j < indexes.len()
            && indexes[j] > indexes[j - 1]
            && indexes[j] - start < 512
            && indexes[j] - indexes[j - 1] <= 16
        {
            j += 1;
        }
        let span = indexes[j - 1] - start + 1;
        let mut buf = vec![0u8; span as usize * 32];
        file.read_at(&mut buf, start * 32)
            .map_err(|e| MerkleError::Storage(format!("reading tree hashes: {e}")))?;
        for &idx in &indexes[i..j] {
            let o = ((idx - start) * 32) as usize;
            out.push(
                buf[o..o + 32]
                    .try_into()
                    .map_err(|_| MerkleError::MissingHash(idx))?,
            );
        }
        i = j;
    }
    Ok(out)
}

/// Stored hashes below `start` from the file, at and above it from a group being built.
struct Overlay<'a> {
    /// The hashes file.
    file: &'a dyn LogFile,
    /// First stored index not yet in the file.
    start: u64,
    /// Hashes from `start` on.
    pending: &'a [Hash],
}

impl HashSource for Overlay<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        let below: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|&i| i < self.start)
            .collect();
        let mut from_file = read_stored(self.file, &below)?.into_iter();
        indexes
            .iter()
            .map(|&i| {
                if i < self.start {
                    from_file.next().ok_or(MerkleError::MissingHash(i))
                } else {
                    usize::try_from(i - self.start)
                        .ok()
                        .and_then(|k| self.pending.get(k))
                        .copied()
                        .ok_or(MerkleError::MissingHash(i))
                }
            })
            .collect()
    }
}

/// The tree side of one group: its new stored hashes (from `stored_hash_count(first)` on) and
/// the root after it.
struct Derived {
    /// New stored hashes, consecutive.
    hashes: Vec<Hash>,
    /// Tree root after the group.
    root: Hash,
}

/// Computes the stored hashes a group adds and the root after it.
fn derive(file: &dyn LogFile, first: u64, leaf_hashes: &[Hash]) -> Result<Derived, LogError> {
    let start = stored_hash_count(first);
    let mut pending: Vec<Hash> = Vec::with_capacity(leaf_hashes.len() * 2 + 8);
    for (k, lh) in leaf_hashes.iter().enumerate() {
        let n = first + k as u64;
        let pairs = hashes_to_store(
            n,
            lh,
            &Overlay {
                file,
                start,
                pending: &pending,
            },
        )?;
        for (idx, h) in pairs {
            if idx != start + pending.len() as u64 {
                return Err(LogError::Tree(MerkleError::Internal(format!(
                    "stored index {idx} does not follow {}",
                    start + pending.len() as u64
                ))));
            }
            pending.push(h);
        }
    }
    let size = first + leaf_hashes.len() as u64;
    let root = merkle::root(
        size,
        &Overlay {
            file,
            start,
            pending: &pending,
        },
    )?;
    Ok(Derived {
        hashes: pending,
        root,
    })
}

/// Packs a leaf's segment offset (of its length prefix) and length into an offsets entry.
fn pack(offset: u64, len: usize) -> [u8; 8] {
    ((offset << 16) | len as u64).to_be_bytes()
}

/// Writes a group's derived data: hashes at their stored indexes, offsets at `8 first`.
fn write_derived(
    shared: &Shared,
    first: u64,
    hashes: &[Hash],
    offsets: &[u8],
) -> Result<(), LogError> {
    let mut hb = Vec::with_capacity(hashes.len() * 32);
    for h in hashes {
        hb.extend_from_slice(h);
    }
    shared
        .hashes
        .write_at(&hb, stored_hash_count(first) * 32)
        .map_err(io_err("writing tree hashes"))?;
    shared
        .offsets
        .write_at(offsets, first * 8)
        .map_err(io_err("writing leaf offsets"))
}

/// The single writer of a log directory. Holds the directory's exclusive lock; appends groups
/// durably; hands out [`LogReader`]s.
#[derive(Debug)]
pub struct LogWriter {
    /// Files and the published size.
    shared: Arc<Shared>,
    /// The exclusive lock on the directory, released on drop.
    _lock: Box<dyn LockGuard>,
    /// Tuning.
    opts: LogOptions,
    /// Entries durable.
    size: u64,
    /// Root of the tree of `size` entries.
    root: Hash,
    /// Segment offset where the next record goes.
    end: u64,
    /// Segment bytes zero-filled ahead of `end` (the file's length).
    allocated: u64,
    /// Check of the last record, chained into the next.
    check: Hash,
    /// The durable watermark.
    mark: Watermark,
    /// Set after a failed derived sync: the watermark stays where it is until the next open,
    /// which re-derives from it (a failed `fsync` may have dropped dirty pages).
    mark_frozen: bool,
    /// Set when a failed append could not be undone: appends are refused until reopen.
    poisoned: bool,
    /// What open found.
    recovery: Recovery,
    /// Set by [`LogWriter::close`], which already flushed.
    closed: bool,
}

impl LogWriter {
    /// Opens (creating if needed) the log in `dir` on the real file system.
    pub fn open(dir: &Path) -> Result<LogWriter, LogError> {
        Self::open_with(Arc::new(StdFs), dir, LogOptions::default())
    }

    /// Opens the log in `dir` through `fs`, recovering from a crash as the module doc says:
    /// take the lock, re-derive the groups past the watermark, cut a torn tail.
    pub fn open_with(
        fs: Arc<dyn LogFs>,
        dir: &Path,
        opts: LogOptions,
    ) -> Result<LogWriter, LogError> {
        fs.create_dir_all(dir)
            .map_err(io_err("creating the log directory"))?;
        // A lock just released can still be held for a moment by a copy of its descriptor:
        // a child process forked by another thread between its fork and its exec (which closes
        // it), or a process that is exiting. So a held lock is tried again for up to
        // LOCK_WAIT before it is reported.
        let started = std::time::Instant::now();
        let lock = loop {
            match fs.lock_exclusive(&dir.join(LOCK)) {
                Ok(lock) => break lock,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if started.elapsed() >= LOCK_WAIT {
                        return Err(LogError::Locked);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(io_err("locking the log directory")(e)),
            }
        };
        let mut recovery = Recovery::default();
        let wm_path = dir.join(WATERMARK);
        let mark = if fs
            .exists(&wm_path)
            .map_err(io_err("reading the watermark"))?
        {
            let f = fs
                .open_file(&wm_path, OpenMode::Existing)
                .map_err(io_err("reading the watermark"))?;
            let len = f.length().map_err(io_err("reading the watermark"))?;
            let mut b = vec![0u8; len.min(WATERMARK_LEN as u64 + 1) as usize];
            f.read_at(&mut b, 0)
                .map_err(io_err("reading the watermark"))?;
            Watermark::decode(&b)
                .ok_or_else(|| LogError::Corrupt("the watermark file is damaged".into()))?
        } else {
            Self::create(fs.as_ref(), dir)?;
            recovery.created = true;
            Watermark::genesis()
        };
        let open = |name: &str| {
            fs.open_file(&dir.join(name), OpenMode::Existing)
                .map_err(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        LogError::Corrupt(format!("the {name} file is missing"))
                    } else {
                        io_err("opening the log files")(e)
                    }
                })
        };
        let shared = Arc::new(Shared {
            fs: fs.clone(),
            dir: dir.to_path_buf(),
            segment: open(SEGMENT)?,
            hashes: open(HASHES)?,
            offsets: open(OFFSETS)?,
            size: AtomicU64::new(0),
        });
        let allocated = shared
            .segment
            .length()
            .map_err(io_err("reading the segment"))?;
        let mut w = LogWriter {
            shared,
            _lock: lock,
            opts,
            size: 0,
            root: empty_root(),
            end: 0,
            allocated,
            check: CHAIN_START,
            mark: mark.clone(),
            mark_frozen: false,
            poisoned: false,
            recovery,
            closed: false,
        };
        w.recover(mark)?;
        Ok(w)
    }

    /// Creates an empty log: the three files, synced with their directory, then the watermark
    /// (its presence is what marks the directory as a log). A segment that already holds a
    /// record means the watermark was lost, not that the log is new: refused, never wiped.
    fn create(fs: &dyn LogFs, dir: &Path) -> Result<(), LogError> {
        let seg = dir.join(SEGMENT);
        if fs.exists(&seg).map_err(io_err("reading the segment"))? {
            let f = fs
                .open_file(&seg, OpenMode::Existing)
                .map_err(io_err("reading the segment"))?;
            let mut b = [0u8; HEADER_LEN];
            if f.read_at(&mut b, 0).is_ok() && Header::decode(&b).is_some() {
                return Err(LogError::Corrupt(
                    "the segment holds records but the watermark is missing".into(),
                ));
            }
        }
        for name in [SEGMENT, HASHES, OFFSETS] {
            let f = fs
                .open_file(&dir.join(name), OpenMode::Truncate)
                .map_err(io_err("creating the log files"))?;
            f.sync_data().map_err(io_err("creating the log files"))?;
        }
        fs.sync_dir(dir).map_err(io_err("creating the log files"))?;
        write_atomic(
            fs,
            dir,
            WATERMARK_TMP,
            WATERMARK,
            &Watermark::genesis().encode(),
        )
    }

    /// Re-derives every whole group after `mark`, then cuts whatever follows the last one.
    fn recover(&mut self, mark: Watermark) -> Result<(), LogError> {
        let mut mark = mark;
        // The derived files must reproduce the watermark's root; if not (a lost write, a
        // failed fsync whose pages were dropped), rebuild them from entry 0.
        if mark.size > 0 && !self.derived_matches(&mark) {
            tracing::warn!(
                size = mark.size,
                "log: derived tree hashes disagree with the watermark; rebuilding them from the segment"
            );
            self.recovery.rebuilt = true;
            mark = Watermark::genesis();
        }
        loop {
            match self.replay_from(&mark) {
                Ok(()) => break,
                Err(LogError::Corrupt(msg)) if !self.recovery.rebuilt => {
                    tracing::warn!(
                        reason = %msg,
                        "log: a record's root disagrees with the derived tree hashes; rebuilding them from the segment"
                    );
                    self.recovery.rebuilt = true;
                    self.recovery.replayed_entries = 0;
                    self.recovery.replayed_groups = 0;
                    mark = Watermark::genesis();
                }
                Err(e) => return Err(e),
            }
        }
        self.cut_tail()?;
        self.shared.size.store(self.size, Ordering::Release);
        if self.recovery.rebuilt {
            // The rebuilt files are not synced yet: the old watermark must not vouch for them.
            self.mark = Watermark::genesis();
        }
        if self.recovery.replayed_groups > 0 || self.recovery.rebuilt {
            self.flush_derived()?;
        }
        Ok(())
    }

    /// Whether the derived files agree with the watermark: the hashes file yields its root, and
    /// the last leaf's offsets entry points at a length prefix that matches it, before the
    /// watermark's segment offset.
    fn derived_matches(&self, mark: &Watermark) -> bool {
        let src = Overlay {
            file: self.shared.hashes.as_ref(),
            start: u64::MAX,
            pending: &[],
        };
        if !matches!(merkle::root(mark.size, &src), Ok(r) if r == mark.root) {
            return false;
        }
        let mut e = [0u8; 8];
        if self
            .shared
            .offsets
            .read_at(&mut e, (mark.size - 1) * 8)
            .is_err()
        {
            return false;
        }
        let v = u64::from_be_bytes(e);
        let (off, len) = (v >> 16, v & 0xffff);
        let mut l = [0u8; 2];
        off + 2 + len <= mark.offset
            && self.shared.segment.read_at(&mut l, off).is_ok()
            && u64::from(u16::from_be_bytes(l)) == len
    }

    /// Reads records from the watermark on, re-deriving hashes and offsets for each whole one,
    /// and leaves the writer positioned after the last.
    fn replay_from(&mut self, mark: &Watermark) -> Result<(), LogError> {
        self.size = mark.size;
        self.end = mark.offset;
        self.check = mark.check;
        self.root = mark.root;
        loop {
            let Some((header, head, payload)) = self.read_record(self.end)? else {
                return Ok(());
            };
            let parts = match record::split_payload(&payload, header.count) {
                Some(p) => p,
                None => return Ok(()),
            };
            let leaf_hashes: Vec<Hash> = parts
                .iter()
                .map(|&(o, l)| leaf_hash(&payload[o..o + l]))
                .collect();
            if record::check(&self.check, &head[..56], &leaf_hashes) != header.check {
                return Ok(());
            }
            // A whole record that follows the chain: its leaves are acknowledged entries.
            let d = derive(self.shared.hashes.as_ref(), self.size, &leaf_hashes)?;
            if d.root != header.root {
                return Err(LogError::Corrupt(format!(
                    "the group at entry {} records a root the tree hashes do not reproduce",
                    header.first
                )));
            }
            let base = self.end + HEADER_LEN as u64;
            let mut offs = Vec::with_capacity(parts.len() * 8);
            for &(o, l) in &parts {
                offs.extend_from_slice(&pack(base + o as u64 - 2, l));
            }
            write_derived(&self.shared, self.size, &d.hashes, &offs)?;
            self.size += u64::from(header.count);
            self.end += header.record_len();
            self.check = header.check;
            self.root = d.root;
            self.recovery.replayed_groups += 1;
            self.recovery.replayed_entries += u64::from(header.count);
        }
    }

    /// Reads the header and payload of the record at `offset` if the header is plausible, the
    /// record lies inside the file and it continues the tree; `None` ends the log.
    #[allow(clippy::type_complexity)]
    fn read_record(
        &self,
        offset: u64,
    ) -> Result<Option<(Header, [u8; HEADER_LEN], Vec<u8>)>, LogError> {
        if offset + HEADER_LEN as u64 > self.allocated {
            return Ok(None);
        }
        let mut head = [0u8; HEADER_LEN];
        self.shared
            .segment
            .read_at(&mut head, offset)
            .map_err(io_err("reading the segment"))?;
        let Some(header) = Header::decode(&head) else {
            return Ok(None);
        };
        if header.first != self.size || offset + header.record_len() > self.allocated {
            return Ok(None);
        }
        let mut payload = vec![0u8; header.payload_len as usize];
        self.shared
            .segment
            .read_at(&mut payload, offset + HEADER_LEN as u64)
            .map_err(io_err("reading the segment"))?;
        Ok(Some((header, head, payload)))
    }

    /// Zeroes whatever follows the last whole record (a torn group, or stale bytes of one), so
    /// the next record starts on clean ground, and says how much in a log line.
    fn cut_tail(&mut self) -> Result<(), LogError> {
        let seg = self.shared.segment.clone();
        let avail = self.allocated.saturating_sub(self.end);
        if avail == 0 {
            return Ok(());
        }
        let mut head = [0u8; HEADER_LEN];
        let head_len = avail.min(HEADER_LEN as u64) as usize;
        seg.read_at(&mut head[..head_len], self.end)
            .map_err(io_err("reading the segment"))?;
        let claimed = if head_len == HEADER_LEN {
            Header::decode(&head)
        } else {
            None
        };
        // How far the torn bytes reach: what the header claims if it is readable, otherwise
        // up to the first all-zero 64 KiB block (bounded by the largest record).
        let extent = match &claimed {
            Some(h) => h.record_len().min(avail),
            None => {
                let bound = avail.min((HEADER_LEN + MAX_GROUP_BYTES) as u64);
                let mut last_nonzero = 0u64;
                let mut pos = 0u64;
                let mut buf = vec![0u8; 64 << 10];
                while pos < bound {
                    let n = (bound - pos).min(buf.len() as u64) as usize;
                    seg.read_at(&mut buf[..n], self.end + pos)
                        .map_err(io_err("reading the segment"))?;
                    match buf[..n].iter().rposition(|&b| b != 0) {
                        Some(i) => last_nonzero = pos + i as u64 + 1,
                        None => break,
                    }
                    pos += n as u64;
                }
                last_nonzero
            }
        };
        if extent == 0 {
            return Ok(());
        }
        let cut_entries = claimed.as_ref().map(|h| u64::from(h.count));
        let entries_text = cut_entries.map_or_else(|| "unknown".to_string(), |n| n.to_string());
        tracing::warn!(
            cut_bytes = extent,
            cut_entries = %entries_text,
            kept_entries = self.size,
            "log: cut a torn tail after the last whole group"
        );
        let zeros = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        while pos < extent {
            let n = (extent - pos).min(zeros.len() as u64) as usize;
            seg.write_at(&zeros[..n], self.end + pos)
                .map_err(io_err("cutting the torn tail"))?;
            pos += n as u64;
        }
        seg.sync_data().map_err(io_err("cutting the torn tail"))?;
        self.recovery.cut_bytes = extent;
        self.recovery.cut_entries = cut_entries;
        Ok(())
    }

    /// Re-derives the `hashes` and `offsets` files from the whole segment and advances the
    /// watermark. Open checks the derived files only along the root's path and at the last
    /// leaf (a full check at every open would read the whole log); this is the full repair,
    /// for a rebuild command or after a disk error. Fails as [`LogError::Corrupt`] if the
    /// segment's records do not reproduce the size and root the writer had.
    pub fn rebuild_derived(&mut self) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        let (size, root) = (self.size, self.root);
        self.replay_from(&Watermark::genesis())?;
        if (self.size, self.root) != (size, root) {
            self.poisoned = true;
            return Err(LogError::Corrupt(format!(
                "rebuilding from the segment gave {} entries instead of {size}",
                self.size
            )));
        }
        self.recovery.rebuilt = true;
        self.mark_frozen = false;
        self.mark = Watermark::genesis();
        self.flush_derived()
    }

    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Root of the tree of [`size`](LogWriter::size) entries: what a checkpoint of this size
    /// signs.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// What open found and did.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// A reader of this log. Readers never block the writer and see each group once it is
    /// durable.
    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    /// Checks the log against a signed checkpoint's `(size, root)`: the log must hold at least
    /// `size` entries and its first `size` entries must have that root. Run it on open with
    /// the last checkpoint signed; a failure means acknowledged entries are missing or the
    /// log was rewritten, and the ledger must not start.
    pub fn verify_against(&self, size: u64, root: &Hash) -> Result<(), LogError> {
        self.reader().verify_against(size, root)
    }

    /// Appends a group of leaves and returns the new size once the group is durable.
    ///
    /// Every leaf is checked first (at most 65,535 bytes, the group at most
    /// [`MAX_GROUP_BYTES`]); a refused group writes nothing. Then the leaf hashes, the new
    /// stored tree hashes and the new root are computed, the derived files are written (not
    /// synced), the segment is extended if needed, the group's record is written with one
    /// `pwrite` and made durable with one `fdatasync`, and only then is the new size published
    /// to readers and returned. An empty group is a no-op.
    ///
    /// An error means the group is not acknowledged. Its record was zeroed again, so it will
    /// not appear after a crash either, unless even that failed: then the writer refuses every
    /// further append ([`LogError::Poisoned`]) and the group's fate is known only on reopen,
    /// like that of a group in flight at a crash.
    pub fn append<L: AsRef<[u8]>>(&mut self, leaves: &[L]) -> Result<u64, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        if leaves.is_empty() {
            return Ok(self.size);
        }
        let mut payload_len = 0usize;
        for (position, l) in leaves.iter().enumerate() {
            let len = l.as_ref().len();
            if len > MAX_LEAF_LEN {
                return Err(LogError::LeafTooLarge { position, len });
            }
            payload_len += 2 + len;
        }
        if payload_len > MAX_GROUP_BYTES {
            return Err(LogError::GroupTooLarge {
                leaves: leaves.len(),
                bytes: payload_len,
            });
        }
        let count = leaves.len() as u64;
        if self.size + count > MAX_STORED_TREE_SIZE {
            return Err(LogError::Tree(MerkleError::TreeTooLarge(self.size + count)));
        }
        let record_len = (HEADER_LEN + payload_len) as u64;
        if self.end + record_len > MAX_SEGMENT_LEN {
            return Err(LogError::GroupTooLarge {
                leaves: leaves.len(),
                bytes: payload_len,
            });
        }
        let leaf_hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
        let d = derive(self.shared.hashes.as_ref(), self.size, &leaf_hashes)?;
        let (rec, check) = record::encode(
            self.size,
            leaves,
            &leaf_hashes,
            &d.root,
            &self.check,
            payload_len,
        );
        let mut offs = Vec::with_capacity(leaves.len() * 8);
        let mut pos = self.end + HEADER_LEN as u64;
        for l in leaves {
            let len = l.as_ref().len();
            offs.extend_from_slice(&pack(pos, len));
            pos += 2 + len as u64;
        }
        // Derived data first: if it fails (a full volume), nothing of the group is in the
        // segment. Readers do not look past the published size, so these writes are unseen.
        write_derived(&self.shared, self.size, &d.hashes, &offs)?;
        self.ensure_room(record_len)?;
        let seg = &self.shared.segment;
        let durable = seg
            .write_at(&rec, self.end)
            .map_err(io_err("writing a group"))
            .and_then(|()| seg.sync_data().map_err(io_err("syncing a group")));
        if let Err(e) = durable {
            self.undo(record_len);
            return Err(e);
        }
        self.size += count;
        self.root = d.root;
        self.end += record_len;
        self.check = check;
        self.shared.size.store(self.size, Ordering::Release);
        if self.size.saturating_sub(self.mark.size) >= self.opts.flush_entries
            || self.end.saturating_sub(self.mark.offset) >= self.opts.flush_bytes
        {
            // The group is durable whatever happens here; a failure only keeps the watermark
            // where it was (see `flush_derived`).
            let _ = self.flush_derived();
        }
        Ok(self.size)
    }

    /// Zeroes a failed group's record so it cannot surface after a crash; if that fails too,
    /// the writer is poisoned.
    fn undo(&mut self, record_len: u64) {
        let seg = &self.shared.segment;
        let zeros = vec![0u8; record_len as usize];
        let undone = seg
            .write_at(&zeros, self.end)
            .and_then(|()| seg.sync_data());
        if let Err(e) = undone {
            tracing::error!(error = %e, "log: a failed group could not be undone; appends are refused until the log is reopened");
            self.poisoned = true;
        }
    }

    /// Bounds each growth step of the segment to `max` bytes (at least the smallest step), or
    /// back to [`LogOptions::default`]'s bound with `None`: the ledger keeps it within its
    /// free-space reserve.
    pub fn limit_growth(&mut self, max: Option<u64>) {
        let d = LogOptions::default().max_grow;
        self.opts.max_grow = max.map_or(d, |m| m.min(d)).max(self.opts.min_grow);
    }

    /// Makes sure `need` bytes after `end` are preallocated: zero-filled and synced (size
    /// included), so the group's own `fdatasync` writes data only and commits no metadata.
    fn ensure_room(&mut self, need: u64) -> Result<(), LogError> {
        if self.end + need <= self.allocated {
            return Ok(());
        }
        let step = (self.allocated / 8)
            .min(self.opts.max_grow)
            .max(self.opts.min_grow)
            .max(1);
        let target = (self.end + need).max(self.allocated + step);
        let seg = &self.shared.segment;
        let zeros = vec![0u8; (1 << 20).min(target - self.allocated) as usize];
        let mut pos = self.allocated;
        while pos < target {
            let n = (target - pos).min(zeros.len() as u64) as usize;
            seg.write_at(&zeros[..n], pos)
                .map_err(io_err("preallocating the segment"))?;
            pos += n as u64;
        }
        seg.sync_data()
            .map_err(io_err("preallocating the segment"))?;
        self.allocated = target;
        Ok(())
    }

    /// Syncs the derived files and advances the watermark to the current size. A failure is
    /// logged and freezes the watermark until the next open: after a failed `fsync` the kernel
    /// may have dropped the dirty pages, so nothing past the old watermark is trusted again.
    fn flush_derived(&mut self) -> Result<(), LogError> {
        if self.mark_frozen || (self.mark.size == self.size && self.mark.offset == self.end) {
            return Ok(());
        }
        let mark = Watermark {
            size: self.size,
            offset: self.end,
            check: self.check,
            root: self.root,
        };
        let r = self
            .shared
            .hashes
            .sync_data()
            .map_err(io_err("syncing tree hashes"))
            .and_then(|()| {
                self.shared
                    .offsets
                    .sync_data()
                    .map_err(io_err("syncing leaf offsets"))
            })
            .and_then(|()| {
                write_atomic(
                    self.shared.fs.as_ref(),
                    &self.shared.dir,
                    WATERMARK_TMP,
                    WATERMARK,
                    &mark.encode(),
                )
            });
        match r {
            Ok(()) => {
                self.mark = mark;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "log: the derived files could not be synced; the next open re-derives from the last watermark");
                self.mark_frozen = true;
                Err(e)
            }
        }
    }

    /// Stores the latest checkpoint note as the tlog-tiles `checkpoint` file, atomically
    /// (temporary file, fsync, rename, directory fsync). Signing and checking notes is
    /// [`crate::checkpoint`]'s job; this only keeps the bytes.
    pub fn write_checkpoint(&mut self, note: &[u8]) -> Result<(), LogError> {
        write_atomic(
            self.shared.fs.as_ref(),
            &self.shared.dir,
            CHECKPOINT_TMP,
            CHECKPOINT,
            note,
        )
    }

    /// Syncs the derived files and advances the watermark, so the next open re-reads nothing;
    /// then releases the lock. Dropping the writer does the same, ignoring errors.
    pub fn close(mut self) -> Result<(), LogError> {
        let r = self.flush_derived();
        self.closed = true;
        r
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if !self.closed && !self.poisoned {
            let _ = self.flush_derived();
        }
    }
}

/// [`super::io::replace_file`], its failure as the log's.
fn write_atomic(
    fs: &dyn LogFs,
    dir: &Path,
    tmp: &str,
    name: &str,
    bytes: &[u8],
) -> Result<(), LogError> {
    super::io::replace_file(fs, dir, tmp, name, bytes).map_err(io_err("replacing a state file"))
}

/// A reader of the log: cheap to clone, safe to use from any thread, never blocking the
/// writer. Every call reads the published durable size once and reads only below it, with
/// positioned reads and no lock.
#[derive(Debug, Clone)]
pub struct LogReader {
    /// Files and the published size.
    shared: Arc<Shared>,
}

impl LogReader {
    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        self.shared.size.load(Ordering::Acquire)
    }

    /// Root of the first `size` entries (at most [`size`](LogReader::size)).
    pub fn root_at(&self, size: u64) -> Result<Hash, LogError> {
        let have = self.size();
        if size > have {
            return Err(LogError::Beyond {
                index: size,
                size: have,
            });
        }
        Ok(merkle::root(size, self)?)
    }

    /// See [`LogWriter::verify_against`].
    pub fn verify_against(&self, size: u64, root: &Hash) -> Result<(), LogError> {
        let log = self.size();
        if size > log {
            return Err(LogError::CheckpointAhead {
                checkpoint: size,
                log,
            });
        }
        if merkle::root(size, self)? != *root {
            return Err(LogError::RootMismatch { size });
        }
        Ok(())
    }

    /// Reads the offsets entries of leaves `start .. start + count` (all below the size).
    fn offsets(&self, start: u64, count: u64) -> Result<Vec<(u64, usize)>, LogError> {
        let mut b = vec![0u8; (count * 8) as usize];
        self.shared
            .offsets
            .read_at(&mut b, start * 8)
            .map_err(io_err("reading leaf offsets"))?;
        Ok(b.chunks_exact(8)
            .map(|c| {
                let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                (v >> 16, (v & 0xffff) as usize)
            })
            .collect())
    }

    /// The framed bytes (u16 BE length || leaf) of leaves `start .. start + count`, as one
    /// entry bundle holds them, read with one `pread` of the segment span they lie in.
    fn framed(&self, start: u64, count: u64) -> Result<Vec<u8>, LogError> {
        let offs = self.offsets(start, count)?;
        let (Some(first), Some(last)) = (offs.first(), offs.last()) else {
            return Ok(Vec::new());
        };
        let span_start = first.0;
        let span_end = last.0 + 2 + last.1 as u64;
        if span_end < span_start || span_end - span_start > (2 * MAX_GROUP_BYTES) as u64 {
            return Err(LogError::Corrupt("leaf offsets out of order".into()));
        }
        let mut span = vec![0u8; (span_end - span_start) as usize];
        self.shared
            .segment
            .read_at(&mut span, span_start)
            .map_err(io_err("reading leaves"))?;
        let mut out = Vec::with_capacity(offs.iter().map(|o| 2 + o.1).sum());
        for &(off, len) in &offs {
            let o = off
                .checked_sub(span_start)
                .ok_or_else(|| LogError::Corrupt("leaf offsets out of order".into()))?
                as usize;
            let framed = span
                .get(o..o + 2 + len)
                .ok_or_else(|| LogError::Corrupt("leaf offset past its span".into()))?;
            if usize::from(u16::from_be_bytes([framed[0], framed[1]])) != len {
                return Err(LogError::Corrupt(
                    "a leaf's length disagrees with its offsets entry".into(),
                ));
            }
            out.extend_from_slice(framed);
        }
        Ok(out)
    }

    /// The bytes of leaf `index`.
    pub fn leaf(&self, index: u64) -> Result<Vec<u8>, LogError> {
        let mut v = self.leaves(index, 1)?;
        v.pop().ok_or_else(|| LogError::Beyond {
            index,
            size: self.size(),
        })
    }

    /// The bytes of leaves `start .. start + count` (at most [`MAX_READ_LEAVES`]).
    pub fn leaves(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, LogError> {
        if count > MAX_READ_LEAVES {
            return Err(LogError::RangeTooLarge {
                count,
                max: MAX_READ_LEAVES,
            });
        }
        let size = self.size();
        let end = start.checked_add(count).filter(|&e| e <= size);
        let Some(end) = end else {
            return Err(LogError::Beyond {
                index: start.max(size),
                size,
            });
        };
        let mut out = Vec::with_capacity(count as usize);
        let mut at = start;
        while at < end {
            let n = (end - at).min(TILE_WIDTH);
            let framed = self.framed(at, n)?;
            let mut p = 0usize;
            while p < framed.len() {
                let len = usize::from(u16::from_be_bytes([framed[p], framed[p + 1]]));
                out.push(framed[p + 2..p + 2 + len].to_vec());
                p += 2 + len;
            }
            at += n;
        }
        Ok(out)
    }

    /// Entry bundle `index` with `width` leaves (256 = full): the body of
    /// `tile/entries/<N>[.p/<W>]`. Available once the log holds `256 index + width` leaves.
    pub fn entry_bundle(&self, index: u64, width: u16) -> Result<Vec<u8>, LogError> {
        let w = u64::from(width);
        if w == 0 || w > TILE_WIDTH {
            return Err(LogError::BadPath(format!("bundle width {width}")));
        }
        let size = self.size();
        match (Resource::Bundle { index, width }).needs_size() {
            Some(end) if end <= size => self.framed(end - w, w),
            _ => Err(LogError::NotYet {
                resource: super::layout::bundle_path(index, width),
                size,
            }),
        }
    }

    /// Hash tile `index` at tile `level` with `width` hashes (256 = full): the body of
    /// `tile/<L>/<N>[.p/<W>]`, the hashes of tree level `8 level`, nodes `256 index ..`.
    pub fn hash_tile(&self, level: u8, index: u64, width: u16) -> Result<Vec<u8>, LogError> {
        let w = u64::from(width);
        if w == 0 || w > TILE_WIDTH {
            return Err(LogError::BadPath(format!("tile width {width}")));
        }
        let size = self.size();
        let tile = Resource::Tile {
            level,
            index,
            width,
        };
        if tile.needs_size().is_none_or(|n| n > size) {
            return Err(LogError::NotYet {
                resource: tile.path(),
                size,
            });
        }
        let tree_level = u32::from(level) * TILE_HEIGHT;
        let first = index * TILE_WIDTH;
        let indexes: Vec<u64> = (0..w)
            .map(|i| stored_index(tree_level as u8, first + i))
            .collect();
        let hashes = read_stored(self.shared.hashes.as_ref(), &indexes)?;
        Ok(hashes.concat())
    }

    /// The latest checkpoint note stored with [`LogWriter::write_checkpoint`], if any.
    pub fn checkpoint(&self) -> Result<Option<Vec<u8>>, LogError> {
        let path = self.shared.dir.join(CHECKPOINT);
        let f = match self.shared.fs.open_file(&path, OpenMode::Existing) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading the checkpoint")(e)),
        };
        let len = f.length().map_err(io_err("reading the checkpoint"))?;
        if len > 1 << 20 {
            return Err(LogError::Corrupt(
                "the checkpoint file is over 1 MiB".into(),
            ));
        }
        let mut b = vec![0u8; len as usize];
        f.read_at(&mut b, 0)
            .map_err(io_err("reading the checkpoint"))?;
        Ok(Some(b))
    }

    /// The bytes of any tlog-tiles resource by its path (`checkpoint`, `tile/0/x001/234.p/17`,
    /// `tile/entries/000`): what a static read API serves.
    pub fn read_path(&self, path: &str) -> Result<Vec<u8>, LogError> {
        self.read(Resource::parse(path)?)
    }

    /// The bytes of a tlog-tiles resource.
    pub fn read(&self, resource: Resource) -> Result<Vec<u8>, LogError> {
        match resource {
            Resource::Checkpoint => self.checkpoint()?.ok_or_else(|| LogError::NotYet {
                resource: "checkpoint".into(),
                size: self.size(),
            }),
            Resource::Tile {
                level,
                index,
                width,
            } => self.hash_tile(level, index, width),
            Resource::Bundle { index, width } => self.entry_bundle(index, width),
        }
    }
}

impl HashSource for LogReader {
    /// Reads stored hashes, refusing any index past the durable tree so a proof can never be
    /// built over hashes a crash could still take away.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        let limit = stored_hash_count(self.size());
        if let Some(&bad) = indexes.iter().find(|&&i| i >= limit) {
            return Err(MerkleError::MissingHash(bad));
        }
        read_stored(self.shared.hashes.as_ref(), indexes)
    }
}
