//! The command line as a newcomer uses it (the README's "Try it" walk-through), run against the
//! real binary: every step's output, and bad input answered with a one-line error, a non-zero
//! exit and nothing written.

#[path = "common/cli.rs"]
mod run;

use run::{fails, fails_with, ok, write};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn save(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

#[test]
fn walk_through_the_command_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let data: PathBuf = t.join("ledger");
    let d = data.to_str().expect("path");

    let init: Value = serde_json::from_str(&ok(&[
        "init",
        "--data",
        d,
        "--origin",
        "try.pointsledger.local",
    ]))
    .expect("json");
    let operator = init["operator_key"].as_str().expect("operator").to_owned();
    let op_key = init["operator_key_file"].as_str().expect("file").to_owned();
    fails(&["init", "--data", d, "--origin", "again"]);

    let shop_key = t.join("shop.key");
    let alice_key = t.join("alice.key");
    let shop = ok(&["keygen", "--out", shop_key.to_str().expect("p")])
        .trim()
        .to_owned();
    let alice = ok(&["keygen", "--out", alice_key.to_str().expect("p")])
        .trim()
        .to_owned();
    assert_eq!(shop.len(), 64);
    fails(&["keygen", "--out", shop_key.to_str().expect("p")]); // never overwrites a key

    let rules = json!({"earn_bps": 1000, "point_value_milli": 1000, "max_redeem_bps": 5000,
        "validity_ms": 31_536_000_000u64, "pending_ms": 0, "referee_discount_bps": 1000,
        "referee_discount_max": 500, "referrer_reward_points": 300, "referrer_reward_cap": 5,
        "max_points_per_order": 100000});
    let reg = write(
        t,
        "register.json",
        &json!({"operator": operator, "merchant": shop, "name": "Shop", "rules": rules, "nonce": "1"}),
    );
    let reg_env = save(
        t,
        "register.env",
        &ok(&[
            "sign",
            "--key",
            &op_key,
            "--kind",
            "merchant.register",
            &reg,
        ]),
    );
    let buy = write(
        t,
        "buy.json",
        &json!({"merchant": shop, "consumer": alice, "order_id": "A-1", "amount": 2500, "nonce": "1"}),
    );
    let buy_env = save(
        t,
        "buy.env",
        &ok(&[
            "sign",
            "--key",
            shop_key.to_str().expect("p"),
            "--kind",
            "purchase",
            &buy,
        ]),
    );
    // Signing with a key that is not the payload's signer is refused before anything is sent.
    fails(&[
        "sign",
        "--key",
        alice_key.to_str().expect("p"),
        "--kind",
        "purchase",
        &buy,
    ]);

    let receipts = ok(&["append", "--data", d, &reg_env, &buy_env]);
    let lines: Vec<Value> = receipts
        .lines()
        .map(|l| serde_json::from_str(l).expect("receipt"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["effects"]["changes"][0]["delta"], 250);

    let bal: Value = serde_json::from_str(&ok(&["balance", "--data", d, &alice])).expect("json");
    assert_eq!(bal["balance"]["available"], 250);

    // Two-party redemption: Alice signs, the shop countersigns.
    let red = write(
        t,
        "redeem.json",
        &json!({"consumer": alice, "merchant": shop, "order_id": "A-2", "order_amount": 1000, "points": 200, "nonce": "2"}),
    );
    let half = save(
        t,
        "redeem.half",
        &ok(&[
            "sign",
            "--key",
            alice_key.to_str().expect("p"),
            "--kind",
            "redeem",
            &red,
        ]),
    );
    // Half-signed: refused with the signer error, and nothing written.
    fails_with(&["append", "--data", d, &half], "wrong_signers");
    let full = save(
        t,
        "redeem.env",
        &ok(&[
            "sign",
            "--key",
            shop_key.to_str().expect("p"),
            "--cosign",
            &half,
        ]),
    );
    ok(&["append", "--data", d, &full]);
    let bal: Value = serde_json::from_str(&ok(&["balance", "--data", d, &alice])).expect("json");
    assert_eq!(bal["balance"]["available"], 50);

    let history = ok(&["history", "--data", d, &alice]);
    let kinds: Vec<String> = history
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("row")["kind"]
                .as_str()
                .expect("kind")
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["purchase", "redeem"]);

    // Checkpoint, proof, offline verification.
    let cp = ok(&["checkpoint", "--data", d]);
    assert!(cp.starts_with("try.pointsledger.local\n3\n"), "{cp}");
    let key = ok(&["log-key", "--data", d]).trim().to_owned();
    let proof = save(
        t,
        "buy.tlog-proof",
        &ok(&["prove", "inclusion", "--data", d, "--index", "1"]),
    );
    let v: Value = serde_json::from_str(&ok(&["verify", "--log-key", &key, &proof])).expect("json");
    assert_eq!(
        (v["valid"].as_bool(), v["kind"].as_str()),
        (Some(true), Some("purchase"))
    );
    // A tampered proof fails verification.
    let text = std::fs::read_to_string(&proof).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let hash_line = lines
        .iter()
        .position(|l| l.len() == 44 && !l.contains(' '))
        .expect("a proof hash");
    // Another first character (a hash that already starts with `A` stays an `A` otherwise).
    let first = if lines[hash_line].starts_with('A') {
        'B'
    } else {
        'A'
    };
    lines[hash_line] = format!("{first}{}", &lines[hash_line][1..]);
    let bad = save(t, "bad.tlog-proof", &(lines.join("\n") + "\n"));
    fails_with(&["verify", "--log-key", &key, &bad], "bad_inclusion_proof");
    let other_key = "try.pointsledger.local+00000000+AQyhAneWVOvbwKb9H1N0zavxlYkdfHV72DRgaX2ujy2m";
    fails_with(
        &["verify", "--log-key", other_key, &proof],
        "bad_verifier_key",
    );

    assert_eq!(
        ok(&["leaves", "--data", d, "--start", "0", "--end", "3"])
            .lines()
            .count(),
        3
    );
    fails(&["leaves", "--data", d, "--start", "0", "--end", "4"]);
    assert_eq!(
        ok(&[
            "prove",
            "consistency",
            "--data",
            d,
            "--from",
            "1",
            "--to",
            "3"
        ])
        .lines()
        .count(),
        2
    );
    fails(&[
        "prove",
        "consistency",
        "--data",
        d,
        "--from",
        "0",
        "--to",
        "3",
    ]);

    // Bad input anywhere: one-line error, non-zero exit, nothing written.
    let before = ok(&["checkpoint", "--data", d]);
    let garbage = save(t, "garbage.env", "{not json");
    fails(&["append", "--data", d, &garbage]);
    fails(&["append", "--data", d, &buy_env, &garbage]); // all or nothing
    let replay = write(
        t,
        "replay.json",
        &json!({"merchant": shop, "consumer": alice, "order_id": "A-9", "amount": 5, "nonce": "1"}),
    );
    let replay_env = save(
        t,
        "replay.env",
        &ok(&[
            "sign",
            "--key",
            shop_key.to_str().expect("p"),
            "--kind",
            "purchase",
            &replay,
        ]),
    );
    fails_with(&["append", "--data", d, &replay_env], "nonce_reused");
    fails(&["balance", "--data", d, "not-a-key"]);
    fails(&["sign", "--key", op_key.as_str(), "--kind", "mint", &reg]);
    fails(&[
        "checkpoint",
        "--data",
        t.join("nowhere").to_str().expect("p"),
    ]);
    assert_eq!(ok(&["checkpoint", "--data", d]), before);
    // The identical envelope again returns the original receipt.
    let again: Value =
        serde_json::from_str(ok(&["append", "--data", d, &buy_env]).trim()).expect("json");
    assert_eq!(again, lines_first(&receipts, 1));

    let rebuilt: Value = serde_json::from_str(&ok(&["rebuild", "--data", d])).expect("json");
    assert_eq!(rebuilt["identical"], true);
}

