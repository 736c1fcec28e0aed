//! The HTTP service against the real server on 127.0.0.1 (port 0), over HTTP with reqwest:
//! in-process through `server::serve` with a manual clock, and as the real binary for signals
//! and settings.
//!
//! - the story of Bob and Alice (tests/engine.rs) over HTTP, with receipts and proofs verified;
//! - every error status with its code, each followed by a check that the tree (size and signed
//!   root) and the balances did not change; 503 when the writer fails; 408 on a slow request;
//! - 64 concurrent redemptions racing for one balance;
//! - SIGTERM during load: exit 0, and every acknowledged receipt is in the log after restart;
//! - the OpenAPI document lists every route, and real answers conform to its schemas;
//! - settings precedence (flag > environment > file > default) and `serve --help`.

mod common;
#[path = "common/server.rs"]
mod server;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use common::{rules, sign, Party, T0};
use pointsledger::checkpoint::{self, TlogProof};
use pointsledger::clock::{Clock, ManualClock, DAY_MS};
use pointsledger::dsse::Envelope;
use pointsledger::evm;
use pointsledger::keys;
use pointsledger::ledger::{self, DataDir, Leaf};
use pointsledger::merkle;
use pointsledger::receipt;
use pointsledger::server::Settings;
use pointsledger::wire::ReceiptDocument;
use serde_json::{json, Value};
use server::{
    conforms, eventually, tamper_signature, test_settings, Api, Binary, Signer, TestServer,
};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// (delta, reason) of every change in a receipt.
fn changes(receipt: &Value) -> Vec<(i64, String)> {
    receipt["effects"]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["delta"].as_i64().expect("delta"),
                c["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect()
}

fn ch(list: &[(i64, &str)]) -> Vec<(i64, String)> {
    list.iter().map(|(d, r)| (*d, (*r).to_owned())).collect()
}

/// Selected fields of a balance object.
fn fields(balance: &Value, names: &[&str]) -> Vec<i64> {
    names
        .iter()
        .map(|n| {
            balance[*n]
                .as_i64()
                .unwrap_or_else(|| panic!("{n} in {balance}"))
        })
        .collect()
}

fn hash_from_hex(s: &str) -> merkle::Hash {
    hex::decode(s).expect("hex").try_into().expect("32 bytes")
}

fn hashes_from_b64(v: &Value) -> Vec<merkle::Hash> {
    v.as_array()
        .expect("proof")
        .iter()
        .map(|h| {
            B64.decode(h.as_str().expect("b64"))
                .expect("b64")
                .try_into()
                .expect("32 bytes")
        })
        .collect()
}

/// Every history row of an account, following `next`.
async fn all_history(api: &Api, p: &Party, limit: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut from = 0;
    for _ in 0..100 {
        let (status, page) = api
            .get(&format!(
                "/v1/accounts/{}/history?from={from}&limit={limit}",
                p.id
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        rows.extend(page["rows"].as_array().expect("rows").iter().cloned());
        match page["next"].as_u64() {
            Some(n) => from = n,
            None => return rows,
        }
    }
    panic!("history did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn story_of_bob_and_alice_over_http() {
    let (s, clock) = TestServer::manual().await;
    let (api, sg) = (&s.api, &s.signer);
    let (shop, alice, bob) = (Party::new(), Party::new(), Party::new());
    s.register(&shop).await;

    // Alice buys for 100.00: 1000 points, pending for 14 days.
    let r = api.accept(&sg.purchase(&shop, &alice, "a1", 10_000)).await;
    assert_eq!(changes(&r), ch(&[(1000, "earn")]));
    assert_eq!(
        r["effects"]["changes"][0]["available_at"],
        json!(T0 + 14 * DAY_MS)
    );
    let b = api.balance(&alice).await;
    assert_eq!(fields(&b, &["pending", "available"]), [1000, 0]);

    // Bob accepts Alice, then buys for 200.00: 500 discount, 1950 points; Alice gets 300.
    api.accept(&sg.refer(&bob, &alice)).await;
    let r = api.accept(&sg.purchase(&shop, &bob, "b1", 20_000)).await;
    assert_eq!(r["effects"]["discount"]["value"], json!(500));
    let accounts: Vec<&str> = r["effects"]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["account"].as_str().expect("account"))
        .collect();
    assert_eq!(accounts, [bob.id.as_str(), alice.id.as_str()]);
    assert_eq!(changes(&r), ch(&[(1950, "earn"), (300, "referral_reward")]));
    let (mid_size, mid_root) = api.tree().await;

    // 15 days later Bob redeems 1500 on b2 (40.00), then pays the rest: 250 points.
    clock.advance(15 * DAY_MS);
    assert_eq!(fields(&api.balance(&bob).await, &["available"]), [1950]);
    let (status, q) = api
        .post(
            "/v1/quote",
            &json!({"merchant": shop.id, "consumer": bob.id, "order_amount": 4_000}),
        )
        .await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(
        (&q["spendable_points"], &q["redeemable_points"]),
        (&json!(1950), &json!(1950))
    );
    let r = api.accept(&sg.redeem(&bob, &shop, "b2", 4_000, 1500)).await;
    assert_eq!(r["effects"]["discount"]["value"], json!(1500));
    api.accept(&sg.purchase(&shop, &bob, "b2", 4_000)).await;
    let b = api.balance(&bob).await;
    assert_eq!(
        fields(&b, &["available", "pending", "total"]),
        [450, 250, 700]
    );

    // Refund a quarter of b2, then half of b1.
    let r = api.accept(&sg.refund(&shop, "b2", 1_000)).await;
    assert_eq!(
        changes(&r),
        ch(&[(-62, "refund_reversal"), (375, "redeem_return")])
    );
    let b = api.balance(&bob).await;
    assert_eq!(
        fields(&b, &["available", "pending", "total"]),
        [825, 188, 1013]
    );
    let r = api.accept(&sg.refund(&shop, "b1", 10_000)).await;
    assert_eq!(
        changes(&r),
        ch(&[
            (-825, "refund_reversal"),
            (-150, "debt"),
            (-150, "referral_clawback")
        ])
    );
    let b = api.balance(&bob).await;
    assert_eq!(
        fields(&b, &["available", "pending", "debt", "total"]),
        [0, 188, 150, 38]
    );
    assert_eq!(fields(&api.balance(&alice).await, &["total"]), [1150]);

    // A year later Alice's lots have expired; her next purchase sweeps them.
    clock.set(T0 + 381 * DAY_MS);
    assert_eq!(
        fields(&api.balance(&alice).await, &["expired_unswept"]),
        [1150]
    );
    let r = api.accept(&sg.purchase(&shop, &alice, "a2", 1_000)).await;
    assert_eq!(
        changes(&r),
        ch(&[(-1000, "expire"), (-150, "expire"), (100, "earn")])
    );
    assert_eq!(fields(&api.balance(&alice).await, &["total"]), [100]);

    // Bob can spend 38, not 39; a refusal changes nothing.
    let before = api.tree().await;
    let (status, body) = api.submit(&sg.redeem(&bob, &shop, "b3", 10_000, 39)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("insufficient_points"))
    );
    assert_eq!(
        api.tree().await,
        before,
        "a refused redemption changed the log"
    );
    let last_env = sg.redeem(&bob, &shop, "b3", 10_000, 38);
    let last = api.accept(&last_env).await;
    assert_eq!(
        changes(&last),
        ch(&[
            (-150, "debt_settled"),
            (150, "debt_settled"),
            (-38, "redeem")
        ])
    );
    let b = api.balance(&bob).await;
    assert_eq!(fields(&b, &["total", "debt", "available"]), [0, 0, 0]);

    // An identical resubmission gets the original receipt and appends nothing.
    let size = api.tree().await.0;
    assert_eq!(api.accept(&last_env).await, last);
    assert_eq!(api.tree().await.0, size);

    // History says why every point moved, page by page, and adds up to the balance.
    for (p, total, rows) in [(&bob, 0, 7), (&alice, 100, 5)] {
        let history = all_history(api, p, 3).await;
        assert_eq!(history.len(), rows);
        let sum: i64 = history
            .iter()
            .map(|r| r["delta"].as_i64().expect("delta"))
            .sum();
        assert_eq!(sum, total);
    }

    // Receipts verify offline against the verifier key; proofs against the signed roots.
    let vkey = api.verifier_key().await;
    let (size, root) = api.tree().await;
    let index = last["index"].as_u64().expect("index");
    let (status, ctype, text) = api.get_text(&format!("/v1/receipts/{index}")).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    let proof = TlogProof::parse(&text).expect("tlog-proof");
    let leaf = proof.extra.clone().expect("leaf bytes");
    let verified = receipt::verify_text(&text, &vkey).expect("receipt verifies");
    let cp = verified.checkpoint;
    assert_eq!((cp.size, cp.root, verified.index), (size, root, index));
    assert_eq!(verified.leaf_bytes, leaf);
    // The leaf hash in base64, and (deprecated, for one release) in hex.
    assert_eq!(json!(B64.encode(merkle::leaf_hash(&leaf))), last["hash"]);
    assert_eq!(hex::encode(merkle::leaf_hash(&leaf)), last["leaf_hash"]);
    assert_eq!(Leaf::decode(index, &leaf).expect("leaf").index, index);
    let resp = api
        .http
        .get(api.url(&format!("/v1/receipts/{index}")))
        .header("accept", "application/json")
        .send()
        .await
        .expect("GET");
    let doc: Value = resp.json().await.expect("json");
    let typed: ReceiptDocument = serde_json::from_value(doc.clone()).expect("a receipt document");
    assert_eq!(
        receipt::verify_document(&typed, &vkey)
            .expect("verifies")
            .index,
        index
    );
    assert_eq!(doc["tlog_proof"], json!(text));
    assert_eq!(
        (&doc["index"], &doc["checkpoint_size"], &doc["anchor"]),
        (&json!(index), &json!(size), &Value::Null)
    );
    let (status, bytes) = api.get_bytes(&format!("/v1/entries/{index}")).await;
    assert_eq!((status, bytes), (200, leaf));

    let (status, inc) = api.get("/v1/proofs/inclusion?index=1").await;
    assert_eq!(status, 200, "{inc}");
    assert_eq!(inc["size"], json!(size));
    let inc_hash = hashes_from_b64(&json!([inc["hash"]]))[0];
    assert_eq!(
        hash_from_hex(inc["leaf_hash"].as_str().expect("deprecated hex hash")),
        inc_hash
    );
    merkle::verify_inclusion(1, size, &inc_hash, &hashes_from_b64(&inc["proof"]), &root)
        .expect("inclusion proof verifies");
    let (status, con) = api
        .get(&format!("/v1/proofs/consistency?from={mid_size}&to={size}"))
        .await;
    assert_eq!(status, 200, "{con}");
    merkle::verify_consistency(
        mid_size,
        size,
        &mid_root,
        &root,
        &hashes_from_b64(&con["proof"]),
    )
    .expect("consistency proof verifies");
    let (status, _, note) = api.get_text(&format!("/v1/checkpoints/{mid_size}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        checkpoint::open_checkpoint(&note, &vkey)
            .expect("checkpoint")
            .root,
        mid_root
    );

    // The checkpoint history, a page of one at a time: ascending, each page's `next` the
    // following size, the mid-story and the latest checkpoints among them, each signed.
    let mut listed = Vec::new();
    let mut from = Some(0u64);
    while let Some(f) = from {
        let (status, page) = api.get(&format!("/v1/checkpoints?from={f}&limit=1")).await;
        assert_eq!(status, 200, "{page}");
        let items = page["checkpoints"].as_array().expect("checkpoints");
        assert_eq!(items.len(), 1, "{page}");
        let (size, note) = (
            items[0]["size"].as_u64().expect("size"),
            items[0]["note"].as_str().expect("note"),
        );
        assert!(
            size >= f && listed.last().is_none_or(|(s, _)| *s < size),
            "{page}"
        );
        let cp = checkpoint::open_checkpoint(note, &vkey).expect("a signed note");
        assert_eq!(cp.size, size);
        listed.push((size, cp.root));
        from = page["next"].as_u64();
        assert!(from.is_none_or(|n| n > size), "{page}");
    }
    assert!(listed.contains(&(mid_size, mid_root)), "{listed:?}");
    assert_eq!(listed.last(), Some(&(size, root)));
    let (status, page) = api.get(&format!("/v1/checkpoints?from={}", size + 1)).await;
    assert_eq!(
        (status, page),
        (200, json!({"checkpoints": [], "next": null}))
    );
    let (status, err) = api.get("/v1/checkpoints?from=-1").await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("malformed_request"))
    );

    // Leaves by range, and the merchant as registered.
    let (status, page) = api.get("/v1/entries?start=0").await;
    assert_eq!(status, 200);
    assert_eq!(
        page["leaves"].as_array().expect("leaves").len() as u64,
        size
    );
    assert_eq!(page["next"], Value::Null);
    let (_, page) = api.get("/v1/entries?start=1&end=3").await;
    assert_eq!(page["leaves"].as_array().expect("leaves").len(), 2);
    let (status, m) = api.get(&format!("/v1/merchants/{}", shop.id)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&m["name"], &m["registered_at_index"], &m["rules"]),
        (&json!("Shop"), &json!(0), &json!(rules()))
    );

    // Shutdown hands the ledger back with a final checkpoint covering everything.
    let ledger = s.stop().await.expect("clean shutdown");
    assert_eq!(ledger.size(), size);
    let (cp_size, _) = ledger
        .store()
        .latest_checkpoint()
        .expect("read")
        .expect("checkpoint");
    assert_eq!(cp_size, size);
}

