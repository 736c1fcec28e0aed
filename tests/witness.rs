//! `pointsledger witness`, the real process on a loopback port, against the log's own client
//! (`witness::client`) and against raw requests: every answer of c2sp.org/tlog-witness
//! (200 with a cosignature that verifies, 400, 403, 404, 409 with the size, 422), the record
//! kept across SIGKILL, a record altered on disk refused at start, and two racing requests from
//! one size of which exactly one is cosigned. Then the log's side: `serve` with `--witness`
//! gathers cosignatures onto the checkpoints and receipts it serves, `verify --witness-key`
//! requires them, and a witness killed and restarted is retried until it cosigns again.

mod common;
#[path = "common/server.rs"]
mod server;
#[path = "common/witness.rs"]
mod witness;

use common::{rules, Fixture, Party};
use pointsledger::checkpoint::{self, Checkpoint};
use pointsledger::keys;
use pointsledger::ledger::DataDir;
use pointsledger::merkle::{self, Hash};
use pointsledger::witness::client::{self, Added, WitnessClientError};
use pointsledger::witness::cosignature::{self, CosignerKey};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use witness::{cosigned_note, free_listen, print_key, Witness, NAME};

/// A checkpoint note of `origin` at `size` over `root`, signed by `key`.
fn signed(origin: &str, size: u64, root: Hash, key: &ed25519_dalek::SigningKey) -> String {
    checkpoint::sign_checkpoint(
        &Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        },
        key,
    )
    .expect("sign")
}

fn grow(f: &mut Fixture, shop: &Party, n: usize) -> (u64, String) {
    let alice = Party::new();
    for i in 0..n {
        f.purchase(shop, &alice, &format!("{}-{i}", &alice.id[..8]), 1000)
            .expect("purchase");
    }
    f.ledger.checkpoint().expect("checkpoint");
    f.ledger
        .store()
        .latest_checkpoint()
        .expect("read")
        .expect("a checkpoint")
}

fn proof(f: &Fixture, from: u64, to: u64) -> Vec<Hash> {
    merkle::prove_consistency(from, to, f.ledger.store()).expect("proof")
}

async fn raw(url: &str, body: String) -> (u16, String, String) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/add-checkpoint"))
        .body(body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default();
    (status, ctype, resp.text().await.expect("body"))
}

async fn monitored(w: &Witness, origin: &str) -> (u16, String) {
    let hash = hex::encode(Sha256::digest(origin.as_bytes()));
    let resp = reqwest::get(format!("{}/{hash}/checkpoint", w.url))
        .await
        .expect("get");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

#[test]
fn a_witness_cosigns_only_what_extends_what_it_cosigned() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(story());
}

