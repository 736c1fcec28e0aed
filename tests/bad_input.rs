//! The bad-input table: hostile write requests against the real server, each with the status
//! and error code it must get, each followed by a check that the tree (size and signed root)
//! and the balances did not change. Read-side refusals are in tests/http.rs.

mod common;
#[path = "common/server.rs"]
mod server;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use common::{high_s_twin, rules, sign, with_v, Party, T0};
use pointsledger::clock::{ManualClock, DAY_MS};
use pointsledger::dsse::{self, Envelope};
use pointsledger::evm;
use pointsledger::merkle;
use pointsledger::payload::MAX_SAFE_INT;
use pointsledger::server::Settings;
use serde_json::{json, Value};
use server::{tamper_signature, Api, TestServer};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

async fn snapshot(api: &Api, watched: &[&Party]) -> (u64, merkle::Hash, Vec<Value>) {
    let (size, root) = api.tree().await;
    let mut views = Vec::new();
    for p in watched {
        let (status, v) = api.get(&format!("/v1/accounts/{}", p.id)).await;
        assert_eq!(status, 200);
        views.push(v);
    }
    (size, root, views)
}

fn as_json(env: &Envelope) -> Value {
    serde_json::from_slice(&env.to_json_bytes()).expect("json")
}

/// `env` as JSON with `f` applied, as request bytes.
fn edited(env: &Envelope, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = as_json(env);
    f(&mut v);
    serde_json::to_vec(&v).expect("json")
}

/// An envelope over raw payload bytes (not necessarily valid JSON), signed by `key`.
fn raw_payload(kind: &str, payload: &[u8], key: &ed25519_dalek::SigningKey) -> Vec<u8> {
    dsse::sign(kind, payload.to_vec(), key)
        .expect("sign")
        .to_json_bytes()
}

