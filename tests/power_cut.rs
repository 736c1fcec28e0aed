//! Power cuts under a whole ledger: the log's files on the simulated file system
//! (`log::sim::PowerCutFs`, which keeps only what was synced and tears the unsynced tail at any
//! byte), the keys and the state store on the real disk. 200 cuts at random points of the write
//! path while three producers submit concurrently through the sequencer, each followed by a
//! reopen: every acknowledged entry is there byte for byte, the log reproduces the last signed
//! checkpoint, the state replayed forward on open is the state a full replay builds, and
//! appending goes on. Now and then the state store is put back to a copy taken rounds earlier
//! (as if sled had lost its recent batches, which it may: its flush is no durable barrier), so
//! that the replay on open covers many groups, not only the last.

mod common;

use common::{rules, sign, Party, T0};
use pointsledger::clock::ManualClock;
use pointsledger::keys;
use pointsledger::ledger::{self, DataDir, Ledger};
use pointsledger::log::sim::PowerCutFs;
use pointsledger::merkle;
use pointsledger::sequencer::{Sequencer, SequencerOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROUNDS: u32 = 200;
const PRODUCERS: usize = 3;

/// Copies the files of a closed sled directory (one level of subfolders).
fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn acknowledged_entries_and_state_survive_power_cuts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ledger");
    ledger::init(&dir, "power.pointsledger.local").expect("init");
    let state_dir = DataDir(dir.clone()).state();
    let snapshot = tmp.path().join("state-copy");
    let operator = keys::read_key_file(&DataDir(dir.clone()).operator_key()).expect("key");
    let clock = ManualClock::new(T0);
    let fs = PowerCutFs::new();
    let mut rng = StdRng::seed_from_u64(0x5eed_cafe);
    let shop = Arc::new(Party::new());
    let consumers: Arc<Vec<Party>> = Arc::new((0..5).map(|_| Party::new()).collect());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    // The truth, kept apart from the ledger: the hash of every acknowledged leaf, by index.
    let acked: Arc<Mutex<std::collections::BTreeMap<u64, [u8; 32]>>> = Arc::default();
    let nonce = Arc::new(AtomicU64::new(0));
    let (mut opens_cut, mut withdrawn, mut replays, mut restored) = (0, 0u64, 0, 0);
    let mut snapshot_size: Option<u64> = None;
    for round in 0..ROUNDS {
        // Sometimes a copy of the (closed) state store is taken; sometimes an older copy is
        // put back, so that the state trails the log by many groups.
        let mut trailing = false;
        if snapshot_size.is_some() && rng.gen_ratio(1, 8) {
            copy_dir(&snapshot, &state_dir);
            restored += 1;
            trailing = true;
        } else if rng.gen_ratio(1, 6) {
            copy_dir(&state_dir, &snapshot);
            snapshot_size = Some(acked.lock().expect("lock").len() as u64);
        }
        if rng.gen_ratio(1, 10) {
            fs.cut_after(rng.gen_range(0..6));
        }
        let mut l = match Ledger::open_on(&dir, Arc::new(clock.clone()), Arc::new(fs.clone())) {
            Ok(l) => l,
            Err(e) => {
                assert!(fs.is_off(), "round {round}: open failed with power on: {e}");
                opens_cut += 1;
                fs.reboot(&mut rng);
                continue;
            }
        };
        // Every acknowledged entry is there, byte for byte (an unacknowledged group may be
        // there too, whole: it then counts as acknowledged from now on).
        let size = l.size();
        {
            let mut acked = acked.lock().expect("lock");
            let leaves = l.store().leaves(0, size).expect("leaves");
            for (i, h) in acked.iter() {
                assert!(*i < size, "round {round}: entry {i} was lost");
                assert_eq!(
                    &merkle::leaf_hash(&leaves[*i as usize]),
                    h,
                    "round {round}: leaf {i}"
                );
            }
            for (i, leaf) in leaves.iter().enumerate() {
                acked
                    .entry(i as u64)
                    .or_insert_with(|| merkle::leaf_hash(leaf));
            }
        }
        // The state replayed forward on open is what a full replay builds: after every open
        // that replayed from an older copy of the state, and every 20 rounds.
        if trailing || round % 20 == 0 {
            let (before, after) = l.rebuild(&|_| {}).expect("rebuild");
            assert_eq!(before, after, "round {round}: the replayed state differs");
            replays += 1;
        }
        if l.size() == 0 {
            let r = l.submit(vec![sign(
                "merchant.register",
                &json!({"operator": keys::public_id(&operator.verifying_key()), "merchant": shop.id,
                        "name": "Shop", "rules": rules(), "nonce": format!("r{round}")}),
                &[&operator],
            )]);
            if let Ok(r) = r.into_iter().next().expect("one result") {
                let h = l.store().leaf(r.index).expect("read").expect("leaf");
                acked
                    .lock()
                    .expect("lock")
                    .insert(r.index, merkle::leaf_hash(&h));
            }
        }
        // Load from three producers at once, groups of 1 to 8 purchases each, checkpoints cut
        // by the sequencer every few milliseconds, until the power goes.
        if rng.gen_bool(0.5) {
            fs.cut_after(rng.gen_range(0..60));
        } else {
            fs.cut_at_sync(rng.gen_range(0..16));
        }
        let (seq, handle) = Sequencer::spawn(
            l,
            SequencerOptions {
                max_group: 16,
                checkpoint_interval: Duration::from_millis(3),
            },
        );
        let seeds: Vec<u64> = (0..PRODUCERS).map(|_| rng.gen()).collect();
        let refused = rt.block_on(async {
            let producers = seeds.into_iter().map(|seed| {
                let (handle, shop, consumers) = (handle.clone(), shop.clone(), consumers.clone());
                let (acked, nonce, clock) = (acked.clone(), nonce.clone(), clock.clone());
                tokio::spawn(async move {
                    let mut rng = StdRng::seed_from_u64(seed);
                    for _ in 0..20 {
                        clock.advance(1000);
                        let group: Vec<_> = (0..rng.gen_range(1..=8))
                            .map(|_| {
                                let n = nonce.fetch_add(1, Ordering::Relaxed);
                                let c = &consumers[rng.gen_range(0..consumers.len())];
                                let p = json!({"merchant": shop.id, "consumer": c.id,
                                               "order_id": format!("o{n}"),
                                               "amount": rng.gen_range(100..5000),
                                               "nonce": format!("n{n}")});
                                sign("purchase", &p, &[&shop.key])
                            })
                            .collect();
                        let Ok(results) = handle.submit_many(group).await else {
                            return true;
                        };
                        let mut any_refused = false;
                        for r in results {
                            match r {
                                Ok(r) => {
                                    let h: [u8; 32] = hex::decode(&r.leaf_hash)
                                        .expect("hex")
                                        .try_into()
                                        .expect("32 bytes");
                                    acked.lock().expect("lock").insert(r.index, h);
                                }
                                Err(_) => any_refused = true,
                            }
                        }
                        if any_refused {
                            return true;
                        }
                    }
                    false
                })
            });
            let mut refused = false;
            for p in producers.collect::<Vec<_>>() {
                refused |= p.await.expect("producer");
            }
            refused
        });
        if refused {
            assert!(fs.is_off(), "round {round}: refused with power on");
            withdrawn += 1;
        }
        drop(handle);
        // With the power on, the sequencer cuts its final checkpoint and hands the ledger back.
        let joined = seq.join();
        assert!(
            joined.is_ok() || fs.is_off(),
            "round {round}: the sequencer failed with power on"
        );
        drop(joined);
        if !fs.is_off() {
            fs.power_cut();
        }
        fs.reboot(&mut rng);
    }
    let mut l = Ledger::open_on(&dir, Arc::new(clock.clone()), Arc::new(fs.clone())).expect("open");
    let acked = acked.lock().expect("lock").len() as u64;
    assert!(l.size() >= acked);
    let (before, after) = l.rebuild(&|_| {}).expect("rebuild");
    assert_eq!(before, after);
    eprintln!(
        "{ROUNDS} power cuts: {opens_cut} during open, {withdrawn} loads cut short, {restored} \
         opens on a state copy rounds old, {replays} full replays compared, {acked} entries \
         acknowledged"
    );
    assert!(
        opens_cut >= 5 && withdrawn >= 50 && restored >= 10 && acked > 1000,
        "the cuts did not spread"
    );
}
