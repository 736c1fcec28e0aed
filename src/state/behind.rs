//! The state written behind the log: groups the log holds whose state sled may not hold yet.
//!
//! Once a group's leaves are in the log (synced), its state is frozen into a [`Layer`] and queued
//! on [`Pending`] before the group's receipts are sent. One thread ([`StateWriter`]) takes every
//! layer queued, merges them into one sled batch (an account that many groups wrote is written
//! once, as the last of them left it), applies it with the log size it reflects and no flush,
//! and only then drops those layers from the queue: a value is always in a queued layer or in
//! sled, never in neither. Every read of the state ([`Store`]) looks through the queued layers,
//! newest first, before it reads sled, so a read after a receipt sees the entry's effects.
//!
//! The queue is bounded ([`MAX_ENTRIES`] entries, [`MAX_LAYERS`] layers): a writer that outruns
//! sled waits for it, so memory stays bounded and reads look through few layers. If sled fails a
//! batch, the thread stops and the layers stay queued, so reads still see every acknowledged
//! entry; [`Pending::failed`] then tells the writer to refuse later groups until the ledger is
//! reopened, which replays the log from the size sled reflects.

use super::history::{self, SEAL};
use super::{encode, history_key, key, lot_key, Store, StoreError, META_STATE_SIZE};
use crate::engine::state::{Account, Lot, Lots, Merchant, Order};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// Most entries queued behind the log before the writer waits for sled.
const MAX_ENTRIES: u64 = 65_536;
/// Most groups queued behind the log before the writer waits for sled.
const MAX_LAYERS: usize = 64;

/// The state changes of one group that the log holds: what each key is after the group.
#[derive(Default)]
pub(crate) struct Layer {
    /// The log's size after the group; its first entry is at `size - entries`.
    pub(super) size: u64,
    /// Entries in the group.
    pub(super) entries: u64,
    /// Accounts the group wrote, as it left them (shared with the writer's cache).
    pub(super) accounts: HashMap<String, Arc<Account>>,
    /// Each of those accounts before the group (none if it was new): a batch writes only the
    /// lots that changed and removes the ones that went.
    pub(super) base: HashMap<String, Arc<Account>>,
    pub(super) merchants: HashMap<String, Merchant>,
    /// Orders under their sled keys ([`super::order_key`]).
    pub(super) orders: HashMap<Vec<u8>, Order>,
    /// Leaf indexes under their sled keys ([`super::nonce_key`]).
    pub(super) nonces: HashMap<Vec<u8>, u64>,
    pub(super) evm: HashMap<String, Option<String>>,
    /// (account, leaf index) for every entry that changed an account.
    pub(super) history: Vec<(String, u64)>,
}

/// The history tails (the indexes not yet sealed into a chunk) that sled holds in each recent
/// account's `A` value, as the last batch that wrote them left them: a batch that writes an
/// account again appends to its tail without reading the value back from sled. Kept for at
/// most [`Tails::CAPACITY`] accounts; the others are read from sled.
#[derive(Default)]
pub(super) struct Tails {
    map: HashMap<String, Vec<u64>>,
}

impl Tails {
    /// Most accounts whose tails are kept (as many as the writer's cache holds accounts).
    const CAPACITY: usize = super::WriterCache::CAPACITY;

    /// Takes the tails a batch wrote, once sled holds the batch. Past the capacity the map
    /// starts over rather than tracking which account is oldest.
    pub(super) fn update(&mut self, written: WrittenTails) {
        if self.map.len() + written.len() > Self::CAPACITY {
            self.map.clear();
        }
        if written.len() <= Self::CAPACITY {
            self.map.extend(written);
        }
    }
}

/// What a batch wrote of each account's history tail: (account, tail).
pub(super) type WrittenTails = Vec<(String, Vec<u64>)>;