/// A request body that arrives one byte every 300 ms: the server must cut it off at its request
/// timeout with 408, not hold the connection forever.
fn slow_drip(base: &str) -> (u16, Value) {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "POST /v1/entries HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 200\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("head");
    let dripper = {
        let mut s = s.try_clone().expect("clone");
        std::thread::spawn(move || {
            for _ in 0..20 {
                if s.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let _ = dripper.join();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_hostile_request_is_refused_with_its_code_and_changes_nothing() {
    let clock = ManualClock::new(T0);
    let settings = Settings {
        checkpoint_interval: Duration::from_millis(20),
        request_timeout: Duration::from_secs(2),
        ..Settings::default()
    };
    let s = TestServer::start(Arc::new(clock.clone()), settings).await;
    let (api, sg) = (&s.api, &s.signer);
    let (shop, stranger, alice, bob, carol, whale, dave) = (
        Party::new(),
        Party::new(),
        Party::new(),
        Party::new(),
        Party::new(),
        Party::new(),
        Party::new(),
    );
    s.register(&shop).await;
    api.accept(&sg.purchase(&shop, &alice, "a1", 10_000)).await;
    api.accept(&sg.purchase(&shop, &bob, "b1", 2_000)).await;
    api.accept(&sg.refer(&carol, &alice)).await;
    clock.advance(15 * DAY_MS);
    let origin = "http.pointsledger.local";
    // A canonical link proof of `secret`'s address for `who`, as (address, signature).
    let proof = |who: &Party, secret: [u8; 32], nonce: &str| {
        let address = evm::address_of(&secret).expect("address");
        let sig = evm::sign_link(
            &secret,
            &evm::link_message(origin, &who.id, &address, nonce),
        )
        .expect("sign");
        (address, sig)
    };
    let link = |who: &Party, address: &str, sig: &str, nonce: &str| {
        sign(
            "account.link_evm",
            &json!({"consumer": who.id, "address": address, "evm_signature": sig, "nonce": nonce}),
            &[&who.key],
        )
    };
    // Alice is a customer and links a wallet; she redeems on order rx, whose purchase is next.
    let (alice_address, alice_sig) = proof(&alice, [6u8; 32], "al1");
    api.accept(&link(&alice, &alice_address, &alice_sig, "al1"))
        .await;
    api.accept(&sg.redeem(&alice, &shop, "rx", 1_000, 100))
        .await;
    // Dave holds 2^53-1 points at a one-point-per-unit merchant, after redeeming 1000 on order
    // wl (bought) and earning them back on order wf: a refund of wl would return 1000 more.
    let mut big = rules();
    big.pending_ms = 0;
    big.earn_bps = 10_000;
    big.max_redeem_bps = 10_000;
    big.max_points_per_order = MAX_SAFE_INT;
    api.accept(&sg.register(&whale, &big)).await;
    api.accept(&sg.purchase(&whale, &dave, "w0", MAX_SAFE_INT))
        .await;
    api.accept(&sg.redeem(&dave, &whale, "wl", 1_000, 1_000))
        .await;
    api.accept(&sg.purchase(&whale, &dave, "wl", 1_000)).await;
    api.accept(&sg.purchase(&whale, &dave, "wf", 1_000)).await;
    // Bob's canonical proof, refused below in every other spelling, accepted at the end.
    let (bob_address, bob_sig) = proof(&bob, [9u8; 32], "bl1");
    let fixed = sign(
        "purchase",
        &json!({"merchant": shop.id, "consumer": carol.id, "order_id": "c1", "amount": 1_000,
                "nonce": "fixed"}),
        &[&shop.key],
    );
    api.accept(&fixed).await;

    let watched = [&alice, &bob, &carol, &dave];
    let before = snapshot(api, &watched).await;
    let good = sg.purchase(&shop, &bob, "fresh", 500);
    // A request whose payload's base64 ends in padding (its length depends on the nonce).
    let padded = (1..)
        .map(|amount| sg.purchase(&shop, &bob, "padded", amount))
        .find(|env| env.payload_base64().ends_with('='))
        .expect("a padded payload");
    let purchase = |amount: Value| {
        json!({"merchant": shop.id, "consumer": bob.id, "order_id": "z", "amount": amount,
               "nonce": sg.nonce()})
    };
    let signed = |kind: &str, p: Value, keys: &[&ed25519_dalek::SigningKey]| {
        sign(kind, &p, keys).to_json_bytes()
    };
    // The identity point: a valid encoding of a key of order 1 that any signature "verifies".
    let weak_key = format!("01{}", "00".repeat(31));
    let secret = [7u8; 32];
    let address = evm::address_of(&secret).expect("address");
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));

    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        // The body and the envelope.
        ("malformed JSON", "/v1/entries", b"{not json".to_vec(), 400, "malformed_envelope"),
        ("empty body", "/v1/entries", Vec::new(), 400, "malformed_envelope"),
        ("an array, not an envelope", "/v1/entries", b"[]".to_vec(), 400, "malformed_envelope"),
        ("invalid UTF-8", "/v1/entries", b"{\"payloadType\":\"\xff\xfe\"}".to_vec(), 400, "malformed_envelope"),
        ("deep JSON nesting", "/v1/entries", deep.into_bytes(), 400, "malformed_envelope"),
        (
            "duplicate JSON keys in the envelope",
            "/v1/entries",
            {
                let v = as_json(&good);
                format!(
                    "{{\"payloadType\":{},\"payloadType\":{},\"payload\":{},\"signatures\":{}}}",
                    v["payloadType"], v["payloadType"], v["payload"], v["signatures"]
                )
                .into_bytes()
            },
            400,
            "malformed_envelope",
        ),
        ("unknown envelope field", "/v1/entries", edited(&good, |v| v["extra"] = json!(1)), 400, "malformed_envelope"),
        ("wrong payloadType", "/v1/entries", edited(&good, |v| v["payloadType"] = json!("application/json")), 400, "malformed_envelope"),
        // The type is inside the signed bytes (PAE): changing it breaks the signature.
        ("payloadType changed after signing", "/v1/entries", edited(&good, |v| v["payloadType"] = json!("application/vnd.pointsledger.gift+json")), 401, "bad_signature"),
        ("unknown kind, validly signed", "/v1/entries", raw_payload("gift", b"{}", &shop.key), 400, "malformed_payload"),
        ("payloadType of another kind", "/v1/entries", edited(&good, |v| v["payloadType"] = json!("application/vnd.pointsledger.refund+json")), 401, "bad_signature"),
        ("bad base64 payload", "/v1/entries", edited(&good, |v| v["payload"] = json!("!!not base64!!")), 400, "malformed_envelope"),
        (
            "non-canonical base64 payload (no padding)",
            "/v1/entries",
            edited(&padded, |v| {
                let p = v["payload"].as_str().expect("payload").trim_end_matches('=').to_owned();
                v["payload"] = json!(format!("{p}A"));
            }),
            400,
            "malformed_envelope",
        ),
        ("no signatures", "/v1/entries", edited(&good, |v| v["signatures"] = json!([])), 400, "malformed_envelope"),
        (
            "truncated signature",
            "/v1/entries",
            edited(&good, |v| {
                let sig = B64.decode(v["signatures"][0]["sig"].as_str().expect("sig")).expect("b64");
                v["signatures"][0]["sig"] = json!(B64.encode(&sig[..63]));
            }),
            400,
            "malformed_envelope",
        ),
        (
            "the same signature twice",
            "/v1/entries",
            edited(&good, |v| {
                let sig = v["signatures"][0].clone();
                v["signatures"].as_array_mut().expect("sigs").push(sig);
            }),
            400,
            "malformed_envelope",
        ),
        (
            "five signatures",
            "/v1/entries",
            edited(&good, |v| {
                let sig = v["signatures"][0].clone();
                *v["signatures"].as_array_mut().expect("sigs") = vec![sig; 5];
            }),
            400,
            "malformed_envelope",
        ),
        (
            "an extra signer",
            "/v1/entries",
            {
                let mut env = sg.purchase(&shop, &bob, "x1", 500);
                env.add_signature(&stranger.key).expect("cosign");
                env.to_json_bytes()
            },
            403,
            "wrong_signers",
        ),
        ("tampered signature", "/v1/entries", tamper_signature(&good), 401, "bad_signature"),
        (
            "signature by another key under the merchant's id",
            "/v1/entries",
            edited(&good, |v| {
                let forged = as_json(&sign("purchase", &purchase(json!(500)), &[&stranger.key]));
                v["signatures"][0]["sig"] = forged["signatures"][0]["sig"].clone();
            }),
            401,
            "bad_signature",
        ),
        ("malformed key id", "/v1/entries", edited(&good, |v| v["signatures"][0]["keyid"] = json!("xyz")), 400, "malformed_envelope"),
        ("weak key id (the identity point)", "/v1/entries", edited(&good, |v| v["signatures"][0]["keyid"] = json!(weak_key)), 400, "malformed_envelope"),
        // The payload.
        ("payload not JSON", "/v1/entries", raw_payload("purchase", b"purchase 5 points", &shop.key), 400, "malformed_payload"),
        (
            "duplicate JSON keys in the payload",
            "/v1/entries",
            raw_payload(
                "purchase",
                format!(
                    "{{\"merchant\":\"{}\",\"consumer\":\"{}\",\"order_id\":\"d\",\"amount\":5,\"amount\":5000,\"nonce\":\"d\"}}",
                    shop.id, bob.id
                )
                .as_bytes(),
                &shop.key,
            ),
            400,
            "malformed_payload",
        ),
        ("unknown payload field", "/v1/entries", signed("purchase", {
            let mut p = purchase(json!(5));
            p["bonus"] = json!(1000);
            p
        }, &[&shop.key]), 400, "malformed_payload"),
        ("zero amount", "/v1/entries", signed("purchase", purchase(json!(0)), &[&shop.key]), 400, "malformed_payload"),
        ("negative amount", "/v1/entries", signed("purchase", purchase(json!(-5)), &[&shop.key]), 400, "malformed_payload"),
        ("amount over 2^53 - 1", "/v1/entries", signed("purchase", purchase(json!(9_007_199_254_740_992u64)), &[&shop.key]), 400, "malformed_payload"),
        ("amount of 2^64 + 1", "/v1/entries", raw_payload("purchase", format!(
            "{{\"merchant\":\"{}\",\"consumer\":\"{}\",\"order_id\":\"o\",\"amount\":18446744073709551617,\"nonce\":\"o\"}}",
            shop.id, bob.id).as_bytes(), &shop.key), 400, "malformed_payload"),
        ("fractional amount", "/v1/entries", signed("purchase", purchase(json!(5.5)), &[&shop.key]), 400, "malformed_payload"),
        ("amount as a string", "/v1/entries", signed("purchase", purchase(json!("5")), &[&shop.key]), 400, "malformed_payload"),
        ("consumer id not a key", "/v1/entries", signed("purchase", {
            let mut p = purchase(json!(5));
            p["consumer"] = json!("alice");
            p
        }, &[&shop.key]), 400, "malformed_payload"),
        ("consumer id a weak key", "/v1/entries", signed("purchase", {
            let mut p = purchase(json!(5));
            p["consumer"] = json!(weak_key);
            p
        }, &[&shop.key]), 400, "malformed_payload"),
        // Roles.
        ("purchase signed by the consumer", "/v1/entries", signed("purchase", purchase(json!(5)), &[&bob.key]), 403, "wrong_signers"),
        (
            "redemption without the merchant's signature",
            "/v1/entries",
            signed("redeem", json!({"consumer": alice.id, "merchant": shop.id, "order_id": "r0",
                "order_amount": 1_000, "points": 10, "nonce": sg.nonce()}), &[&alice.key]),
            403,
            "wrong_signers",
        ),
        (
            "program signed by someone else",
            "/v1/entries",
            signed("merchant.register", json!({"operator": bob.id, "merchant": stranger.id,
                "name": "X", "rules": rules(), "nonce": "o"}), &[&bob.key]),
            403,
            "not_operator",
        ),
        // The rules.
        (
            "replayed nonce with other content",
            "/v1/entries",
            signed("purchase", json!({"merchant": shop.id, "consumer": carol.id, "order_id": "c2",
                "amount": 1_000, "nonce": "fixed"}), &[&shop.key]),
            409,
            "nonce_reused",
        ),
        ("reused order id with other content", "/v1/entries", sg.purchase(&shop, &bob, "a1", 7).to_json_bytes(), 409, "order_exists"),
        ("overdraft", "/v1/entries", sg.redeem(&bob, &shop, "r1", 1_000_000, 100_000).to_json_bytes(), 422, "insufficient_points"),
        ("redemption over the order's cap", "/v1/entries", sg.redeem(&alice, &shop, "r2", 100, 90).to_json_bytes(), 422, "redeem_share_exceeded"),
        (
            "expired request",
            "/v1/entries",
            signed("purchase", json!({"merchant": shop.id, "consumer": bob.id, "order_id": "e",
                "amount": 5, "nonce": sg.nonce(), "expires_at": T0}), &[&shop.key]),
            422,
            "request_expired",
        ),
        ("self-referral", "/v1/entries", sg.refer(&bob, &bob).to_json_bytes(), 422, "self_referral"),
        ("a second referrer", "/v1/entries", sg.refer(&carol, &bob).to_json_bytes(), 422, "referrer_already_bound"),
        ("referral after a first purchase", "/v1/entries", sg.refer(&bob, &alice).to_json_bytes(), 422, "referee_has_purchases"),
        ("refund over the original amount", "/v1/entries", sg.refund(&shop, "b1", 2_001).to_json_bytes(), 422, "refund_exceeds_order"),
        ("refund of an unknown order", "/v1/entries", sg.refund(&shop, "nope", 1).to_json_bytes(), 422, "unknown_order"),
        ("purchase at an unknown merchant", "/v1/entries", sg.purchase(&stranger, &bob, "u", 5).to_json_bytes(), 422, "unknown_merchant"),
        (
            "EVM link with another address's signature",
            "/v1/entries",
            {
                let msg = evm::link_message("http.pointsledger.local", &bob.id, &address, "l1");
                let sig = evm::sign_link(&[8u8; 32], &msg).expect("sign");
                signed("account.link_evm", json!({"consumer": bob.id, "address": address,
                    "evm_signature": sig, "nonce": "l1"}), &[&bob.key])
            },
            422,
            "bad_evm_signature",
        ),
        (
            "purchase of a redeemed order for another consumer",
            "/v1/entries",
            sg.purchase(&shop, &bob, "rx", 1_000).to_json_bytes(),
            422,
            "order_consumer_mismatch",
        ),
        ("credit beyond 2^53-1 points", "/v1/entries", sg.purchase(&whale, &dave, "w1", 1).to_json_bytes(), 422, "balance_overflow"),
        ("refund returning redeemed points beyond 2^53-1", "/v1/entries", sg.refund(&whale, "wl", 1_000).to_json_bytes(), 422, "balance_overflow"),
        // EVM links: for customers, once, in one canonical spelling.
        (
            "EVM link by a consumer without a purchase",
            "/v1/entries",
            {
                let (address, sig) = proof(&stranger, [10u8; 32], "sl1");
                link(&stranger, &address, &sig, "sl1").to_json_bytes()
            },
            422,
            "consumer_not_customer",
        ),
        (
            "a second EVM link for one consumer",
            "/v1/entries",
            {
                let (address, sig) = proof(&alice, [11u8; 32], "al2");
                link(&alice, &address, &sig, "al2").to_json_bytes()
            },
            409,
            "evm_already_linked",
        ),
        (
            "the same EVM link again under a new nonce",
            "/v1/entries",
            {
                let (address, sig) = proof(&alice, [6u8; 32], "al3");
                link(&alice, &address, &sig, "al3").to_json_bytes()
            },
            409,
            "evm_already_linked",
        ),
        (
            "EVM address in uppercase hex",
            "/v1/entries",
            link(&bob, &format!("0x{}", bob_address[2..].to_uppercase()), &bob_sig, "bl1").to_json_bytes(),
            400,
            "malformed_payload",
        ),
        (
            "EVM signature in uppercase hex",
            "/v1/entries",
            link(&bob, &bob_address, &format!("0x{}", bob_sig[2..].to_uppercase()), "bl1").to_json_bytes(),
            400,
            "malformed_payload",
        ),
        ("EVM signature with v = 0", "/v1/entries", link(&bob, &bob_address, &with_v(&bob_sig, 0), "bl1").to_json_bytes(), 400, "malformed_payload"),
        ("EVM signature with v = 1", "/v1/entries", link(&bob, &bob_address, &with_v(&bob_sig, 1), "bl1").to_json_bytes(), 400, "malformed_payload"),
        ("EVM signature with v = 35", "/v1/entries", link(&bob, &bob_address, &with_v(&bob_sig, 35), "bl1").to_json_bytes(), 400, "malformed_payload"),
        ("EVM signature with v = 36", "/v1/entries", link(&bob, &bob_address, &with_v(&bob_sig, 36), "bl1").to_json_bytes(), 400, "malformed_payload"),
        ("the high-s twin of an EVM signature", "/v1/entries", link(&bob, &bob_address, &high_s_twin(&bob_sig), "bl1").to_json_bytes(), 400, "malformed_payload"),
        // Sizes.
        (
            "payload over its kind's limit",
            "/v1/entries",
            signed("purchase", {
                let mut p = purchase(json!(5));
                p["order_id"] = json!("x".repeat(400));
                p
            }, &[&shop.key]),
            413,
            "too_large",
        ),
        (
            "payload padded with whitespace",
            "/v1/entries",
            raw_payload("purchase", &serde_json::to_vec_pretty(&purchase(json!(5))).expect("json"), &shop.key),
            400,
            "malformed_payload",
        ),
        ("oversized body", "/v1/entries", vec![b' '; 70_000], 413, "too_large"),
        ("too many entries in a batch", "/v1/entries/batch", serde_json::to_vec(&vec![as_json(&good); 257]).expect("json"), 413, "too_many_entries"),
        ("a batch that is not an array", "/v1/entries/batch", b"{\"a\":1}".to_vec(), 400, "malformed_json"),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for (what, route, body, want_status, want_code) in cases {
        let (status, answer) = api.post_raw(route, body).await;
        if (status, answer["error"].as_str()) != (want_status, Some(want_code)) {
            wrong.push(format!(
                "{what}: expected {want_status} {want_code}, got {status} {answer}"
            ));
        }
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: no message in {answer}"
        );
        assert_eq!(
            snapshot(api, &watched).await,
            before,
            "{what} changed the log or a balance"
        );
    }
    // A refusal whose code alone would not show that the intended check fired.
    let (status, answer) = api
        .post_raw("/v1/entries", b"{\"payloadType\":\"\xff\xfe\"}".to_vec())
        .await;
    let message = answer["message"].as_str().unwrap_or_default();
    if status != 400 || !message.contains("UTF-8") {
        wrong.push(format!(
            "invalid UTF-8: expected 400 naming UTF-8, got {status} {answer}"
        ));
    }
    for (what, body, want, needle) in [
        (
            "payload over its kind's limit",
            signed(
                "purchase",
                {
                    let mut p = purchase(json!(5));
                    p["order_id"] = json!("x".repeat(400));
                    p
                },
                &[&shop.key],
            ),
            413,
            "at most 512 bytes",
        ),
        (
            "payload padded with whitespace",
            raw_payload(
                "purchase",
                &serde_json::to_vec_pretty(&purchase(json!(5))).expect("json"),
                &shop.key,
            ),
            400,
            "compact JSON",
        ),
        (
            "the high-s twin of an EVM signature",
            link(&bob, &bob_address, &high_s_twin(&bob_sig), "bl1").to_json_bytes(),
            400,
            "low-s",
        ),
    ] {
        let (status, answer) = api.post_raw("/v1/entries", body).await;
        let message = answer["message"].as_str().unwrap_or_default();
        if status != want || !message.contains(needle) {
            wrong.push(format!(
                "{what}: expected {want} naming {needle:?}, got {status} {answer}"
            ));
        }
    }
    let (status, answer) = slow_drip(&api.base);
    if (status, answer["error"].as_str()) != (408, Some("timeout")) {
        wrong.push(format!(
            "slow-drip body: expected 408 timeout, got {status} {answer}"
        ));
    }
    assert_eq!(
        snapshot(api, &watched).await,
        before,
        "the slow drip changed something"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // After all that, the service still takes a good entry, and Bob's link in its canonical
    // spelling.
    api.accept(&good).await;
    api.accept(&link(&bob, &bob_address, &bob_sig, "bl1")).await;
    assert_eq!(api.tree().await.0, before.0 + 2);
    let (_, view) = api.get(&format!("/v1/accounts/{}", bob.id)).await;
    assert!(view.to_string().contains(&bob_address), "{view}");
    s.stop().await.expect("clean shutdown");
}
