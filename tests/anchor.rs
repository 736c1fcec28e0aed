//! Anchoring against a real anvil node (installed by `scripts/toolchain.sh`, which the test
//! command runs first):
//!
//! - the state machine step by step: deploy, anchor end to end with the on-chain root equal to
//!   the checkpoint's, the contract refusing a forked root sent with the operator's own key, a
//!   transaction dropped from the pool, and a reorg after confirmation;
//! - the anchorer inside the real `pointsledger serve` process: `GET /v1/anchors`, receipts
//!   carrying their anchor and consistency proof, anvil killed (SIGKILL) and restarted with a
//!   transaction in flight, and the server killed and restarted mid-anchoring, after which the
//!   contract's events show every checkpoint anchored once;
//! - final anchors lost to a reorg deeper than the confirmation depth and to a chain reset to
//!   older state: found by the re-check (at an interval, and at start), counted and anchored
//!   again, and caught by the auditor while the chain lacks them.

#[path = "common/chain.rs"]
mod chain;
mod common;
#[path = "common/server.rs"]
mod server;

use chain::{deploy_with_fresh_key, ethers_address, free_port, rpc, Anvil};
use common::*;
use pointsledger::anchor::{self, AnchorPolicy, AnchorStatus, Anchorer, Chain, ChainSettings};
use pointsledger::merkle::MemoryHashes;
use pointsledger::{checkpoint, keys, merkle};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn checkpoint_root(f: &Fixture) -> (u64, [u8; 32]) {
    let (size, note) = f
        .ledger
        .store()
        .latest_checkpoint()
        .expect("read")
        .expect("a checkpoint");
    let cp = checkpoint::open_checkpoint(&note, &f.ledger.verifier_key()).expect("valid");
    (size, cp.root)
}

async fn until_final(a: &Anchorer, url: &str) -> pointsledger::anchor::AnchorRecord {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rec = a.step().await.expect("step").expect("a record");
        if rec.status == AnchorStatus::Final {
            return rec;
        }
        rpc(url, "evm_mine", json!([])).await;
        assert!(Instant::now() < deadline, "not final: {rec:?}");
    }
}