/// The tree (size and signed root) and the watched accounts, which a refusal must not change.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_error_has_its_status_and_code_and_changes_nothing() {
    let (s, clock) = TestServer::manual().await;
    let (api, sg) = (&s.api, &s.signer);
    let (shop, other_shop, alice, bob) = (Party::new(), Party::new(), Party::new(), Party::new());
    s.register(&shop).await;
    let a1 = sign(
        "purchase",
        &json!({"merchant": shop.id, "consumer": alice.id, "order_id": "a1", "amount": 10_000,
                "nonce": "fixed"}),
        &[&shop.key],
    );
    let a1_receipt = api.accept(&a1).await;
    clock.advance(15 * DAY_MS);
    let secret = [9u8; 32];
    let address = evm::address_of(&secret).expect("address");
    let origin = "http.pointsledger.local";
    let link = |who: &Party, nonce: &str| {
        let msg = evm::link_message(origin, &who.id, &address, nonce);
        let sig = evm::sign_link(&secret, &msg).expect("sign");
        let p =
            json!({"consumer": who.id, "address": address, "evm_signature": sig, "nonce": nonce});
        sign("account.link_evm", &p, &[&who.key])
    };
    api.accept(&link(&alice, "l1")).await;
    // Bob is a customer too, so his link reaches the address check.
    api.accept(&sg.purchase(&shop, &bob, "b0", 100)).await;

    let watched = [&alice, &bob];
    let before = snapshot(api, &watched).await;
    let purchase_json = |amount: Value, nonce: &str| {
        json!({"merchant": shop.id, "consumer": bob.id, "order_id": "z", "amount": amount,
               "nonce": nonce})
    };
    let delete = api
        .http
        .delete(api.url("/v1/log"))
        .send()
        .await
        .expect("DELETE");
    let delete = (
        delete.status().as_u16(),
        delete.json::<Value>().await.expect("json"),
    );

    let cases: Vec<(&str, (u16, Value), u16, &str)> = vec![
        (
            "not JSON",
            api.post_raw("/v1/entries", b"{not json".to_vec()).await,
            400,
            "malformed_envelope",
        ),
        (
            "not an envelope",
            api.post("/v1/entries", &json!({"hello": 1})).await,
            400,
            "malformed_envelope",
        ),
        (
            "zero amount",
            api.submit(&sign(
                "purchase",
                &purchase_json(json!(0), "m1"),
                &[&shop.key],
            ))
            .await,
            400,
            "malformed_payload",
        ),
        (
            "batch is not an array",
            api.post("/v1/entries/batch", &json!({"a": 1})).await,
            400,
            "malformed_json",
        ),
        (
            "quote without consumer",
            api.post("/v1/quote", &json!({"merchant": shop.id})).await,
            400,
            "malformed_json",
        ),
        (
            "malformed account id",
            api.get("/v1/accounts/not-a-key").await,
            400,
            "malformed_id",
        ),
        (
            "malformed index",
            api.get("/v1/entries/abc").await,
            400,
            "malformed_request",
        ),
        (
            "consistency from 0",
            api.get("/v1/proofs/consistency?from=0&to=1").await,
            400,
            "out_of_range",
        ),
        (
            "history limit 0",
            api.get(&format!("/v1/accounts/{}/history?limit=0", alice.id))
                .await,
            400,
            "out_of_range",
        ),
        (
            "tampered signature",
            api.post_raw(
                "/v1/entries",
                tamper_signature(&sg.purchase(&shop, &bob, "t1", 100)),
            )
            .await,
            401,
            "bad_signature",
        ),
        (
            "purchase signed by the consumer",
            api.submit(&sign(
                "purchase",
                &purchase_json(json!(5), "w"),
                &[&bob.key],
            ))
            .await,
            403,
            "wrong_signers",
        ),
        (
            "program not signed by the operator",
            api.submit(&sign(
                "merchant.register",
                &json!({"operator": bob.id, "merchant": other_shop.id, "name": "X",
                        "rules": rules(), "nonce": "o"}),
                &[&bob.key],
            ))
            .await,
            403,
            "not_operator",
        ),
        (
            "nonce reused with other content",
            api.submit(&sign(
                "purchase",
                &json!({"merchant": shop.id, "consumer": alice.id, "order_id": "a9",
                        "amount": 10_000, "nonce": "fixed"}),
                &[&shop.key],
            ))
            .await,
            409,
            "nonce_reused",
        ),
        (
            "order exists",
            api.submit(&sg.purchase(&shop, &bob, "a1", 5)).await,
            409,
            "order_exists",
        ),
        (
            "merchant exists",
            api.submit(&sg.register(&shop, &rules())).await,
            409,
            "merchant_exists",
        ),
        (
            "address linked to another consumer",
            api.submit(&link(&bob, "l2")).await,
            409,
            "address_linked",
        ),
        (
            "body over 64 KiB",
            api.post_raw("/v1/entries", vec![b' '; 70_000]).await,
            413,
            "too_large",
        ),
        (
            "257 envelopes in a batch",
            api.post("/v1/entries/batch", &json!(vec![json!({}); 257]))
                .await,
            413,
            "too_many_entries",
        ),
        (
            "insufficient points",
            api.submit(&sg.redeem(&alice, &shop, "r1", 1_000_000, 1001))
                .await,
            422,
            "insufficient_points",
        ),
        (
            "unknown merchant",
            api.submit(&sg.purchase(&other_shop, &alice, "x", 100))
                .await,
            422,
            "unknown_merchant",
        ),
        (
            "expired request",
            api.submit(&sign(
                "purchase",
                &json!({"merchant": shop.id, "consumer": bob.id, "order_id": "e", "amount": 5,
                        "nonce": "e", "expires_at": T0}),
                &[&shop.key],
            ))
            .await,
            422,
            "request_expired",
        ),
        (
            "self referral",
            api.submit(&sg.refer(&alice, &alice)).await,
            422,
            "self_referral",
        ),
        (
            "quote at an unknown merchant",
            api.post(
                "/v1/quote",
                &json!({"merchant": other_shop.id, "consumer": alice.id, "order_amount": 100}),
            )
            .await,
            422,
            "unknown_merchant",
        ),
        (
            "no such entry",
            api.get("/v1/entries/999").await,
            404,
            "not_found",
        ),
        (
            "no checkpoint at that size",
            api.get("/v1/checkpoints/999").await,
            404,
            "not_found",
        ),
        (
            "unknown merchant",
            api.get(&format!("/v1/merchants/{}", other_shop.id)).await,
            404,
            "not_found",
        ),
        (
            "receipt for no entry",
            api.get("/v1/receipts/999").await,
            404,
            "not_found",
        ),
        (
            "proof against a tree the log has not reached",
            api.get("/v1/proofs/inclusion?index=0&size=999").await,
            404,
            "not_found",
        ),
        (
            "unknown route",
            api.get("/v1/no/such/route").await,
            404,
            "not_found",
        ),
        ("wrong method", delete, 405, "method_not_allowed"),
    ];
    for (what, (status, body), want_status, want_code) in cases {
        assert_eq!(
            (status, body["error"].as_str()),
            (want_status, Some(want_code)),
            "{what}: {body}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: no message in {body}"
        );
        assert_eq!(
            snapshot(api, &watched).await,
            before,
            "{what} changed the log or a balance"
        );
    }

    // An identical resubmission is not an error: the original receipt, with 200.
    assert_eq!(api.accept(&a1).await, a1_receipt);
    assert_eq!(snapshot(api, &watched).await, before);

    // A batch judges each envelope as if alone, in order.
    let (status, batch) = api
        .post(
            "/v1/entries/batch",
            &json!([
                serde_json::from_slice::<Value>(&sg.purchase(&shop, &bob, "b1", 1_000).to_json_bytes())
                    .expect("json"),
                serde_json::from_slice::<Value>(&tamper_signature(&sg.purchase(&shop, &bob, "b2", 1)))
                    .expect("json"),
                {"not": "an envelope"},
                serde_json::from_slice::<Value>(
                    &sg.redeem(&alice, &shop, "r2", 1_000_000, 5_000).to_json_bytes()
                )
                .expect("json"),
            ]),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    let results = batch["results"].as_array().expect("results");
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["receipt"]["index"], json!(before.0));
    let refusals: Vec<(&Value, &Value)> = results[1..]
        .iter()
        .map(|r| (&r["error"], &r["status"]))
        .collect();
    assert_eq!(
        refusals,
        [
            (&json!("bad_signature"), &json!(401)),
            (&json!("malformed_envelope"), &json!(400)),
            (&json!("insufficient_points"), &json!(422)),
        ]
    );
    assert_eq!(api.tree().await.0, before.0 + 1);

    // Errors are counted by code, answers by route and status.
    let metrics = api.metrics().await;
    for line in [
        "pointsledger_errors_total{code=\"bad_signature\"} 2",
        "pointsledger_errors_total{code=\"too_large\"} 1",
        "route=\"/v1/entries\",method=\"POST\",status=\"401\"} 1",
        "route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    let groups: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pointsledger_groups_committed_total "))
        .and_then(|v| v.parse().ok())
        .expect("groups committed exported");
    assert!(
        groups >= 1,
        "at least the accepted batch entry was committed in a group"
    );
    s.stop().await.expect("clean shutdown");
}

