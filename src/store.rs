//! The sled database: one keyspace, one writer, readers that never block it.
//!
//! Everything lives in sled's default tree under one-byte prefixes, so that a whole group of
//! entries (leaves, tree hashes, derived state, indexes) is written by **one atomic batch** and
//! made durable by **one flush**: after a crash the store holds a prefix of the groups, never half
//! of one.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m` | meta name | meta value (log config, tree size) |
//! | `L` | leaf index (u64 BE) | leaf bytes |
//! | `H` | stored hash index (u64 BE) | 32-byte tree hash (the Go sumdb/tlog layout) |
//! | `C` | tree size (u64 BE) | signed checkpoint note |
//! | `A` | account id | account without its lots (debt, referral, counters) |
//! | `T` | account id `/` expiry, lot index, ordinal (BE) | one lot; keys sort in drawing order |
//! | `M` | merchant id | merchant (program rules) |
//! | `O` | merchant id `/` order id | order (purchase, redemption, refunds) |
//! | `N` | signer `/` nonce | leaf index (replays refused, identical resubmissions found) |
//! | `X` | EVM address | consumer id |
//! | `Y` | account id, leaf index (u64 BE) | empty: the account's history |
//! | `K` | tree size (u64 BE) | the anchorer's record for that checkpoint (not derived state) |
//!
//! The meta key `anchor-target` names the chain id and contract the `K` records belong to.
//!
//! Derived state is encoded with postcard (compact, fast, and never read by anything but this
//! module); a lot is its own key so that a purchase writes one small lot rather than rewriting
//! every lot of the account. [`Group`] is the write side: an overlay over the store that the engine reads through while a
//! group is being sequenced, turned into a batch at commit.

use crate::engine::state::{Account, Lot, Merchant, Order};
use crate::engine::{EngineError, LogConfig, StateView, Writes};
use crate::log::layout::{Resource, TILE_HEIGHT, TILE_WIDTH};
use crate::merkle::{stored_index, Hash, HashSource, MerkleError};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an I/O or corruption error.
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    /// A stored value does not decode: the database was damaged or written by something else.
    #[error("corrupt value under key {key}: {reason}")]
    Corrupt {
        /// The key, printable.
        key: String,
        /// What failed.
        reason: String,
    },
    /// A tree hash the log needs is missing.
    #[error("tree hash {0} is missing")]
    MissingHash(u64),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        EngineError::Storage(e.to_string())
    }
}

impl From<StoreError> for MerkleError {
    fn from(e: StoreError) -> Self {
        MerkleError::Storage(e.to_string())
    }
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    k.push(prefix);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(b'/');
        }
        k.extend_from_slice(p);
    }
    k
}

