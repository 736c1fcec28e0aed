//! Durability: a real `pointsledger append` process is killed with SIGKILL while it ingests,
//! several times; every entry it acknowledged must survive, the store must pass its self-check
//! and the log must keep growing from where it stopped.

mod common;

use common::*;
use pointsledger::clock::SystemClock;
use pointsledger::ledger::{Leaf, Ledger};
use pointsledger::merkle;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

#[test]
fn sigkill_during_ingest_loses_no_acknowledged_entry() {
    let mut f = Fixture::new();
    let shop = Party::new();
    f.register(&shop, &rules());
    let consumers: Vec<Party> = (0..50).map(|_| Party::new()).collect();
    let dir = f.dir.path().to_owned();
    drop(f.ledger);

    let mut acknowledged: Vec<(u64, String)> = Vec::new();
    let mut order = 0u64;
    for cycle in 0..3 {
        // 6000 purchases on stdin; kill after 500 + 700·cycle receipts have been printed.
        let lines: Vec<String> = (0..6000)
            .map(|i| {
                order += 1;
                let c = &consumers[i % consumers.len()];
                let p = json!({"merchant": shop.id, "consumer": c.id, "order_id": format!("o{order}"),
                               "amount": 1000 + i, "nonce": format!("c{order}")});
                String::from_utf8(sign("purchase", &p, &[&shop.key]).to_json_bytes()).expect("utf8")
            })
            .collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pointsledger"))
            .args(["append", "--data"])
            .arg(&dir)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let feeder = std::thread::spawn(move || {
            for l in lines {
                if writeln!(stdin, "{l}").is_err() {
                    break;
                }
            }
        });
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let want = 500 + 700 * cycle;
        let mut seen = 0;
        for line in stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(&line.expect("line")).expect("receipt");
            let index = v["index"].as_u64().expect("index");
            acknowledged.push((index, v["leaf_hash"].as_str().expect("hash").to_owned()));
            seen += 1;
            if seen == want {
                break;
            }
        }
        assert_eq!(
            seen, want,
            "the child stopped before acknowledging {want} entries"
        );
        child.kill().expect("SIGKILL"); // std's kill sends SIGKILL on Unix
        child.wait().expect("wait");
        let _ = feeder.join();

        // Reopen: the self-check passes and every acknowledged entry is there, byte for byte.
        let ledger = Ledger::open(&dir, Arc::new(SystemClock)).expect("reopen after SIGKILL");
        assert!(
            ledger.size() as usize > acknowledged.len(),
            "the registration plus every acknowledged entry"
        );
        for (index, hash) in &acknowledged {
            let leaf = ledger
                .store()
                .leaf(*index)
                .expect("read")
                .expect("acknowledged leaf lost");
            assert_eq!(
                &hex::encode(merkle::leaf_hash(&leaf)),
                hash,
                "leaf {index} changed"
            );
            Leaf::decode(*index, &leaf).expect("decodes");
        }
        drop(ledger);
    }
    // The log still verifies end to end and accepts new entries.
    let mut ledger = Ledger::open(&dir, Arc::new(SystemClock)).expect("reopen");
    let (before, after) = ledger.rebuild(&|_| {}).expect("rebuild");
    assert_eq!(before, after, "replaying the log must reproduce the state");
    let p = json!({"merchant": shop.id, "consumer": consumers[0].id, "order_id": "final", "amount": 5, "nonce": "final"});
    ledger
        .submit(vec![sign("purchase", &p, &[&shop.key])])
        .remove(0)
        .expect("append after crashes");
}

/// Copies the directory `from` (files and subdirectories) to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