/// A clock that panics on the sequencer thread once armed: the writer dies mid-group, as if the
/// store could no longer be written.
struct FailingClock {
    time: ManualClock,
    armed: AtomicBool,
}

impl Clock for FailingClock {
    fn now_ms(&self) -> u64 {
        if self.armed.load(Ordering::SeqCst) && std::thread::current().name() == Some("sequencer") {
            panic!("injected failure: the writer cannot take entries");
        }
        self.time.now_ms()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_get_503_when_the_writer_fails() {
    let clock = Arc::new(FailingClock {
        time: ManualClock::new(T0),
        armed: AtomicBool::new(false),
    });
    let s = TestServer::start(clock.clone(), test_settings()).await;
    let (api, sg) = (&s.api, &s.signer);
    let (shop, alice) = (Party::new(), Party::new());
    s.register(&shop).await;
    api.accept(&sg.purchase(&shop, &alice, "a1", 10_000)).await;
    let before = snapshot(api, &[&alice]).await;

    clock.armed.store(true, Ordering::SeqCst);
    for n in 0..2 {
        let (status, body) = api
            .submit(&sg.purchase(&shop, &alice, &format!("x{n}"), 100))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("unavailable")),
            "{body}"
        );
        assert_eq!(snapshot(api, &[&alice]).await, before);
    }
    let (status, body) = api
        .post_raw(
            "/v1/entries/batch",
            format!(
                "[{}]",
                String::from_utf8(sg.purchase(&shop, &alice, "x9", 1).to_json_bytes())
                    .expect("utf8")
            )
            .into_bytes(),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (503, Some("unavailable")));
    // Reads do not depend on the writer.
    let (status, health) = api.get("/healthz").await;
    assert_eq!((status, &health["size"]), (200, &json!(before.0)));
    assert!(
        s.stop().await.is_err(),
        "shutdown reports the failed writer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_gets_408_and_changes_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let settings = Settings {
        request_timeout: Duration::from_millis(200),
        body_timeout: Duration::from_millis(200),
        ..test_settings()
    };
    let s = TestServer::start(Arc::new(ManualClock::new(T0)), settings).await;
    let size = s.api.get("/healthz").await.1["size"].clone();
    let addr = s.api.base.trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    // Promise a 100-byte body and send one byte of it.
    sock.write_all(
        b"POST /v1/entries HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{",
    )
    .await
    .expect("write");
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            let n = sock.read(&mut buf).await.expect("read");
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.ends_with(b"}") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("an answer within the timeout");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"timeout\""), "{answer}");
    drop(sock);
    assert_eq!(s.api.get("/healthz").await.1["size"], size);
    s.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemptions_spend_exactly_the_balance() {
    let (s, clock) = TestServer::manual().await;
    let (shop, alice) = (Party::new(), Party::new());
    s.register(&shop).await;
    s.api
        .accept(&s.signer.purchase(&shop, &alice, "a1", 10_000))
        .await; // 1000 points
    clock.advance(15 * DAY_MS);
    let (size, _) = s.api.tree().await;

    // 64 redemptions of 30 points each on distinct orders: 33 fit in 1000 points.
    let envelopes: Vec<Envelope> = (0..64)
        .map(|i| s.signer.redeem(&alice, &shop, &format!("r{i}"), 1_000, 30))
        .collect();
    let tasks = envelopes.into_iter().map(|env| {
        let api = s.api.clone();
        tokio::spawn(async move { api.submit(&env).await })
    });
    let mut accepted = 0;
    let mut refused = 0;
    for result in futures::future::join_all(tasks).await {
        let (status, body) = result.expect("task");
        match (status, body["error"].as_str()) {
            (200, _) => accepted += 1,
            (422, Some("insufficient_points")) => refused += 1,
            other => panic!("unexpected answer {other:?}: {body}"),
        }
    }
    assert_eq!((accepted, refused), (33, 31));
    let b = s.api.balance(&alice).await;
    assert_eq!(fields(&b, &["available", "total"]), [10, 10]);
    assert_eq!(s.api.tree().await.0, size + 33);
    let sum: i64 = all_history(&s.api, &alice, 1000)
        .await
        .iter()
        .map(|r| r["delta"].as_i64().expect("delta"))
        .sum();
    assert_eq!(sum, 10);
    let metrics = s.api.metrics().await;
    assert!(
        metrics.contains("pointsledger_errors_total{code=\"insufficient_points\"} 31"),
        "{metrics}"
    );
    s.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_load_loses_no_acknowledged_entry() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("ledger");
    ledger::init(&data, "sigterm.pointsledger.local").expect("init");
    let operator = keys::read_key_file(&DataDir(data.clone()).operator_key()).expect("op key");
    let signer = Arc::new(Signer::new(operator));
    let d = data.to_str().expect("path").to_owned();
    let args = [
        "--data",
        &d,
        "--listen",
        "127.0.0.1:0",
        "--checkpoint-interval",
        "50ms",
    ];
    let log1 = tmp.path().join("serve1.log");
    let mut bin = Binary::start(&args, &[], &log1);
    let shop = Arc::new(Party::new());
    bin.api.accept(&signer.register(&shop, &rules())).await;

    // Eight clients buy as fast as they can until the server goes away.
    let acked: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|k| {
            let (api, signer, shop) = (bin.api.clone(), signer.clone(), shop.clone());
            let (acked, count) = (acked.clone(), count.clone());
            tokio::spawn(async move {
                let consumer = Party::new();
                let mut odd = Vec::new();
                for n in 0..5_000u64 {
                    let env = signer.purchase(&shop, &consumer, &format!("c{k}-{n}"), 1_000 + n);
                    let sent = api
                        .http
                        .post(api.url("/v1/entries"))
                        .body(env.to_json_bytes())
                        .send()
                        .await;
                    let Ok(resp) = sent else { break };
                    let status = resp.status().as_u16();
                    let Ok(body) = resp.json::<Value>().await else {
                        break;
                    };
                    if status != 200 {
                        odd.push((status, body));
                        break;
                    }
                    let index = body["index"].as_u64().expect("index");
                    let hash = body["leaf_hash"].as_str().expect("hash").to_owned();
                    acked.lock().expect("lock").push((index, hash));
                    count.fetch_add(1, Ordering::SeqCst);
                }
                odd
            })
        })
        .collect();
    eventually(20, "200 acknowledged entries", || async {
        (count.load(Ordering::SeqCst) >= 200).then_some(())
    })
    .await;
    bin.terminate();
    for c in clients {
        let odd = tokio::time::timeout(Duration::from_secs(20), c)
            .await
            .expect("clients stop")
            .expect("client");
        // In-flight requests finish normally; nothing is refused during shutdown.
        assert!(
            odd.is_empty(),
            "unexpected answers during shutdown: {odd:?}"
        );
    }
    let clean = tokio::task::spawn_blocking(move || bin.wait(20))
        .await
        .expect("wait");
    assert!(
        clean,
        "exit status not 0; stderr:\n{}",
        std::fs::read_to_string(&log1).unwrap_or_default()
    );

    // After a restart every acknowledged receipt is in the log with the same leaf hash, and
    // the final checkpoint covers the whole log.
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 200);
    let bin = Binary::start(&args, &[], &tmp.path().join("serve2.log"));
    let (_, log) = bin.api.get("/v1/log").await;
    let size = log["size"].as_u64().expect("size");
    assert_eq!(log["checkpoint_size"], json!(size), "final checkpoint");
    assert!(size > acked.len() as u64);
    let indexes: BTreeSet<u64> = acked.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes.len(), acked.len(), "two receipts share an index");
    for (index, hash) in &acked {
        let (status, leaf) = bin.api.get_bytes(&format!("/v1/entries/{index}")).await;
        assert_eq!(status, 200, "entry {index} is missing");
        assert_eq!(
            &hex::encode(merkle::leaf_hash(&leaf)),
            hash,
            "entry {index}"
        );
    }
    bin.stop();
}

