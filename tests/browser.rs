//! The web explorer: its files as the server serves them, and the page itself in headless
//! Chromium on a seeded ledger (tests/browser/explorer.mjs drives it through playwright-core).
//!
//! The browser test needs /usr/bin/chromium, node and playwright-core in .tools/browser/;
//! `scripts/browser-deps.sh` installs them and `scripts/test.sh` runs it first. When they are
//! missing the test fails and says so: a browser test that skips itself would pass on exactly
//! the machines where nobody looked.

mod common;
#[path = "common/server.rs"]
mod server;
#[path = "common/witness.rs"]
mod witness;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use common::{rules, sign, Party};
use pointsledger::checkpoint;
use pointsledger::clock::DAY_MS;
use pointsledger::keys;
use pointsledger::payload::ProgramRules;
use serde_json::{json, Value};
use server::TestServer;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser run, launch included; the script has its own, shorter, limit.
const NODE_TIMEOUT: Duration = Duration::from_secs(180);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Checks that everything the browser test runs is installed, and says how to fix it if not.
fn browser_deps() -> PathBuf {
    let fix = "run scripts/browser-deps.sh (it installs Debian's chromium and the pinned \
               playwright-core into .tools/browser/)";
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: {fix}; the browser test does not skip"
    );
    let playwright = root().join(".tools/browser/node_modules/playwright-core");
    assert!(
        playwright.join("package.json").is_file(),
        "playwright-core is missing from {}: {fix}",
        playwright.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is needed to drive the browser: {node:?}"
    );
    playwright
}

fn register(s: &TestServer, merchant: &Party, name: &str, rules: &ProgramRules) -> Vec<u8> {
    let op = keys::public_id(&s.signer.operator.verifying_key());
    let p = json!({"operator": op, "merchant": merchant.id, "name": name, "rules": rules,
                   "nonce": s.signer.nonce()});
    sign("merchant.register", &p, &[&s.signer.operator]).to_json_bytes()
}

/// The receipt with one byte of its leaf changed: the first digit of the first `delta`, so the
/// leaf still reads as a plausible entry (a forged balance), and the proof must catch it.
fn tamper_leaf(receipt: &str) -> String {
    let mut lines: Vec<String> = receipt.split('\n').map(str::to_owned).collect();
    let b64 = lines[1].strip_prefix("extra ").expect("an extra line");
    let mut leaf = B64.decode(b64).expect("base64 leaf");
    let at = leaf
        .windows(8)
        .position(|w| w == b"\"delta\":")
        .expect("a delta in the leaf")
        + 8;
    leaf[at] = if leaf[at] == b'9' { b'8' } else { b'9' };
    lines[1] = format!("extra {}", B64.encode(&leaf));
    lines.join("\n")
}

/// The receipt with one bit of its first proof hash flipped.
fn tamper_proof_hash(receipt: &str) -> String {
    let mut lines: Vec<String> = receipt.split('\n').map(str::to_owned).collect();
    assert!(lines[2].starts_with("index "), "{receipt}");
    let mut hash = B64.decode(&lines[3]).expect("a proof hash");
    hash[7] ^= 0x10;
    lines[3] = B64.encode(hash);
    lines.join("\n")
}

/// The worked example's receipt and log key, from docs/PROTOCOL.md §11.6 and §11.7: a receipt
/// the page never saw the server make, with values tests/protocol_example.rs recomputes.
fn protocol_example() -> (String, String) {
    let doc = include_str!("../docs/PROTOCOL.md");
    let block_after = |marker: &str| -> String {
        let rest = &doc[doc
            .find(marker)
            .unwrap_or_else(|| panic!("{marker:?} in PROTOCOL.md"))..];
        let start = rest.find("```text\n").expect("a text block") + "```text\n".len();
        let len = rest[start..].find("```").expect("the block's end");
        rest[start..start + len].to_owned()
    };
    let receipt = block_after("The receipt of the purchase (leaf 1)");
    let key = block_after("Verifier key of the log").trim().to_owned();
    (receipt, key)
}