/// Steps a sent record until the node has mined it, without mining more blocks: anvil's
/// automine answers the send before the block is in, so the first step can still see it sent.
async fn until_mined(a: &Anchorer) -> pointsledger::anchor::AnchorRecord {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rec = a.step().await.expect("step").expect("a record");
        if rec.status != AnchorStatus::Sent {
            return rec;
        }
        assert!(Instant::now() < deadline, "never mined: {rec:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn anchoring_end_to_end_with_faults() {
    let anvil = Anvil::start();
    let url = anvil.url.clone();
    let mut f = Fixture::new();
    let (shop, alice) = (Party::new(), Party::new());
    f.register(&shop, &rules());
    for i in 0..5 {
        f.purchase(&shop, &alice, &format!("o{i}"), 1000)
            .expect("purchase");
    }
    f.ledger.checkpoint().expect("checkpoint");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    // A fresh EVM account funded by anvil; its key lives in a 0600 file like every key.
    let evm = keys::generate();
    let key_file = f.dir.path().join("keys").join("evm.key");
    keys::write_key_file(&key_file, &evm).expect("key file");
    let settings = ChainSettings {
        rpc_url: url.clone(),
        chain_id: 31337,
        evm_key: key_file,
        gas_price_ceiling_gwei: 500,
    };
    let wallet_address = ethers_address(&evm.to_bytes());
    rt.block_on(rpc(
        &url,
        "anvil_setBalance",
        json!([wallet_address, "0x56BC75E2D63100000"]),
    ));
    let contract = rt.block_on(anchor::deploy(&settings)).expect("deploy");
    let chain = rt
        .block_on(Chain::connect(&settings, contract))
        .expect("connect");
    let anchorer = Anchorer {
        chain,
        store: anchor::AnchorStore::new(f.ledger.store().clone()),
        verifier_key: f.ledger.verifier_key(),
        policy: AnchorPolicy {
            confirmations: 2,
            resend_after: Duration::from_secs(60),
            gas_price_ceiling: ethers::types::U256::exp10(12),
        },
    };

    // 1. End to end: the chain holds the checkpoint's root at its size.
    let rec = rt.block_on(until_final(&anchorer, &url));
    let (size, root) = checkpoint_root(&f);
    assert_eq!((rec.tree_size, rec.from_size), (size, 0));
    assert_eq!(
        rt.block_on(anchorer.chain.anchored()).expect("read"),
        (size, root)
    );
    assert!(
        rt.block_on(anchorer.step()).expect("step").is_none(),
        "nothing new to anchor"
    );

    // 2. The tree grows: the next anchor carries a consistency proof and the chain checks it.
    for i in 5..12 {
        f.purchase(&shop, &alice, &format!("o{i}"), 1000)
            .expect("purchase");
    }
    f.ledger.checkpoint().expect("checkpoint");
    let rec = rt.block_on(until_final(&anchorer, &url));
    let (size2, root2) = checkpoint_root(&f);
    assert_eq!((rec.tree_size, rec.from_size), (size2, size));
    assert_eq!(
        rt.block_on(anchorer.chain.root_at(size)).expect("read"),
        root,
        "history kept"
    );
    assert_eq!(
        rt.block_on(anchorer.chain.anchored()).expect("read"),
        (size2, root2)
    );

    // 3. A forked history, sent with the operator's own key, is refused by the contract. The
    // fork keeps the first anchored `size` leaves, rewrites the rest and grows past `size2`;
    // its consistency proof from `size2` is valid within the forked tree, so only the root the
    // chain already holds at `size2` can refuse it.
    let mut fork = MemoryHashes::new();
    for i in 0..size2 + 4 {
        let leaf = match f.ledger.store().leaf(i).expect("leaf") {
            Some(bytes) if i < size => bytes,
            _ => format!("a history that never happened {i}").into_bytes(),
        };
        fork.append(&merkle::leaf_hash(&leaf)).expect("append");
    }
    let fork_root = merkle::root(size2 + 4, &fork).expect("root");
    let fork_proof = merkle::prove_consistency(size2, size2 + 4, &fork).expect("proof");
    merkle::verify_consistency(
        size2,
        size2 + 4,
        &merkle::root(size2, &fork).expect("root"),
        &fork_root,
        &fork_proof,
    )
    .expect("the fork is consistent in itself");
    let refused = rt.block_on(
        anchorer
            .chain
            .try_anchor(size2 + 4, fork_root, fork_proof.clone()),
    );
    let inconsistent = hex::encode(ethers::utils::id("InconsistentProof(uint64,uint64)"));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains(&inconsistent)),
        "the chain did not refuse the fork with InconsistentProof ({inconsistent}): {refused:?}"
    );
    // Not only in simulation: a mined transaction carrying the fork reverts, and the chain
    // still holds the honest root.
    let tx = rt
        .block_on(raw_anchor(
            &settings,
            contract,
            size2 + 4,
            fork_root,
            fork_proof,
        ))
        .expect("send the forked anchor");
    let mined = rt
        .block_on(anchorer.chain.mined(tx))
        .expect("receipt")
        .expect("mined");
    assert!(!mined.success, "the forked anchor transaction succeeded");
    assert_eq!(
        rt.block_on(anchorer.chain.anchored()).expect("read"),
        (size2, root2),
        "the fork changed what the chain holds"
    );

    // 4. A transaction dropped from the pool is sent again, and lands.
    rt.block_on(rpc(&url, "evm_setAutomine", json!([false])));
    for i in 12..15 {
        f.purchase(&shop, &alice, &format!("o{i}"), 1000)
            .expect("purchase");
    }
    f.ledger.checkpoint().expect("checkpoint");
    let sent = rt.block_on(anchorer.step()).expect("step").expect("record");
    assert_eq!(sent.status, AnchorStatus::Sent);
    let tx = sent.tx_hash.clone().expect("tx");
    rt.block_on(rpc(&url, "anvil_dropTransaction", json!([tx])));
    let resent = rt.block_on(anchorer.step()).expect("step").expect("record");
    assert_eq!(
        (resent.status, resent.sends),
        (AnchorStatus::Sent, 2),
        "{resent:?}"
    );
    assert_eq!(resent.nonce, sent.nonce, "a resend reuses the nonce");
    rt.block_on(rpc(&url, "evm_setAutomine", json!([true])));
    rt.block_on(rpc(&url, "evm_mine", json!([])));
    let rec = rt.block_on(until_final(&anchorer, &url));
    let (size3, root3) = checkpoint_root(&f);
    assert_eq!(rec.tree_size, size3);
    assert_eq!(
        rt.block_on(anchorer.chain.anchored()).expect("read"),
        (size3, root3)
    );

    // 5. A reorg after confirmation: the anchor is detected as gone and sent again.
    for i in 15..18 {
        f.purchase(&shop, &alice, &format!("o{i}"), 1000)
            .expect("purchase");
    }
    f.ledger.checkpoint().expect("checkpoint");
    let snapshot = rt.block_on(rpc(&url, "evm_snapshot", json!([])));
    let sent = rt.block_on(anchorer.step()).expect("step").expect("record");
    assert_eq!(sent.status, AnchorStatus::Sent);
    let confirmed = rt.block_on(until_mined(&anchorer));
    assert_eq!(confirmed.status, AnchorStatus::Confirmed, "{confirmed:?}");
    assert!(confirmed.block_number.is_some(), "{confirmed:?}");
    rt.block_on(rpc(&url, "evm_revert", json!([snapshot])));
    rt.block_on(rpc(&url, "evm_mine", json!([])));
    let again = rt.block_on(anchorer.step()).expect("step").expect("record");
    assert_eq!(
        again.status,
        AnchorStatus::Sent,
        "the reorged anchor is sent again: {again:?}"
    );
    assert!(again.sends >= 2);
    let rec = rt.block_on(until_final(&anchorer, &url));
    let (size4, root4) = checkpoint_root(&f);
    assert_eq!(rec.tree_size, size4);
    assert_eq!(
        rt.block_on(anchorer.chain.anchored()).expect("read"),
        (size4, root4)
    );

    // Every checkpoint was anchored once, and the records say so.
    let records = f.ledger.store().anchors().expect("records");
    let sizes: Vec<u64> = records.iter().map(|r| r.tree_size).collect();
    assert_eq!(sizes, vec![size, size2, size3, size4]);
    assert!(records.iter().all(|r| r.status == AnchorStatus::Final));
}

