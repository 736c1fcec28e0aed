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
        lots: lots.into(),
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

/// Commits `alice` in group 1 over a store whose group 0 wrote `first` (sled holds it), the
/// second group reading its copy through the writer's cache as the engine does, then writes it
/// behind the log; returns the store.
fn second_group(dir: &Path, first: Vec<Lot>, change: impl FnOnce(&mut Account)) -> Store {
    let (_log, store) = open(dir);
    let mut writes = Writes::default();
    writes.accounts.insert("alice".into(), account(first));
    let mut group = Group::new(&store, 0, WriterCache::default());
    group.push_replayed(writes).expect("push");
    let (result, cache) = group.commit();
    result.expect("commit");
    let mut group = Group::new(&store, 1, cache);
    let mut alice = group.account("alice").expect("read").expect("alice");
    change(&mut alice);
    let mut writes = Writes::default();
    writes.accounts.insert("alice".into(), alice);
    group.push_replayed(writes).expect("push");
    let (layer, _) = group.freeze();
    store.pending.push(layer);
    let _writer = StateWriter::start(&store);
    store.settle().expect("settle");
    store
}

/// An account of many lots (many chunks) whose copy shares the chunks of the cached account:
/// changing one lot, crediting one and sweeping a few writes exactly what writing the same
/// account from a fresh, unshared copy writes, though only the changed chunks are diffed.
#[test]
fn a_large_account_changed_in_place_is_written_as_a_fresh_copy_would_be() {
    let many: Vec<Lot> = (0..500u64)
        .map(|i| Lot {
            expires_at: 1_000 + i,
            ..lot(&format!("{i}.0"), 100)
        })
        .collect();
    let change = |a: &mut Account| {
        let pos = a.lots.find("250.0").expect("lot 250");
        a.lots.update(pos, |l| l.remaining = 7);
        a.lots.insert_by_key(
            Lot {
                expires_at: 1_250,
                ..lot("600.0", 30)
            },
            |l| (l.expires_at, crate::engine::lot_order(&l.id)),
        );
        let swept = a.lots.take_while_not(|l| l.expires_at >= 1_010);
        assert_eq!(swept.len(), 10);
    };
    let (a, b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let in_place = second_group(a.path(), many.clone(), change);
    let fresh = second_group(b.path(), many, |acc| {
        change(acc);
        acc.lots = acc.lots.iter().cloned().collect::<Vec<_>>().into();
    });
    assert_eq!(
        in_place.state_digest().expect("digest"),
        fresh.state_digest().expect("digest")
    );
    let lots = in_place.db.scan_prefix(super::lots_prefix("alice")).count();
    assert_eq!(lots, 491);
    let alice = in_place.account("alice").expect("read").expect("alice");
    assert_eq!(alice.held(), 100 * 489 + 7 + 30);
}

/// An account changed by 100 entries has its history packed into chunks of [`SEAL`]
/// (super::history::SEAL) and a tail; written group by group or merged, and in the earlier
/// layout (a key per entry, no tail), it reads the same from any index and has one digest.
#[test]
fn a_long_history_is_packed_and_reads_as_a_key_per_entry_would() {
    use super::history::SEAL;
    let alice = |i: u64| Account {
        purchases: i + 1,
        ..Account::default()
    };
    let writes = |i: u64| {
        let mut w = Writes::default();
        w.accounts.insert("alice".into(), alice(i));
        w
    };
    let dirs = [(); 3].map(|_| tempfile::tempdir().expect("tmp"));
    // Group by group, a batch each.
    let (_log1, by_group) = open(dirs[0].path());
    let mut cache = WriterCache::default();
    for i in 0..100 {
        let mut group = Group::new(&by_group, i, cache);
        group.push_replayed(writes(i)).expect("push");
        let (result, back) = group.commit();
        result.expect("commit");
        cache = back;
    }
    // Behind the log: 50 groups queued before the thread starts, then 50 more as it runs.
    let (_log2, merged) = open(dirs[1].path());
    let mut cache = WriterCache::default();
    let mut writer = None;
    for i in 0..100 {
        if i == 50 {
            writer = Some(StateWriter::start(&merged));
        }
        let mut group = Group::new(&merged, i, cache);
        group.push_replayed(writes(i)).expect("push");
        let (layer, back) = group.freeze();
        merged.pending.push(layer);
        cache = back;
    }
    merged.settle().expect("settle");
    drop(writer);
    // The earlier layout, written raw.
    let (_log3, earlier) = open(dirs[2].path());
    let mut batch = sled::Batch::default();
    batch.insert(
        super::key(b'A', &[b"alice"]),
        super::encode(&super::behind::AccountRecord::of(&alice(99))),
    );
    for i in 0..100 {
        batch.insert(super::history_key("alice", i), &[]);
    }
    earlier.db.apply_batch(batch).expect("earlier layout");

    let sealed = |s: &Store| s.db.scan_prefix(super::history_prefix("alice")).count();
    assert_eq!(sealed(&by_group), 100 / SEAL);
    assert_eq!(sealed(&merged), 100 / SEAL);
    let digest = earlier.state_digest().expect("digest");
    for store in [&by_group, &merged, &earlier] {
        assert_eq!(store.state_digest().expect("digest"), digest);
        assert_eq!(store.account("alice").expect("read"), Some(alice(99)));
        let all: Vec<u64> = (0..100).collect();
        assert_eq!(store.history("alice", 0, 1000).expect("history"), all);
        for from in [0, 1, 31, 32, 33, 63, 64, 95, 96, 97, 99] {
            let want: Vec<u64> = (from..100).take(5).collect();
            assert_eq!(
                store.history("alice", from, 5).expect("page"),
                want,
                "{from}"
            );
        }
        assert!(store.history("alice", 100, 5).expect("past").is_empty());
        assert!(store.history("bob", 0, 5).expect("nobody").is_empty());
    }
}