/// The tlog-proof vectors of tests/vectors/receipts/receipts.json (made and checked against the
/// library's verifier by tests/receipt_vectors.rs), for verify.js to agree with.
fn receipt_vectors() -> Value {
    let text = std::fs::read_to_string(root().join("tests/vectors/receipts/receipts.json"))
        .expect("the receipt vectors");
    let file: Value = serde_json::from_str(&text).expect("json");
    let receipts = file["receipts"].clone();
    assert!(
        receipts.as_array().is_some_and(|r| r.len() >= 10),
        "{receipts}"
    );
    receipts
}

/// The cosignature/v1 lines made elsewhere (tests/vectors/cosignature): those from fixed seeds
/// and those published by witnesses others run.
fn cosignature_vectors() -> Value {
    let read = |file: &str, list: &str| {
        let path = root().join("tests/vectors/cosignature").join(file);
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
        doc[list].as_array().expect("a list").clone()
    };
    let mut all = read("vectors.json", "vectors");
    all.extend(read("published.json", "published"));
    Value::Array(all)
}

/// Runs the node script with `config`, killing it past [`NODE_TIMEOUT`]; returns (success,
/// stdout and stderr).
fn run_script(config: &Path, playwright: &Path) -> (bool, String) {
    let mut child = Command::new("node")
        .arg(root().join("tests/browser/explorer.mjs"))
        .arg(config)
        .env("PLAYWRIGHT_CORE", playwright)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + NODE_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("{text}\nkilled after {NODE_TIMEOUT:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_in_chromium_shows_the_ledger_and_verifies_receipts() {
    let playwright = browser_deps();
    // A witness beside the log, as scripts/up.sh runs one: the overview shows its cosignature.
    let wdir = tempfile::tempdir().expect("tempdir");
    let wkey = witness::print_key(wdir.path());
    let listen = witness::free_listen();
    let clock = pointsledger::clock::ManualClock::new(common::T0);
    let settings = pointsledger::server::Settings {
        witnesses: vec![format!("{wkey}@http://{listen}").parse().expect("witness")],
        witness_quorum: 1,
        ..server::test_settings()
    };
    let s = TestServer::start(std::sync::Arc::new(clock.clone()), settings).await;
    let (api, sg) = (&s.api, &s.signer);
    let (books, cafe) = (Party::new(), Party::new());
    let (alice, bob, carol) = (Party::new(), Party::new(), Party::new());
    let cafe_rules = ProgramRules {
        earn_bps: 500,
        pending_ms: 7 * DAY_MS,
        ..rules()
    };
    for body in [
        register(&s, &books, "Northwind Books", &rules()),
        register(&s, &cafe, "Corner Café", &cafe_rules),
    ] {
        let (status, answer) = api.post_raw("/v1/entries", body).await;
        assert_eq!(status, 200, "{answer}");
    }
    api.accept(&sg.purchase(&books, &alice, "B-1001", 12_000))
        .await;
    let alice_purchase = 2;
    api.accept(&sg.purchase(&cafe, &alice, "C-2001", 4_500))
        .await;
    api.accept(&sg.refer(&bob, &alice)).await;
    api.accept(&sg.purchase(&books, &bob, "B-1002", 20_000))
        .await;
    clock.advance(15 * DAY_MS);
    api.accept(&sg.redeem(&alice, &books, "B-1003", 3_000, 800))
        .await;
    api.accept(&sg.purchase(&books, &alice, "B-1003", 3_000))
        .await;
    api.accept(&sg.refund(&books, "B-1002", 5_000)).await;
    api.accept(&sg.purchase(&cafe, &carol, "C-2002", 1_800))
        .await;
    let (size, _) = api.tree().await;
    let balance = api.balance(&alice).await["total"].as_i64().expect("total");
    let vkey = api.verifier_key().await;
    let w = witness::Witness::start_on(wdir.path(), &[&vkey], &listen);
    witness::cosigned_note(api, "/v1/checkpoint", &w.key, size).await;
    let (status, _, good) = api
        .get_text(&format!("/v1/receipts/{alice_purchase}"))
        .await;
    assert_eq!(status, 200, "{good}");
    let origin = vkey.split('+').next().expect("origin");
    let other_key = checkpoint::verifier_key(origin, &keys::generate().verifying_key());

    let (example_receipt, example_key) = protocol_example();

    let screenshot = std::env::var_os("EXPLORER_SCREENSHOT").map(|p| root().join(p));
    let config = json!({
        "base_url": api.base,
        "chromium": CHROMIUM,
        "playwright_core": playwright,
        "checkpoint_size": size,
        "witness": witness::NAME,
        "witness_key": w.key.vkey(),
        "absent_witness_key": pointsledger::witness::cosignature::Cosigner::new(
            "witness.test/absent",
            keys::generate(),
        )
        .expect("cosigner")
        .public()
        .vkey(),
        "consumer": alice.id,
        "balance_total": balance,
        "merchant": books.id,
        "merchant_name": "Northwind Books",
        "entry": alice_purchase,
        "verifier_key": vkey,
        "other_key": other_key,
        "good_receipt": good,
        "tampered": [
            {"name": "receipt with one byte of the leaf changed", "text": tamper_leaf(&good)},
            {"name": "receipt with a proof hash changed", "text": tamper_proof_hash(&good)},
        ],
        "known_answers": [{
            "name": "the worked example's receipt (docs/PROTOCOL.md) under its key",
            "receipt": example_receipt,
            "key": example_key,
        }],
        "receipt_vectors": receipt_vectors(),
        "cosignature_vectors": cosignature_vectors(),
        "screenshot": screenshot,
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, serde_json::to_vec(&config).expect("json")).expect("write");

    let started = Instant::now();
    let (ok, output) = tokio::task::spawn_blocking(move || run_script(&config_path, &playwright))
        .await
        .expect("the script's thread");
    println!(
        "{output}\nbrowser run: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(ok, "the browser checks failed:\n{output}");
    for line in [
        "ok - overview shows the checkpoint size",
        "ok - overview shows the checkpoint's witness",
        "ok - the checkpoint history shows each checkpoint's witnesses, checked",
        "ok - account page shows the consumer's balance and history",
        "ok - good receipt is VALID",
        "ok - good receipt with its witness is VALID, and INVALID with an absent one required",
        "ok - receipt with one byte of the leaf changed is INVALID",
        "ok - receipt with a proof hash changed is INVALID",
        "ok - good receipt under another log's key is INVALID",
        "ok - verify.js gives every receipt vector its verdict and code",
        "ok - verify.js verifies the cosignature lines of other implementations and of running witnesses",
        "ok - the worked example's receipt (docs/PROTOCOL.md) under its key is VALID",
        "ok - no console errors",
    ] {
        assert!(output.contains(line), "missing {line:?} in:\n{output}");
    }
    assert!(!output.contains("not ok"), "{output}");
    s.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_files_carry_types_csp_and_etags() {
    let (s, _) = TestServer::manual().await;
    let http = &s.api.http;
    let get = |path: &str| http.get(s.api.url(path));

    let resp = get("/").send().await.expect("GET /");
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    let header = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let csp = header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("cache-control"), "no-cache");
    let etag = header("etag");
    let page = resp.text().await.expect("page");
    assert!(page.contains("/explorer/app.js"), "{page}");

    // A current copy is revalidated without a body.
    let resp = get("/")
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("GET / again");
    assert_eq!(resp.status(), 304);
    assert_eq!(resp.headers()["etag"].to_str().ok(), Some(etag.as_str()));
    assert!(resp.bytes().await.expect("body").is_empty());

    for (name, ctype) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("dom.js", "text/javascript; charset=utf-8"),
        ("verify.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let resp = get(&format!("/explorer/{name}")).send().await.expect("GET");
        assert_eq!(resp.status(), 200, "{name}");
        let h = resp.headers();
        assert_eq!(h["content-type"].to_str().ok(), Some(ctype), "{name}");
        assert!(h.contains_key("content-security-policy"), "{name}");
        assert_ne!(h["etag"].to_str().ok(), Some(etag.as_str()), "{name}");
        assert!(!resp.bytes().await.expect("body").is_empty(), "{name}");
    }

    // Anything else is the API's JSON 404, and other methods its JSON 405.
    for path in [
        "/explorer/",
        "/explorer/nope.js",
        "/explorer/..%2FCargo.toml",
        "/explorer/app.js/x",
        "/index.html",
        "/no/such/route",
    ] {
        let (status, body) = s.api.get(path).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("not_found")),
            "{path}: {body}"
        );
    }
    let (status, body) = s.api.post("/", &Value::Null).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"], "method_not_allowed");
    s.stop().await.expect("clean stop");
}
