//! HTTP test fixtures: the real server in-process on 127.0.0.1 port 0 around a fresh ledger,
//! a reqwest client, request builders that sign as the operator, merchants and consumers, and
//! the real binary as a child process.
#![allow(dead_code)]

use crate::common::{rules, sign, Party, T0};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ed25519_dalek::SigningKey;
use pointsledger::checkpoint;
use pointsledger::clock::{Clock, ManualClock};
use pointsledger::dsse::Envelope;
use pointsledger::keys;
use pointsledger::ledger::{self, DataDir, Ledger};
use pointsledger::payload::ProgramRules;
use pointsledger::server::{self, ServerError, Settings};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Settings for tests: checkpoints every 20 ms so that waits for one stay short.
pub fn test_settings() -> Settings {
    Settings {
        checkpoint_interval: Duration::from_millis(20),
        ..Settings::default()
    }
}

/// Polls `f` every 10 ms until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain HTTP client against one base URL.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn answer(resp: reqwest::Response) -> (u16, Value) {
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "status {status}: body is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    }

    /// GET, JSON answer.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        Self::answer(self.http.get(self.url(path)).send().await.expect("GET")).await
    }

    /// GET, text answer with its content type.
    pub async fn get_text(&self, path: &str) -> (u16, String, String) {
        let resp = self.http.get(self.url(path)).send().await.expect("GET");
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (status, ctype, resp.text().await.expect("text"))
    }

    /// GET, raw bytes.
    pub async fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let resp = self.http.get(self.url(path)).send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("bytes").to_vec())
    }

    /// POST raw bytes, JSON answer.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        Self::answer(resp).await
    }

    /// POST a JSON value.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, serde_json::to_vec(body).expect("json"))
            .await
    }

    /// POST one envelope to /v1/entries.
    pub async fn submit(&self, env: &Envelope) -> (u16, Value) {
        self.post_raw("/v1/entries", env.to_json_bytes()).await
    }

    /// POST one envelope that must be accepted; returns the receipt.
    pub async fn accept(&self, env: &Envelope) -> Value {
        let (status, body) = self.submit(env).await;
        assert_eq!(status, 200, "refused: {body}");
        body
    }

    /// An account's balance object.
    pub async fn balance(&self, p: &Party) -> Value {
        let (status, body) = self.get(&format!("/v1/accounts/{}", p.id)).await;
        assert_eq!(status, 200, "{body}");
        body["balance"].clone()
    }

    /// The log's verifier key.
    pub async fn verifier_key(&self) -> String {
        let (_, log) = self.get("/v1/log").await;
        log["verifier_key"]
            .as_str()
            .expect("verifier key")
            .to_owned()
    }

    /// (tree size, root): waits until the latest checkpoint covers the whole log, checks its
    /// signature with the log's verifier key and returns its size and root.
    pub async fn tree(&self) -> (u64, [u8; 32]) {
        let vkey = self.verifier_key().await;
        let size = eventually(5, "a checkpoint covering the log", || async {
            let (_, log) = self.get("/v1/log").await;
            let size = log["size"].as_u64()?;
            (log["checkpoint_size"].as_u64() == Some(size)).then_some(size)
        })
        .await;
        let (status, _, note) = self.get_text("/v1/checkpoint").await;
        assert_eq!(status, 200);
        let cp = checkpoint::open_checkpoint(&note, &vkey).expect("checkpoint verifies");
        assert_eq!(cp.size, size);
        (cp.size, cp.root)
    }

    /// Metrics text.
    pub async fn metrics(&self) -> String {
        let (status, _, text) = self.get_text("/metrics").await;
        assert_eq!(status, 200);
        text
    }
}

/// Signs requests as the operator, merchants and consumers, with fresh nonces.
pub struct Signer {
    pub operator: SigningKey,
    nonce: AtomicU64,
}

impl Signer {
    pub fn new(operator: SigningKey) -> Signer {
        Signer {
            operator,
            nonce: AtomicU64::new(0),
        }
    }