async fn story() {
    let mut f = Fixture::new();
    let shop = Party::new();
    f.register(&shop, &rules());
    let vkey = f.ledger.verifier_key();
    let origin = checkpoint::parse_verifier_key(&vkey).expect("vkey").0;
    let log_key = keys::read_key_file(&DataDir(f.dir.path().to_owned()).log_key()).expect("key");
    let dir = tempfile::tempdir().expect("tempdir");
    let wdir = dir.path().join("w");
    let w = Witness::start(&wdir, &[&vkey]);
    let http = reqwest::Client::new();
    let mode = std::fs::metadata(wdir.join("witness.key"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the witness key is 0600");
    let (code, _) = monitored(&w, &origin).await;
    assert_eq!(code, 404, "nothing cosigned yet");

    // 1. The first checkpoint, from size 0: cosigned, and the line verifies under the key the
    // witness printed.
    let (size1, note1) = grow(&mut f, &shop, 3);
    let line = client::cosign(&http, &w.url, &w.key, &note1, 0, |from| {
        Ok(proof(&f, from, size1))
    })
    .await
    .expect("cosigned");
    let cosigned = format!("{note1}{line}");
    let valid = cosignature::check_quorum(&cosigned, std::slice::from_ref(&w.key), 1)
        .expect("a valid cosignature");
    assert_eq!(valid[0].name, NAME);
    let (code, served) = monitored(&w, &origin).await;
    assert_eq!(code, 200);
    assert_eq!(
        checkpoint::open_checkpoint(&served, &vkey)
            .expect("log signature")
            .size,
        size1
    );
    cosignature::check_quorum(&served, std::slice::from_ref(&w.key), 1)
        .expect("the monitored checkpoint carries the cosignature");

    // 2. The log grows. Sent from size 0, the witness answers 409 with the size it holds; the
    // client follows it with a proof from there.
    let (size2, note2) = grow(&mut f, &shop, 4);
    let (code, ctype, body) = raw(&w.url, client::request_body(0, &[], &note2)).await;
    assert_eq!(
        (code, ctype.as_str(), body),
        (409, "text/x.tlog.size", format!("{size1}\n"))
    );
    client::cosign(&http, &w.url, &w.key, &note2, 0, |from| {
        Ok(proof(&f, from, size2))
    })
    .await
    .expect("cosigned after the 409");
    // The same checkpoint again, from its own size: cosigned again (same root, no proof).
    let again = client::add_checkpoint(&http, &w.url, size2, &[], &note2)
        .await
        .expect("answer");
    assert!(matches!(again, Added::Cosigned(_)), "{again:?}");

    // 3. Refusals, each with its status.
    let (size3, note3) = grow(&mut f, &shop, 2);
    let good = proof(&f, size2, size3);
    let mut bent = good.clone();
    bent[0][0] ^= 1;
    let (code, _, body) = raw(&w.url, client::request_body(size2, &bent, &note3)).await;
    assert_eq!(code, 422, "a proof that does not verify: {body}");
    let (code, _, _) = raw(&w.url, client::request_body(size3 + 1, &good, &note3)).await;
    assert_eq!(code, 400, "old past the size");
    let (code, _, _) = raw(&w.url, "old 01\n\n".to_string() + &note3).await;
    assert_eq!(code, 400, "a size with a leading zero");
    let (code, _, _) = raw(&w.url, format!("old {size2}\n{note3}")).await;
    assert_eq!(code, 400, "no empty line before the checkpoint");
    // Another root at the size cosigned, signed by the log's own key (a rewrite): 422.
    let forged = signed(&origin, size2, [9; 32], &log_key);
    let (code, _, _) = raw(&w.url, client::request_body(size2, &[], &forged)).await;
    assert_eq!(code, 422, "another root at the cosigned size");
    // A size-0 checkpoint that is not the empty tree.
    let w2dir = dir.path().join("w2");
    let fresh = Witness::start(&w2dir, &[&vkey]);
    let zero = signed(&origin, 0, [9; 32], &log_key);
    let (code, _, _) = raw(&fresh.url, client::request_body(0, &[], &zero)).await;
    assert_eq!(code, 422, "size 0 must carry the empty root");
    let (code, _, _) = raw(&fresh.url, client::request_body(0, &good, &note3)).await;
    assert_eq!(code, 422, "a proof from size 0 must be empty");
    drop(fresh);
    // Signed by another key under the log's name: 403; altered after signing: 403.
    let impostor = signed(
        &origin,
        size3,
        merkle::root(size3, f.ledger.store()).expect("root"),
        &keys::generate(),
    );
    let (code, _, _) = raw(&w.url, client::request_body(size2, &good, &impostor)).await;
    assert_eq!(code, 403, "not the log's key");
    let altered = note3.replacen(&format!("\n{size3}\n"), &format!("\n{}\n", size3 + 1), 1);
    let (code, _, _) = raw(&w.url, client::request_body(size2, &good, &altered)).await;
    assert_eq!(code, 403, "altered after signing");
    // A log the witness was not told to trust: 404, and the client says so.
    let other_note = signed(
        "other.example/log",
        0,
        merkle::empty_root(),
        &keys::generate(),
    );
    let err = client::cosign(&http, &w.url, &w.key, &other_note, 0, |_| Ok(vec![]))
        .await
        .expect_err("unknown log");
    assert!(
        matches!(err, WitnessClientError::Refused { status: 404, .. }),
        "{err}"
    );
    // None of it moved the record.
    let (_, still) = monitored(&w, &origin).await;
    assert_eq!(
        checkpoint::open_checkpoint(&still, &vkey)
            .expect("open")
            .size,
        size2
    );

    // 4. Two requests race from the same size: exactly one is cosigned, the other gets 409
    // (the check and the record are one step).
    let (size4, note4) = grow(&mut f, &shop, 1);
    let body4 = client::request_body(size2, &proof(&f, size2, size4), &note4);
    let (a, b) = tokio::join!(raw(&w.url, body4.clone()), raw(&w.url, body4));
    let mut codes = [a.0, b.0];
    codes.sort();
    assert_eq!(codes, [200, 409], "{a:?} {b:?}");

    // A note that already carries another witness's cosignature: the line of a key the
    // witness does not know is ignored (c2sp.org/tlog-witness), and the checkpoint cosigned.
    let (size5, note5) = grow(&mut f, &shop, 1);
    let other = cosignature::Cosigner::new("witness.test/other", keys::generate()).expect("key");
    let mut carried = signed_note::Note::from_bytes(note5.as_bytes()).expect("note");
    other.cosign(&mut carried, 1_700_000_000).expect("cosign");
    let carried = String::from_utf8(carried.to_bytes()).expect("utf-8");
    assert_ne!(carried, note5);
    let (code, _, line) = raw(
        &w.url,
        client::request_body(size4, &proof(&f, size4, size5), &carried),
    )
    .await;
    assert_eq!(code, 200, "{line}");
    cosignature::check_line(&note5, &line, &w.key).expect("the line verifies over the body");

    // 5. SIGKILL: the record is on disk before the answer, so the restarted witness still
    // holds size5 and refuses to go back.
    w.kill();
    let w = Witness::start(&wdir, &[&vkey]);
    let (code, _, body) = raw(&w.url, client::request_body(0, &[], &note1)).await;
    assert_eq!((code, body), (409, format!("{size5}\n")));
    let (code, _, _) = raw(&w.url, client::request_body(size5, &[], &note2)).await;
    assert_eq!(
        code, 400,
        "an older checkpoint than the one cosigned is refused"
    );
    drop(w);

    // 6. A record altered on disk stops the witness at start: it does not forget what it
    // cosigned.
    let hash = hex::encode(Sha256::digest(origin.as_bytes()));
    let record = wdir.join("logs").join(&hash);
    let text = std::fs::read_to_string(&record).expect("record");
    std::fs::write(&record, text.replacen(&format!("\n{size5}\n"), "\n1\n", 1)).expect("write");
    let err = refused_start(&wdir, &["--log-key", &vkey]);
    assert!(err.contains("does not verify"), "{err}");
    assert!(
        !err.contains(wdir.to_str().expect("path")),
        "no paths in errors: {err}"
    );

    // 7. Flags: no trusted log, a bad log key, a repeated one.
    for (args, want) in [
        (vec![], "--log-key"),
        (vec!["--log-key", "nonsense"], "--log-key"),
        (vec!["--log-key", &vkey, "--log-key", &vkey], "twice"),
    ] {
        let err = refused_start(&dir.path().join("w3"), &args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // A witness key that group or others can read stops the witness at start.
    let loose = dir.path().join("w4");
    print_key(&loose);
    std::fs::set_permissions(
        loose.join("witness.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let err = refused_start(&loose, &["--log-key", &vkey]);
    assert!(err.contains("chmod 600"), "{err}");
    // --print-key prints the key the running witness signs with.
    let out = witness::command(&wdir)
        .arg("--print-key")
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        valid_key_string(&wdir)
    );
}

/// Starts `pointsledger witness` in `dir` with `args` after `--listen 127.0.0.1:0`, expecting
/// it to refuse to start; returns what it said.
fn refused_start(dir: &Path, args: &[&str]) -> String {
    let out = witness::command(dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .output()
        .expect("run");
    assert!(!out.status.success(), "{args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The key the witness in `dir` signs with, derived from its key file.
fn valid_key_string(dir: &Path) -> String {
    let key = keys::read_key_file(&dir.join("witness.key")).expect("key");
    CosignerKey {
        name: NAME.into(),
        key: key.verifying_key(),
    }
    .vkey()
}

/// A server that asks `targets` (a quorum of `quorum`), on the wall clock (the auditor compares
/// accounts at its own time), with a merchant registered and three purchases by one consumer;
/// returns the server, its verifier key, the merchant and the consumer.
async fn witnessed_server(
    targets: Vec<pointsledger::server::witnesses::WitnessTarget>,
    quorum: usize,
) -> (server::TestServer, String, Party, Party) {
    let settings = pointsledger::server::Settings {
        witnesses: targets,
        witness_quorum: quorum,
        ..server::test_settings()
    };
    let clock = pointsledger::clock::SystemClock;
    let srv = server::TestServer::start(std::sync::Arc::new(clock), settings).await;
    let vkey = srv.api.verifier_key().await;
    let shop = Party::new();
    srv.register(&shop).await;
    let alice = Party::new();
    for i in 0..3 {
        srv.api
            .accept(&srv.signer.purchase(&shop, &alice, &format!("a{i}"), 1000))
            .await;
    }
    (srv, vkey, shop, alice)
}

/// Entry 1's receipt against the checkpoint of `size`, written to `dir/r.tlog-proof`.
async fn receipt_file(api: &server::Api, size: u64, dir: &Path) -> std::path::PathBuf {
    let (code, _, receipt) = api
        .get_text(&format!("/v1/receipts/1?checkpoint={size}"))
        .await;
    assert_eq!(code, 200, "{receipt}");
    let file = dir.join("r.tlog-proof");
    std::fs::write(&file, receipt).expect("write");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_gathers_cosignatures_and_verify_requires_them() {
    use pointsledger::server::witnesses::WitnessTarget;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wdir = tmp.path().join("w");
    let wkey = CosignerKey::parse(&print_key(&wdir)).expect("key");
    let listen = free_listen();
    let target: WitnessTarget = format!("{}@http://{listen}", wkey.vkey())
        .parse()
        .expect("a witness target");
    let (srv, vkey, shop, alice) = witnessed_server(vec![target], 1).await;
    let api = &srv.api;
    // The witness starts after the log: the log's first attempts fail and are retried.
    let w = Witness::start_on(&wdir, &[&vkey], &listen);
    assert_eq!(w.key, wkey);
    let (size, _) = api.tree().await;
    let note = cosigned_note(api, "/v1/checkpoint", &wkey, size).await;
    // The tlog-tiles checkpoint file and the history carry it too.
    cosigned_note(api, "/checkpoint", &wkey, size).await;
    let cp = checkpoint::open_checkpoint(&note, &vkey).expect("the log's signature");
    let (_, listed) = api
        .get(&format!("/v1/checkpoints?from={}&limit=1", cp.size))
        .await;
    let listed = listed["checkpoints"][0]["note"].as_str().expect("note");
    cosignature::check_quorum(listed, std::slice::from_ref(&wkey), 1).expect("listed cosigned");
    let gauge = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
    };
    server::eventually(30, "the witnessed size", || async {
        let m = api.metrics().await;
        (gauge(&m, "pointsledger_witnessed_size ")? >= cp.size
            && gauge(
                &m,
                &format!("pointsledger_witness_cosignatures_total{{witness=\"{NAME}\"}}"),
            )? >= 1)
            .then_some(())
    })
    .await;
    let (_, log) = api.get("/v1/log").await;
    assert_eq!(log["witness_quorum"], 1);
    assert!(
        log["witnessed_size"].as_u64().is_some_and(|s| s >= cp.size),
        "{log}"
    );
    assert_eq!(log["witnesses"][0]["key"], wkey.vkey());
    assert!(
        log["witnesses"][0]["cosigned_size"]
            .as_u64()
            .is_some_and(|s| s >= cp.size),
        "{log}"
    );

    // A receipt against the witnessed checkpoint verifies with the witness's key, and is
    // refused when a second, absent witness is required too.
    let file = receipt_file(api, cp.size, tmp.path()).await;
    let verify = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pointsledger"))
            .args(["verify", "--log-key", &vkey])
            .args(extra)
            .arg(&file)
            .output()
            .expect("verify")
    };
    let out = verify(&["--witness-key", &wkey.vkey()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(v["witnesses"][0]["name"], NAME);
    let absent = cosignature::Cosigner::new("witness.test/absent", keys::generate())
        .expect("cosigner")
        .public()
        .vkey();
    let out = verify(&["--witness-key", &wkey.vkey(), "--witness-key", &absent]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not_witnessed") && err.contains("missing: witness.test/absent"),
        "{err}"
    );
    let out = verify(&[
        "--witness-key",
        &wkey.vkey(),
        "--witness-key",
        &absent,
        "--quorum",
        "1",
    ]);
    assert!(out.status.success(), "one of two is the quorum asked for");

    // The auditor requires them too: it passes with the witness's key and names it, and fails
    // on the checkpoint when the absent witness is required as well.
    let audit = |state: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pointsledger"))
            .args(["audit", "--server", &api.base, "--json", "--state"])
            .arg(tmp.path().join(state))
            .args(["--log-key", &vkey, "--witness-key", &wkey.vkey()])
            .args(extra)
            .output()
            .expect("audit")
    };
    let out = audit("audit-1", &[]);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the report is JSON");
    assert!(out.status.success(), "{report}");
    assert_eq!(report["witnesses"], serde_json::json!([NAME]));
    let out = audit("audit-2", &["--witness-key", &absent]);
    assert!(!out.status.success());
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the report is JSON");
    let d = &report["discrepancy"];
    assert_eq!(d["what"], "witness cosignatures", "{report}");
    assert!(
        d["found"]
            .as_str()
            .is_some_and(|f| f.contains("missing: witness.test/absent")),
        "{report}"
    );

    // The witness is killed: the log goes on, counts the failures, and once the witness is
    // back (its record intact) the newest checkpoint is cosigned again.
    w.kill();
    for i in 3..6 {
        api.accept(&srv.signer.purchase(&shop, &alice, &format!("a{i}"), 1000))
            .await;
    }
    server::eventually(30, "a counted witness failure", || async {
        let m = api.metrics().await;
        gauge(&m, "pointsledger_witness_failures_total{").filter(|n| *n > 0)
    })
    .await;
    let (_, log) = api.get("/v1/log").await;
    assert!(
        log["witnesses"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("unreachable")),
        "{log}"
    );
    let w = Witness::start_on(&wdir, &[&vkey], &listen);
    let (size, _) = api.tree().await;
    cosigned_note(api, "/v1/checkpoint", &w.key, size).await;
    srv.stop().await.expect("stop");
}

/// Three witnesses, a quorum of two, one witness down throughout: the two that run cosign, the
/// log counts the quorum as met and the third as failing, and a verifier asking two of the
/// three accepts what one asking all three refuses, naming the one missing. One key given twice
/// is refused rather than counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_witnesses_make_the_quorum_while_one_is_down() {
    use pointsledger::server::witnesses::WitnessTarget;
    let tmp = tempfile::tempdir().expect("tempdir");
    let names = ["witness.test/a", "witness.test/b", "witness.test/down"];
    let dirs: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, _)| tmp.path().join(format!("w{i}")))
        .collect();
    let keys: Vec<CosignerKey> = names
        .iter()
        .zip(&dirs)
        .map(|(name, dir)| CosignerKey::parse(&witness::print_key_named(dir, name)).expect("key"))
        .collect();
    let listens: Vec<String> = names.iter().map(|_| free_listen()).collect();
    let targets: Vec<WitnessTarget> = keys
        .iter()
        .zip(&listens)
        .map(|(k, l)| format!("{}@http://{l}", k.vkey()).parse().expect("target"))
        .collect();
    let (srv, vkey, ..) = witnessed_server(targets, 2).await;
    let api = &srv.api;
    let _running: Vec<Witness> = (0..2)
        .map(|i| Witness::start_named(&dirs[i], names[i], &[&vkey], &listens[i]))
        .collect();
    let (size, _) = api.tree().await;
    let note = server::eventually(
        30,
        "a checkpoint cosigned by both running witnesses",
        || async {
            let (_, _, note) = api.get_text("/v1/checkpoint").await;
            let at = checkpoint::open_checkpoint(&note, &vkey).ok()?.size;
            (at >= size && cosignature::check_quorum(&note, &keys[..2], 2).is_ok()).then_some(note)
        },
    )
    .await;
    let (_, log) = server::eventually(
        30,
        "the quorum met and the third witness failing",
        || async {
            let (code, log) = api.get("/v1/log").await;
            (log["witnessed_size"].as_u64()? >= size
                && log["witnesses"][2]["failures"].as_u64()? > 0)
                .then_some((code, log))
        },
    )
    .await;
    assert_eq!(log["witness_quorum"], 2);
    assert!(log["witnesses"][2]["cosigned_size"].is_null(), "{log}");
    let err = cosignature::check_quorum(&note, &keys, 3).expect_err("three of three");
    assert!(
        err.to_string().contains("missing: witness.test/down"),
        "{err}"
    );

    let cp = checkpoint::open_checkpoint(&note, &vkey).expect("open");
    let file = receipt_file(api, cp.size, tmp.path()).await;
    let verify = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pointsledger"));
        cmd.args(["verify", "--log-key", &vkey]);
        for k in &keys {
            cmd.args(["--witness-key", &k.vkey()]);
        }
        cmd.args(extra).arg(&file).output().expect("verify")
    };
    let out = verify(&["--quorum", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verify(&[]);
    assert!(!out.status.success(), "all three are asked for by default");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing: witness.test/down"), "{err}");
    let out = verify(&["--witness-key", &keys[0].vkey(), "--quorum", "2"]);
    assert!(!out.status.success(), "a key given twice");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("more than once"), "{err}");
    srv.stop().await.expect("stop");
}

/// tests/vectors/cosignature/vectors.json, made from fixed seeds by a second implementation
/// (scripts/cosignature-vectors.py: Python's OpenSSL Ed25519, from the spec's text): the crate
/// derives the same witness keys, signs exactly the same lines (Ed25519 is deterministic) and
/// verifies them; published.json, lines that witnesses others run made on a public log's
/// checkpoint, verify under their published keys; and the spec's own example line reads as
/// the spec reads it.
#[test]
fn cosignatures_match_an_independent_implementation() {
    use base64::Engine as _;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/cosignature/vectors.json"
    ))
    .expect("the vectors");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("json");
    let vectors = doc["vectors"].as_array().expect("vectors");
    assert!(vectors.len() >= 3);
    for v in vectors {
        let s = |k: &str| v[k].as_str().expect("string").to_owned();
        let seed: [u8; 32] = hex::decode(s("seed"))
            .expect("hex")
            .try_into()
            .expect("32 bytes");
        let cosigner =
            cosignature::Cosigner::new(&s("name"), ed25519_dalek::SigningKey::from_bytes(&seed))
                .expect("cosigner");
        assert_eq!(cosigner.public().vkey(), s("vkey"), "the witness key");
        assert_eq!(
            CosignerKey::parse(&s("vkey")).expect("parses"),
            cosigner.public()
        );
        let time = v["time"].as_u64().expect("time");
        assert_eq!(
            String::from_utf8(cosignature::signed_message(s("body").as_bytes(), time))
                .expect("utf-8"),
            s("signed_message")
        );
        let mut note = signed_note::Note::new(s("body").as_bytes(), &[]).expect("note");
        let line = cosigner.cosign(&mut note, time).expect("cosign");
        assert_eq!(line, format!("{}\n", s("line")), "the same line");
        let note = format!("{}\n{}\n", s("body"), s("line"));
        let valid = cosignature::check_quorum(&note, &[cosigner.public()], 1).expect("verifies");
        assert_eq!(valid[0].time, time);
    }
    // Lines that witnesses others run made on a public log's checkpoint verify under their
    // published keys, with the time they carry, and not over another body.
    let published: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/cosignature/published.json"
        ))
        .expect("the published lines"),
    )
    .expect("json");
    for v in published["published"].as_array().expect("published") {
        let s = |k: &str| v[k].as_str().expect("string").to_owned();
        let key = CosignerKey::parse(&s("vkey")).expect("a published witness key");
        let note = format!("{}\n{}\n", s("body"), s("line"));
        let valid = cosignature::check_quorum(&note, std::slice::from_ref(&key), 1)
            .unwrap_or_else(|e| panic!("{}: {e}", s("name")));
        assert_eq!(valid[0].time, v["time"].as_u64().expect("time"));
        assert_eq!(valid[0].name, s("name"));
        let other = note.replacen("\n", "x\n", 1);
        assert!(cosignature::check_quorum(&other, &[key], 1).is_err());
    }
    let example = &doc["spec_example"];
    let b64 = example["line"]
        .as_str()
        .expect("line")
        .rsplit(' ')
        .next()
        .expect("base64");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert_eq!(raw.len(), 4 + 8 + 64, "key ID, timestamp, signature");
    assert_eq!(
        hex::encode(&raw[..4]),
        example["key_id"].as_str().expect("id")
    );
    assert_eq!(
        u64::from_be_bytes(raw[4..12].try_into().expect("8 bytes")),
        example["time"].as_u64().expect("time"),
        "the timestamp of the spec's signed message"
    );
}
