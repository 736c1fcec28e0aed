//! The command line as a client of a running server (`--server URL`): the same reads and
//! writes as embedded mode, `submit`, `quote`, `receipt`, the two-party redemption at a till
//! (`redeem-request` with its QR code, `redeem-accept`) and a short `bench http` run, all
//! against the real `pointsledger serve` process.

#[path = "common/cli.rs"]
mod run;

use run::{fails, ok, pl, write};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn json_of(text: &str) -> Value {
    serde_json::from_str(text.trim()).expect("json")
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pointsledger"))
            .args([
                "serve",
                "--data",
                data,
                "--listen",
                "127.0.0.1:0",
                "--checkpoint-interval",
                "100ms",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server { child, url }
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "serve exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn command_line_against_a_running_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let data = t.join("ledger");
    let d = data.to_str().expect("path");
    let init = json_of(&ok(&[
        "init",
        "--data",
        d,
        "--origin",
        "srv.pointsledger.local",
    ]));
    let (operator, op_key) = (
        init["operator_key"].as_str().expect("op"),
        init["operator_key_file"].as_str().expect("f"),
    );
    let verifier_key = init["verifier_key"].as_str().expect("vk").to_owned();
    let key = |name: &str| t.join(name).display().to_string();
    let shop = ok(&["keygen", "--out", &key("shop.key")]).trim().to_owned();
    let alice = ok(&["keygen", "--out", &key("alice.key")])
        .trim()
        .to_owned();

    let server = Server::start(d);
    let url = server.url.as_str();
    assert_eq!(ok(&["log-key", "--server", url]).trim(), verifier_key);

    let rules = json!({"earn_bps": 1000, "point_value_milli": 1000, "max_redeem_bps": 5000,
        "validity_ms": 31_536_000_000u64, "pending_ms": 0, "referee_discount_bps": 0,
        "referee_discount_max": 0, "referrer_reward_points": 0, "referrer_reward_cap": 0,
        "max_points_per_order": 100000});
    let reg = write(
        t,
        "reg.json",
        &json!({"operator": operator, "merchant": shop, "name": "Shop", "rules": rules, "nonce": "1"}),
    );
    ok(&[
        "submit",
        "--server",
        url,
        "--key",
        op_key,
        "--kind",
        "merchant.register",
        &reg,
    ]);
    let buy = write(
        t,
        "buy.json",
        &json!({"merchant": shop, "consumer": alice, "order_id": "S-1", "amount": 5000, "nonce": "1"}),
    );
    let receipt = json_of(&ok(&[
        "submit",
        "--server",
        url,
        "--key",
        &key("shop.key"),
        "--kind",
        "purchase",
        &buy,
    ]));
    assert_eq!(receipt["effects"]["changes"][0]["delta"], 500);
    // The same request again: the original receipt.
    let env = write(
        t,
        "buy.env",
        &json_of(&ok(&[
            "sign",
            "--key",
            &key("shop.key"),
            "--kind",
            "purchase",
            &buy,
        ])),
    );
    assert_eq!(json_of(&ok(&["append", "--server", url, &env])), receipt);

    let bal = json_of(&ok(&["balance", "--server", url, &alice]));
    assert_eq!(bal["balance"]["available"], 500);
    let q = json_of(&ok(&[
        "quote",
        "--server",
        url,
        "--merchant",
        &shop,
        "--consumer",
        &alice,
        "--amount",
        "600",
    ]));
    assert_eq!(
        (
            q["redeemable_points"].as_u64(),
            q["spendable_points"].as_u64()
        ),
        (Some(300), Some(500))
    );

    // At the till: Alice's phone signs and shows a QR code; the shop scans, countersigns, submits.
    let req = key("redeem-request.json");
    let qr = ok(&[
        "redeem-request",
        "--key",
        &key("alice.key"),
        "--merchant",
        &shop,
        "--order-id",
        "S-2",
        "--order-amount",
        "600",
        "--points",
        "300",
        "--out",
        &req,
    ]);
    assert!(
        qr.lines().count() > 20 && qr.contains('█'),
        "no QR code printed:\n{qr}"
    );
    let bob = ok(&["keygen", "--out", &key("bob.key")]).trim().to_owned();
    let err = fails(&[
        "redeem-accept",
        "--server",
        url,
        "--key",
        &key("bob.key"),
        &req,
    ]);
    assert!(err.contains("not this key"), "{err} ({bob})");
    let r = json_of(&ok(&[
        "redeem-accept",
        "--server",
        url,
        "--key",
        &key("shop.key"),
        &req,
    ]));
    assert_eq!(r["effects"]["changes"][0]["delta"], -300);
    let history = ok(&["history", "--server", url, &alice]);
    assert_eq!(history.lines().count(), 2);

    // Receipts verify offline against the log key (once a checkpoint covers the entry).
    let deadline = Instant::now() + Duration::from_secs(10);
    let saved = loop {
        let out = pl(&[
            "receipt",
            "--server",
            url,
            "--index",
            "2",
            "--out",
            &key("r2.tlog-proof"),
        ]);
        if out.status.success() {
            break String::from_utf8(out.stdout).expect("utf8");
        }
        assert!(Instant::now() < deadline, "no checkpoint covers entry 2");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(saved.trim(), key("r2.tlog-proof"));
    let v = json_of(&ok(&[
        "verify",
        "--log-key",
        &verifier_key,
        &key("r2.tlog-proof"),
    ]));
    assert_eq!(
        (v["valid"].as_bool(), v["kind"].as_str()),
        (Some(true), Some("redeem"))
    );
    assert!(ok(&["checkpoint", "--server", url]).starts_with("srv.pointsledger.local\n"));
    assert_eq!(
        ok(&["leaves", "--server", url, "--start", "0", "--end", "3"])
            .lines()
            .count(),
        3
    );
    assert_eq!(
        ok(&[
            "prove",
            "consistency",
            "--server",
            url,
            "--from",
            "1",
            "--to",
            "3"
        ])
        .lines()
        .count(),
        2
    );

    // Refusals come back as one-line errors with the API's code.
    let reuse = write(
        t,
        "reuse.json",
        &json!({"merchant": shop, "consumer": alice, "order_id": "S-9", "amount": 5, "nonce": "1"}),
    );
    let err = fails(&[
        "submit",
        "--server",
        url,
        "--key",
        &key("shop.key"),
        "--kind",
        "purchase",
        &reuse,
    ]);
    assert!(err.contains("409 nonce_reused"), "{err}");
    fails(&["balance", "--server", "ftp://nowhere", &alice]);
    // --server and --data together: a usage error from the argument parser.
    assert!(!pl(&["balance", "--server", url, "--data", d, &alice])
        .status
        .success());

    // The load generator runs against the same server.
    let bench = ok(&[
        "bench",
        "http",
        "--server",
        url,
        "--operator-key",
        op_key,
        "--entries",
        "200",
        "--clients",
        "4",
        "--batch",
        "16",
    ]);
    for name in ["http_single ", "http_single_p99 ", "http_batch16 "] {
        assert!(bench.contains(name), "{name} missing:\n{bench}");
    }
    server.stop();
    // After SIGTERM everything is there, in embedded mode too.
    assert_eq!(
        json_of(&ok(&["balance", "--data", d, &alice]))["balance"]["total"],
        200
    );
}