    pub fn nonce(&self) -> String {
        format!("h{}", self.nonce.fetch_add(1, Ordering::SeqCst))
    }

    pub fn register(&self, merchant: &Party, rules: &ProgramRules) -> Envelope {
        let op = keys::public_id(&self.operator.verifying_key());
        let p = json!({"operator": op, "merchant": merchant.id, "name": "Shop", "rules": rules,
                       "nonce": self.nonce()});
        sign("merchant.register", &p, &[&self.operator])
    }

    pub fn purchase(&self, m: &Party, c: &Party, order: &str, amount: u64) -> Envelope {
        let p = json!({"merchant": m.id, "consumer": c.id, "order_id": order, "amount": amount,
                       "nonce": self.nonce()});
        sign("purchase", &p, &[&m.key])
    }

    pub fn redeem(
        &self,
        c: &Party,
        m: &Party,
        order: &str,
        order_amount: u64,
        points: u64,
    ) -> Envelope {
        let p = json!({"consumer": c.id, "merchant": m.id, "order_id": order,
                       "order_amount": order_amount, "points": points, "nonce": self.nonce()});
        sign("redeem", &p, &[&c.key, &m.key])
    }

    pub fn refund(&self, m: &Party, order: &str, amount: u64) -> Envelope {
        let p = json!({"merchant": m.id, "order_id": order, "amount": amount,
                       "nonce": self.nonce()});
        sign("refund", &p, &[&m.key])
    }

    pub fn refer(&self, referee: &Party, referrer: &Party) -> Envelope {
        let p = json!({"consumer": referee.id, "referrer": referrer.id, "nonce": self.nonce()});
        sign("referral.accept", &p, &[&referee.key])
    }
}

/// Opens the ledger `init` just created. sled releases its file lock after the store is
/// dropped, from a background thread, so a busy machine may need a few retries.
fn open_when_unlocked(dir: &Path, clock: Arc<dyn Clock>) -> Ledger {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Ledger::open(dir, clock.clone()) {
            Ok(ledger) => return ledger,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                assert!(Instant::now() < deadline, "the store stays locked: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("open: {e}"),
        }
    }
}

/// The server in-process around a fresh ledger in a temporary directory.
pub struct TestServer {
    pub api: Api,
    pub signer: Signer,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<Ledger, ServerError>>>,
}

impl TestServer {
    /// A server on a new ledger whose time is `clock`.
    pub async fn start(clock: Arc<dyn Clock>, settings: Settings) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        ledger::init(dir.path(), "http.pointsledger.local").expect("init");
        let ledger = open_when_unlocked(dir.path(), clock.clone());
        let operator =
            keys::read_key_file(&DataDir(dir.path().to_owned()).operator_key()).expect("op key");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(server::serve(ledger, clock, settings, listener, shutdown));
        TestServer {
            api: Api::new(&format!("http://{addr}")),
            signer: Signer::new(operator),
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// A server with a manual clock at [`T0`] and [`test_settings`].
    pub async fn manual() -> (TestServer, ManualClock) {
        let clock = ManualClock::new(T0);
        let server = TestServer::start(Arc::new(clock.clone()), test_settings()).await;
        (server, clock)
    }

    /// Registers `shop` with the common rules.
    pub async fn register(&self, shop: &Party) -> Value {
        self.api.accept(&self.signer.register(shop, &rules())).await
    }

    /// Shuts the server down (as on SIGTERM) and returns the ledger it hands back.
    pub async fn stop(mut self) -> Result<Ledger, ServerError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("the server stops in time")
            .expect("the server task")
    }
}

/// Flips one bit of the first signature of an envelope, keeping it canonical base64.
pub fn tamper_signature(env: &Envelope) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&env.to_json_bytes()).expect("json");
    let sig = v["signatures"][0]["sig"].as_str().expect("sig");
    let mut raw = B64.decode(sig).expect("b64");
    raw[0] ^= 1;
    v["signatures"][0]["sig"] = Value::String(B64.encode(raw));
    serde_json::to_vec(&v).expect("json")
}