/// Every route the server serves, as (method, path).
const ROUTES: [(&str, &str); 21] = [
    ("post", "/v1/entries"),
    ("get", "/v1/entries"),
    ("post", "/v1/entries/batch"),
    ("get", "/v1/entries/{index}"),
    ("get", "/v1/checkpoint"),
    ("get", "/v1/checkpoints"),
    ("get", "/v1/checkpoints/{size}"),
    ("get", "/v1/proofs/inclusion"),
    ("get", "/v1/proofs/consistency"),
    ("get", "/v1/receipts/{index}"),
    ("get", "/v1/anchors"),
    ("get", "/v1/accounts/{id}"),
    ("get", "/v1/accounts/{id}/history"),
    ("get", "/v1/merchants/{id}"),
    ("post", "/v1/quote"),
    ("get", "/v1/log"),
    ("get", "/v1/openapi.json"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/checkpoint"),
    ("get", "/tile/{path}"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_lists_every_route_and_answers_conform() {
    let (s, clock) = TestServer::manual().await;
    let (api, sg) = (&s.api, &s.signer);
    let (shop, alice, bob) = (Party::new(), Party::new(), Party::new());
    s.register(&shop).await;
    api.accept(&sg.purchase(&shop, &alice, "a1", 10_000)).await;
    api.accept(&sg.refer(&bob, &alice)).await;
    api.accept(&sg.purchase(&shop, &bob, "b1", 20_000)).await;
    clock.advance(15 * DAY_MS);
    api.accept(&sg.redeem(&alice, &shop, "a2", 1_000, 100))
        .await;
    let (size, _) = api.tree().await;

    let (status, doc) = api.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let methods = ["get", "post", "put", "delete", "patch", "head", "options"];
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in item.as_object().expect("path item").keys() {
            if methods.contains(&m.as_str()) {
                documented.insert((m.clone(), path.clone()));
            }
        }
    }
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, listed);

    // Every route answers 200 with a content type and a body its document describes.
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{index}", "1")
            .replace("{size}", &size.to_string())
            .replace("{path}", "0/000.p/1")
            .replace(
                "{id}",
                if path.starts_with("/v1/merchants") {
                    &shop.id
                } else {
                    &alice.id
                },
            );
        let query = match path {
            "/v1/entries" if method == "get" => "?start=0",
            "/v1/proofs/inclusion" => "?index=1",
            "/v1/proofs/consistency" => "?from=1",
            "/v1/accounts/{id}/history" => "?limit=2",
            _ => "",
        };
        let url = api.url(&format!("{concrete}{query}"));
        let req = match (method, path) {
            ("post", "/v1/entries") => api
                .http
                .post(url)
                .body(sg.purchase(&shop, &bob, "o1", 500).to_json_bytes()),
            ("post", "/v1/entries/batch") => api.http.post(url).body("[]"),
            ("post", "/v1/quote") => api
                .http
                .post(url)
                .json(&json!({"merchant": shop.id, "consumer": alice.id, "order_amount": 5_000})),
            ("get", "/v1/receipts/{index}") => {
                api.http.get(url).header("accept", "application/json")
            }
            _ => api.http.get(url),
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .to_owned();
        let body = resp.bytes().await.expect("body");
        assert_eq!(
            status,
            200,
            "{method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
        let content = &doc["paths"][path][method]["responses"]["200"]["content"];
        let schema = content
            .get(&ctype)
            .unwrap_or_else(|| panic!("{method} {path}: {ctype} is not documented: {content}"));
        if ctype == "application/json" {
            let v: Value = serde_json::from_slice(&body).expect("json");
            conforms(&doc, &schema["schema"], &v, &format!("{method} {path}"))
                .unwrap_or_else(|e| panic!("{e}\n{v}"));
        }
    }

    // Error answers conform to ErrorBody.
    let (_, err) = api.get("/v1/entries/999").await;
    conforms(
        &doc,
        &json!({"$ref": "#/components/schemas/ErrorBody"}),
        &err,
        "error",
    )
    .expect("error body");
    s.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_flags_then_environment_then_file_then_defaults() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("ledger");
    ledger::init(&data, "settings.pointsledger.local").expect("init");
    let d = data.to_str().expect("path").to_owned();
    let config = tmp.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "data = {d:?}\nlisten = \"127.0.0.1:0\"\nmax_batch = 3\nrequest_timeout = \"5s\"\n"
        ),
    )
    .expect("write config");
    let cfg = config.to_str().expect("path").to_owned();
    let log = tmp.path().join("serve.log");

    // (args, env, the largest batch accepted: one more is refused)
    type Run<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, usize);
    let runs: Vec<Run> = vec![
        (vec!["--config", &cfg], vec![], 3),
        (
            vec!["--config", &cfg],
            vec![("POINTSLEDGER_MAX_BATCH", "2")],
            2,
        ),
        (
            vec!["--config", &cfg, "--max-batch", "1"],
            vec![("POINTSLEDGER_MAX_BATCH", "2")],
            1,
        ),
        (
            vec!["--listen", "127.0.0.1:0"],
            vec![("POINTSLEDGER_DATA", d.as_str())],
            256,
        ),
    ];
    for (args, env, max) in runs {
        let bin = Binary::start(&args, &env, &log);
        let (status, body) = bin
            .api
            .post("/v1/entries/batch", &json!(vec![json!({}); max]))
            .await;
        assert_eq!(status, 200, "{args:?} {env:?}: {body}");
        let (status, body) = bin
            .api
            .post("/v1/entries/batch", &json!(vec![json!({}); max + 1]))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (413, Some("too_many_entries")),
            "{args:?} {env:?}"
        );
        bin.stop();
    }

    // `serve --help` documents every setting with its variable and default.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pointsledger"))
        .args(["serve", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--data",
        "POINTSLEDGER_DATA",
        "--listen",
        "POINTSLEDGER_LISTEN",
        "127.0.0.1:8080",
        "--config",
        "POINTSLEDGER_CONFIG",
        "--max-body-bytes",
        "POINTSLEDGER_MAX_BODY_BYTES",
        "65536",
        "--max-batch-body-bytes",
        "--max-batch ",
        "POINTSLEDGER_MAX_BATCH",
        "256",
        "--request-timeout",
        "POINTSLEDGER_REQUEST_TIMEOUT",
        "10s",
        "--checkpoint-interval",
        "POINTSLEDGER_CHECKPOINT_INTERVAL",
        "1s",
        "--max-group",
        "POINTSLEDGER_MAX_GROUP",
        "4096",
        "--max-concurrency",
        "POINTSLEDGER_MAX_CONCURRENCY",
        "--max-read-concurrency",
        "POINTSLEDGER_MAX_READ_CONCURRENCY",
        "--body-timeout",
        "POINTSLEDGER_BODY_TIMEOUT",
        "--header-timeout",
        "POINTSLEDGER_HEADER_TIMEOUT",
        "--idle-timeout",
        "POINTSLEDGER_IDLE_TIMEOUT",
        "--max-connections ",
        "POINTSLEDGER_MAX_CONNECTIONS",
        "--max-connections-per-ip",
        "POINTSLEDGER_MAX_CONNECTIONS_PER_IP",
        "--consumer-writes-per-minute",
        "POINTSLEDGER_CONSUMER_WRITES_PER_MINUTE",
        "--consumer-write-burst",
        "POINTSLEDGER_CONSUMER_WRITE_BURST",
    ] {
        assert!(
            help.contains(word),
            "{word} missing from serve --help:\n{help}"
        );
    }

    // A bad setting is a one-line error and a non-zero exit.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pointsledger"))
        .args(["serve", "--config", &cfg, "--request-timeout", "10"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));
}

