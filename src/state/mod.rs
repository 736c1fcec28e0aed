//! The state store: what the log implies (accounts, lots, merchants, orders, the nonce index,
//! history, EVM links) kept in sled, beside the signed checkpoints and the anchorer's records,
//! with the log itself ([`crate::log`]) behind one read handle.
//!
//! The log is the source of truth and the only thing written before an entry is acknowledged:
//! the writer appends a group to the log (one `fdatasync`) and queues the group's state in
//! memory before its receipts are sent; a thread of its own writes what is queued into sled
//! behind the log, many groups per batch, without a flush ([`StateWriter`]). Every read looks
//! through what is queued before it reads sled, so a read after a receipt sees its effects.
//! sled persists the batches in the background and at every checkpoint
//! ([`Store::put_checkpoint`] flushes). Each batch records the log size it reflects
//! (`mstate-size`), and sled recovers whole batches in order, so after a crash the state is
//! that of a prefix of the log, which [`crate::ledger::Ledger::open`] replays forward from.
//! Derived state can always be rebuilt from the log (`pointsledger rebuild`); checkpoints and
//! anchor records cannot, and are flushed as they are written.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m` | meta name | meta value (log config, the log size the state reflects) |
//! | `C` | tree size (u64 BE) | signed checkpoint note |
//! | `A` | account id | account without its lots (debt, referral, counters), then its history's tail |
//! | `T` | H(account id), expiry, lot index, ordinal (BE) | one lot; keys sort in drawing order |
//! | `M` | merchant id | merchant (program rules) |
//! | `O` | H(merchant id), order id | order (purchase, redemption, refunds) |
//! | `N` | H(signer), nonce | leaf index (replays refused, identical resubmissions found) |
//! | `X` | EVM address | consumer id |
//! | `Y` | H(account id), leaf index (u64 BE) | the account's history from that index on: a sealed chunk (`history.rs`) |
//!
//! `H(...)` is `short_hash`: 16 bytes of SHA-256 over the length-prefixed parts. The keys a
//! purchase adds (its nonce, its order, its lot) are most of what sled holds, and sled's cost
//! in time and disk grows with their bytes: a 64-hex id spelled out in each made them up to four
//! times as long. Nonces and order ids stay as they are after their owner's hash, so that keys a
//! client counts up stay together (a random key per entry would read a page from disk for each
//! lookup once the index outgrows sled's cache). `mlayout` names the layout ([`LAYOUT`]); a store of another layout is rebuilt
//! from the log when it is opened.
//!
//! The anchorer's records are in a keyspace of their own (`anchors`): `K` + tree size (u64 BE)
//! holds the record for that checkpoint, and `manchor-target` the chain id and contract they
//! belong to.
//! Data directories of the earlier layout also held the leaves (`L`) and tree hashes (`H`)
//! here; `pointsledger migrate` moves them into the log.
//!
//! Derived state is encoded with postcard (compact, fast, and never read by anything but this
//! module); a lot is its own key so that a purchase writes one small lot rather than rewriting
//! every lot of the account. [`Group`] is the write side: an overlay over the queued groups
//! and the store that the engine reads through while a group is being sequenced.

mod behind;
mod group;
mod history;
pub mod tamper;
#[cfg(test)]
mod tests;

pub use behind::StateWriter;
pub use group::{Group, WriterCache};

use crate::engine::state::{Account, Lot, Merchant, Order};
use crate::engine::{EngineError, LogConfig, StateView};
use crate::log::layout::Resource;
use crate::log::{LogError, LogReader, MAX_READ_LEAVES};
use crate::merkle::{Hash, HashSource, MerkleError};
use behind::{Layer, Pending, Version};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

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
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Writing the state behind the log failed ([`StateWriter`]); what is queued stays readable.
    #[error("writing the state behind the log failed: {0}")]
    Behind(String),
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

