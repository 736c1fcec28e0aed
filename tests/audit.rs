//! `pointsledger audit` and `pointsledger verify --rpc` against the real `serve` process and a
//! real anvil: a clean log passes and is then audited incrementally; each kind of tampering is
//! caught and named at the right place:
//!
//! (a) a leaf's bytes changed in the log, (b) an entry removed, (c) a checkpoint signed over
//! a forked tree, (d) effects miscomputed in a leaf (tree and checkpoints re-signed to match),
//! (e) an on-chain root that disagrees, (f) a balance the server misreports.

#[path = "common/chain.rs"]
mod chain;
mod common;
#[path = "common/server.rs"]
mod server;

use chain::{deploy_with_fresh_key, Anvil};
use common::*;
use pointsledger::anchor::Chain;
use pointsledger::checkpoint::{self, Checkpoint};
use pointsledger::clock::DAY_MS;
use pointsledger::keys;
use pointsledger::ledger::DataDir;
use pointsledger::log::tamper;
use pointsledger::merkle::{self, MemoryHashes};
use pointsledger::state::tamper as state_tamper;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A ledger with a story in it (two merchants, purchases, a referral, a redemption, a refund),
/// checkpointed, its writer closed; returns the directory and the parties.
fn seeded() -> (tempfile::TempDir, Vec<Party>) {
    let mut f = Fixture::new();
    let (shop, cafe, alice, bob, carol) = (
        Party::new(),
        Party::new(),
        Party::new(),
        Party::new(),
        Party::new(),
    );
    f.register(&shop, &rules());
    f.register(&cafe, &rules());
    f.purchase(&shop, &alice, "first", 1_000).expect("purchase");
    f.refer(&bob, &alice).expect("referral");
    for i in 0..6 {
        f.purchase(&shop, &alice, &format!("a{i}"), 2_000)
            .expect("purchase");
        f.purchase(&cafe, &bob, &format!("b{i}"), 1_500)
            .expect("purchase");
    }
    f.purchase(&shop, &carol, "c0", 900).expect("purchase");
    f.clock.advance(15 * DAY_MS);
    f.redeem(&alice, &shop, "r1", 3_000, 500).expect("redeem");
    f.purchase(&shop, &alice, "r1", 3_000).expect("purchase");
    f.refund(&cafe, "b0", 1_500).expect("refund");
    f.ledger.checkpoint().expect("checkpoint");
    let Fixture { dir, .. } = f;
    (dir, vec![shop, cafe, alice, bob, carol])
}

fn serve(data: &Path, log: &Path) -> server::Binary {
    let data = data.to_str().expect("utf-8 path");
    server::Binary::start(
        &[
            "--data",
            data,
            "--listen",
            "127.0.0.1:0",
            "--checkpoint-interval",
            "100ms",
        ],
        &[],
        log,
    )
}