fn lines_first(text: &str, n: usize) -> Value {
    serde_json::from_str(text.lines().nth(n).expect("line")).expect("json")
}

#[test]
fn demo_seeds_a_program_that_verifies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("ledger");
    let d = d.to_str().expect("path");
    ok(&["init", "--data", d, "--origin", "demo.pointsledger.local"]);
    let s: Value = serde_json::from_str(&ok(&[
        "demo",
        "--data",
        d,
        "--consumers",
        "30",
        "--purchases",
        "200",
    ]))
    .expect("json");
    for field in ["referrals", "redemptions", "refunds", "evm_links"] {
        assert!(
            s[field].as_u64().expect(field) > 0,
            "the demo made no {field}: {s}"
        );
    }
    let consumer = s["example_consumer"].as_str().expect("consumer");
    let bal: Value = serde_json::from_str(&ok(&["balance", "--data", d, consumer])).expect("json");
    assert!(bal["purchases"].as_u64().expect("purchases") > 0);
    let rebuilt: Value = serde_json::from_str(&ok(&["rebuild", "--data", d])).expect("json");
    assert_eq!(rebuilt["identical"], true);
    fails(&["demo", "--data", d]); // a second demo in the same directory is refused
}

/// The ledger takes only compact JSON payloads; a hand-written file (indented, with a trailing
/// newline, as the README's heredoc writes one) is compacted by `sign` before it is signed:
/// whitespace outside strings removed, the name's space kept, and the entry accepted.
#[test]
fn sign_compacts_a_hand_written_payload_file() {
    use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let d = t.join("ledger");
    let d = d.to_str().expect("path");
    let init: Value = serde_json::from_str(&ok(&[
        "init",
        "--data",
        d,
        "--origin",
        "c.pointsledger.local",
    ]))
    .expect("json");
    let op_key = init["operator_key_file"].as_str().expect("file");
    let shop = ok(&["keygen", "--out", t.join("shop.key").to_str().expect("p")])
        .trim()
        .to_owned();
    let program = json!({"operator": init["operator_key"], "merchant": shop, "name": "Corner Shop",
        "rules": {"earn_bps": 1000, "point_value_milli": 1000, "max_redeem_bps": 5000,
        "validity_ms": 31_536_000_000u64, "pending_ms": 0, "referee_discount_bps": 1000,
        "referee_discount_max": 500, "referrer_reward_points": 300, "referrer_reward_cap": 5,
        "max_points_per_order": 100000}, "nonce": "1"});
    let pretty = serde_json::to_string_pretty(&program).expect("json") + "\n";
    let file = save(t, "register.json", &pretty);
    let env: Value = serde_json::from_str(&ok(&[
        "sign",
        "--key",
        op_key,
        "--kind",
        "merchant.register",
        &file,
    ]))
    .expect("envelope");
    let payload = B64
        .decode(env["payload"].as_str().expect("payload"))
        .expect("base64");
    // The same value written compactly (both forms list the members in the same order).
    let compact = serde_json::to_string(&program).expect("json");
    assert_ne!(pretty, compact);
    assert_eq!(String::from_utf8(payload).expect("utf-8"), compact);
    assert!(compact.contains("\"Corner Shop\""), "{compact}");
    let env_file = save(t, "register.env", &env.to_string());
    ok(&["append", "--data", d, &env_file]);
}