/// Runs `pointsledger audit --server BASE --json --state STATE EXTRA...`; panics unless it
/// passes, with its output and `context` (what was being checked, a server log...).
pub fn assert_audit_passes(base: &str, state: &Path, extra: &[&str], context: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_pointsledger"))
        .args(["audit", "--server", base, "--json", "--state"])
        .arg(state)
        .args(extra)
        .output()
        .expect("run pointsledger audit");
    assert!(
        out.status.success(),
        "{context}: the audit ({}) failed: {} {}",
        state.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The real binary, `pointsledger serve`, as a child process.
pub struct Binary {
    pub child: Child,
    pub api: Api,
}

impl Binary {
    /// Starts `pointsledger serve ARGS` with `envs` (every other POINTSLEDGER_* removed) and
    /// waits for its `listening on` line.
    pub fn start(args: &[&str], envs: &[(&str, &str)], stderr_to: &Path) -> Binary {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pointsledger"));
        cmd.arg("serve").args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("POINTSLEDGER_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr_to).expect("stderr file"));
        let mut child = cmd.spawn().expect("spawn pointsledger serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!(
                    "no `listening on` line; stderr: {}",
                    std::fs::read_to_string(stderr_to).unwrap_or_default()
                )
            });
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?}; stderr: {}",
                    std::fs::read_to_string(stderr_to).unwrap_or_default()
                )
            })
            .to_owned();
        Binary {
            child,
            api: Api::new(&url),
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit (at most `secs` seconds) and returns whether it succeeded.
    pub fn wait(&mut self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.success();
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("pointsledger serve did not exit within {secs} s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits; the exit must be clean.
    pub fn stop(mut self) {
        self.terminate();
        assert!(self.wait(20), "pointsledger serve did not exit with 0");
    }
}

impl Drop for Binary {
    /// A test that fails midway must not leave a server running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Checks `v` against an OpenAPI schema: `$ref`, `oneOf`, types (with `null`), enums, object
/// properties (no unknown ones, every required one) and array items.
pub fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: dangling {r}"));
        }
        return conforms(doc, target, v, at);
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        // A flattened struct: one object schema with every part's properties and required
        // members (each part alone would call the others' properties unknown).
        let mut properties = serde_json::Map::new();
        let mut required = Vec::new();
        for part in parts {
            let part = match part.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")]
                }
                None => part,
            };
            if let Some(p) = part["properties"].as_object() {
                properties.extend(p.clone());
            }
            required.extend(part["required"].as_array().into_iter().flatten().cloned());
        }
        let merged =
            serde_json::json!({"type": "object", "properties": properties, "required": required});
        return conforms(doc, &merged, v, at);
    }
    if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
        let errors: Vec<String> = alts
            .iter()
            .filter_map(|s| conforms(doc, s, v, at).err())
            .collect();
        return if errors.len() < alts.len() {
            Ok(())
        } else {
            Err(format!("{at}: no alternative matches: {errors:?}"))
        };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let actual = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types.is_empty()
        && !types
            .iter()
            .any(|t| *t == actual || (*t == "number" && actual == "integer"))
    {
        return Err(format!("{at}: {actual} where the schema says {types:?}"));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            return Err(format!("{at}: {v} not in {allowed:?}"));
        }
    }
    match v {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, val) in map {
                    let s = props
                        .get(k)
                        .ok_or_else(|| format!("{at}: property {k} is not in the schema"))?;
                    conforms(doc, s, val, &format!("{at}.{k}"))?;
                }
            }
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap_or_default();
                if !map.contains_key(r) {
                    return Err(format!("{at}: required property {r} is missing"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, x) in items.iter().enumerate() {
                    conforms(doc, item, x, &format!("{at}[{i}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}