/// Runs `pointsledger audit ... --json`; returns whether it exited 0, its report and stderr.
fn audit(url: &str, state: &Path, extra: &[&str]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pointsledger"))
        .args(["audit", "--server", url, "--json", "--state"])
        .arg(state)
        .args(extra)
        .output()
        .expect("run audit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        out.status.success(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The place the audit names, asserting that it failed.
fn failed_at(url: &str, state: &Path) -> (String, Value) {
    let (ok, report, stderr) = audit(url, state, &[]);
    assert!(!ok, "the audit passed: {report}");
    assert_eq!(report["ok"], Value::Bool(false), "{report} {stderr}");
    assert!(stderr.contains("audit failed at"), "{stderr}");
    let d = report["discrepancy"].clone();
    (d["at"].as_str().expect("at").to_owned(), d)
}

/// Runs `pointsledger split-view` on an evidence file with the log key the audit in `state`
/// pinned; returns whether it exited 0, and its output.
fn split_view(state: &Path, file: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pointsledger"))
        .args(["split-view", "--log-key"])
        .arg(state.join("log-verifier-key"))
        .arg(file)
        .output()
        .expect("run split-view");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The leaves of a stopped ledger.
fn leaves(data: &Path) -> Vec<Vec<u8>> {
    let (store, _) = pointsledger::ledger::open_store(data).expect("store");
    store
        .leaves(0, store.size().expect("size"))
        .expect("leaves")
}

/// The state store directory of a stopped ledger, for `state::tamper`.
fn state_dir(data: &Path) -> PathBuf {
    DataDir(data.to_owned()).state()
}

/// The log's origin, as the store records it.
fn origin(data: &Path) -> String {
    state_tamper::config(&state_dir(data))
        .expect("config")
        .log
        .origin
}

/// Rewrites leaf `index` with `change`, then rewrites the log over the changed history (its
/// tree recomputed) and re-signs every checkpoint with the log key: a history the operator
/// forged consistently.
fn forge(data: &Path, index: u64, change: impl FnOnce(&mut Value)) {
    let mut all = leaves(data);
    let mut leaf: Value = serde_json::from_slice(&all[index as usize]).expect("json");
    change(&mut leaf);
    all[index as usize] = serde_json::to_vec(&leaf).expect("json");
    tamper::rewrite(&DataDir(data.to_owned()).log(), &all).expect("rewrite the log");
    let mut tree = MemoryHashes::new();
    for bytes in &all {
        tree.append(&merkle::leaf_hash(bytes)).expect("append");
    }
    let log_key = keys::read_key_file(&DataDir(data.to_owned()).log_key()).expect("log key");
    let origin = origin(data);
    for size in state_tamper::checkpoint_sizes(&state_dir(data)).expect("sizes") {
        let cp = Checkpoint {
            origin: origin.clone(),
            size,
            root: merkle::root(size, &tree).expect("root"),
        };
        let note = checkpoint::sign_checkpoint(&cp, &log_key).expect("sign");
        state_tamper::put_checkpoint(&state_dir(data), size, &note).expect("list");
    }
}

struct Case {
    dir: tempfile::TempDir,
    parties: Vec<Party>,
    log: PathBuf,
}

impl Case {
    fn new() -> Case {
        let (dir, parties) = seeded();
        let log = dir.path().join("serve.log");
        Case { dir, parties, log }
    }

    fn data(&self) -> &Path {
        self.dir.path()
    }

    fn state(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("audit-{name}"))
    }

    /// Serves the ledger, runs `f` against the URL, stops the server.
    fn with_server<T>(&self, f: impl FnOnce(&server::Api) -> T) -> T {
        let server = serve(self.data(), &self.log);
        let out = f(&server.api);
        server.stop();
        out
    }
}

#[test]
fn a_clean_log_passes_and_is_audited_incrementally() {
    let case = Case::new();
    let state = case.state("clean");
    let size = leaves(case.data()).len() as u64;
    let (ok, report, stderr) = case.with_server(|api| audit(&api.base, &state, &[]));
    assert!(ok, "{report} {stderr}");
    assert_eq!(report["ok"], Value::Bool(true));
    assert_eq!(report["entries"], serde_json::json!(size));
    assert_eq!(report["new_entries"], serde_json::json!(size));
    assert_eq!(report["checkpoint_size"], serde_json::json!(size));
    // alice, bob and carol: the accounts whose points moved (merchants hold none).
    assert_eq!(report["accounts_checked"], serde_json::json!(3), "{report}");
    assert_eq!(
        report["checkpoints_checked"],
        serde_json::json!(1),
        "the seeded ledger signed one checkpoint: {report}"
    );
    assert!(stderr.contains("pinned the log key"), "{stderr}");

    // More entries through the server: the next run verifies only those, against the pinned
    // key and the checkpoint it saw before.
    let operator =
        keys::read_key_file(&DataDir(case.data().to_owned()).operator_key()).expect("op key");
    let signer = server::Signer::new(operator);
    let (shop, alice) = (&case.parties[0], &case.parties[2]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let (ok, report, stderr) = case.with_server(|api| {
        rt.block_on(async {
            // A checkpoint after each, so that the history has several to page through.
            for i in 0..3 {
                api.accept(&signer.purchase(shop, alice, &format!("late{i}"), 700))
                    .await;
                api.tree().await;
            }
        });
        audit(&api.base, &state, &["--checkpoints-page", "1"])
    });
    assert!(ok, "{report} {stderr}");
    assert_eq!(report["new_entries"], serde_json::json!(3));
    assert_eq!(report["entries"], serde_json::json!(size + 3));
    // Only the checkpoints signed since the last run: the later purchases' (at least one).
    let signed_since = state_tamper::checkpoint_sizes(&state_dir(case.data()))
        .expect("sizes")
        .into_iter()
        .filter(|s| *s > size)
        .count();
    assert!(signed_since >= 3, "{signed_since}");
    assert_eq!(
        report["checkpoints_checked"],
        serde_json::json!(signed_since),
        "{report}"
    );

    // Another log key than the pinned one is refused.
    let other = checkpoint::verifier_key("other.log", &keys::generate().verifying_key());
    let (ok, _, stderr) = case.with_server(|api| audit(&api.base, &state, &["--log-key", &other]));
    assert!(!ok && stderr.contains("pins the log key"), "{stderr}");
}

/// Clients write to the audited accounts all through the audit: the accounts are compared as
/// they were at the audited checkpoint (`?at=SIZE`), so the audit passes, though they moved on
/// meanwhile. Then the refusals of `?at=`.
#[test]
fn an_audit_under_write_load_compares_accounts_at_its_checkpoint() {
    let case = Case::new();
    let state = case.state("load");
    let operator =
        keys::read_key_file(&DataDir(case.data().to_owned()).operator_key()).expect("op key");
    let signer = std::sync::Arc::new(server::Signer::new(operator));
    let (shop, alice, bob) = (
        std::sync::Arc::new(case.parties[0].key.clone()),
        case.parties[2].id.clone(),
        case.parties[3].id.clone(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let (ok, report, stderr, moved) = case.with_server(|api| {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = [alice.clone(), bob.clone()]
            .into_iter()
            .enumerate()
            .map(|(w, consumer)| {
                let (api, signer, shop, stop) =
                    (api.clone(), signer.clone(), shop.clone(), stop.clone());
                rt.spawn(async move {
                    let shop_id = keys::public_id(&shop.verifying_key());
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let p = serde_json::json!({"merchant": shop_id, "consumer": consumer,
                            "order_id": format!("load-{w}-{n}"), "amount": 1000,
                            "nonce": signer.nonce()});
                        api.accept(&common::sign("purchase", &p, &[&shop])).await;
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        // Let the writes get going, so that the audit's checkpoint is already behind them.
        rt.block_on(server::eventually(30, "writes under way", || async {
            let (size, _) = api.tree().await;
            (size > 40).then_some(())
        }));
        let (ok, report, stderr) = audit(&api.base, &state, &[]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written: u64 = writers
            .into_iter()
            .map(|w| rt.block_on(w).expect("writer"))
            .sum();
        assert!(written > 0);
        // The account moved on after the audited checkpoint: the view at it is another.
        let at = report["checkpoint_size"].as_u64().expect("a checkpoint");
        let (now_view, then_view) = rt.block_on(async {
            (
                api.get(&format!("/v1/accounts/{alice}")).await.1,
                api.get(&format!("/v1/accounts/{alice}?at={at}")).await.1,
            )
        });
        (
            ok,
            report,
            stderr,
            now_view["balance"] != then_view["balance"],
        )
    });
    assert!(ok, "{report} {stderr}");
    assert!(
        report["accounts_checked"].as_u64().is_some_and(|n| n >= 2),
        "{report}"
    );
    assert!(moved, "the accounts kept changing during the audit");

    // `?at=`: a checkpoint signed before the server started (older than what it keeps) is
    // 410 `not_kept`; its start's checkpoint is served; a size with no checkpoint is 404; a
    // size that is not a number 400.
    let mut ledger = pointsledger::ledger::Ledger::open(
        case.data(),
        std::sync::Arc::new(pointsledger::clock::SystemClock),
    )
    .expect("open");
    let shop_id = keys::public_id(&shop.verifying_key());
    let mut sizes = Vec::new();
    for i in 0..2 {
        let p = serde_json::json!({"merchant": shop_id, "consumer": alice,
            "order_id": format!("offline-{i}"), "amount": 500, "nonce": signer.nonce()});
        ledger
            .submit(vec![common::sign("purchase", &p, &[&shop])])
            .remove(0)
            .expect("purchase");
        ledger.checkpoint().expect("checkpoint");
        sizes.push(ledger.size());
    }
    drop(ledger);
    let codes = case.with_server(|api| {
        rt.block_on(async {
            let mut out = Vec::new();
            for q in [
                sizes[0].to_string(),
                sizes[1].to_string(),
                (sizes[1] + 1).to_string(),
                "x".into(),
            ] {
                let (code, body) = api.get(&format!("/v1/accounts/{alice}?at={q}")).await;
                out.push((code, body["error"].clone()));
            }
            out
        })
    });
    assert_eq!(
        codes,
        vec![
            (410, serde_json::json!("not_kept")),
            (200, Value::Null),
            (404, serde_json::json!("not_found")),
            (400, serde_json::json!("malformed_request")),
        ]
    );
}

#[test]
fn a_changed_leaf_is_named() {
    // (a) Leaf 5's timestamp one millisecond later, in place: it still decodes, verifies and
    // replays, but it is not the leaf the tree holds.
    let case = Case::new();
    let text = String::from_utf8(leaves(case.data())[5].clone()).expect("utf8");
    let at = text.find("\"timestamp_ms\":").expect("timestamp") + "\"timestamp_ms\":".len();
    let end = at
        + text[at..]
            .find(|c: char| !c.is_ascii_digit())
            .expect("digits");
    let ts: u64 = text[at..end].parse().expect("number");
    let changed = format!("{}{}{}", &text[..at], ts + 1, &text[end..]);
    assert_eq!(changed.len(), text.len());
    tamper::replace_leaf(
        &DataDir(case.data().to_owned()).log(),
        5,
        changed.as_bytes(),
    )
    .expect("tamper");
    let (at, d) = case.with_server(|api| failed_at(&api.base, &case.state("a")));
    assert_eq!(at, "entry 5", "{d}");
}

#[test]
fn a_removed_entry_is_named() {
    // (b) Entry 7 is gone from the log: the server serves 8 where 7 should be.
    let case = Case::new();
    let size = leaves(case.data()).len() as u64;
    tamper::drop_leaf(&DataDir(case.data().to_owned()).log(), 7, size).expect("tamper");
    let (at, d) = case.with_server(|api| failed_at(&api.base, &case.state("b")));
    assert_eq!(at, "entry 7", "{d}");
    assert_eq!(
        (d["expected"].as_str(), d["found"].as_str()),
        (Some("7"), Some("8"))
    );
}

/// The auditor (state `name`) sees the honest checkpoint; the operator then rewrites entry 3,
/// re-signs every listed checkpoint over the rewritten history (and, unless `keep_seen`, drops
/// the one the auditor saw from the list), and grows the log by one purchase: the new
/// checkpoint is validly signed but no extension of the one the auditor holds. Returns the
/// audit state, the size seen, and how the next audit failed (at the new checkpoint).
fn forked(case: &Case, name: &str, keep_seen: bool) -> (PathBuf, u64, Value) {
    let state = case.state(name);
    let (ok, report, stderr) = case.with_server(|api| audit(&api.base, &state, &[]));
    assert!(ok, "{report} {stderr}");
    let seen = report["checkpoint_size"].as_u64().expect("size");
    forge(case.data(), 3, |leaf| {
        leaf["timestamp_ms"] = serde_json::json!(leaf["timestamp_ms"].as_u64().expect("ts") + 1);
    });
    if !keep_seen {
        state_tamper::remove_checkpoint(&state_dir(case.data()), seen).expect("remove");
    }
    let operator =
        keys::read_key_file(&DataDir(case.data().to_owned()).operator_key()).expect("op key");
    let signer = server::Signer::new(operator);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let (at, d) = case.with_server(|api| {
        rt.block_on(async {
            let (code, _, listed) = api.get_text(&format!("/v1/checkpoints/{seen}")).await;
            assert_eq!(code == 200, keep_seen, "{listed}");
            api.accept(&signer.purchase(&case.parties[0], &case.parties[4], "fork", 100))
                .await;
            api.tree().await
        });
        failed_at(&api.base, &state)
    });
    assert_eq!(at, format!("checkpoint {}", seen + 1), "{d}");
    (state, seen, d)
}

/// Whether the discrepancy `d` names a fork and `evidence`, and `split-view` accepts that file.
fn fork_evidence_checks(state: &Path, d: &Value, evidence: &Path) -> String {
    assert!(
        d["what"]
            .as_str()
            .is_some_and(|w| w.contains("fork") && w.contains(&evidence.display().to_string())),
        "{d}"
    );
    let (ok, out) = split_view(state, evidence);
    assert!(ok, "{out}");
    out
}

#[test]
fn a_forked_checkpoint_is_caught_by_a_returning_auditor() {
    // (c) The forger re-signed the size the auditor saw over the forged tree: the two notes of
    // that size are the evidence, which anyone with the log key can check.
    let case = Case::new();
    let (state, seen, d) = forked(&case, "c", true);
    let evidence = state.join(format!("split-view-{seen}-{seen}.json"));
    let out = fork_evidence_checks(&state, &d, &evidence);
    assert!(
        out.contains(&format!("the log signed size {seen}")),
        "{out}"
    );
}

#[test]
fn a_fork_is_proven_from_the_new_tree_when_the_size_seen_is_not_listed() {
    // (c') The forger lists no note at the size the auditor saw: the evidence is the forked
    // tree's root at that size (from the server's own inclusion proof of its last leaf) and
    // the server's consistency proof from there to the new checkpoint.
    let case = Case::new();
    let (state, seen, d) = forked(&case, "c2", false);
    let evidence = state.join(format!("split-view-{seen}-{}.json", seen + 1));
    fork_evidence_checks(&state, &d, &evidence);
}

#[test]
fn a_listed_checkpoint_of_another_tree_is_a_split_view_with_evidence() {
    // (g) Beside the honest checkpoints, the log's list holds one at size 5 that the log key
    // signed over another root: the view of the log someone else was shown.
    let case = Case::new();
    let size = leaves(case.data()).len() as u64;
    let log_key = keys::read_key_file(&DataDir(case.data().to_owned()).log_key()).expect("key");
    let other = Checkpoint {
        origin: origin(case.data()),
        size: 5,
        root: [9u8; 32],
    };
    let note = checkpoint::sign_checkpoint(&other, &log_key).expect("sign");
    state_tamper::put_checkpoint(&state_dir(case.data()), 5, &note).expect("list");

    let state = case.state("g");
    let (at, d) = case.with_server(|api| failed_at(&api.base, &state));
    assert_eq!(at, "checkpoint 5", "{d}");
    assert!(
        d["what"].as_str().is_some_and(|w| w.contains("split view")),
        "{d}"
    );
    assert_eq!(d["found"], serde_json::json!(hex::encode([9u8; 32])), "{d}");

    // A third party checks the evidence with the log's verifier key alone.
    let evidence = state.join(format!("split-view-5-{size}.json"));
    let check = |file: &Path| split_view(&state, file);
    let (ok, out) = check(&evidence);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "the log signed size 5 with root {}",
            hex::encode([9u8; 32])
        )),
        "{out}"
    );
    // Evidence that claims the newer tree has the forged root at size 5 proves nothing.
    let mut doctored: Value =
        serde_json::from_slice(&std::fs::read(&evidence).expect("read")).expect("json");
    doctored["older_size_root_in_newer"] =
        serde_json::json!(pointsledger::wire::encode_hash(&[9u8; 32]));
    let doctored_file = state.join("doctored.json");
    std::fs::write(&doctored_file, doctored.to_string()).expect("write");
    let (ok, out) = check(&doctored_file);
    assert!(!ok && out.contains("not a split view"), "{out}");
}

#[test]
fn miscomputed_effects_are_named_even_with_a_consistent_tree() {
    // (d) Entry 4's effects credit one point more; tree and checkpoints are recomputed and
    // re-signed to match, so only the replay can tell.
    let case = Case::new();
    forge(case.data(), 4, |leaf| {
        let delta = &mut leaf["effects"]["changes"][0]["delta"];
        *delta = serde_json::json!(delta.as_i64().expect("delta") + 1);
    });
    let (at, d) = case.with_server(|api| failed_at(&api.base, &case.state("d")));
    assert_eq!(at, "entry 4", "{d}");
    assert!(
        d["what"].as_str().is_some_and(|w| w.contains("effects")),
        "{d}"
    );
}

#[test]
fn a_misreported_balance_is_named() {
    // (f) One of alice's lots disappears from the server's derived state: the log is intact,
    // but the account the server reports is not the one the log adds up to.
    let case = Case::new();
    let alice = &case.parties[2];
    assert!(state_tamper::remove_first_lot(&state_dir(case.data()), &alice.id).expect("remove"));
    let (at, d) = case.with_server(|api| failed_at(&api.base, &case.state("f")));
    assert_eq!(at, format!("account {}", alice.id), "{d}");
}

#[test]
fn on_chain_anchors_are_checked_and_receipts_verified_against_the_chain() {
    let case = Case::new();
    let anvil = Anvil::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let (_, settings, contract) = deploy_with_fresh_key(&rt, &anvil, case.data());
    let contract_s = format!("{contract:#x}");
    let chain = rt
        .block_on(Chain::connect(&settings, contract))
        .expect("connect");
    let send = |size: u64, root: [u8; 32], proof: Vec<[u8; 32]>| {
        rt.block_on(async {
            let nonce = chain.next_nonce().await.expect("nonce");
            let price = chain.gas_price().await.expect("price");
            chain
                .send_anchor(size, root, proof, nonce, price)
                .await
                .expect("send");
        });
    };
    let chain_args = ["--rpc", &anvil.url, "--contract", &contract_s];

    // The honest root at a size inside the log passes, and a receipt verifies against it.
    let size = leaves(case.data()).len() as u64;
    let (honest_size, honest_root) = {
        let (store, _) = pointsledger::ledger::open_store(case.data()).expect("store");
        let root = merkle::root(size - 2, &store).expect("root");
        (size - 2, root)
    };
    send(honest_size, honest_root, Vec::new());
    let log_key = {
        let (store, config) = pointsledger::ledger::open_store(case.data()).expect("store");
        drop(store);
        let key = keys::read_key_file(&DataDir(case.data().to_owned()).log_key()).expect("key");
        checkpoint::verifier_key(&config.log.origin, &key.verifying_key())
    };
    let (ok, report, stderr) =
        case.with_server(|api| audit(&api.base, &case.state("e-good"), &chain_args));
    assert!(ok, "{report} {stderr}");
    assert!(
        report["anchors_checked"].as_u64().expect("n") >= 1,
        "{report}"
    );

    // `verify --rpc`: a receipt against the checkpoint of size `size` is covered by an anchor
    // of `honest_size` only if the chain holds the checkpoint's own root; it does not yet.
    let receipt = case.dir.path().join("receipt.tlog-proof");
    let pl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pointsledger"))
            .args(args)
            .output()
            .expect("run")
    };
    let receipt_s = receipt.to_str().expect("utf-8").to_owned();
    let out = case.with_server(|api| {
        pl(&[
            "receipt", "--server", &api.base, "--index", "2", "--out", &receipt_s,
        ])
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "--log-key", &log_key, &receipt_s];
        args.extend_from_slice(extra);
        pl(&args)
    };
    let out = verify(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verify(&chain_args);
    assert!(!out.status.success(), "not anchored at its size yet");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the chain holds root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // (e) The chain gets a root at `size` that is not the log's (the contract checks the
    // proof from the last anchor, so the operator forges one that passes: the contract only
    // sees roots). A fresh contract takes it as its first anchor.
    let forged = merkle::leaf_hash(b"not this log");
    std::fs::create_dir_all(case.state("evm2")).expect("mkdir");
    let (_, settings2, contract2) = deploy_with_fresh_key(&rt, &anvil, &case.state("evm2"));
    let chain2 = rt
        .block_on(Chain::connect(&settings2, contract2))
        .expect("connect");
    rt.block_on(async {
        let nonce = chain2.next_nonce().await.expect("nonce");
        let price = chain2.gas_price().await.expect("price");
        chain2
            .send_anchor(size - 1, forged, Vec::new(), nonce, price)
            .await
            .expect("send");
    });
    let contract2_s = format!("{contract2:#x}");
    let bad_args = [
        "--rpc",
        anvil.url.as_str(),
        "--contract",
        contract2_s.as_str(),
    ];
    let (ok, report, stderr) =
        case.with_server(|api| audit(&api.base, &case.state("e-bad"), &bad_args));
    assert!(!ok, "{report}");
    assert_eq!(
        report["discrepancy"]["at"],
        serde_json::json!(format!("anchor {}", size - 1)),
        "{report} {stderr}"
    );
    assert_eq!(
        report["discrepancy"]["found"],
        serde_json::json!(hex::encode(forged))
    );

    // Once the honest contract holds the receipt's own size, `verify --rpc` passes: a
    // .tlog-proof carries no anchor, so the chain must hold the checkpoint's root itself.
    let (store, _) = pointsledger::ledger::open_store(case.data()).expect("store");
    let full_root = merkle::root(size, &store).expect("root");
    let proof = merkle::prove_consistency(honest_size, size, &store).expect("proof");
    drop(store);
    send(size, full_root, proof);
    let out = verify(&chain_args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["anchored"]["tree_size"], serde_json::json!(size));
}