#[test]
fn serve_refuses_unusable_settings_before_it_starts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let data = t.join("ledger");
    let d = data.to_str().expect("path");
    ok(&[
        "init",
        "--data",
        d,
        "--origin",
        "settings.pointsledger.local",
    ]);
    let port0 = "127.0.0.1:0";

    let err = fails_with(
        &["serve", "--data", d, "--listen", port0, "--max-group", "0"],
        "bad_settings",
    );
    assert!(err.contains("max_group must be at least 1"), "{err}");
    let err = fails_with(
        &[
            "serve",
            "--data",
            d,
            "--listen",
            port0,
            "--contract",
            "0x1234",
        ],
        "bad_settings",
    );
    assert!(err.contains("contract must be a 0x address"), "{err}");
    let misspelt = save(t, "serve.toml", "max_bdy_bytes = 10\n");
    let err = fails_with(
        &[
            "serve", "--data", d, "--listen", port0, "--config", &misspelt,
        ],
        "bad_settings",
    );
    assert!(err.contains("max_bdy_bytes"), "{err}");
    let missing = t.join("absent.toml");
    fails_with(
        &[
            "serve",
            "--listen",
            port0,
            "--config",
            missing.to_str().expect("path"),
        ],
        "bad_settings",
    );
    fails_with(&["serve", "--listen", port0], "bad_settings");
}