/// The first 16 bytes of SHA-256 over `parts`, each prefixed by its length (u64 BE): the fixed
/// length key under which nonces, orders, lots and history are filed. A collision among even
/// 10^10 keys has a probability near 10^-19.
pub(crate) fn short_hash(parts: &[&[u8]]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

/// The key a nonce is indexed under, in the queued layers and in sled: `N`, H(signer), the
/// nonce. The signer's hash keeps the key short; the nonce follows as it is, so a signer's
/// nonces sit together in key order and one that counts up touches the same few pages.
pub(crate) fn nonce_key(signer: &str, nonce: &str) -> Vec<u8> {
    owned_key(b'N', signer, nonce)
}

/// The key an order is filed under, in the queued layers and in sled: `O`, H(merchant), the
/// order id (as [`nonce_key`], for the same reason).
pub(crate) fn order_key(merchant: &str, order_id: &str) -> Vec<u8> {
    owned_key(b'O', merchant, order_id)
}

fn owned_key(prefix: u8, owner: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + id.len());
    k.extend_from_slice(&prefixed(prefix, &short_hash(&[owner.as_bytes()])));
    k.extend_from_slice(id.as_bytes());
    k
}

fn prefixed(prefix: u8, hash: &[u8; 16]) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..].copy_from_slice(hash);
    k
}

fn num_key(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

/// The key of the history chunk of `account` that starts at leaf `index`.
fn history_key(account: &str, index: u64) -> Vec<u8> {
    let mut k = history_prefix(account);
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

fn history_prefix(account: &str) -> Vec<u8> {
    prefixed(b'Y', &short_hash(&[account.as_bytes()])).to_vec()
}

/// An `A` value split into the account's encoding (its lots are under `T`) and its history's
/// tail.
fn split_account<'v>(k: &[u8], v: &'v [u8]) -> Result<(&'v [u8], Vec<u64>), StoreError> {
    let (_, rest) = postcard::take_from_bytes::<Account>(v).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(k).into_owned(),
        reason: e.to_string(),
    })?;
    let at = v.len() - rest.len();
    Ok((&v[..at], history::tail(k, rest)?))
}

/// The indexes of the history chunk under `k` (a `Y` key, its first index last).
fn history_chunk(k: &[u8], v: &[u8]) -> Result<Vec<u64>, StoreError> {
    let first = k
        .len()
        .checked_sub(8)
        .filter(|at| *at > 2)
        .map(|at| decode_u64(k, &k[at..]))
        .ok_or_else(|| StoreError::Corrupt {
            key: String::from_utf8_lossy(k).into_owned(),
            reason: "not a history key".into(),
        })??;
    history::chunk_indexes(k, first, v)
}

fn lots_prefix(account: &str) -> Vec<u8> {
    prefixed(b'T', &short_hash(&[account.as_bytes()])).to_vec()
}

const META_CONFIG: &[u8] = b"mconfig";
/// The log size the derived state reflects.
const META_STATE_SIZE: &[u8] = b"mstate-size";
/// Where the earlier layout kept the log's size (`pointsledger migrate` removes it).
const LEGACY_META_SIZE: &[u8] = b"msize";
const META_REBUILDING: &[u8] = b"mrebuilding";
/// The layout of the derived state ([`LAYOUT`]).
const META_LAYOUT: &[u8] = b"mlayout";
/// The layout this build writes: 2 files nonces, orders, lots and history under short hashes of
/// their owners (1, unnamed in the store, spelled the ids out).
pub const LAYOUT: u32 = 2;
const META_ANCHOR_TARGET: &[u8] = b"manchor-target";
/// The keyspace of the anchor records (`K` + tree size) and their target.
const ANCHORS: &str = "anchors";

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

fn get_json<T: DeserializeOwned>(db: &sled::Tree, k: &[u8]) -> Result<Option<T>, StoreError> {
    match db.get(k)? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key: String::from_utf8_lossy(k).into_owned(),
                reason: e.to_string(),
            }),
    }
}

pub(crate) fn latest_checkpoint(db: &sled::Db) -> Result<Option<(u64, String)>, StoreError> {
    match db.scan_prefix([b'C']).next_back() {
        None => Ok(None),
        Some(kv) => {
            let (k, v) = kv?;
            let size = decode_u64(&k, &k[1..])?;
            Ok(Some((size, String::from_utf8_lossy(&v).into_owned())))
        }
    }
}

