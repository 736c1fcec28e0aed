//! The write side of the state: the group being sequenced, an overlay the engine reads through,
//! and the writer's cache of the accounts it read or wrote recently.

use super::behind::{self, Layer, StateWriter};
use super::{Store, StoreError};
use crate::engine::state::{Account, Merchant, Order};
use crate::engine::{EngineError, StateView, Writes};
use crate::log::{LogError, LogWriter};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Accounts and merchants as the writer last saw them, so that a busy account's lots are not
/// read from sled for every entry that touches it.
///
/// It holds the latest state: accounts enter it when a group that wrote them is in the log
/// (whether or not sled holds them yet, see [`StateWriter`]) or when the writer reads them, and only
/// the writer produces new state. Readers never touch it: a reader racing the writer could put
/// back a value the writer had just replaced. Bounded by [`WriterCache::CAPACITY`] accounts,
/// evicted oldest-inserted first; an evicted account is read again through the queued layers
/// and sled, which hold the same value.
#[derive(Default)]
pub struct WriterCache {
    accounts: HashMap<String, Arc<Account>>,
    inserted: VecDeque<String>,
    merchants: HashMap<String, Merchant>,
}

impl WriterCache {
    /// Most accounts kept.
    pub const CAPACITY: usize = 16_384;

    /// The account as the writer last saw it, if it is held.
    pub fn account(&self, id: &str) -> Option<Arc<Account>> {
        self.accounts.get(id).cloned()
    }

    fn put_account(&mut self, id: String, account: Arc<Account>) {
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

/// The open group: writes not yet in the log, layered over the writer's cache, the groups
/// queued behind the log and sled.
pub struct Group<'a> {
    store: &'a Store,
    /// The layers queued when the group started, oldest first: only the writer adds layers, so
    /// nothing newer appears while it runs, and a layer that leaves the queue is in sled.
    layers: Vec<Arc<Layer>>,
    cache: RefCell<WriterCache>,
    size: u64,
    /// The group's new leaves, from index `first`.
    leaves: Vec<Vec<u8>>,
    first: u64,
    accounts: HashMap<String, Account>,
    /// Each account in `accounts` as it was before the group (none if it was new).
    base: HashMap<String, Arc<Account>>,
    merchants: HashMap<String, Merchant>,
    orders: HashMap<Vec<u8>, Order>,
    nonces: HashMap<Vec<u8>, u64>,
    evm: HashMap<String, Option<String>>,
    history: Vec<(String, u64)>,
}

impl<'a> Group<'a> {
    /// Starts a group on top of `store`, whose log has `size` leaves, reading through `cache`
    /// (handed back by [`Group::commit_to`] and [`Group::commit`]).
    pub fn new(store: &'a Store, size: u64, cache: WriterCache) -> Self {
        Group {
            store,
            layers: store.pending.layers(),
            cache: RefCell::new(cache),
            size,
            leaves: Vec::new(),
            first: size,
            accounts: HashMap::new(),
            base: HashMap::new(),
            merchants: HashMap::new(),
            orders: HashMap::new(),
            nonces: HashMap::new(),
            evm: HashMap::new(),
            history: Vec::new(),
        }
    }

    /// Drops the group's writes and hands back the writer's cache.
    pub fn into_cache(self) -> WriterCache {
        self.cache.into_inner()
    }

    /// The log's size including this group's leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the group has anything to commit.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The bytes the group's leaves take in a log record (each with its 2-byte length).
    pub fn record_bytes(&self) -> usize {
        self.leaves.iter().map(|l| 2 + l.len()).sum()
    }

    /// The leaf index of the entry in which `signer` used `nonce`: in this group, the queued
    /// layers or sled.
    pub fn nonce_entry(&self, signer: &str, nonce: &str) -> Result<Option<u64>, StoreError> {
        match self.nonces.get(&super::nonce_key(signer, nonce)) {
            Some(i) => Ok(Some(*i)),
            None => self.store.nonce_in(&self.layers, signer, nonce),
        }
    }

    /// Leaf bytes, from this group or the log.
    pub fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        match index.checked_sub(self.first) {
            Some(at) if at < self.leaves.len() as u64 => Ok(Some(self.leaves[at as usize].clone())),
            _ => self.store.leaf(index),
        }
    }

    /// Adds one accepted entry: its leaf and its writes.
    pub fn push(&mut self, leaf: Vec<u8>, writes: Writes) -> Result<(), StoreError> {
        self.apply_writes(self.size, writes)?;
        self.size += 1;
        self.leaves.push(leaf);
        Ok(())
    }

    /// Adds the state changes of a leaf that is already in the log (replays).
    pub fn push_replayed(&mut self, writes: Writes) -> Result<(), StoreError> {
        self.apply_writes(self.size, writes)?;
        self.size += 1;
        Ok(())
    }

    /// An account as it stood before this group: the cache, the queued layers, then sled
    /// (what it reads there enters the cache).
    fn committed_account(&self, id: &str) -> Result<Option<Arc<Account>>, StoreError> {
        if let Some(a) = self.cache.borrow().accounts.get(id) {
            return Ok(Some(a.clone()));
        }
        let found = self.store.account_in(&self.layers, id)?;
        if let Some(a) = &found {
            self.cache
                .borrow_mut()
                .put_account(id.to_owned(), a.clone());
        }
        Ok(found)
    }

