//! Anchoring against a real anvil node (installed by `scripts/toolchain.sh`, which the test
//! command runs first): deploy, anchor end to end with the on-chain root equal to the
//! checkpoint's, the contract refusing a forked root sent with the operator's own key, a
//! transaction dropped from the pool, and a reorg after confirmation.

mod common;

use common::*;
use pointsledger::anchor::{self, AnchorPolicy, AnchorStatus, Anchorer, Chain, ChainSettings};
use pointsledger::{checkpoint, keys, merkle};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn anvil_path() -> String {
    if let Ok(p) = std::env::var("ANVIL") {
        return p;
    }
    let out = Command::new("scripts/toolchain.sh")
        .arg("--env")
        .output()
        .expect("scripts/toolchain.sh installs anvil");
    let env = String::from_utf8_lossy(&out.stdout);
    env.split_whitespace()
        .find_map(|w| w.strip_prefix("ANVIL="))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no anvil: {env}"))
}

struct Anvil {
    child: Child,
    url: String,
}

impl Anvil {
    fn start() -> Anvil {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(anvil_path())
            .args([
                "--port",
                &port.to_string(),
                "--host",
                "127.0.0.1",
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn anvil");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "anvil did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Anvil { child, url }
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn rpc(url: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let v: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("rpc")
        .json()
        .await
        .expect("json");
    assert!(v.get("error").is_none(), "{method}: {v}");
    v["result"].clone()
}

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
        store: f.ledger.store().clone(),
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

    // 3. A forked root, sent with the operator's own key, is refused by the contract.
    let forked = merkle::leaf_hash(b"a history that never happened");
    let proof = merkle::prove_consistency(size, size2, f.ledger.store()).expect("proof");
    let refused = rt.block_on(anchorer.chain.try_anchor(size2 + 1, forked, proof));
    assert!(refused.is_err(), "the chain accepted a forked root");
    let fork_proof = vec![forked; 3];
    assert!(rt
        .block_on(anchorer.chain.try_anchor(size2 + 3, forked, fork_proof))
        .is_err());

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
    let confirmed = rt.block_on(anchorer.step()).expect("step").expect("record");
    assert_eq!(confirmed.status, AnchorStatus::Confirmed, "{confirmed:?}");
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

fn ethers_address(secret: &[u8; 32]) -> String {
    pointsledger::evm::address_of(secret).expect("address")
}
