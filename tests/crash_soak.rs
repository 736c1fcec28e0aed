//! Crash soak: the real `pointsledger serve` under load from several HTTP clients, killed with
//! SIGKILL at a random moment and restarted, cycle after cycle. After every restart every
//! acknowledged entry is there byte for byte, the served checkpoint covers the whole log with a
//! valid signature (the server's start-up self-check has already compared the stored tree with
//! the last checkpoint), and `pointsledger audit` passes twice: incrementally (consistency with
//! the checkpoint it saw before the crash) and in full from an empty state (signatures, replayed
//! effects, the tree, balances). A client that gets any answer but a receipt fails the soak.
//!
//! The same with the chain: the anvil node under an anchoring server is SIGKILLed and
//! restarted (from its state file) while clients write; writes never stop, and after each
//! restart the anchorer catches up, the chain holds the latest checkpoint's root and an audit
//! with `--rpc` passes.
//!
//! The test command runs the short soaks (5 cycles each); the long ones are
//! `cargo test --release --test crash_soak -- --ignored` (50 cycles each).

#[path = "common/chain.rs"]
mod chain;
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
    let mut acked_before = 0;
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
                        // The server answered: anything but a receipt is a failure of the
                        // soak (a dying server drops the connection instead).
                        let status = resp.status();
                        let Ok(receipt) = resp.json::<serde_json::Value>().await else {
                            return;
                        };
                        assert_eq!(status, 200, "cycle {cycle}: purchase refused: {receipt}");
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
                if let Err(e) = c.await {
                    assert!(!e.is_panic(), "cycle {cycle}: a client failed: {e}");
                }
            }
        });

        server = start(&data, &log);
        let api = server.api.clone();
        let acked = acknowledged.lock().expect("lock").clone();
        assert!(
            acked.len() > acked_before,
            "cycle {cycle}: nothing was acknowledged"
        );
        acked_before = acked.len();
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
        // An incremental audit (it remembers the checkpoint it saw before the crash, so a
        // rewritten history would show as a fork) and a full one from an empty state.
        let fresh = dir.path().join(format!("audit-full-{cycle}"));
        for state in [&state, &fresh] {
            server::assert_audit_passes(&api.base, state, &[], &format!("cycle {cycle}"));
        }
        std::fs::remove_dir_all(&fresh).expect("remove the full audit's state");
    }
    server.stop();
}

/// Purchases from four clients until `stop` is set; returns how many were acknowledged.
fn load(
    rt: &tokio::runtime::Runtime,
    api: &server::Api,
    signer: &Arc<server::Signer>,
    shop: &Arc<Party>,
    consumers: &Arc<Vec<Party>>,
    tag: &str,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..4)
        .map(|c| {
            let (api, signer, shop, consumers, stop) = (
                api.clone(),
                signer.clone(),
                shop.clone(),
                consumers.clone(),
                stop.clone(),
            );
            let tag = tag.to_owned();
            rt.spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let who = &consumers[(c + n as usize) % consumers.len()];
                    let env = signer.purchase(&shop, who, &format!("{tag}-{c}-{n}"), 500);
                    api.accept(&env).await;
                    n += 1;
                }
                n
            })
        })
        .collect()
}

