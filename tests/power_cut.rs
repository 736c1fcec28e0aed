//! Power cuts under a whole ledger: the log's files on the simulated file system
//! (`log::sim::PowerCutFs`, which keeps only what was synced and tears the unsynced tail at any
//! byte), the keys and the state store on the real disk. 200 cuts at random points of the write
//! path, each followed by a reopen: every acknowledged entry is there byte for byte, the log
//! reproduces the last signed checkpoint, the state replayed forward on open is the state a
//! full replay builds, and appending goes on.

mod common;

use common::{rules, sign, Party, T0};
use pointsledger::clock::ManualClock;
use pointsledger::keys;
use pointsledger::ledger::{self, DataDir, Ledger};
use pointsledger::log::sim::PowerCutFs;
use pointsledger::merkle;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::Arc;

const ROUNDS: u32 = 200;

#[test]
fn acknowledged_entries_and_state_survive_power_cuts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ledger::init(dir, "power.pointsledger.local").expect("init");
    let operator = keys::read_key_file(&DataDir(dir.to_owned()).operator_key()).expect("key");
    let clock = ManualClock::new(T0);
    let fs = PowerCutFs::new();
    let mut rng = StdRng::seed_from_u64(0x5eed_cafe);
    let shop = Party::new();
    let consumers: Vec<Party> = (0..5).map(|_| Party::new()).collect();
    // The truth, kept apart from the ledger: the hash of every acknowledged leaf.
    let mut acked: Vec<[u8; 32]> = Vec::new();
    let (mut nonce, mut opens_cut, mut withdrawn, mut replays) = (0u64, 0, 0, 0);
    for round in 0..ROUNDS {
        if rng.gen_ratio(1, 10) {
            fs.cut_after(rng.gen_range(0..6));
        }
        let mut l = match Ledger::open_on(dir, Arc::new(clock.clone()), Arc::new(fs.clone())) {
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
        assert!(size >= acked.len() as u64, "round {round}: lost entries");
        let leaves = l.store().leaves(0, size).expect("leaves");
        for (i, h) in acked.iter().enumerate() {
            assert_eq!(&merkle::leaf_hash(&leaves[i]), h, "round {round}: leaf {i}");
        }
        acked.extend(leaves[acked.len()..].iter().map(|b| merkle::leaf_hash(b)));
        // The state replayed forward on open is what a full replay builds.
        if round % 20 == 0 {
            let (before, after) = l.rebuild(&|_| {}).expect("rebuild");
            assert_eq!(before, after, "round {round}: the replayed state differs");
            replays += 1;
        }
        if l.size() == 0 {
            l.submit(vec![sign(
                "merchant.register",
                &json!({"operator": keys::public_id(&operator.verifying_key()), "merchant": shop.id,
                        "name": "Shop", "rules": rules(), "nonce": format!("r{round}")}),
                &[&operator],
            )])
            .remove(0)
            .map(|r| acked.push(hash_of(&l, r.index)))
            .ok();
        }
        // Load until the power goes: groups of 1 to 8 purchases, checkpoints between.
        if rng.gen_bool(0.5) {
            fs.cut_after(rng.gen_range(0..40));
        } else {
            fs.cut_at_sync(rng.gen_range(0..12));
        }
        for _ in 0..30 {
            clock.advance(1000);
            let group: Vec<_> = (0..rng.gen_range(1..=8))
                .map(|_| {
                    nonce += 1;
                    let c = &consumers[rng.gen_range(0..consumers.len())];
                    let p = json!({"merchant": shop.id, "consumer": c.id,
                                   "order_id": format!("o{nonce}"), "amount": rng.gen_range(100..5000),
                                   "nonce": format!("n{nonce}")});
                    sign("purchase", &p, &[&shop.key])
                })
                .collect();
            let results = l.submit(group);
            if results.iter().any(Result::is_err) {
                assert!(
                    fs.is_off(),
                    "round {round}: refused with power on: {:?}",
                    results
                );
                assert!(
                    results.iter().all(Result::is_err),
                    "round {round}: part of a group"
                );
                withdrawn += 1;
                break;
            }
            for r in results {
                let r = r.expect("receipt");
                acked.push(hash_of(&l, r.index));
            }
            if l.checkpoint().is_err() {
                assert!(
                    fs.is_off(),
                    "round {round}: checkpoint failed with power on"
                );
                break;
            }
        }
        drop(l);
        if !fs.is_off() {
            fs.power_cut();
        }
        fs.reboot(&mut rng);
    }
    let mut l = Ledger::open_on(dir, Arc::new(clock.clone()), Arc::new(fs.clone())).expect("open");
    assert!(l.size() >= acked.len() as u64);
    let (before, after) = l.rebuild(&|_| {}).expect("rebuild");
    assert_eq!(before, after);
    eprintln!(
        "{ROUNDS} power cuts: {opens_cut} during open, {withdrawn} groups withdrawn, {replays} \
         full replays compared, {} entries acknowledged",
        acked.len()
    );
    assert!(
        opens_cut >= 5 && withdrawn >= 50 && acked.len() > 1000,
        "the cuts did not spread"
    );
}

fn hash_of(l: &Ledger, index: u64) -> [u8; 32] {
    merkle::leaf_hash(&l.store().leaf(index).expect("read").expect("leaf"))
}