    fn apply_writes(&mut self, index: u64, writes: Writes) -> Result<(), StoreError> {
        // Read everything first, so that a failed read leaves the group as it was.
        let mut firsts = HashMap::new();
        for id in writes.accounts.keys() {
            if !self.accounts.contains_key(id) {
                firsts.insert(id.clone(), self.committed_account(id)?);
            }
        }
        for (id, account) in writes.accounts {
            // The history lists the entries that changed the account (docs/PROTOCOL.md §12.4):
            // the engine also hands back accounts it only looked at (a refund sweeps a
            // referrer it claws nothing from).
            let changed = match self.accounts.get(&id) {
                Some(before) => *before != account,
                None => {
                    let before = firsts.remove(&id).flatten();
                    let changed = before
                        .as_deref()
                        .map_or_else(|| account != Account::default(), |b| *b != account);
                    if let Some(before) = before {
                        self.base.insert(id.clone(), before);
                    }
                    changed
                }
            };
            if changed {
                self.history.push((id.clone(), index));
            }
            self.accounts.insert(id, account);
        }
        for (signer, nonce) in writes.nonces {
            self.nonces.insert(super::nonce_key(&signer, &nonce), index);
        }
        self.merchants.extend(writes.merchants);
        self.orders.extend(
            writes
                .orders
                .into_iter()
                .map(|((m, o), order)| (super::order_key(&m, &o), order)),
        );
        self.evm.extend(writes.evm);
        Ok(())
    }

    /// Appends the group's new leaves to `log` (durable when it returns), then queues the
    /// group's state on `state`, which writes it to sled behind the log: the one order in which
    /// the ledger and the auditor's mirror commit, so that the state never reflects an entry
    /// the log does not hold. `Err` means the log did not take the group (nothing of it is
    /// acknowledged); the writer's cache comes back either way.
    pub fn commit_to(
        self,
        log: &mut LogWriter,
        state: &StateWriter,
    ) -> (Result<(), LogError>, WriterCache) {
        if let Err(e) = log.append(&self.leaves) {
            return (Err(e), self.into_cache());
        }
        let (layer, cache) = self.freeze();
        state.push(layer);
        (Ok(()), cache)
    }

    /// Writes the group's state to sled at once, as one batch that records the log size it
    /// reflects, without a flush: for replays, whose leaves are already in the log and which
    /// run while nothing is queued behind it. On failure the cache comes back empty, since it
    /// may hold what sled did not take.
    pub fn commit(self) -> (Result<(), StoreError>, WriterCache) {
        let store = self.store;
        let (layer, cache) = self.freeze();
        let written = behind::write(&store.db, &[Arc::new(layer)], &store.pending.tails);
        match written {
            Ok(()) => (Ok(()), cache),
            Err(e) => (Err(e), WriterCache::default()),
        }
    }

    /// The group's state as a layer, and the cache with the group's accounts and merchants in.
    pub(super) fn freeze(self) -> (Layer, WriterCache) {
        let mut cache = self.cache.into_inner();
        let accounts: HashMap<String, Arc<Account>> = self
            .accounts
            .into_iter()
            .map(|(id, a)| (id, Arc::new(a)))
            .collect();
        for (id, a) in &accounts {
            cache.put_account(id.clone(), a.clone());
        }
        for (id, m) in &self.merchants {
            cache.merchants.insert(id.clone(), m.clone());
        }
        let layer = Layer {
            size: self.size,
            entries: self.size - self.first,
            accounts,
            base: self.base,
            merchants: self.merchants,
            orders: self.orders,
            nonces: self.nonces,
            evm: self.evm,
            history: self.history,
        };
        (layer, cache)
    }
}

impl StateView for Group<'_> {
    fn account(&self, id: &str) -> Result<Option<Account>, EngineError> {
        if let Some(a) = self.accounts.get(id) {
            return Ok(Some(a.clone()));
        }
        Ok(self.committed_account(id)?.map(|a| (*a).clone()))
    }
    fn merchant(&self, id: &str) -> Result<Option<Merchant>, EngineError> {
        if let Some(m) = self.merchants.get(id) {
            return Ok(Some(m.clone()));
        }
        if let Some(m) = self.cache.borrow().merchants.get(id) {
            return Ok(Some(m.clone()));
        }
        let found = self.store.merchant_in(&self.layers, id)?;
        if let Some(m) = &found {
            self.cache
                .borrow_mut()
                .merchants
                .insert(id.to_owned(), m.clone());
        }
        Ok(found)
    }
    fn order(&self, merchant: &str, order_id: &str) -> Result<Option<Order>, EngineError> {
        match self.orders.get(&super::order_key(merchant, order_id)) {
            Some(o) => Ok(Some(o.clone())),
            None => Ok(self.store.order_in(&self.layers, merchant, order_id)?),
        }
    }
    fn nonce_used(&self, signer: &str, nonce: &str) -> Result<bool, EngineError> {
        Ok(self.nonce_entry(signer, nonce)?.is_some())
    }
    fn evm_owner(&self, address: &str) -> Result<Option<String>, EngineError> {
        match self.evm.get(address) {
            Some(owner) => Ok(owner.clone()),
            None => Ok(self.store.evm_in(&self.layers, address)?),
        }
    }
}