fn chain_soak(cycles: usize) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    ledger::init(&data, "soak.pointsledger.local").expect("init");
    let operator = keys::read_key_file(&DataDir(data.clone()).operator_key()).expect("op key");
    let signer = Arc::new(server::Signer::new(operator));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let state_file = dir.path().join("chain.json");
    let port = chain::free_port();
    let mut anvil = chain::Anvil::start_on(port, Some(&state_file));
    // One block a second from here on, so that anchors reach their depth without help.
    rt.block_on(chain::rpc(
        &anvil.url,
        "evm_setIntervalMining",
        serde_json::json!([1]),
    ));
    let (key_file, settings, contract) = chain::deploy_with_fresh_key(&rt, &anvil, dir.path());
    let contract_s = format!("{contract:#x}");
    let url = anvil.url.clone();
    let server = server::Binary::start(
        &[
            "--data",
            data.to_str().expect("utf-8 path"),
            "--listen",
            "127.0.0.1:0",
            "--checkpoint-interval",
            "100ms",
            "--contract",
            &contract_s,
            "--rpc-url",
            &url,
            "--evm-key",
            key_file.to_str().expect("utf-8 path"),
            "--confirmations",
            "1",
            "--anchor-interval",
            "200ms",
            "--anchor-recheck-interval",
            "200ms",
        ],
        &[],
        &dir.path().join("serve.log"),
    );
    let api = server.api.clone();
    let shop = Arc::new(Party::new());
    let consumers: Arc<Vec<Party>> = Arc::new((0..20).map(|_| Party::new()).collect());
    rt.block_on(api.accept(&signer.register(&shop, &rules())));
    let on_chain = rt
        .block_on(pointsledger::anchor::Chain::connect(&settings, contract))
        .expect("connect");
    let mut rng = rand::thread_rng();
    let state = dir.path().join("audit");
    // anvil dumps its state every second: let the deployment reach the file first (a chain
    // reset to before the contract existed is another failure, not this soak's).
    std::thread::sleep(Duration::from_millis(1500));
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = load(
            &rt,
            &api,
            &signer,
            &shop,
            &consumers,
            &format!("k{cycle}"),
            &stop,
        );
        // The chain goes away at a random moment and comes back a moment later; the clients
        // keep writing all along (every `accept` asserts a 200).
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..800)));
        let port = anvil.kill();
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..1500)));
        anvil = chain::Anvil::start_on(port, Some(&state_file));
        rt.block_on(chain::rpc(
            &anvil.url,
            "evm_setIntervalMining",
            serde_json::json!([1]),
        ));
        stop.store(true, Ordering::Relaxed);
        let written: u64 = rt.block_on(async {
            let mut n = 0;
            for c in clients {
                n += c.await.expect("client");
            }
            n
        });
        assert!(
            written > 0,
            "cycle {cycle}: no writes while the chain was away"
        );
        // The anchorer catches up: the chain ends up holding the latest checkpoint's root.
        let (size, root) = rt.block_on(api.tree());
        rt.block_on(async {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while on_chain.anchored().await.ok() != Some((size, root)) {
                if std::time::Instant::now() > deadline {
                    let (_, page) = api.get("/v1/anchors?limit=3").await;
                    let chain_now = on_chain.anchored().await.ok();
                    panic!("cycle {cycle}: the chain ({chain_now:?}) did not catch up with {size}: {page}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // A final anchor the restarted chain lost (anvil keeps its state up to its last
            // dump) is found by the re-check and leaves the final records: then every anchor
            // the server calls final is an event on the chain, as the audit requires.
            while !final_anchors_on_chain(&api, &on_chain).await {
                if std::time::Instant::now() > deadline {
                    let (_, page) = api.get("/v1/anchors?limit=5").await;
                    panic!("cycle {cycle}: a final anchor is not on the chain: {page}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        server::assert_audit_passes(
            &api.base,
            &state,
            &["--rpc", &url, "--contract", &contract_s],
            &format!("cycle {cycle}"),
        );
    }
    server.stop();
}

/// Whether every anchor the server lists as final is an `Anchored` event of the contract.
async fn final_anchors_on_chain(api: &server::Api, chain: &pointsledger::anchor::Chain) -> bool {
    let (_, page) = api.get("/v1/anchors?limit=1000").await;
    let Ok(events) = chain.anchored_events().await else {
        return false;
    };
    page["anchors"].as_array().is_some_and(|anchors| {
        anchors
            .iter()
            .filter(|a| a["status"] == "final")
            .all(|a| events.iter().any(|(size, _)| a["tree_size"] == *size))
    })
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

#[test]
fn short_chain_soak() {
    chain_soak(5);
}

#[test]
#[ignore = "the long soak: cargo test --release --test crash_soak -- --ignored"]
fn long_chain_soak() {
    chain_soak(50);
}