/// One sled batch writing `layers` (consecutive groups, oldest first) over the state that
/// `db` holds, which reflects the log up to the first of them, with the history tails it
/// writes, for [`Tails::update`] once sled holds it.
pub(super) fn batch(
    db: &sled::Db,
    layers: &[Arc<Layer>],
    tails: &Tails,
) -> Result<(sled::Batch, WrittenTails), StoreError> {
    let mut b = sled::Batch::default();
    // Each account: its lots before the first layer that wrote it (and whether it was new
    // then), the account after the last, and the entries of the layers that changed it.
    let none = Lots::default();
    let mut accounts: HashMap<&str, (&Lots, bool, &Account, Vec<u64>)> = HashMap::new();
    for layer in layers {
        for (id, account) in &layer.accounts {
            let base = layer.base.get(id);
            accounts
                .entry(id.as_str())
                .and_modify(|e| e.2 = account)
                .or_insert((
                    base.map_or(&none, |a| &a.lots),
                    base.is_none(),
                    account,
                    vec![],
                ));
        }
        for (id, index) in &layer.history {
            if let Some(e) = accounts.get_mut(id.as_str()) {
                e.3.push(*index);
            }
        }
    }
    let mut written_tails = Vec::with_capacity(accounts.len());
    for (id, (base, new, account, entries)) in accounts {
        let (written, removed) = account.lots.changes_from(base);
        for lot in written {
            b.insert(lot_key(id, lot), encode(lot));
        }
        for gone in removed {
            b.remove(lot_key(id, gone));
        }
        // The account's own key holds everything but its lots, then its history's tail.
        let k = key(b'A', &[id.as_bytes()]);
        let mut tail = match tails.map.get(id) {
            _ if new => Vec::new(),
            Some(tail) => tail.clone(),
            None => match db.get(&k)? {
                Some(v) => super::split_account(&k, &v)?.1,
                None => Vec::new(),
            },
        };
        tail.extend(entries);
        let sealed = tail.len() / SEAL * SEAL;
        for chunk in tail[..sealed].chunks(SEAL) {
            b.insert(history_key(id, chunk[0]), history::chunk_value(chunk));
        }
        let mut value = encode(&AccountRecord::of(account));
        history::put_tail(&mut value, &tail[sealed..]);
        b.insert(k, value);
        tail.drain(..sealed);
        written_tails.push((id.to_owned(), tail));
    }
    // Later layers overwrite earlier ones: a batch keeps the last value given for a key.
    for layer in layers {
        for (id, m) in &layer.merchants {
            b.insert(key(b'M', &[id.as_bytes()]), encode(m));
        }
        for (k, order) in &layer.orders {
            b.insert(k.as_slice(), encode(order));
        }
        for (k, i) in &layer.nonces {
            b.insert(k.as_slice(), &i.to_be_bytes());
        }
        for (addr, owner) in &layer.evm {
            let k = key(b'X', &[addr.as_bytes()]);
            match owner {
                Some(c) => b.insert(k, c.as_bytes()),
                None => b.remove(k),
            }
        }
    }
    if let Some(last) = layers.last() {
        b.insert(META_STATE_SIZE, &last.size.to_be_bytes());
    }
    Ok((b, written_tails))
}

/// Writes `layers` into sled as one batch, without a flush, and keeps the tails it wrote.
pub(super) fn write(
    db: &sled::Db,
    layers: &[Arc<Layer>],
    tails: &Mutex<Tails>,
) -> Result<(), StoreError> {
    let mut tails = tails.lock().unwrap_or_else(PoisonError::into_inner);
    let (b, written) = batch(db, layers, &tails)?;
    db.apply_batch(b)?;
    tails.update(written);
    Ok(())
}

/// An account as its `A` key stores it: everything but its lots, which have keys of their own.
/// Encodes exactly as an [`Account`] whose lots are empty; the history's tail follows it
/// ([`history`]).
#[derive(serde::Serialize)]
pub(super) struct AccountRecord<'a> {
    lots: &'a [Lot],
    debt: u64,
    referrer: &'a Option<String>,
    referees: u64,
    purchases: u64,
    evm_address: &'a Option<String>,
    rewards_by_merchant: &'a std::collections::BTreeMap<String, u64>,
}

