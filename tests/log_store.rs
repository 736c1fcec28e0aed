//! The log store under power cuts, with concurrent producers and readers, on the simulated disk
//! that keeps only what was synced and tears the rest at any byte; and a benchmark on the real
//! disk (ignored by default).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use pointsledger::log::sim::PowerCutFs;
use pointsledger::log::{bench_append, LogError, LogOptions, LogWriter};
use pointsledger::merkle::{
    empty_root, leaf_hash, prove_inclusion, verify_inclusion, Hash, MemoryHashes,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Power cuts in the default run.
const ROUNDS: u64 = 220;

/// A leaf that names where it came from, padded to a random length (now and then well past a
/// 4 KiB page, so tears land inside leaves, headers and page boundaries alike).
fn make_leaf(rng: &mut StdRng, round: u64, producer: usize, seq: u64) -> Vec<u8> {
    let mut v = format!("{{\"round\":{round},\"producer\":{producer},\"seq\":{seq},\"pad\":\"")
        .into_bytes();
    let pad = if rng.gen_ratio(1, 20) {
        rng.gen_range(1000..6000)
    } else {
        rng.gen_range(0..200)
    };
    v.extend(std::iter::repeat_n(b'a' + (seq % 26) as u8, pad));
    v.extend_from_slice(b"\"}");
    v
}

/// What the writer thread of one round reports.
struct RoundResult {
    /// Leaves acknowledged this round, in log order.
    acked: Vec<Vec<u8>>,
    /// Root returned with the last acknowledged append (None if nothing was acknowledged).
    last_root: Option<Hash>,
    /// The group whose append failed (it may or may not have reached the disk).
    in_flight: Vec<Vec<u8>>,
    /// Leaves the readers read and proved while the writer appended.
    reads: u64,
    /// Groups acknowledged this round.
    groups: u64,
}

fn options(rng: &mut StdRng) -> LogOptions {
    LogOptions {
        min_grow: rng.gen_range(2048..65536),
        max_grow: 1 << 20,
        flush_entries: rng.gen_range(8..120),
        flush_bytes: rng.gen_range(4096..(256 << 10)),
    }
}

#[test]
fn every_acknowledged_entry_survives_power_cuts_under_concurrent_load() {
    let mut rng = StdRng::seed_from_u64(0x00c0_ffee);
    let fs = PowerCutFs::new();
    let mut dir = PathBuf::from("/log0");
    // The truth, kept apart from the log: every acknowledged leaf and the tree over them.
    let mut acked: Vec<Vec<u8>> = Vec::new();
    let mut reference = MemoryHashes::new();
    let mut acked_root = empty_root();
    let mut in_flight: Vec<Vec<u8>> = Vec::new();
    let (mut cuts_in_open, mut cut_tails, mut kept_in_flight) = (0, 0, 0);
    let (mut reads, mut groups) = (0, 0);
    for round in 0..ROUNDS {
        if round % 40 == 39 {
            // A fresh log now and then, so small logs with cuts near their start are covered.
            dir = PathBuf::from(format!("/log{round}"));
            acked.clear();
            reference = MemoryHashes::new();
            acked_root = empty_root();
            in_flight.clear();
        }
        let opts = options(&mut rng);
        let cut_in_open = rng.gen_ratio(1, 8);
        if cut_in_open {
            fs.cut_after(rng.gen_range(0..8));
        }
        let mut w = match LogWriter::open_with(Arc::new(fs.clone()), &dir, opts.clone()) {
            Ok(w) => w,
            Err(e) => {
                assert!(fs.is_off(), "round {round}: open failed with power on: {e}");
                cuts_in_open += 1;
                fs.reboot(&mut rng);
                continue;
            }
        };
        // 1. Every acknowledged entry is there, byte for byte.
        let size = w.size();
        let have = acked.len() as u64;
        assert!(
            size >= have && size <= have + in_flight.len() as u64,
            "round {round}: size {size}, acknowledged {have}, in flight {}",
            in_flight.len()
        );
        let r = w.reader();
        for start in (0..have).step_by(4096) {
            let n = (have - start).min(4096);
            let got = r.leaves(start, n).unwrap();
            assert!(
                got == acked[start as usize..(start + n) as usize],
                "round {round}: acknowledged leaves differ after reopen"
            );
        }
        // 2. The tree matches the root returned at the last acknowledged append.
        w.verify_against(have, &acked_root)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        // 3. An in-flight group is there whole or not at all; if there, it is now part of the
        //    log, and the expectations follow it.
        if size > have {
            assert_eq!(
                size,
                have + in_flight.len() as u64,
                "round {round}: part of a group"
            );
            assert_eq!(r.leaves(have, size - have).unwrap(), in_flight);
            for l in in_flight.drain(..) {
                reference.append(&leaf_hash(&l)).unwrap();
                acked.push(l);
            }
            acked_root = reference.root().unwrap();
            kept_in_flight += 1;
        }
        in_flight.clear();
        assert_eq!(w.root(), acked_root);
        if w.recovery().cut_bytes > 0 {
            cut_tails += 1;
        }
        // Half the cuts strike at any mutating call, half at a file sync (where records tear).
        if rng.gen_bool(0.5) {
            fs.cut_after(rng.gen_range(0..160));
        } else {
            fs.cut_at_sync(rng.gen_range(0..40));
        }
        let result = run_load(&fs, &mut w, round, rng.gen());
        drop(w);
        reads += result.reads;
        groups += result.groups;
        for l in &result.acked {
            reference.append(&leaf_hash(l)).unwrap();
        }
        acked.extend(result.acked);
        if let Some(root) = result.last_root {
            assert_eq!(
                root,
                reference.root().unwrap(),
                "round {round}: append's root"
            );
            acked_root = root;
        }
        in_flight = result.in_flight;
        if !fs.is_off() {
            fs.power_cut();
        }
        fs.reboot(&mut rng);
    }
    // 4. After the last cut the log opens and keeps appending.
    let mut w = LogWriter::open_with(Arc::new(fs.clone()), &dir, LogOptions::default()).unwrap();
    let size = w.size();
    assert!(size >= acked.len() as u64);
    w.verify_against(acked.len() as u64, &acked_root).unwrap();
    assert_eq!(w.append(&[b"after".to_vec()]).unwrap(), size + 1);
    eprintln!(
        "{ROUNDS} power cuts: {cuts_in_open} during open, {cut_tails} torn tails cut, \
         {kept_in_flight} in-flight groups kept whole, {} entries in {groups} groups at the end, \
         {reads} concurrent reads proved",
        acked.len()
    );
    assert!(
        reads >= groups && groups >= 500,
        "the readers ran too little to count: {reads} reads beside {groups} groups"
    );
    // The cuts struck everywhere: during open, in torn tails, after whole in-flight groups.
    // (The counts vary a little from run to run with the threads' interleaving; the bounds
    // are well under what a run shows, about 25, 35 and 35.)
    assert!(cuts_in_open >= 5, "cuts during open: {cuts_in_open}");
    assert!(cut_tails >= 15, "torn tails cut: {cut_tails}");
    assert!(
        kept_in_flight >= 15,
        "in-flight groups kept: {kept_in_flight}"
    );
}

/// One round of load: three producers feed groups to the writer (this thread's `w`), which
/// coalesces them as a sequencer would; two readers read leaves and check proofs against the
/// durable size they see. Ends when the power goes off or after 80 groups.
fn run_load(fs: &PowerCutFs, w: &mut LogWriter, round: u64, seed: u64) -> RoundResult {
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let (tx, rx) = mpsc::sync_channel::<Vec<Vec<u8>>>(4);
    let reader = w.reader();
    let result = std::thread::scope(|s| {
        for p in 0..3usize {
            let tx = tx.clone();
            let stop = &stop;
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed ^ ((p as u64 + 1) * 0x9e37_79b9));
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = rng.gen_range(1..6);
                    let g: Vec<Vec<u8>> = (0..n)
                        .map(|_| {
                            seq += 1;
                            make_leaf(&mut rng, round, p, seq)
                        })
                        .collect();
                    if tx.send(g).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        for k in 0..2u64 {
            let r = reader.clone();
            let stop = &stop;
            let reads = &reads;
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed ^ (k + 11));
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    let size = r.size();
                    assert!(size >= last, "a reader saw the size go back");
                    last = size;
                    if size == 0 {
                        std::thread::yield_now();
                        continue;
                    }
                    let i = rng.gen_range(0..size);
                    let checked = r.leaf(i).and_then(|leaf| {
                        let root = r.root_at(size)?;
                        let proof = prove_inclusion(size, i, &r)?;
                        verify_inclusion(i, size, &leaf_hash(&leaf), &proof, &root)?;
                        Ok(())
                    });
                    if let Err(e) = checked {
                        // The only excuse for a failed read is a dead disk.
                        assert!(fs.is_off(), "reader failed with power on: {e}");
                        return;
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    // Leave the two cores to the writer between checks, as a server's readers
                    // would between requests.
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            });
        }
        let mut out = RoundResult {
            acked: Vec::new(),
            last_root: None,
            in_flight: Vec::new(),
            reads: 0,
            groups: 0,
        };
        for appended in 0..80u64 {
            let Ok(mut group) = rx.recv() else { break };
            // Interleave by count, not by timing: before each append the two readers have
            // checked at least one proof each per group appended so far, so the reads are
            // concurrent with the appends however loaded the machine is (a reader only stops
            // on a dead disk, which ends the wait; it is bounded all the same).
            let waited = std::time::Instant::now();
            while reads.load(Ordering::Relaxed) < 2 * appended
                && !fs.is_off()
                && waited.elapsed() < std::time::Duration::from_secs(5)
            {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            while group.len() < 16 {
                match rx.try_recv() {
                    Ok(more) => group.extend(more),
                    Err(_) => break,
                }
            }
            match w.append(&group) {
                Ok(size) => {
                    assert_eq!(size, reader.size());
                    out.groups += 1;
                    out.acked.extend(group);
                    out.last_root = Some(w.root());
                }
                Err(e) => {
                    assert!(fs.is_off(), "append failed with power on: {e}");
                    out.in_flight = group;
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        out
    });
    RoundResult {
        reads: reads.load(Ordering::Relaxed),
        ..result
    }
}

#[test]
fn a_failed_append_with_power_on_is_refused_cleanly() {
    // Not a power cut: the volume fills up under the writer; nothing acknowledged is lost and
    // appending resumes when space returns, without reopening.
    let fs = PowerCutFs::new();
    let dir = Path::new("/full");
    let mut w = LogWriter::open_with(Arc::new(fs.clone()), dir, LogOptions::default()).unwrap();
    w.append(&[b"a".to_vec(), b"b".to_vec()]).unwrap();
    fs.set_full(true);
    assert!(matches!(
        w.append(&[b"c".to_vec()]),
        Err(LogError::StorageFull { .. })
    ));
    fs.set_full(false);
    assert_eq!(w.append(&[b"c".to_vec()]).unwrap(), 3);
    assert_eq!(
        w.reader().leaves(0, 3).unwrap(),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
}

/// Appends 0.8 KB leaves on this machine's disk in groups of 1, 64 and 1024 and prints the
/// figures. `LOG_BENCH_DIR` chooses the volume (default: the system temporary directory).
#[test]
#[ignore = "a benchmark: cargo test --release --test log_store -- --ignored --nocapture"]
fn bench_log_append() {
    let base = std::env::var_os("LOG_BENCH_DIR").map(PathBuf::from);
    for (group, entries) in [(1usize, 5_000u64), (64, 100_000), (1024, 200_000)] {
        let tmp = match &base {
            Some(b) => tempfile::tempdir_in(b).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let f = bench_append(&tmp.path().join("log"), entries, group, 800).unwrap();
        println!(
            "group {:>5}: {:>9.0} entries/s {:>8.0} groups/s {:>8.0} syncs/s ({:.3} per group) \
             {:>6.0} disk bytes/entry, reopen {:.1} ms, replay {:.0} entries/s, proof p50 {:.0} us p99 {:.0} us \
             ({} entries)",
            f.group,
            f.entries_per_s,
            f.groups_per_s,
            f.syncs_per_s,
            f.syncs_per_group,
            f.disk_bytes_per_entry,
            f.reopen_seconds * 1e3,
            f.replay_entries_per_s,
            f.proof_p50_us,
            f.proof_p99_us,
            f.entries
        );
    }
}