#[test]
fn the_log_keeps_its_latest_checkpoint_and_open_checks_it() {
    use pointsledger::checkpoint::{sign_checkpoint, Checkpoint};
    use pointsledger::log::layout::Resource;

    let mut f = Fixture::new();
    let (shop, consumer) = (Party::new(), Party::new());
    f.register(&shop, &rules());
    f.purchase(&shop, &consumer, "o1", 1000).expect("purchase");
    let first = f.ledger.checkpoint().expect("checkpoint").expect("grew");
    let Fixture {
        dir, clock, ledger, ..
    } = f;
    let file = dir.path().join("log/checkpoint");
    let read_file = || std::fs::read_to_string(&file).expect("the log's checkpoint file");
    assert_eq!(
        read_file(),
        first,
        "the log's own file holds the latest note"
    );
    assert_eq!(
        ledger.store().tile(&Resource::Checkpoint).expect("read"),
        Some(first.clone().into_bytes()),
        "GET /checkpoint serves the log's file"
    );
    drop(ledger);
    let old_state = tempfile::tempdir().expect("tempdir");
    copy_dir(&dir.path().join("state"), old_state.path());

    let open = || Ledger::open(dir.path(), Arc::new(clock.clone()));
    let mut ledger = open().expect("reopen");
    let p = json!({"merchant": shop.id, "consumer": consumer.id, "order_id": "o2", "amount": 700, "nonce": "x2"});
    ledger
        .submit(vec![sign("purchase", &p, &[&shop.key])])
        .remove(0)
        .expect("purchase");
    let second = ledger.checkpoint().expect("checkpoint").expect("grew");
    assert_eq!(read_file(), second);
    let size = ledger.size();
    drop(ledger);

    // A file one behind (a crash between the list and the file), or lost, is written again.
    std::fs::write(&file, &first).expect("write");
    drop(open().expect("open with the file one behind"));
    assert_eq!(read_file(), second, "the file is brought up to the list");
    std::fs::remove_file(&file).expect("rm");
    drop(open().expect("open without the file"));
    assert_eq!(read_file(), second, "the file is restored from the list");

    // Witness cosignatures go into the listed note first, then into the file; a crash between
    // the two leaves a file of the same size without them, which the next open brings up.
    let cosigner = pointsledger::witness::cosignature::Cosigner::new(
        "witness.test/w1",
        pointsledger::keys::generate(),
    )
    .expect("cosigner");
    let mut note = signed_note::Note::from_bytes(second.as_bytes()).expect("note");
    let line = cosigner.cosign(&mut note, 1_700_000_000).expect("cosign");
    let mut ledger = open().expect("open");
    assert!(ledger.add_cosignatures(size, &line).expect("add"));
    assert!(
        !ledger.add_cosignatures(size, &line).expect("again"),
        "a witness's line is kept once"
    );
    let cosigned = format!("{second}{line}");
    assert_eq!(read_file(), cosigned, "the file carries the cosignature");
    drop(ledger);
    std::fs::write(&file, &second).expect("write");
    drop(open().expect("open with the file missing the cosignature"));
    assert_eq!(
        read_file(),
        cosigned,
        "the file is brought up to the cosigned list"
    );

    // A state store restored from before the second checkpoint: the list takes the file's.
    std::fs::remove_dir_all(dir.path().join("state")).expect("rm state");
    copy_dir(old_state.path(), &dir.path().join("state"));
    let ledger = open().expect("open with an older state store");
    assert_eq!(ledger.size(), size);
    assert_eq!(
        ledger.store().latest_checkpoint().expect("read"),
        Some((size, cosigned.clone())),
        "the list takes the newer checkpoint from the log's file"
    );
    let origin = ledger.config().log.origin.clone();
    let root = pointsledger::checkpoint::open_checkpoint(&second, &ledger.verifier_key())
        .expect("the note opens")
        .root;
    drop(ledger);

    // A file the log's key did not sign, or one whose root the log does not have, is refused.
    let log_key = pointsledger::keys::read_key_file(&dir.path().join("keys/log.key")).expect("key");
    let forged = [
        sign_checkpoint(
            &Checkpoint {
                origin: origin.clone(),
                size: size + 1,
                root,
            },
            &Party::new().key,
        )
        .expect("sign"),
        sign_checkpoint(
            &Checkpoint {
                origin: origin.clone(),
                size,
                root: [7u8; 32],
            },
            &log_key,
        )
        .expect("sign"),
    ];
    for note in forged {
        std::fs::write(&file, &note).expect("write");
        let err = open()
            .err()
            .expect("a bad checkpoint file must be refused")
            .to_string();
        assert!(err.contains("the log's checkpoint file"), "{err}");
    }
    std::fs::write(&file, &second).expect("write");
    drop(open().expect("the real checkpoint opens again"));
}