impl<'a> AccountRecord<'a> {
    pub(super) fn of(a: &'a Account) -> Self {
        AccountRecord {
            lots: &[],
            debt: a.debt,
            referrer: &a.referrer,
            referees: a.referees,
            purchases: a.purchases,
            evm_address: &a.evm_address,
            rewards_by_merchant: &a.rewards_by_merchant,
        }
    }
}

#[derive(Default)]
struct Queue {
    /// Oldest first.
    layers: VecDeque<Arc<Layer>>,
    entries: u64,
    /// Why sled refused a batch, once it has.
    failed: Option<String>,
    /// Set when the [`StateWriter`] is told to finish what is queued and stop.
    closing: bool,
    /// The accounts of recent groups as they were before each, for reads at a past size.
    versions: Versions,
}

/// The accounts each recent group changed, as they were before it (`None`: new in it), kept
/// for the groups of the last `retain` entries (none while `retain` is 0). A read at a size
/// where a group ends takes, from the first later group that changed the account, its state
/// before that group; with no later change, the account as it is now. Versions share their
/// unchanged lot chunks with the accounts after them, so a version costs about what its group
/// changed.
#[derive(Default)]
struct Versions {
    retain: u64,
    /// Oldest first.
    groups: VecDeque<Kept>,
    entries: u64,
    /// Every group from this size on is kept (`None` before the first).
    from: Option<u64>,
}

/// One group's accounts as they were before it.
struct Kept {
    /// Its first entry's index.
    start: u64,
    /// The log's size after it.
    end: u64,
    before: HashMap<String, Option<Arc<Account>>>,
}

/// What the versions say of an account at a past size.
pub(crate) enum Version {
    /// It was this (`None`: it did not exist yet).
    Was(Option<Arc<Account>>),
    /// No group since changed it: it was as it is now.
    Unchanged,
    /// The versions kept start at this size, after the one asked for.
    NotKept {
        /// The oldest size a read can ask for.
        from: Option<u64>,
    },
    /// No group ends at that size.
    NotABoundary,
}

impl Versions {
    /// Keeps `layer`'s accounts as they were before it; returns the groups that fell out, for
    /// the caller to drop once it has let go of the queue's lock.
    fn record(&mut self, layer: &Layer) -> Vec<Kept> {
        let mut evicted = Vec::new();
        if self.retain == 0 {
            return evicted;
        }
        let start = layer.size - layer.entries;
        let before = layer
            .accounts
            .keys()
            .map(|id| (id.clone(), layer.base.get(id).cloned()))
            .collect();
        self.groups.push_back(Kept {
            start,
            end: layer.size,
            before,
        });
        self.entries += layer.entries;
        while self.entries > self.retain {
            let Some(old) = self.groups.pop_front() else {
                break;
            };
            self.entries -= old.end - old.start;
            self.from = Some(old.end);
            evicted.push(old);
        }
        evicted
    }

    fn at(&self, id: &str, size: u64) -> Version {
        let Some(from) = self.from.filter(|from| *from <= size) else {
            return Version::NotKept { from: self.from };
        };
        let boundary = size == from || self.groups.iter().any(|g| g.end == size);
        if !boundary {
            return Version::NotABoundary;
        }
        self.groups
            .iter()
            .filter(|g| g.start >= size)
            .find_map(|g| g.before.get(id))
            .map_or(Version::Unchanged, |was| Version::Was(was.clone()))
    }
}

