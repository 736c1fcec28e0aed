//! The state behind the log: queued groups are read before sled holds them, and a batch merged
//! from many groups writes what their batches one by one would.

use super::{Group, StateWriter, Store, WriterCache};
use crate::engine::state::{Account, Lot, LotSource, Order};
use crate::engine::{StateView, Writes};
use crate::log::LogWriter;
use std::path::Path;

fn open(dir: &Path) -> (LogWriter, Store) {
    let log = LogWriter::open(&dir.join("log")).expect("log");
    let store = Store::open(&dir.join("state"), log.reader()).expect("store");
    (log, store)
}

fn lot(id: &str, remaining: u64) -> Lot {
    Lot {
        id: id.into(),
        merchant: "m".into(),
        source: LotSource::Purchase,
        order_id: "o".into(),
        points: 100,
        remaining,
        available_at: 0,
        expires_at: 1_000,
    }
}

fn account(lots: Vec<Lot>) -> Account {
    Account {
        lots,
        purchases: 1,
        ..Account::default()
    }
}

/// Three groups on the same account: the first credits a lot, the second spends it away and
/// credits two more, the third spends one of those away and draws on the other; an order and
/// nonces beside.
fn groups() -> [Writes; 3] {
    let mut zeroth = Writes::default();
    zeroth
        .accounts
        .insert("alice".into(), account(vec![lot("9.0", 100)]));
    let mut first = Writes::default();
    first.accounts.insert(
        "alice".into(),
        account(vec![lot("0.0", 100), lot("0.1", 100)]),
    );
    first
        .orders
        .insert(("m".into(), "o1".into()), Order::default());
    first.nonces.push(("m".into(), "n1".into()));
    let mut second = Writes::default();
    second
        .accounts
        .insert("alice".into(), account(vec![lot("0.1", 40)]));
    second.nonces.push(("m".into(), "n2".into()));
    [zeroth, first, second]
}

#[test]
fn a_queued_group_is_read_before_sled_holds_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_log, store) = open(tmp.path());
    let [_, first, _] = groups();
    let mut group = Group::new(&store, 0, WriterCache::default());
    group.push_replayed(first).expect("push");
    let (layer, _) = group.freeze();
    // Queued, with no thread to write it: every read sees it, sled does not hold it.
    store.pending.push(layer);
    let alice = store.account("alice").expect("read").expect("alice");
    assert_eq!(alice.lots.len(), 2);
    assert!(store
        .db
        .get(super::key(b'A', &[b"alice"]))
        .expect("get")
        .is_none());
    assert_eq!(store.nonce_entry("m", "n1").expect("nonce"), Some(0));
    assert!(store.order("m", "o1").expect("order").is_some());
    assert_eq!(store.history("alice", 0, 10).expect("history"), vec![0]);
    assert_eq!(store.account_ids().expect("ids"), vec!["alice".to_owned()]);
    assert_eq!(store.state_size().expect("size"), 0);
    // Once written, sled holds the same and the queue is empty.
    let _writer = StateWriter::start(&store);
    store.settle().expect("settle");
    assert!(store.pending.layers().is_empty());
    assert_eq!(store.state_size().expect("size"), 1);
    assert_eq!(store.account("alice").expect("read"), Some(alice));
    assert_eq!(store.history("alice", 0, 10).expect("history"), vec![0]);
}

#[test]
fn a_merged_batch_writes_what_batches_group_by_group_write() {
    let (one, merged) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    // Group by group, each its own batch.
    let (_log1, by_group) = open(one.path());
    let mut cache = WriterCache::default();
    for (i, writes) in groups().into_iter().enumerate() {
        let mut group = Group::new(&by_group, i as u64, cache);
        group.push_replayed(writes).expect("push");
        let (result, back) = group.commit();
        result.expect("commit");
        cache = back;
    }
    // The first in sled, the other two queued, then written by the thread as one batch.
    let (_log2, behind) = open(merged.path());
    let [zeroth, first, second] = groups();
    let mut group = Group::new(&behind, 0, WriterCache::default());
    group.push_replayed(zeroth).expect("push");
    let (result, mut cache) = group.commit();
    result.expect("commit");
    for (i, writes) in [first, second].into_iter().enumerate() {
        let mut group = Group::new(&behind, 1 + i as u64, cache);
        group.push_replayed(writes).expect("push");
        let (layer, back) = group.freeze();
        behind.pending.push(layer);
        cache = back;
    }
    assert_eq!(behind.pending.layers().len(), 2);
    let _writer = StateWriter::start(&behind);
    behind.settle().expect("settle");
    assert_eq!(
        behind.state_digest().expect("digest"),
        by_group.state_digest().expect("digest")
    );
    // The lots the later groups spent away are gone from sled, not left behind by the merge:
    // the one sled held before them, and the one they credited and spent between them.
    let lots = behind.db.scan_prefix(super::lots_prefix("alice")).count();
    assert_eq!(lots, 1);
    assert_eq!(behind.state_size().expect("size"), 3);
    assert_eq!(
        behind.history("alice", 0, 10).expect("history"),
        vec![0, 1, 2]
    );
}
