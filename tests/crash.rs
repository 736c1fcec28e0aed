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