/// The groups the log holds and sled does not yet: shared by every [`Store`] handle (reads look
/// through it) and the [`StateWriter`] that empties it.
#[derive(Default)]
pub(crate) struct Pending {
    /// Set by [`super::tamper::fail_next_state_write`]: the next batch fails as if sled had
    /// refused it.
    pub(super) fail_next: std::sync::atomic::AtomicBool,
    queue: Mutex<Queue>,
    changed: Condvar,
    /// The history tails sled holds, for every batch written to this store (the writer
    /// thread's and replays' alike).
    pub(super) tails: Mutex<Tails>,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, q: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
        self.changed.wait(q).unwrap_or_else(PoisonError::into_inner)
    }

    /// The queued layers, oldest first (each read looks through them newest first).
    pub(crate) fn layers(&self) -> Vec<Arc<Layer>> {
        self.lock().layers.iter().cloned().collect()
    }

    /// Why writing the state failed, once it has.
    pub(crate) fn failed(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    /// Queues a layer, waiting first while the queue is full (see [`StateWriter::push`]).
    pub(super) fn push(&self, layer: Layer) {
        let mut q = self.lock();
        while q.failed.is_none() && (q.entries >= MAX_ENTRIES || q.layers.len() >= MAX_LAYERS) {
            q = self.wait(q);
        }
        q.entries += layer.entries;
        let evicted = q.versions.record(&layer);
        q.layers.push_back(Arc::new(layer));
        self.changed.notify_all();
        drop(q);
        // Freeing the old versions' lot chunks is not for the readers waiting on the lock.
        drop(evicted);
    }

    /// Keeps the accounts of the groups of the last `entries` entries as they were before each,
    /// from the next group on (the log has `size` entries now), for [`Pending::version`] (0:
    /// keeps none).
    pub(crate) fn keep_versions(&self, entries: u64, size: u64) {
        let mut q = self.lock();
        q.versions = Versions {
            retain: entries,
            from: (entries > 0).then_some(size),
            ..Versions::default()
        };
    }

    /// What the kept versions say of account `id` when the log had `size` entries. Read the
    /// account as it is now before asking: a group that changes it in between is kept, and
    /// its version is the one returned.
    pub(crate) fn version(&self, id: &str, size: u64) -> Version {
        self.lock().versions.at(id, size)
    }

    /// Waits until sled holds every queued layer; `Err` if it failed to.
    pub(crate) fn settle(&self) -> Result<(), StoreError> {
        let mut q = self.lock();
        loop {
            if let Some(why) = &q.failed {
                return Err(StoreError::Behind(why.clone()));
            }
            if q.layers.is_empty() {
                return Ok(());
            }
            q = self.wait(q);
        }
    }
}

/// The thread that writes queued layers into sled; owned by the one writer of a store (the
/// ledger, or the auditor's mirror). Dropping it writes what is queued, then stops the thread.
pub struct StateWriter {
    pending: Arc<Pending>,
    thread: Option<JoinHandle<()>>,
}