/// An account's history lists exactly the entries that changed its record (docs/PROTOCOL.md
/// §12.4): a referral binding, which moves no points, is listed for both sides; a refund too
/// small to reverse a point looks at the consumer's and the referrer's accounts, changes
/// neither and is listed for neither; an entry that never names an account is not listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_the_entries_that_change_the_account() {
    let (s, _clock) = TestServer::manual().await;
    let (api, sg) = (&s.api, &s.signer);
    let (shop, alice, bob, carol) = (Party::new(), Party::new(), Party::new(), Party::new());
    s.register(&shop).await;
    let index = |r: &Value| r["index"].as_u64().expect("index");
    let listed = |rows: &[Value]| rows.iter().map(index).collect::<Vec<_>>();
    let a1 = index(&api.accept(&sg.purchase(&shop, &alice, "a1", 10_000)).await);
    let refer = index(&api.accept(&sg.refer(&bob, &alice)).await);
    let b1 = api.accept(&sg.purchase(&shop, &bob, "b1", 20_000)).await;
    assert_eq!(
        changes(&b1).len(),
        2,
        "Bob earns and Alice is rewarded: {b1}"
    );
    let c1 = index(&api.accept(&sg.purchase(&shop, &carol, "c1", 5_000)).await);
    // 1 of 20,000 refunded: no point of Bob's earn or Alice's reward to reverse.
    let tiny = api.accept(&sg.refund(&shop, "b1", 1)).await;
    assert_eq!(changes(&tiny), ch(&[]), "{tiny}");

    let alice_rows = all_history(api, &alice, 10).await;
    assert_eq!(listed(&alice_rows), [a1, refer, index(&b1)]);
    let bob_rows = all_history(api, &bob, 10).await;
    assert_eq!(listed(&bob_rows), [refer, index(&b1)]);
    assert_eq!(listed(&all_history(api, &carol, 10).await), [c1]);
    // The binding is in both histories without moving a point.
    for row in [&alice_rows[1], &bob_rows[0]] {
        assert_eq!(
            (&row["kind"], &row["delta"], &row["changes"]),
            (&json!("referral.accept"), &json!(0), &json!([])),
            "{row}"
        );
    }
    // The account view agrees: Bob is bound and Alice counts him.
    let (_, bob_account) = api.get(&format!("/v1/accounts/{}", bob.id)).await;
    let (_, alice_account) = api.get(&format!("/v1/accounts/{}", alice.id)).await;
    assert_eq!(bob_account["referrer"], json!(alice.id));
    assert_eq!(alice_account["referees"], json!(1));
    s.stop().await.expect("clean stop");
}