/// SHA-256 over the derived state as one key per item, in key order: every key and value of
/// the prefixes A T M O N X, an account's value without its history's tail, then for every
/// account in order each of its history's indexes as the key `Y` H(account) index (BE) with
/// an empty value. So the digest does not depend on how the history is packed (`history.rs`),
/// and a store of layout 1, whose keys spelled the ids out, is digested under the keys this
/// layout gives the same items: a migration or rebuild across layouts compares like with like.
pub(crate) fn state_digest(db: &sled::Db) -> Result<Hash, StoreError> {
    use sha2::{Digest, Sha256};
    let layout = match db.get(META_LAYOUT)? {
        None => 1,
        Some(_) => LAYOUT,
    };
    let mut h = Sha256::new();
    let mut item = |k: &[u8], v: &[u8]| {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k);
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    };
    for prefix in DERIVED.into_iter().filter(|p| *p != b'Y') {
        let hashed = matches!(prefix, b'T' | b'O' | b'N');
        if layout == 1 && hashed {
            let mut items = Vec::new();
            for kv in db.scan_prefix([prefix]) {
                let (k, v) = kv?;
                items.push((layout1_key(&k)?, v));
            }
            items.sort();
            for (k, v) in items {
                item(&k, &v);
            }
            continue;
        }
        for kv in db.scan_prefix([prefix]) {
            let (k, v) = kv?;
            if prefix == b'A' {
                item(&k, split_account(&k, &v)?.0);
            } else {
                item(&k, &v);
            }
        }
    }
    for kv in db.scan_prefix([b'A']) {
        let (k, v) = kv?;
        let id = String::from_utf8_lossy(&k[1..]);
        let chunks = match layout {
            1 => key(b'Y', &[id.as_bytes(), b""]),
            _ => history_prefix(&id),
        };
        let mut indexes = Vec::new();
        for chunk in db.scan_prefix(chunks) {
            let (ck, cv) = chunk?;
            indexes.extend(history_chunk(&ck, &cv)?);
        }
        indexes.extend(split_account(&k, &v)?.1);
        for i in indexes {
            item(&history_key(&id, i), &[]);
        }
    }
    Ok(h.finalize().into())
}

/// The key this layout gives the item a layout-1 key of prefix `T`, `O` or `N` names: those
/// spelled out `id / rest` (a lot's 24-byte position after the account, an order id or a
/// nonce after the merchant or signer, which hold no `/`).
fn layout1_key(k: &[u8]) -> Result<Vec<u8>, StoreError> {
    let corrupt = || StoreError::Corrupt {
        key: String::from_utf8_lossy(k).into_owned(),
        reason: "not a key of layout 1".into(),
    };
    let (prefix, rest) = k.split_first().ok_or_else(corrupt)?;
    if *prefix == b'T' {
        let at = rest.len().checked_sub(25).ok_or_else(corrupt)?;
        let mut out = prefixed(b'T', &short_hash(&[&rest[..at]])).to_vec();
        out.extend_from_slice(&rest[at + 1..]);
        return Ok(out);
    }
    let slash = rest.iter().position(|b| *b == b'/').ok_or_else(corrupt)?;
    let mut out = prefixed(*prefix, &short_hash(&[&rest[..slash]])).to_vec();
    out.extend_from_slice(&rest[slash + 1..]);
    Ok(out)
}

/// A read handle on the log and the state; cheap to clone, safe to read from any thread, never
/// blocking the writer.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// The anchorer's records and the contract they belong to: not derived from the log, so
    /// in a keyspace of their own that no rebuild touches.
    anchors: sled::Tree,
    log: LogReader,
    /// The groups the log holds and sled does not yet, which every read looks through.
    pending: Arc<Pending>,
}