impl StateWriter {
    /// Starts the thread that writes `store`'s queued layers.
    pub fn start(store: &Store) -> StateWriter {
        let pending = store.pending.clone();
        pending.lock().closing = false;
        let (db, shared) = (store.db.clone(), pending.clone());
        let thread = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_loop(&db, &shared))
            .expect("spawning the state writer thread");
        StateWriter {
            pending,
            thread: Some(thread),
        }
    }

    /// Queues a group's state, waiting first while the queue is full (unless writing has
    /// failed: the layer is then kept for reads and the writer refuses what follows).
    pub(crate) fn push(&self, layer: Layer) {
        self.pending.push(layer);
    }

    /// Why writing the state failed, once it has.
    pub fn failed(&self) -> Option<String> {
        self.pending.failed()
    }

    /// Writes what is queued, then stops the thread.
    pub fn close(&mut self) {
        self.pending.lock().closing = true;
        self.pending.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(db: &sled::Db, pending: &Pending) {
    loop {
        let layers: Vec<Arc<Layer>> = {
            let mut q = pending.lock();
            while q.layers.is_empty() && !q.closing {
                q = pending.wait(q);
            }
            if q.layers.is_empty() {
                return;
            }
            q.layers.iter().cloned().collect()
        };
        let result = if pending
            .fail_next
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            Err(StoreError::Behind("a failure injected by a test".into()))
        } else {
            write(db, &layers, &pending.tails)
        };
        let mut q = pending.lock();
        match result {
            Ok(()) => {
                for _ in 0..layers.len() {
                    if let Some(done) = q.layers.pop_front() {
                        q.entries -= done.entries;
                    }
                }
                pending.changed.notify_all();
            }
            Err(e) => {
                tracing::error!(error = %e, "writing the state behind the log failed; the groups stay in memory for reads, later writes are refused until the ledger is reopened, which replays them from the log");
                q.failed = Some(e.to_string());
                pending.changed.notify_all();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(debt: u64) -> Arc<Account> {
        Arc::new(Account {
            debt,
            ..Account::default()
        })
    }

    /// A group of `entries` ending at `size` that left `id` with `debt`, from `was`.
    fn group(size: u64, entries: u64, id: &str, debt: u64, was: Option<u64>) -> Layer {
        let mut l = Layer {
            size,
            entries,
            ..Layer::default()
        };
        l.accounts.insert(id.into(), account(debt));
        if let Some(was) = was {
            l.base.insert(id.into(), account(was));
        }
        l
    }

    #[test]
    fn versions_answer_at_the_boundaries_they_keep() {
        let debt = |v: Version| match v {
            Version::Was(a) => Some(a.map_or(0, |a| a.debt)),
            Version::Unchanged => None,
            Version::NotKept { .. } => Some(u64::MAX),
            Version::NotABoundary => Some(u64::MAX - 1),
        };
        let mut v = Versions {
            retain: 10,
            from: Some(4),
            ..Versions::default()
        };
        v.record(&group(6, 2, "a", 1, None));
        v.record(&group(9, 3, "b", 7, Some(5)));
        v.record(&group(12, 3, "a", 2, Some(1)));
        // "a" was new in the first group, 1 after it, 2 after the third.
        assert_eq!(debt(v.at("a", 4)), Some(0));
        assert_eq!(debt(v.at("a", 6)), Some(1));
        assert_eq!(debt(v.at("a", 9)), Some(1));
        assert_eq!(debt(v.at("a", 12)), None, "as it is now");
        assert_eq!(debt(v.at("b", 6)), Some(5));
        assert_eq!(debt(v.at("b", 9)), None);
        assert_eq!(debt(v.at("a", 7)), Some(u64::MAX - 1), "inside a group");
        assert_eq!(
            debt(v.at("a", 3)),
            Some(u64::MAX),
            "before the versions kept"
        );
        // Past 10 entries kept, the oldest group goes, and with it size 4.
        v.record(&group(15, 3, "c", 1, None));
        assert!(matches!(v.at("a", 4), Version::NotKept { from: Some(6) }));
        assert_eq!(debt(v.at("a", 6)), Some(1));
        // None kept while retain is 0.
        let mut off = Versions::default();
        off.record(&group(2, 2, "a", 1, None));
        assert!(matches!(off.at("a", 0), Version::NotKept { from: None }));
    }

    #[test]
    fn an_account_record_encodes_as_the_account_without_its_lots() {
        let mut a = Account {
            debt: 7,
            referrer: Some("r".into()),
            referees: 2,
            purchases: 3,
            evm_address: Some("0xab".into()),
            ..Account::default()
        };
        a.rewards_by_merchant.insert("m".into(), 5);
        let with_lots = Account {
            lots: Lots::from(vec![Lot {
                id: "1.0".into(),
                merchant: "m".into(),
                source: crate::engine::state::LotSource::Purchase,
                order_id: "o".into(),
                points: 1,
                remaining: 1,
                available_at: 0,
                expires_at: 9,
            }]),
            ..a.clone()
        };
        assert_eq!(encode(&AccountRecord::of(&with_lots)), encode(&a));
    }
}