/// Polls `GET /v1/anchors` until the newest record is for `size` with `status`, mining a block
/// on every round if `mine` (anvil mines only when asked, and confirmations need blocks).
async fn until_anchor(
    api: &server::Api,
    rpc_url: &str,
    size: u64,
    status: &str,
    mine: bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, page) = api.get("/v1/anchors").await;
        assert_eq!(code, 200, "{page}");
        let newest = &page["anchors"][0];
        if newest["tree_size"] == json!(size) && newest["status"] == json!(status) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "no {status} anchor of size {size}: {page}"
        );
        if mine {
            let _ = reqwest::Client::new()
                .post(rpc_url)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": []}))
                .send()
                .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every `Anchored(size, root, previousSize)` event of the contract, in chain order.
async fn anchored_events(url: &str, contract: ethers::types::Address) -> Vec<(u64, String)> {
    let topic = format!(
        "{:#x}",
        ethers::types::H256::from(ethers::utils::keccak256("Anchored(uint64,bytes32,uint64)"))
    );
    let logs = rpc(
        url,
        "eth_getLogs",
        json!([{"address": format!("{contract:#x}"), "fromBlock": "0x0", "toBlock": "latest", "topics": [topic]}]),
    )
    .await;
    logs.as_array()
        .expect("logs")
        .iter()
        .map(|l| {
            let size = u64::from_str_radix(
                l["topics"][1]
                    .as_str()
                    .expect("topic")
                    .trim_start_matches("0x"),
                16,
            )
            .expect("size");
            let root = l["data"].as_str().expect("data")[2..66].to_owned();
            (size, root)
        })
        .collect()
}

/// A fresh ledger beside anvil (its chain kept in a state file, dumped every second) with the
/// contract deployed by a funded fresh key: where the tests of `serve` with anchoring start.
struct Served {
    dir: tempfile::TempDir,
    data_s: String,
    signer: server::Signer,
    chain_state: std::path::PathBuf,
    anvil: Anvil,
    url: String,
    rt: tokio::runtime::Runtime,
    key_file: std::path::PathBuf,
    settings: ChainSettings,
    contract: ethers::types::Address,
}

impl Served {
    /// `serve`'s flags for this ledger on a free port, checkpointing every 100 ms.
    fn base_args(&self) -> Vec<String> {
        [
            "--data",
            &self.data_s,
            "--listen",
            "127.0.0.1:0",
            "--checkpoint-interval",
            "100ms",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `serve`'s flags for anchoring to this contract, two confirmations, every 200 ms.
    fn anchoring_args(&self) -> Vec<String> {
        [
            "--contract",
            &format!("{:#x}", self.contract),
            "--rpc-url",
            &self.url,
            "--evm-key",
            self.key_file.to_str().expect("utf-8 path"),
            "--confirmations",
            "2",
            "--anchor-interval",
            "200ms",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn new(origin: &str) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("ledger");
        pointsledger::ledger::init(&data, origin).expect("init");
        let operator =
            keys::read_key_file(&pointsledger::ledger::DataDir(data.clone()).operator_key())
                .expect("operator key");
        let chain_state = dir.path().join("chain.json");
        let port = free_port();
        let anvil = Anvil::start_on(port, Some(&chain_state));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("rt");
        let (key_file, settings, contract) = deploy_with_fresh_key(&rt, &anvil, dir.path());
        Served {
            data_s: data.to_str().expect("utf-8 path").to_owned(),
            signer: server::Signer::new(operator),
            chain_state,
            url: anvil.url.clone(),
            anvil,
            rt,
            key_file,
            settings,
            contract,
            dir,
        }
    }
}

#[test]
fn serve_anchors_through_chain_outage_and_its_own_restart() {
    let served = Served::new("anchor.pointsledger.local");
    let flags: Vec<String> = served
        .base_args()
        .into_iter()
        .chain(served.anchoring_args())
        .chain(["--anchor-resend-after".into(), "30s".into()])
        .collect();
    let Served {
        dir,
        signer,
        chain_state,
        anvil,
        url,
        rt,
        settings,
        contract,
        ..
    } = served;
    let contract_s = format!("{contract:#x}");
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let log = dir.path().join("serve.log");
    let mut serve = server::Binary::start(&args, &[("RUST_LOG", "info")], &log);
    let api = serve.api.clone();
    let (shop, alice) = (Party::new(), Party::new());
    let purchases = |from: usize, to: usize| {
        let api = api.clone();
        let envs: Vec<_> = (from..to)
            .map(|i| signer.purchase(&shop, &alice, &format!("o{i}"), 1000))
            .collect();
        async move {
            for env in &envs {
                api.accept(env).await;
            }
            api.tree().await
        }
    };

    // 1. Anchoring from inside serve: the chain ends up with the checkpoint's root.
    rt.block_on(api.accept(&signer.register(&shop, &rules())));
    let (size1, root1) = rt.block_on(purchases(0, 5));
    let page = rt.block_on(until_anchor(&api, &url, size1, "final", true));
    assert_eq!(page["enabled"], json!(true));
    assert_eq!(page["contract"], json!(contract_s));
    assert_eq!(page["chain_id"], json!(31337));
    let rec = &page["anchors"][0];
    assert_eq!(
        rec["root_hash"],
        json!(pointsledger::wire::encode_hash(&root1))
    );
    assert_eq!(
        rec["root"],
        json!(hex::encode(root1)),
        "the deprecated hex twin"
    );
    assert!(rec["tx_hash"].as_str().is_some_and(|t| t.starts_with("0x")));
    assert!(rec["block_number"].as_u64().is_some());
    let chain = rt
        .block_on(Chain::connect(&settings, contract))
        .expect("connect");
    assert_eq!(rt.block_on(chain.anchored()).expect("read"), (size1, root1));

    // 2. The tree grows and is anchored again; a receipt against the first checkpoint carries
    //    the newer anchor with a consistency proof from its checkpoint to the anchored size.
    let (size2, root2) = rt.block_on(purchases(5, 9));
    rt.block_on(until_anchor(&api, &url, size2, "final", true));
    let receipt: serde_json::Value = rt.block_on(async {
        api.http
            .get(api.url(&format!("/v1/receipts/1?checkpoint={size1}")))
            .header("accept", "application/json")
            .send()
            .await
            .expect("receipt")
            .json()
            .await
            .expect("json")
    });
    assert_eq!(receipt["checkpoint_size"], json!(size1), "{receipt}");
    let a = &receipt["anchor"];
    assert_eq!(
        (
            a["tree_size"].clone(),
            a["status"].clone(),
            a["contract"].clone()
        ),
        (json!(size2), json!("final"), json!(contract_s)),
        "{receipt}"
    );
    let proof: Vec<[u8; 32]> = a["proof"]
        .as_array()
        .expect("proof")
        .iter()
        .map(|h| {
            pointsledger::wire::decode_hash("proof", h.as_str().expect("base64")).expect("hash")
        })
        .collect();
    // The deprecated hex twins hold the same bytes.
    let hex_proof: Vec<String> = proof.iter().map(hex::encode).collect();
    assert_eq!(a["consistency_proof"], json!(hex_proof), "{receipt}");
    assert_eq!(a["root"], json!(hex::encode(root2)), "{receipt}");
    assert_eq!(
        a["root_hash"],
        json!(pointsledger::wire::encode_hash(&root2)),
        "{receipt}"
    );
    assert!(!proof.is_empty());
    merkle::verify_consistency(size1, size2, &root1, &root2, &proof)
        .expect("the receipt's checkpoint is a prefix of the anchored tree");
    let mut bad = proof.clone();
    bad[0][0] ^= 1;
    assert!(merkle::verify_consistency(size1, size2, &root1, &root2, &bad).is_err());
    // The text receipt is the plain tlog-proof, against that same checkpoint.
    let (code, _, text) = rt.block_on(api.get_text(&format!("/v1/receipts/1?checkpoint={size1}")));
    assert_eq!(code, 200);
    let tlog = checkpoint::TlogProof::parse(&text).expect("tlog-proof");
    assert_eq!(
        checkpoint::open_checkpoint(&tlog.checkpoint, &rt.block_on(api.verifier_key()))
            .expect("signed")
            .size,
        size1
    );
    // `receipt --anchored` saves that JSON; `verify --rpc` checks it against the contract.
    let saved = dir.path().join("receipt-1.json");
    let saved_s = saved.to_str().expect("utf-8 path");
    let pl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pointsledger"))
            .args(args)
            .output()
            .expect("run pointsledger")
    };
    let size1_s = size1.to_string();
    let out = pl(&[
        "receipt",
        "--server",
        &api.base,
        "--index",
        "1",
        "--anchored",
        "--checkpoint",
        &size1_s,
        "--out",
        saved_s,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log_key = rt.block_on(api.verifier_key());
    let verify = || {
        pl(&[
            "verify",
            "--log-key",
            &log_key,
            saved_s,
            "--rpc",
            &url,
            "--contract",
            &contract_s,
        ])
    };
    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["anchored"]["tree_size"], json!(size2), "{v}");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved).expect("read")).expect("json");
    doc["anchor"]["proof"][0] = json!(pointsledger::wire::encode_hash(&[7u8; 32]));
    doc["anchor"]["consistency_proof"][0] = json!(hex::encode([7u8; 32]));
    std::fs::write(&saved, doc.to_string()).expect("write");
    let out = verify();
    assert!(!out.status.success(), "a tampered consistency proof passed");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a prefix of the anchored tree"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, body) = rt.block_on(api.get("/v1/receipts/1?checkpoint=999999"));
    assert_eq!((code, body["error"].clone()), (404, json!("not_found")));

    // 3. anvil is killed (SIGKILL) with an anchor transaction in flight, and comes back.
    // The chain state is dumped every second: wait for a dump made after everything so far,
    // so that the restarted node holds every anchor that was final (a loaded machine can make
    // a dump late, and a restart from an older one would forget a final anchor).
    let now = std::time::SystemTime::now();
    let dumped_after = |t| {
        std::fs::metadata(&chain_state)
            .and_then(|m| m.modified())
            .is_ok_and(|m| m > t)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dumped_after(now + Duration::from_millis(100)) {
        assert!(Instant::now() < deadline, "anvil did not dump its state");
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(rpc(&url, "evm_setAutomine", json!([false])));
    let (in_flight, in_flight_root) = rt.block_on(purchases(9, 12));
    rt.block_on(until_anchor(&api, &url, in_flight, "sent", false));
    let port = anvil.kill();
    let outage = rt.block_on(server::eventually(20, "the outage reported", || async {
        let (_, page) = api.get("/v1/anchors").await;
        page["last_error"].as_str().map(str::to_owned)
    }));
    assert!(outage.contains("RPC"), "{outage}");
    // Writes and reads go on while the chain is away.
    let (size3, root3) = rt.block_on(purchases(12, 13));
    let anvil = Anvil::start_on(port, Some(&chain_state));
    let page = rt.block_on(until_anchor(&api, &url, size3, "final", true));
    assert_eq!(page["last_error"], json!(null), "{page}");
    let metrics = rt.block_on(api.metrics());
    assert!(
        metrics.contains(&format!("pointsledger_anchored_size {size3}\n")),
        "{metrics}"
    );
    assert!(!metrics.contains("pointsledger_anchor_failures_total 0\n"));
    assert_eq!(rt.block_on(chain.anchored()).expect("read"), (size3, root3));

    // 4. The server is killed (SIGKILL) mid-anchoring and restarted: the transaction it had in
    //    flight is followed, not sent again.
    rt.block_on(rpc(&url, "evm_setAutomine", json!([false])));
    let (size4, root4) = rt.block_on(purchases(13, 16));
    let page = rt.block_on(until_anchor(&api, &url, size4, "sent", false));
    let tx = page["anchors"][0]["tx_hash"].clone();
    serve.child.kill().expect("SIGKILL serve");
    let _ = serve.child.wait();
    let serve = server::Binary::start(&args, &[("RUST_LOG", "info")], &log);
    let api = serve.api.clone();
    let page = rt.block_on(until_anchor(&api, &url, size4, "sent", false));
    assert_eq!(page["anchors"][0]["tx_hash"], tx, "the same transaction");
    rt.block_on(rpc(&url, "evm_setAutomine", json!([true])));
    let page = rt.block_on(until_anchor(&api, &url, size4, "final", true));
    assert_eq!(page["anchors"][0]["tx_hash"], tx, "{page}");
    assert_eq!(rt.block_on(chain.anchored()).expect("read"), (size4, root4));

    // The page and an anchored receipt are what the OpenAPI document says.
    let (_, doc) = rt.block_on(api.get("/v1/openapi.json"));
    let json_schema = |path: &str| {
        doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            .clone()
    };
    server::conforms(&doc, &json_schema("/v1/anchors"), &page, "anchors").expect("conforms");
    server::conforms(
        &doc,
        &json_schema("/v1/receipts/{index}"),
        &receipt,
        "receipt",
    )
    .expect("conforms");

    // Every checkpoint the chain holds was anchored once, and the sizes only grow.
    let events = rt.block_on(anchored_events(&anvil.url, contract));
    let sizes: Vec<u64> = events.iter().map(|(s, _)| *s).collect();
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    for (size, root) in [
        (size1, root1),
        (size2, root2),
        (in_flight, in_flight_root),
        (size3, root3),
        (size4, root4),
    ] {
        assert!(
            events.contains(&(size, hex::encode(root))),
            "{size} not anchored: {events:?}"
        );
    }
    let (_, page) = rt.block_on(api.get("/v1/anchors"));
    let recorded: Vec<u64> = page["anchors"]
        .as_array()
        .expect("anchors")
        .iter()
        .rev()
        .map(|r| r["tree_size"].as_u64().expect("size"))
        .collect();
    assert_eq!(recorded, sizes, "records and chain agree");
    serve.stop();
}

/// Waits until `/metrics` counts `n` final anchors lost.
async fn until_lost(api: &server::Api, n: u64) {
    server::eventually(60, "a lost anchor counted", || async {
        let m = api.metrics().await;
        m.lines()
            .find_map(|l| l.strip_prefix("pointsledger_anchors_lost_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|lost| *lost >= n)
            .map(|_| ())
    })
    .await;
}

#[test]
fn final_anchors_lost_to_a_deep_reorg_or_a_reset_chain_are_anchored_again() {
    let served = Served::new("lost.pointsledger.local");
    let (base, anchoring_owned) = (served.base_args(), served.anchoring_args());
    let Served {
        dir,
        signer,
        chain_state,
        anvil,
        url,
        rt,
        settings,
        contract,
        ..
    } = served;
    let contract_s = format!("{contract:#x}");
    let anchoring: Vec<&str> = anchoring_owned.iter().map(String::as_str).collect();
    let start = |extra: &[&str], log: &str| {
        let args: Vec<&str> = base
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
            .collect();
        server::Binary::start(&args, &[("RUST_LOG", "info")], &dir.path().join(log))
    };
    let recheck_fast: Vec<&str> = anchoring
        .iter()
        .copied()
        .chain(["--anchor-recheck-interval", "300ms"])
        .collect();
    let serve = start(&recheck_fast, "serve-1.log");
    let api = serve.api.clone();
    let (shop, alice) = (Party::new(), Party::new());
    let purchases = |api: server::Api, from: usize, to: usize| {
        let envs: Vec<_> = (from..to)
            .map(|i| signer.purchase(&shop, &alice, &format!("o{i}"), 1000))
            .collect();
        async move {
            for env in &envs {
                api.accept(env).await;
            }
            api.tree().await
        }
    };
    let chain = rt
        .block_on(Chain::connect(&settings, contract))
        .expect("connect");

    // The first anchor is final; the chain's state file is copied once it holds it: the
    // "older state" the chain is reset to later.
    rt.block_on(api.accept(&signer.register(&shop, &rules())));
    let (size1, root1) = rt.block_on(purchases(api.clone(), 0, 3));
    rt.block_on(until_anchor(&api, &url, size1, "final", true));
    let now = std::time::SystemTime::now() + Duration::from_millis(100);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::metadata(&chain_state)
        .and_then(|m| m.modified())
        .is_ok_and(|m| m > now)
    {
        assert!(Instant::now() < deadline, "anvil did not dump its state");
        std::thread::sleep(Duration::from_millis(100));
    }
    let older = dir.path().join("older-chain.json");
    std::fs::copy(&chain_state, &older).expect("copy the chain state");

    // 1. A reorg deeper than the confirmation depth takes away a final anchor: the re-check
    //    finds it gone, counts it, and the newest checkpoint is anchored again.
    let snapshot = rt.block_on(rpc(&url, "evm_snapshot", json!([])));
    let (size2, root2) = rt.block_on(purchases(api.clone(), 3, 6));
    rt.block_on(until_anchor(&api, &url, size2, "final", true));
    for _ in 0..4 {
        rt.block_on(rpc(&url, "evm_mine", json!([])));
    }
    rt.block_on(rpc(&url, "evm_revert", json!([snapshot])));
    assert_eq!(rt.block_on(chain.anchored()).expect("read"), (size1, root1));
    rt.block_on(until_lost(&api, 1));
    rt.block_on(until_anchor(&api, &url, size2, "final", true));
    assert_eq!(rt.block_on(chain.anchored()).expect("read"), (size2, root2));
    let log = std::fs::read_to_string(dir.path().join("serve-1.log")).expect("log");
    assert!(log.contains("no longer on the chain"), "{log}");
    serve.stop();

    // 2. The chain is reset to the older state while the server is down. The auditor, which
    //    requires an Anchored event for every anchor the server calls final, catches it.
    let port = anvil.kill();
    std::fs::copy(&older, &chain_state).expect("reset the chain state");
    let anvil = Anvil::start_on(port, Some(&chain_state));
    assert_eq!(rt.block_on(chain.anchored()).expect("read"), (size1, root1));
    let serve = start(&[], "serve-2.log");
    let audit = |base: &str, state: &str| {
        Command::new(env!("CARGO_BIN_EXE_pointsledger"))
            .args(["audit", "--server", base, "--json", "--state"])
            .arg(dir.path().join(state))
            .args(["--rpc", &url, "--contract", &contract_s])
            .output()
            .expect("audit")
    };
    let out = audit(&serve.api.base, "audit-1");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert!(!out.status.success(), "{report}");
    assert_eq!(
        report["discrepancy"]["at"],
        json!(format!("anchor {size2}")),
        "{report}"
    );
    serve.stop();

    // 3. Restarted with anchoring on, the server re-reads its final anchors at once, finds the
    //    lost one and anchors again; then the audit passes.
    let serve = start(&anchoring, "serve-3.log");
    let api = serve.api.clone();
    rt.block_on(until_lost(&api, 1));
    rt.block_on(until_anchor(&api, &url, size2, "final", true));
    assert_eq!(rt.block_on(chain.anchored()).expect("read"), (size2, root2));
    let out = audit(&api.base, "audit-2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    serve.stop();

    // 4. The chain is reset to the older state under a running server: its re-check finds the
    //    loss and anchors again, while it keeps serving.
    let serve = start(&recheck_fast, "serve-4.log");
    let api = serve.api.clone();
    let (size3, root3) = rt.block_on(purchases(api.clone(), 6, 8));
    rt.block_on(until_anchor(&api, &url, size3, "final", true));
    let port = anvil.kill();
    std::fs::copy(&older, &chain_state).expect("reset the chain state");
    let anvil = Anvil::start_on(port, Some(&chain_state));
    assert_eq!(rt.block_on(chain.anchored()).expect("read"), (size1, root1));
    rt.block_on(until_lost(&api, 1));
    rt.block_on(until_anchor(&api, &url, size3, "final", true));
    assert_eq!(rt.block_on(chain.anchored()).expect("read"), (size3, root3));
    let out = audit(&api.base, "audit-3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    serve.stop();
    drop(anvil);
}

/// Sends `anchor(size, root, proof)` as a transaction signed with the operator's key and a
/// fixed gas limit, without the simulation the anchorer runs first, so that an anchor the
/// contract refuses is mined (and reverts) instead of being caught before it is sent.
async fn raw_anchor(
    settings: &ChainSettings,
    contract: ethers::types::Address,
    size: u64,
    root: [u8; 32],
    proof: Vec<[u8; 32]>,
) -> Result<ethers::types::H256, String> {
    use ethers::abi::Token;
    use ethers::middleware::SignerMiddleware;
    use ethers::providers::{Http, Middleware, Provider};
    use ethers::signers::{LocalWallet, Signer};
    let secret = keys::read_key_file(&settings.evm_key)
        .map_err(|e| e.to_string())?
        .to_bytes();
    let wallet = LocalWallet::from_bytes(&secret)
        .map_err(|e| e.to_string())?
        .with_chain_id(settings.chain_id);
    let provider =
        Provider::<Http>::try_from(settings.rpc_url.as_str()).map_err(|e| e.to_string())?;
    let client = SignerMiddleware::new(provider, wallet);
    let mut data = ethers::utils::id("anchor(uint64,bytes32,bytes32[])").to_vec();
    data.extend(ethers::abi::encode(&[
        Token::Uint(size.into()),
        Token::FixedBytes(root.to_vec()),
        Token::Array(
            proof
                .into_iter()
                .map(|h| Token::FixedBytes(h.to_vec()))
                .collect(),
        ),
    ]));
    let tx = ethers::types::TransactionRequest::new()
        .to(contract)
        .data(data)
        .gas(2_000_000u64);
    let pending = client
        .send_transaction(tx, None)
        .await
        .map_err(|e| e.to_string())?;
    let hash = pending.tx_hash();
    pending.await.map_err(|e| e.to_string())?;
    Ok(hash)
}