impl Store {
    /// Opens (creating if missing) the state database in `dir`, beside `log`.
    pub fn open(dir: &Path, log: LogReader) -> Result<Store, StoreError> {
        let db = open_db(dir)?;
        // A store with neither a configuration nor a layout is new: it is of this layout.
        if db.get(META_LAYOUT)?.is_none() && db.get(META_CONFIG)?.is_none() {
            db.insert(META_LAYOUT, &LAYOUT.to_be_bytes())?;
        }
        Ok(Store {
            anchors: db.open_tree(ANCHORS)?,
            db,
            log,
            pending: Arc::default(),
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
        self.nonce_in(&self.pending.layers(), signer, nonce)
    }

    // The one lookup order of every read of the state, the writer's included: the queued
    // groups `layers` (taken before sled is read, so that a group sled takes meanwhile is
    // found in its layer, never missed), newest first, then sled.

    fn nonce_in(
        &self,
        layers: &[Arc<Layer>],
        signer: &str,
        nonce: &str,
    ) -> Result<Option<u64>, StoreError> {
        let k = nonce_key(signer, nonce);
        if let Some(i) = layers.iter().rev().find_map(|l| l.nonces.get(&k)) {
            return Ok(Some(*i));
        }
        self.db.get(&k)?.map(|v| decode_u64(&k, &v)).transpose()
    }

    fn account_in(
        &self,
        layers: &[Arc<Layer>],
        id: &str,
    ) -> Result<Option<Arc<Account>>, StoreError> {
        if let Some(a) = layers.iter().rev().find_map(|l| l.accounts.get(id)) {
            return Ok(Some(a.clone()));
        }
        // postcard reads the account and leaves the history's tail after it.
        let Some(mut account) = self.get::<Account>(&key(b'A', &[id.as_bytes()]))? else {
            return Ok(None);
        };
        account.lots = self.lots(id)?.into();
        Ok(Some(Arc::new(account)))
    }

    fn merchant_in(&self, layers: &[Arc<Layer>], id: &str) -> Result<Option<Merchant>, StoreError> {
        match layers.iter().rev().find_map(|l| l.merchants.get(id)) {
            Some(m) => Ok(Some(m.clone())),
            None => self.get(&key(b'M', &[id.as_bytes()])),
        }
    }

    fn order_in(
        &self,
        layers: &[Arc<Layer>],
        merchant: &str,
        order_id: &str,
    ) -> Result<Option<Order>, StoreError> {
        let k = order_key(merchant, order_id);
        match layers.iter().rev().find_map(|l| l.orders.get(&k)) {
            Some(o) => Ok(Some(o.clone())),
            None => self.get(&k),
        }
    }

    fn evm_in(&self, layers: &[Arc<Layer>], address: &str) -> Result<Option<String>, StoreError> {
        if let Some(owner) = layers.iter().rev().find_map(|l| l.evm.get(address)) {
            return Ok(owner.clone());
        }
        Ok(self
            .db
            .get(key(b'X', &[address.as_bytes()]))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Waits until sled holds every group queued behind the log.
    pub fn settle(&self) -> Result<(), StoreError> {
        self.pending.settle()
    }

    fn get_json<T: DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, StoreError> {
        get_json(&self.db, k)
    }

    /// The log's configuration, once initialised.
    pub fn config(&self) -> Result<Option<StoredConfig>, StoreError> {
        self.get_json(META_CONFIG)
    }

    /// Writes the configuration of a new log (once, at init) and flushes.
    pub fn put_config(&self, config: &StoredConfig) -> Result<(), StoreError> {
        self.db.insert(META_LAYOUT, &LAYOUT.to_be_bytes())?;
        self.db.insert(META_CONFIG, to_json(config))?;
        self.db.flush()?;
        Ok(())
    }

    /// Number of leaves in the log (durable ones only).
    pub fn size(&self) -> Result<u64, StoreError> {
        Ok(self.log.size())
    }

    /// The log size sled's derived state reflects: at most [`Store::size`]; below it while
    /// groups are queued behind the log, and after a crash until the ledger replays the tail.
    pub fn state_size(&self) -> Result<u64, StoreError> {
        match self.db.get(META_STATE_SIZE)? {
            None => Ok(0),
            Some(v) => decode_u64(META_STATE_SIZE, &v),
        }
    }

    /// The bytes of leaf `index`, if the log holds it.
    pub fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if index >= self.log.size() {
            return Ok(None);
        }
        Ok(Some(self.log.leaf(index)?))
    }

    /// Leaves `start..end` (end exclusive, clipped to the log's size).
    pub fn leaves(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let end = end.min(self.log.size());
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let n = (end - at).min(MAX_READ_LEAVES);
            out.extend(self.log.leaves(at, n)?);
            at += n;
        }
        Ok(out)
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
        latest_checkpoint(&self.db)
    }

    /// The body of a tlog-tiles resource ([`crate::log::layout`]): the latest checkpoint note,
    /// an entry bundle (each leaf behind its `u16` big-endian length) or a hash tile (its
    /// stored hashes, 32 bytes each). `None` when the log does not hold it yet.
    pub fn tile(&self, resource: &Resource) -> Result<Option<Vec<u8>>, StoreError> {
        match self.log.read(*resource) {
            Ok(body) => Ok(Some(body)),
            Err(LogError::NotYet { .. } | LogError::BadPath(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a checkpoint note and flushes it, with every state batch written before it.
    pub fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        self.put_checkpoints(std::iter::once((size, note)))
    }

    /// Stores checkpoint notes with one flush (the auditor's record of a log's history).
    pub fn put_checkpoints<'a>(
        &self,
        notes: impl IntoIterator<Item = (u64, &'a str)>,
    ) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (size, note) in notes {
            b.insert(&num_key(b'C', size), note.as_bytes());
        }
        self.db.apply_batch(b)?;
        self.db.flush()?;
        Ok(())
    }

    /// The signed checkpoints of tree sizes from `from` on, oldest first.
    pub fn checkpoints_from(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, String), StoreError>> {
        self.db
            .range(num_key(b'C', from).to_vec()..vec![b'C' + 1])
            .map(|kv| {
                let (k, v) = kv?;
                let size = decode_u64(&k, &k[1..])?;
                Ok((size, String::from_utf8_lossy(&v).into_owned()))
            })
    }

    /// Leaf indexes that changed `account`, ascending, starting at `from`, at most `limit`.
    pub fn history(&self, account: &str, from: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        // The queued groups first, then the account's tail, then its sealed chunks: a batch
        // that sled takes meanwhile moves indexes only from the queue into the tail and from
        // the tail into a chunk, so each index is read at least once, and the set keeps it
        // once.
        let layers = self.pending.layers();
        let mut out = BTreeSet::new();
        for layer in &layers {
            out.extend(
                layer
                    .history
                    .iter()
                    .filter(|(a, i)| a == account && *i >= from)
                    .map(|(_, i)| *i),
            );
        }
        let k = key(b'A', &[account.as_bytes()]);
        if let Some(v) = self.db.get(&k)? {
            out.extend(split_account(&k, &v)?.1.into_iter().filter(|i| *i >= from));
        }
        // Chunks ascend and hold older indexes than the tail and the queue, so the scan starts
        // at the chunk that may hold `from` and stops once it has `limit` indexes.
        let prefix = history_prefix(account);
        let start = match self
            .db
            .range(prefix.clone()..=history_key(account, from))
            .next_back()
        {
            Some(kv) => kv?.0.to_vec(),
            None => prefix.clone(),
        };
        let mut chunked = 0;
        for kv in self.db.range(start..) {
            let (ck, cv) = kv?;
            if !ck.starts_with(&prefix) || chunked >= limit {
                break;
            }
            for i in history_chunk(&ck, &cv)?.into_iter().filter(|i| *i >= from) {
                chunked += 1;
                out.insert(i);
            }
        }
        Ok(out.into_iter().take(limit).collect())
    }

    /// All account ids, for audits and state comparisons.
    pub fn account_ids(&self) -> Result<Vec<String>, StoreError> {
        let layers = self.pending.layers();
        let mut ids = BTreeSet::new();
        for k in self.db.scan_prefix([b'A']).keys() {
            ids.insert(String::from_utf8_lossy(&k?[1..]).into_owned());
        }
        for layer in &layers {
            ids.extend(layer.accounts.keys().cloned());
        }
        Ok(ids.into_iter().collect())
    }

    /// SHA-256 over the derived state, one key per item in key order (see the free function).
    ///
    /// Two stores with equal digests hold identical derived state; `rebuild` uses it to show
    /// that replaying the log reproduces the state exactly. Waits until sled holds every
    /// group queued behind the log.
    pub fn state_digest(&self) -> Result<Hash, StoreError> {
        self.settle()?;
        state_digest(&self.db)
    }

    /// Deletes all derived state (not checkpoints or anchor records) and marks a rebuild as
    /// under way, so that an interrupted rebuild is noticed at the next open.
    pub fn clear_derived(&self) -> Result<(), StoreError> {
        *self
            .pending
            .tails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = behind::Tails::default();
        self.db.insert(META_REBUILDING, &[1u8])?;
        self.db.flush()?;
        for prefix in DERIVED {
            let mut batch = sled::Batch::default();
            for k in self.db.scan_prefix([prefix]).keys() {
                batch.remove(k?);
            }
            self.db.apply_batch(batch)?;
        }
        self.db.remove(META_STATE_SIZE)?;
        self.db.flush()?;
        Ok(())
    }

    /// Marks a rebuild as finished: the derived state is of this build's [`LAYOUT`].
    pub fn finish_rebuild(&self) -> Result<(), StoreError> {
        self.db.insert(META_LAYOUT, &LAYOUT.to_be_bytes())?;
        self.db.remove(META_REBUILDING)?;
        self.db.flush()?;
        Ok(())
    }

    /// The layout of the derived state when it is not this build's [`LAYOUT`] (1 for a store
    /// that names none): the state must then be rebuilt from the log before it is read.
    pub fn stale_layout(&self) -> Result<Option<u32>, StoreError> {
        match self.db.get(META_LAYOUT)? {
            None => Ok(Some(1)),
            Some(v) => {
                let layout = v.as_ref().try_into().map(u32::from_be_bytes).map_err(|_| {
                    StoreError::Corrupt {
                        key: String::from_utf8_lossy(META_LAYOUT).into_owned(),
                        reason: "expected 4 bytes".into(),
                    }
                })?;
                Ok((layout != LAYOUT).then_some(layout))
            }
        }
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
        self.anchors
            .insert(num_key(b'K', rec.tree_size), to_json(rec))?;
        self.anchors.flush()?;
        Ok(())
    }

    /// Forgets the record for `tree_size` (a pending anchor a newer one replaced).
    pub fn delete_anchor(&self, tree_size: u64) -> Result<(), StoreError> {
        self.anchors.remove(num_key(b'K', tree_size))?;
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
        self.anchors.range(vec![b'K']..end).rev().map(|kv| {
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
        get_json(&self.anchors, META_ANCHOR_TARGET)
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
        for kv in self.anchors.scan_prefix([b'K']) {
            batch.remove(kv?.0);
            dropped += 1;
        }
        batch.insert(META_ANCHOR_TARGET, to_json(&target));
        self.anchors.apply_batch(batch)?;
        self.anchors.flush()?;
        Ok(dropped)
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

impl Store {
    /// Keeps the accounts of the groups of the last `entries` entries appended from now on as
    /// they were before each, so that [`Store::account_at`] can answer at those sizes (0: none).
    pub fn keep_account_versions(&self, entries: u64) {
        self.pending.keep_versions(entries, self.log.size());
    }

    /// Account `id` as it was when the log had `size` entries, if `size` ends a group whose
    /// versions are kept ([`Store::keep_account_versions`]); `Err` says why not.
    pub fn account_at(&self, id: &str, size: u64) -> Result<Result<Account, NotKept>, StoreError> {
        // Now first, then the versions: a group that changes the account in between is kept,
        // and its version answers.
        let now = self.account_in(&self.pending.layers(), id)?;
        Ok(match self.pending.version(id, size) {
            Version::Was(was) => Ok(was.map(Arc::unwrap_or_clone).unwrap_or_default()),
            Version::Unchanged => Ok(now.map(Arc::unwrap_or_clone).unwrap_or_default()),
            Version::NotKept { from } => Err(NotKept::Older { from }),
            Version::NotABoundary => Err(NotKept::NotABoundary),
        })
    }
}

/// Why an account cannot be read at a past size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotKept {
    /// The versions kept start after that size (`from`, or none kept at all).
    Older {
        /// The oldest size that can be asked for.
        from: Option<u64>,
    },
    /// No group of the log ends at that size.
    NotABoundary,
}

impl StateView for Store {
    fn account(&self, id: &str) -> Result<Option<Account>, EngineError> {
        let found = self.account_in(&self.pending.layers(), id)?;
        Ok(found.map(Arc::unwrap_or_clone))
    }
    fn merchant(&self, id: &str) -> Result<Option<Merchant>, EngineError> {
        Ok(self.merchant_in(&self.pending.layers(), id)?)
    }
    fn order(&self, merchant: &str, order_id: &str) -> Result<Option<Order>, EngineError> {
        Ok(self.order_in(&self.pending.layers(), merchant, order_id)?)
    }
    fn nonce_used(&self, signer: &str, nonce: &str) -> Result<bool, EngineError> {
        Ok(self.nonce_entry(signer, nonce)?.is_some())
    }
    fn evm_owner(&self, address: &str) -> Result<Option<String>, EngineError> {
        Ok(self.evm_in(&self.pending.layers(), address)?)
    }
}

impl HashSource for Store {
    /// The log's stored hashes, refused past its durable size.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        self.log.read_hashes(indexes)
    }
}

/// The earlier layout, in which the leaves (`L`), tree hashes (`H`) and the log's size
/// (`msize`) lived in this keyspace too; read and cleared only by [`crate::migrate`].
pub(crate) mod legacy {
    use super::{decode_u64, num_key, StoreError, StoredConfig, LEGACY_META_SIZE, META_REBUILDING};

    /// The log's configuration.
    pub(crate) fn config(db: &sled::Db) -> Result<Option<StoredConfig>, StoreError> {
        super::get_json(db, super::META_CONFIG)
    }

    pub(crate) use super::{latest_checkpoint, state_digest};

    /// The log's size, or `None` once [`strip`] has run.
    pub(crate) fn size(db: &sled::Db) -> Result<Option<u64>, StoreError> {
        db.get(LEGACY_META_SIZE)?
            .map(|v| decode_u64(LEGACY_META_SIZE, &v))
            .transpose()
    }

    /// Leaves `start..end`; an index with no leaf is an error, not a gap.
    pub(crate) fn leaves(db: &sled::Db, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        (start..end)
            .map(|i| {
                db.get(num_key(b'L', i))?
                    .map(|v| v.to_vec())
                    .ok_or_else(|| StoreError::Corrupt {
                        key: format!("L{i}"),
                        reason: "the leaf is missing".into(),
                    })
            })
            .collect()
    }

    /// Removes the leaves, hashes and size (now in the log), moves the anchor records into
    /// their own keyspace, and marks the derived state for a full replay, so that the first
    /// open checks every leaf against it; flushed on return.
    pub(crate) fn strip(db: &sled::Db) -> Result<(), StoreError> {
        db.insert(META_REBUILDING, &[1u8])?;
        db.flush()?;
        let anchors = db.open_tree(super::ANCHORS)?;
        let mut moved = sled::Batch::default();
        let mut gone = sled::Batch::default();
        for kv in db
            .scan_prefix([b'K'])
            .chain(db.scan_prefix(super::META_ANCHOR_TARGET))
        {
            let (k, v) = kv?;
            moved.insert(k.clone(), v);
            gone.remove(k);
        }
        anchors.apply_batch(moved)?;
        anchors.flush()?;
        db.apply_batch(gone)?;
        for prefix in [b'L', b'H'] {
            let mut batch = sled::Batch::default();
            for k in db.scan_prefix([prefix]).keys() {
                batch.remove(k?);
            }
            db.apply_batch(batch)?;
        }
        db.remove(LEGACY_META_SIZE)?;
        db.flush()?;
        Ok(())
    }
}
