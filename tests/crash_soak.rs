//! Crash soak: the real `pointsledger serve` under load from several HTTP clients, killed with
//! SIGKILL at a random moment and restarted, cycle after cycle. After every restart every
//! acknowledged entry is there byte for byte, the served checkpoint covers the whole log with a
//! valid signature (the server's start-up self-check has already compared the stored tree with
//! the last checkpoint), and an incremental `pointsledger audit` passes: signatures, replayed
//! effects, the tree, consistency with the checkpoint it saw before the crash, balances.
//!
//! The test command runs the short soak (5 cycles); the long one is
//! `cargo test --release --test crash_soak -- --ignored` (50 cycles).

mod common;
#[path = "common/server.rs"]
mod server;

use common::{rules, Party};
use pointsledger::keys;
use pointsledger::ledger::{self, DataDir};
use pointsledger::merkle;
use rand::Rng;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn start(data: &Path, log: &Path) -> server::Binary {
    server::Binary::start(
        &[
            "--data",
            data.to_str().expect("utf-8 path"),
            "--listen",
            "127.0.0.1:0",
            "--checkpoint-interval",
            "50ms",
        ],
        &[],
        log,
    )
}

fn soak(cycles: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    ledger::init(&data, "soak.pointsledger.local").expect("init");
    let operator = keys::read_key_file(&DataDir(data.clone()).operator_key()).expect("op key");
    let signer = Arc::new(server::Signer::new(operator));
    let log = dir.path().join("serve.log");
    let state = dir.path().join("audit");
    let shop = Arc::new(Party::new());
    let consumers: Arc<Vec<Party>> = Arc::new((0..20).map(|_| Party::new()).collect());
    let acknowledged: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let mut rng = rand::thread_rng();

    let mut server = start(&data, &log);
    rt.block_on(server.api.accept(&signer.register(&shop, &rules())));
    for cycle in 0..cycles {
        // Four clients submit purchases until the server dies under them.
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let (api, signer, shop, consumers, acknowledged) = (
                    server.api.clone(),
                    signer.clone(),
                    shop.clone(),
                    consumers.clone(),
                    acknowledged.clone(),
                );
                rt.spawn(async move {
                    for i in 0.. {
                        let who = &consumers[(c * 7 + i) % consumers.len()];
                        let order = format!("c{cycle}-{c}-{i}");
                        let env = signer.purchase(&shop, who, &order, 1_000 + i as u64);
                        let Ok(resp) = api
                            .http
                            .post(api.url("/v1/entries"))
                            .body(env.to_json_bytes())
                            .send()
                            .await
                        else {
                            return;
                        };
                        if resp.status() != 200 {
                            return;
                        }
                        let Ok(receipt) = resp.json::<serde_json::Value>().await else {
                            return;
                        };
                        let index = receipt["index"].as_u64().expect("index");
                        let hash = receipt["leaf_hash"].as_str().expect("hash").to_owned();
                        acknowledged.lock().expect("lock").push((index, hash));
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..1200)));
        server.child.kill().expect("SIGKILL");
        let _ = server.child.wait();
        rt.block_on(async {
            for c in clients {
                let _ = c.await;
            }
        });

        server = start(&data, &log);
        let api = server.api.clone();
        let acked = acknowledged.lock().expect("lock").clone();
        assert!(!acked.is_empty(), "cycle {cycle}: nothing was acknowledged");
        rt.block_on(async {
            for (index, hash) in &acked {
                let (status, leaf) = api.get_bytes(&format!("/v1/entries/{index}")).await;
                assert_eq!(
                    status, 200,
                    "cycle {cycle}: acknowledged entry {index} lost"
                );
                assert_eq!(
                    &hex::encode(merkle::leaf_hash(&leaf)),
                    hash,
                    "cycle {cycle}: entry {index} changed"
                );
            }
            let (size, _) = api.tree().await;
            assert!(size as usize > acked.len(), "cycle {cycle}: {size} entries");
        });
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pointsledger"))
            .args(["audit", "--server", &api.base, "--json", "--state"])
            .arg(&state)
            .output()
            .expect("audit");
        assert!(
            out.status.success(),
            "cycle {cycle}: the audit failed: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    server.stop();
}

#[test]
fn short_crash_soak() {
    soak(5);
}

#[test]
#[ignore = "the long soak: cargo test --release --test crash_soak -- --ignored"]
fn long_crash_soak() {
    soak(50);
}