fn num_key(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

fn history_key(account: &str, index: u64) -> Vec<u8> {
    let mut k = key(b'Y', &[account.as_bytes()]);
    k.push(b'/');
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn decode_u64(k: &[u8], v: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = v.try_into().map_err(|_| StoreError::Corrupt {
        key: String::from_utf8_lossy(k).into_owned(),
        reason: "expected 8 bytes".into(),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail: no maps with non-string keys, no floats.
    serde_json::to_vec(v).unwrap_or_default()
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // postcard cannot fail on these types: every field has a fixed, serializable shape.
    postcard::to_stdvec(v).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(k: &[u8], v: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(v).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(k).into_owned(),
        reason: e.to_string(),
    })
}

/// The key of a lot: account, then expiry, leaf index and ordinal, so a prefix scan returns an
/// account's lots in the order redemptions draw them.
fn lot_key(account: &str, lot: &Lot) -> Vec<u8> {
    let (index, ordinal) = crate::engine::lot_order(&lot.id);
    let mut k = lots_prefix(account);
    k.extend_from_slice(&lot.expires_at.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k.extend_from_slice(&ordinal.to_be_bytes());
    k
}

fn lots_prefix(account: &str) -> Vec<u8> {
    let mut k = key(b'T', &[account.as_bytes()]);
    k.push(b'/');
    k
}

const META_CONFIG: &[u8] = b"mconfig";
const META_SIZE: &[u8] = b"msize";
const META_REBUILDING: &[u8] = b"mrebuilding";
const META_ANCHOR_TARGET: &[u8] = b"manchor-target";

/// sled's page cache. Its default (1 GiB) made a served ledger of 1M entries hold 1.2 GiB;
/// proofs read O(log n) pages and the writer its recent accounts, so a smaller cache costs
/// little (docs/PERFORMANCE.md has the figures for both).
const CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// Opens (creating if missing) the raw sled database in `dir` with the settings the ledger uses.
///
/// sled releases a closed database's file lock from a background thread, so a reopen right
/// after a close (or a close by a process that just exited) can find it still held: that case
/// is retried for up to ten seconds (a loaded machine can take that long to release it) before
/// it is reported. Tools that inspect a stopped ledger's store open it through here too.
pub fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    let mut attempt = 0;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None)
            .cache_capacity(CACHE_BYTES)
            .open();
        match opened {
            // sled wraps the lock failure in an `Other` error naming it.
            Err(sled::Error::Io(e))
                if attempt < 500
                    && (e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock")) =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

/// A handle on the database; cheap to clone, safe to read from any thread.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// Tree hashes of level [`CACHED_LEVEL`] and up, kept in memory once read. Every proof
    /// walks the same few upper-level hashes, and stored hashes never change, so the cache
    /// needs no invalidation; it is bounded by [`MAX_CACHED_HASHES`].
    upper_hashes: std::sync::Arc<std::sync::RwLock<HashMap<u64, Hash>>>,
}

/// The lowest tree level whose hashes are cached (a level-6 hash covers 64 leaves).
const CACHED_LEVEL: u8 = 6;
/// At most this many cached hashes (32 MiB): all of them up to about 16 million leaves.
const MAX_CACHED_HASHES: usize = 1 << 20;

impl Store {
    /// Opens (creating if missing) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            db: open_db(dir)?,
            upper_hashes: Default::default(),
        })
    }

    fn get<T: DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, StoreError> {
        self.db.get(k)?.map(|v| decode(k, &v)).transpose()
    }

    /// An account's lots as stored, in drawing order.
    fn lots(&self, account: &str) -> Result<Vec<Lot>, StoreError> {
        self.db
            .scan_prefix(lots_prefix(account))
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    /// The leaf index of the entry in which `signer` used `nonce`.
    pub fn nonce_entry(&self, signer: &str, nonce: &str) -> Result<Option<u64>, StoreError> {
        let k = key(b'N', &[signer.as_bytes(), nonce.as_bytes()]);
        self.db.get(&k)?.map(|v| decode_u64(&k, &v)).transpose()
    }

    fn get_json<T: DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, StoreError> {
        match self.db.get(k)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    key: String::from_utf8_lossy(k).into_owned(),
                    reason: e.to_string(),
                }),
        }
    }

    /// The log's configuration, once initialised.
    pub fn config(&self) -> Result<Option<StoredConfig>, StoreError> {
        self.get_json(META_CONFIG)
    }

    /// Writes the configuration of a new log (once, at init) and flushes.
    pub fn put_config(&self, config: &StoredConfig) -> Result<(), StoreError> {
        self.db.insert(META_CONFIG, to_json(config))?;
        self.db.insert(META_SIZE, &0u64.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Number of leaves in the log.
    pub fn size(&self) -> Result<u64, StoreError> {
        match self.db.get(META_SIZE)? {
            None => Ok(0),
            Some(v) => decode_u64(META_SIZE, &v),
        }
    }

    /// The bytes of leaf `index`.
    pub fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(num_key(b'L', index))?.map(|v| v.to_vec()))
    }

    /// Leaves `start..end` (end exclusive, clipped to the log's size).
    pub fn leaves(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.db
            .range(num_key(b'L', start)..num_key(b'L', end))
            .values()
            .map(|v| v.map(|v| v.to_vec()).map_err(StoreError::from))
            .collect()
    }

    /// The signed checkpoint note for tree size `size`, if one was cut at that size.
    pub fn checkpoint(&self, size: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .get(num_key(b'C', size))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The latest checkpoint: its tree size and signed note.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        match self.db.scan_prefix([b'C']).next_back() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                let size = decode_u64(&k, &k[1..])?;
                Ok(Some((size, String::from_utf8_lossy(&v).into_owned())))
            }
        }
    }

    /// The body of a tlog-tiles resource ([`crate::log::layout`]): the latest checkpoint note,
    /// an entry bundle (each leaf behind its `u16` big-endian length) or a hash tile (its
    /// stored hashes, 32 bytes each). `None` when the log does not hold it yet.
    pub fn tile(&self, resource: &Resource) -> Result<Option<Vec<u8>>, StoreError> {
        let size = self.size()?;
        if resource.needs_size().is_none_or(|n| n > size) {
            return Ok(None);
        }
        match *resource {
            Resource::Checkpoint => {
                Ok(self.latest_checkpoint()?.map(|(_, note)| note.into_bytes()))
            }
            Resource::Bundle { index, width } => {
                let first = index * TILE_WIDTH;
                let mut body = Vec::new();
                for (i, leaf) in self
                    .leaves(first, first + u64::from(width))?
                    .into_iter()
                    .enumerate()
                {
                    let len = u16::try_from(leaf.len()).map_err(|_| StoreError::Corrupt {
                        key: format!("L{}", first + i as u64),
                        reason: format!("{} bytes do not fit an entry bundle", leaf.len()),
                    })?;
                    body.extend_from_slice(&len.to_be_bytes());
                    body.extend_from_slice(&leaf);
                }
                Ok(Some(body))
            }
            Resource::Tile {
                level,
                index,
                width,
            } => {
                // needs_size() holds only for levels whose tree level fits 0..64.
                let tree_level = (u32::from(level) * TILE_HEIGHT) as u8;
                let first = index * TILE_WIDTH;
                let mut body = Vec::with_capacity(32 * usize::from(width));
                for n in first..first + u64::from(width) {
                    body.extend_from_slice(&self.read_hash(stored_index(tree_level, n))?);
                }
                Ok(Some(body))
            }
        }
    }

    /// Stores a checkpoint note and flushes it.
    pub fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        self.db.insert(num_key(b'C', size), note.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Leaf indexes that changed `account`, ascending, starting at `from`, at most `limit`.
    pub fn history(&self, account: &str, from: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let prefix = {
            let mut p = key(b'Y', &[account.as_bytes()]);
            p.push(b'/');
            p
        };
        let start = history_key(account, from);
        let mut out = Vec::new();
        for kv in self.db.range(start..) {
            let (k, _) = kv?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            out.push(decode_u64(&k, &k[prefix.len()..])?);
        }
        Ok(out)
    }

    /// All account ids, for audits and state comparisons.
    pub fn account_ids(&self) -> Result<Vec<String>, StoreError> {
        self.db
            .scan_prefix([b'A'])
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?[1..]).into_owned()))
            .collect()
    }

    /// SHA-256 over every derived-state key and value (prefixes A T M O N X Y), in key order.
    ///
    /// Two stores with equal digests hold identical derived state; `rebuild` uses it to show
    /// that replaying the log reproduces the state exactly.
    pub fn state_digest(&self) -> Result<Hash, StoreError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for prefix in DERIVED {
            for kv in self.db.scan_prefix([prefix]) {
                let (k, v) = kv?;
                h.update((k.len() as u64).to_be_bytes());
                h.update(&k);
                h.update((v.len() as u64).to_be_bytes());
                h.update(&v);
            }
        }
        Ok(h.finalize().into())
    }

    /// Deletes all derived state (not leaves, hashes or checkpoints) and marks a rebuild as
    /// under way, so that an interrupted rebuild is noticed at the next open.
    pub fn clear_derived(&self) -> Result<(), StoreError> {
        self.db.insert(META_REBUILDING, &[1u8])?;
        self.db.flush()?;
        for prefix in DERIVED {
            let mut batch = sled::Batch::default();
            for k in self.db.scan_prefix([prefix]).keys() {
                batch.remove(k?);
            }
            self.db.apply_batch(batch)?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// Cuts the log back to its first `size` leaves: removes later leaves, their tree hashes
    /// and any checkpoint beyond `size`, and records `size`. Only for dropping what a failed
    /// group commit may have left behind, none of which was acknowledged; derived state must be
    /// rebuilt afterwards.
    pub fn truncate_log(&self, size: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let ranges = [
            (b'L', size),
            (b'H', crate::merkle::stored_index_of_leaf(size)),
            (b'C', size.saturating_add(1)),
        ];
        for (prefix, from) in ranges {
            for k in self
                .db
                .range(num_key(prefix, from)..=num_key(prefix, u64::MAX))
                .keys()
            {
                batch.remove(k?);
            }
        }
        batch.insert(META_SIZE, &size.to_be_bytes());
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Marks a rebuild as finished.
    pub fn finish_rebuild(&self) -> Result<(), StoreError> {
        self.db.remove(META_REBUILDING)?;
        self.db.flush()?;
        Ok(())
    }

    /// Whether a rebuild was interrupted.
    pub fn rebuild_pending(&self) -> Result<bool, StoreError> {
        Ok(self.db.contains_key(META_REBUILDING)?)
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Saves the anchorer's record for a checkpoint and flushes it.
    pub fn put_anchor(&self, rec: &crate::anchor::AnchorRecord) -> Result<(), StoreError> {
        self.db.insert(num_key(b'K', rec.tree_size), to_json(rec))?;
        self.db.flush()?;
        Ok(())
    }

    /// Forgets the record for `tree_size` (a pending anchor a newer one replaced).
    pub fn delete_anchor(&self, tree_size: u64) -> Result<(), StoreError> {
        self.db.remove(num_key(b'K', tree_size))?;
        Ok(())
    }

    /// Every anchor record, by tree size.
    pub fn anchors(&self) -> Result<Vec<crate::anchor::AnchorRecord>, StoreError> {
        self.anchors_newest_first(None)
            .collect::<Result<Vec<_>, _>>()
            .map(|mut v| {
                v.reverse();
                v
            })
    }

    /// Anchor records newest first, starting below tree size `before` (all if `None`). Lazy, so
    /// a caller takes only the page it needs.
    pub fn anchors_newest_first(
        &self,
        before: Option<u64>,
    ) -> impl Iterator<Item = Result<crate::anchor::AnchorRecord, StoreError>> {
        let end = match before {
            Some(size) => num_key(b'K', size).to_vec(),
            None => vec![b'K' + 1],
        };
        self.db.range(vec![b'K']..end).rev().map(|kv| {
            let (k, v) = kv?;
            serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                key: format!("K{:?}", &k[1..]),
                reason: e.to_string(),
            })
        })
    }

    /// The record with a transaction in flight or awaiting its confirmation depth, if any. Only
    /// records newer than the newest final one can be in flight, so the scan stops there.
    pub fn anchor_in_flight(&self) -> Result<Option<crate::anchor::AnchorRecord>, StoreError> {
        use crate::anchor::AnchorStatus::{Confirmed, Final, Sent};
        for rec in self.anchors_newest_first(None) {
            let rec = rec?;
            match rec.status {
                Sent | Confirmed => return Ok(Some(rec)),
                Final => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }

    /// The newest anchor that is mined (confirmed or final), if any.
    pub fn latest_mined_anchor(&self) -> Result<Option<crate::anchor::AnchorRecord>, StoreError> {
        use crate::anchor::AnchorStatus::{Confirmed, Final};
        for rec in self.anchors_newest_first(None) {
            let rec = rec?;
            if matches!(rec.status, Confirmed | Final) {
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }

    /// The contract the anchor records belong to, as `(chain id, 0x address)`.
    pub fn anchor_target(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.get_json(META_ANCHOR_TARGET)
    }

    /// Binds the anchor records to a contract. Records kept for another contract describe
    /// another chain's history, so they are dropped (the chain, not these records, is the
    /// ground truth for what is anchored); returns how many were dropped.
    pub fn bind_anchor_target(&self, chain_id: u64, contract: &str) -> Result<usize, StoreError> {
        let target = (chain_id, contract.to_ascii_lowercase());
        if self.anchor_target()?.as_ref() == Some(&target) {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        let mut dropped = 0;
        for kv in self.db.scan_prefix([b'K']) {
            batch.remove(kv?.0);
            dropped += 1;
        }
        batch.insert(META_ANCHOR_TARGET, to_json(&target));
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(dropped)
    }

    /// Writes raw tree hashes (used only by the benchmark to build a large tree quickly).
    pub fn put_hashes(&self, hashes: &[(u64, Hash)], size: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (i, h) in hashes {
            batch.insert(&num_key(b'H', *i), h);
        }
        batch.insert(META_SIZE, &size.to_be_bytes());
        self.db.apply_batch(batch)?;
        Ok(())
    }
}

const DERIVED: [u8; 7] = [b'A', b'T', b'M', b'O', b'N', b'X', b'Y'];

/// What `init` records about a log, kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StoredConfig {
    /// The engine's view: origin and operator key.
    #[serde(flatten)]
    pub log: LogConfig,
    /// The log key id (hex), which signs checkpoints.
    pub log_key: String,
}

impl StateView for Store {
    fn account(&self, id: &str) -> Result<Option<Account>, EngineError> {
        let Some(mut account) = self.get::<Account>(&key(b'A', &[id.as_bytes()]))? else {
            return Ok(None);
        };
        account.lots = self.lots(id)?;
        Ok(Some(account))
    }
    fn merchant(&self, id: &str) -> Result<Option<Merchant>, EngineError> {
        Ok(self.get(&key(b'M', &[id.as_bytes()]))?)
    }
    fn order(&self, merchant: &str, order_id: &str) -> Result<Option<Order>, EngineError> {
        Ok(self.get(&key(b'O', &[merchant.as_bytes(), order_id.as_bytes()]))?)
    }
    fn nonce_used(&self, signer: &str, nonce: &str) -> Result<bool, EngineError> {
        let k = key(b'N', &[signer.as_bytes(), nonce.as_bytes()]);
        Ok(self.db.contains_key(k).map_err(StoreError::from)?)
    }
    fn evm_owner(&self, address: &str) -> Result<Option<String>, EngineError> {
        let k = key(b'X', &[address.as_bytes()]);
        Ok(self
            .db
            .get(k)
            .map_err(StoreError::from)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

impl Store {
    fn read_hash(&self, i: u64) -> Result<Hash, StoreError> {
        let cacheable = crate::merkle::stored_index_level(i) >= CACHED_LEVEL;
        if cacheable {
            if let Some(h) = self
                .upper_hashes
                .read()
                .ok()
                .and_then(|c| c.get(&i).copied())
            {
                return Ok(h);
            }
        }
        let v = self
            .db
            .get(num_key(b'H', i))?
            .ok_or(StoreError::MissingHash(i))?;
        let h: Hash = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            key: format!("H{i}"),
            reason: "expected 32 bytes".into(),
        })?;
        if cacheable {
            if let Ok(mut c) = self.upper_hashes.write() {
                if c.len() < MAX_CACHED_HASHES {
                    c.insert(i, h);
                }
            }
        }
        Ok(h)
    }
}

impl HashSource for Store {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        indexes.iter().map(|&i| Ok(self.read_hash(i)?)).collect()
    }
}

/// Committed accounts and merchants the writer has read recently, so that a busy account's lots
/// are not scanned from sled for every entry that touches it.
///
/// Only the writer fills it, and only with committed state (a group's writes enter it after the
/// group's batch is applied), so it is always exactly what sled holds. Readers never touch it:
/// a reader racing the writer could otherwise put back a value the writer had just replaced.
/// Bounded by [`WriterCache::CAPACITY`] accounts, evicted oldest-inserted first.
#[derive(Default)]
pub struct WriterCache {
    accounts: HashMap<String, Account>,
    inserted: std::collections::VecDeque<String>,
    merchants: HashMap<String, Merchant>,
}

impl WriterCache {
    /// Most accounts kept.
    pub const CAPACITY: usize = 16_384;

    fn put_account(&mut self, id: String, account: Account) {
        if self.accounts.insert(id.clone(), account).is_none() {
            self.inserted.push_back(id);
            while self.accounts.len() > Self::CAPACITY {
                match self.inserted.pop_front() {
                    Some(old) => {
                        self.accounts.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }
}

/// The open group: writes not yet committed, layered over the writer's cache and the store.
pub struct Group<'a> {
    store: &'a Store,
    cache: std::cell::RefCell<WriterCache>,
    size: u64,
    accounts: HashMap<String, Account>,
    merchants: HashMap<String, Merchant>,
    orders: HashMap<(String, String), Order>,
    nonces: HashMap<(String, String), u64>,
    evm: HashMap<String, Option<String>>,
    hashes: HashMap<u64, Hash>,
    leaves: Vec<(u64, Vec<u8>)>,
    history: Vec<(String, u64)>,
}

impl<'a> Group<'a> {
    /// Starts a group on top of `store`, whose log has `size` leaves, reading through `cache`
    /// (handed back by [`Group::commit`]).
    pub fn new(store: &'a Store, size: u64, cache: WriterCache) -> Self {
        Group {
            store,
            cache: std::cell::RefCell::new(cache),
            size,
            accounts: HashMap::new(),
            merchants: HashMap::new(),
            orders: HashMap::new(),
            nonces: HashMap::new(),
            evm: HashMap::new(),
            hashes: HashMap::new(),
            leaves: Vec::new(),
            history: Vec::new(),
        }
    }

    /// Drops the group's writes and hands back the writer's cache.
    pub fn into_cache(self) -> WriterCache {
        self.cache.take()
    }

    /// The log's size including this group's leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the group has anything to commit.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The leaf index of the entry in which `signer` used `nonce`, in this group or the store.
    pub fn nonce_entry(&self, signer: &str, nonce: &str) -> Result<Option<u64>, StoreError> {
        match self.nonces.get(&(signer.to_owned(), nonce.to_owned())) {
            Some(i) => Ok(Some(*i)),
            None => self.store.nonce_entry(signer, nonce),
        }
    }

    /// Leaf bytes, from this group or the store.
    pub fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        match self.leaves.iter().find(|(i, _)| *i == index) {
            Some((_, l)) => Ok(Some(l.clone())),
            None => self.store.leaf(index),
        }
    }

    /// Adds one accepted entry: its leaf, the tree hashes to store, its digest and its writes.
    pub fn push(&mut self, leaf: Vec<u8>, hashes: Vec<(u64, Hash)>, writes: Writes) {
        let index = self.size;
        self.size += 1;
        self.leaves.push((index, leaf));
        self.hashes.extend(hashes);
        self.apply_writes(index, writes);
    }

    /// Adds the state changes of a leaf that is already in the log (used by `rebuild`).
    pub fn push_replayed(&mut self, writes: Writes) {
        let index = self.size;
        self.size += 1;
        self.apply_writes(index, writes);
    }

    fn apply_writes(&mut self, index: u64, writes: Writes) {
        for (signer, nonce) in writes.nonces {
            self.nonces.insert((signer, nonce), index);
        }
        for (id, account) in writes.accounts {
            // The history lists the entries that changed the account (docs/PROTOCOL.md §12.4):
            // the engine also hands back accounts it only looked at (a refund sweeps a
            // referrer it claws nothing from). Unreadable state lists the entry rather than
            // lose it.
            let before = StateView::account(&*self, &id).map(Option::unwrap_or_default);
            if before.map_or(true, |b| b != account) {
                self.history.push((id.clone(), index));
            }
            self.accounts.insert(id, account);
        }
        self.merchants.extend(writes.merchants);
        self.orders.extend(writes.orders);
        self.evm.extend(writes.evm);
    }

    /// Turns the group into one sled batch, applies it and flushes: durable on return. The
    /// writer's cache comes back either way (on failure it holds only what was committed before).
    pub fn commit(mut self) -> (Result<(), StoreError>, WriterCache) {
        let mut cache = self.cache.take();
        let result = self.write(&cache);
        if result.is_ok() {
            for (id, a) in self.accounts.drain() {
                cache.put_account(id, a);
            }
            cache.merchants.extend(self.merchants.drain());
        }
        (result, cache)
    }

    fn write(&mut self, cache: &WriterCache) -> Result<(), StoreError> {
        let store = self.store;
        let mut b = sled::Batch::default();
        for (i, leaf) in self.leaves.drain(..) {
            b.insert(&num_key(b'L', i), leaf);
        }
        for (i, h) in self.hashes.drain() {
            b.insert(&num_key(b'H', i), &h);
        }
        for (id, a) in self.accounts.iter_mut() {
            // Write only the lots that changed; remove the ones the engine dropped.
            let stored;
            let committed: &[Lot] = match cache.accounts.get(id) {
                Some(acc) => &acc.lots,
                None => {
                    stored = store.lots(id)?;
                    &stored
                }
            };
            let mut before: HashMap<&str, &Lot> =
                committed.iter().map(|l| (l.id.as_str(), l)).collect();
            for lot in &a.lots {
                if before.remove(lot.id.as_str()) != Some(lot) {
                    b.insert(lot_key(id, lot), encode(lot));
                }
            }
            for gone in before.values() {
                b.remove(lot_key(id, gone));
            }
            // The account's own key holds everything but its lots.
            let lots = std::mem::take(&mut a.lots);
            b.insert(key(b'A', &[id.as_bytes()]), encode(&*a));
            a.lots = lots;
        }
        for (id, m) in &self.merchants {
            b.insert(key(b'M', &[id.as_bytes()]), encode(m));
        }
        for ((m, o), order) in self.orders.drain() {
            b.insert(key(b'O', &[m.as_bytes(), o.as_bytes()]), encode(&order));
        }
        for ((s, n), i) in self.nonces.drain() {
            b.insert(key(b'N', &[s.as_bytes(), n.as_bytes()]), &i.to_be_bytes());
        }
        for (addr, owner) in self.evm.drain() {
            let k = key(b'X', &[addr.as_bytes()]);
            match owner {
                Some(c) => b.insert(k, c.as_bytes()),
                None => b.remove(k),
            }
        }
        for (a, i) in self.history.drain(..) {
            b.insert(history_key(&a, i), &[]);
        }
        b.insert(META_SIZE, &self.size.to_be_bytes());
        store.db.apply_batch(b)?;
        store.db.flush()?;
        Ok(())
    }
}

impl StateView for Group<'_> {
    fn account(&self, id: &str) -> Result<Option<Account>, EngineError> {
        if let Some(a) = self.accounts.get(id) {
            return Ok(Some(a.clone()));
        }
        if let Some(a) = self.cache.borrow().accounts.get(id) {
            return Ok(Some(a.clone()));
        }
        let stored = self.store.account(id)?;
        if let Some(a) = &stored {
            self.cache
                .borrow_mut()
                .put_account(id.to_owned(), a.clone());
        }
        Ok(stored)
    }
    fn merchant(&self, id: &str) -> Result<Option<Merchant>, EngineError> {
        if let Some(m) = self.merchants.get(id) {
            return Ok(Some(m.clone()));
        }
        if let Some(m) = self.cache.borrow().merchants.get(id) {
            return Ok(Some(m.clone()));
        }
        let stored = self.store.merchant(id)?;
        if let Some(m) = &stored {
            self.cache
                .borrow_mut()
                .merchants
                .insert(id.to_owned(), m.clone());
        }
        Ok(stored)
    }
    fn order(&self, merchant: &str, order_id: &str) -> Result<Option<Order>, EngineError> {
        match self.orders.get(&(merchant.to_owned(), order_id.to_owned())) {
            Some(o) => Ok(Some(o.clone())),
            None => self.store.order(merchant, order_id),
        }
    }
    fn nonce_used(&self, signer: &str, nonce: &str) -> Result<bool, EngineError> {
        if self
            .nonces
            .contains_key(&(signer.to_owned(), nonce.to_owned()))
        {
            return Ok(true);
        }
        self.store.nonce_used(signer, nonce)
    }
    fn evm_owner(&self, address: &str) -> Result<Option<String>, EngineError> {
        match self.evm.get(address) {
            Some(owner) => Ok(owner.clone()),
            None => self.store.evm_owner(address),
        }
    }
}

impl HashSource for Group<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        indexes
            .iter()
            .map(|i| match self.hashes.get(i) {
                Some(h) => Ok(*h),
                None => self
                    .store
                    .read_hashes(&[*i])?
                    .pop()
                    .ok_or(MerkleError::Storage(format!("tree hash {i} is missing"))),
            })
            .collect()
    }
}
