//! Known-answer vectors for the receipt verifier (tests/vectors/receipts/receipts.json).
//!
//! The vectors are built here from fixed seeds and timestamps with the low-level functions
//! (envelopes, leaves, a Merkle tree in memory, signed checkpoints), so that the log can hold
//! entries the ledger itself would refuse: one signed by the wrong roles, one whose signature
//! does not verify, one whose leaf names another index. Each tampered variant fails at exactly
//! one step, with that step's code ([`ReceiptError::code`]).
//!
//! Two verifiers are held to the file: the library's ([`pointsledger::receipt`], here) and the
//! explorer's `verify.js` (tests/browser.rs runs it on the `receipts` in headless Chromium).
//! `documents` (JSON receipts with an anchor) are the library's alone: the explorer checks the
//! tlog-proof text.
//!
//! The file is committed; this test fails if the generator would write anything else. After a
//! deliberate change, rewrite it with `POINTSLEDGER_WRITE_VECTORS=1 cargo test --test
//! receipt_vectors`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use pointsledger::checkpoint::{self, Checkpoint, TlogProof};
use pointsledger::dsse::{self, Envelope};
use pointsledger::engine::Effects;
use pointsledger::ledger::Leaf;
use pointsledger::merkle::{self, MemoryHashes};
use pointsledger::receipt::{self, ReceiptError};
use pointsledger::wire::{self, ReceiptAnchor, ReceiptDocument};
use pointsledger::{anchor::AnchorStatus, keys};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;

const FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/receipts/receipts.json"
);
const ORIGIN: &str = "vectors.pointsledger.dev";
const LOG_SEED: [u8; 32] = [0x11; 32];
const OTHER_LOG_SEED: [u8; 32] = [0x12; 32];
const OPERATOR_SEED: [u8; 32] = [0x13; 32];
const MERCHANT_SEED: [u8; 32] = [0x14; 32];
const CONSUMER_SEED: [u8; 32] = [0x15; 32];
/// 2026-01-01T00:00:00Z; leaf i is sequenced i seconds later.
const T0: u64 = 1_767_225_600_000;
/// Leaves in the tree of the receipts' checkpoint; the anchor covers one more.
const CHECKPOINT_SIZE: u64 = 5;

fn id(key: &SigningKey) -> String {
    keys::public_id(&key.verifying_key())
}

fn purchase(merchant: &str, consumer: &str, order: &str, nonce: &str) -> Vec<u8> {
    format!(
        r#"{{"merchant":"{merchant}","consumer":"{consumer}","order_id":"{order}","amount":2500,"nonce":"{nonce}"}}"#
    )
    .into_bytes()
}

fn register(operator: &str, merchant: &str) -> Vec<u8> {
    format!(
        concat!(
            r#"{{"operator":"{}","merchant":"{}","name":"Vector Shop","#,
            r#""rules":{{"earn_bps":1000,"point_value_milli":1000,"max_redeem_bps":5000,"#,
            r#""validity_ms":31536000000,"pending_ms":1209600000,"referee_discount_bps":1000,"#,
            r#""referee_discount_max":500,"referrer_reward_points":300,"referrer_reward_cap":5,"#,
            r#""max_points_per_order":100000}},"nonce":"op-1"}}"#
        ),
        operator, merchant
    )
    .into_bytes()
}

fn leaf(index: u64, env: Value) -> Vec<u8> {
    serde_json::to_vec(&Leaf {
        index,
        timestamp_ms: T0 + index * 1000,
        envelope: env,
        effects: Effects::default(),
    })
    .expect("leaf JSON")
}

/// A signed note of `body` (ending in a newline) by the log key under `name`, written out by
/// hand (C2SP signed-note: key id = SHA-256(name || 0x0A || 0x01 || public key)[..4]).
fn signed_note(body: &str, name: &str, key: &SigningKey) -> String {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, 0x01]);
    h.update(key.verifying_key().as_bytes());
    let mut sig = h.finalize()[..4].to_vec();
    sig.extend(key.sign(body.as_bytes()).to_bytes());
    format!("{body}\n\u{2014} {name} {}\n", B64.encode(sig))
}

/// Replaces line `n` (0-based) of a text.
fn with_line(text: &str, n: usize, f: impl FnOnce(&str) -> String) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    lines[n] = f(&lines[n]);
    lines.join("\n")
}

fn flip_b64(s: &str) -> String {
    let mut bytes = B64.decode(s).expect("base64");
    bytes[7] ^= 0x10;
    B64.encode(bytes)
}

fn vector(name: &str, key: &str, text: &str, code: Option<&str>) -> Value {
    json!({"name": name, "key": key, "receipt": text, "valid": code.is_none(), "code": code})
}

fn doc_vector(name: &str, key: &str, doc: &ReceiptDocument, code: Option<&str>) -> Value {
    json!({"name": name, "key": key, "document": doc, "valid": code.is_none(), "code": code})
}

/// The whole vector file, as the generator makes it.
fn generate() -> Value {
    let log = SigningKey::from_bytes(&LOG_SEED);
    let other_log = SigningKey::from_bytes(&OTHER_LOG_SEED);
    let operator = SigningKey::from_bytes(&OPERATOR_SEED);
    let merchant = SigningKey::from_bytes(&MERCHANT_SEED);
    let consumer = SigningKey::from_bytes(&CONSUMER_SEED);
    let (m, c) = (id(&merchant), id(&consumer));
    let key = checkpoint::verifier_key(ORIGIN, &log.verifying_key());
    let other_key = checkpoint::verifier_key(ORIGIN, &other_log.verifying_key());

    let sign = |kind: &str, payload: Vec<u8>, k: &SigningKey| -> Envelope {
        dsse::sign(kind, payload, k).expect("sign")
    };
    // The signature of another payload by the right key: well formed, but not over this one.
    let mut forged = sign("purchase", purchase(&m, &c, "V-3", "m-3"), &merchant).to_json();
    forged["signatures"][0]["sig"] = sign("purchase", purchase(&m, &c, "V-3", "m-33"), &merchant)
        .to_json()["signatures"][0]["sig"]
        .clone();
    let envelopes = [
        sign("merchant.register", register(&id(&operator), &m), &operator).to_json(),
        sign("purchase", purchase(&m, &c, "V-1", "m-1"), &merchant).to_json(),
        // Signed by the consumer instead of the merchant.
        sign("purchase", purchase(&m, &c, "V-2", "c-2"), &consumer).to_json(),
        forged,
        sign("purchase", purchase(&m, &c, "V-4", "m-4"), &merchant).to_json(),
        sign("purchase", purchase(&m, &c, "V-5", "m-5"), &merchant).to_json(),
    ];
    let leaves: Vec<Vec<u8>> = envelopes
        .into_iter()
        .enumerate()
        .map(|(i, env)| {
            // Leaf 4 says it is entry 9.
            let said = if i == 4 { 9 } else { i as u64 };
            leaf(said, env)
        })
        .collect();
    let mut tree = MemoryHashes::new();
    for l in &leaves {
        tree.append(&merkle::leaf_hash(l)).expect("append");
    }
    let root = merkle::root(CHECKPOINT_SIZE, &tree).expect("root");
    let cp = Checkpoint {
        origin: ORIGIN.to_owned(),
        size: CHECKPOINT_SIZE,
        root,
    };
    let note = checkpoint::sign_checkpoint(&cp, &log).expect("checkpoint");
    let receipt = |index: u64, note: &str| -> String {
        TlogProof {
            extra: Some(leaves[index as usize].clone()),
            index,
            proof: merkle::prove_inclusion(CHECKPOINT_SIZE, index, &tree).expect("proof"),
            checkpoint: note.to_owned(),
        }
        .to_text()
    };
    let good = receipt(1, &note);
    let body = cp.body_text();
    let foreign_body = body.replacen(ORIGIN, "other.pointsledger.dev", 1);
    let foreign_note = signed_note(&foreign_body, ORIGIN, &log);
    let parts: Vec<&str> = key.splitn(3, '+').collect();
    let key_id = u32::from_str_radix(parts[1], 16).expect("hex key id");
    let bad_key_id = format!("{}+{:08x}+{}", parts[0], key_id ^ 1, parts[2]);
    // The checkpoint's lines follow the first empty line: origin, size, root.
    let root_line = good
        .split('\n')
        .position(str::is_empty)
        .expect("blank line")
        + 3;

    let receipts = vec![
        vector("a purchase signed by its merchant", &key, &good, None),
        vector(
            "a merchant registration signed by the operator",
            &key,
            &receipt(0, &note),
            None,
        ),
        vector(
            "not a tlog-proof (another header)",
            &key,
            &good.replacen("tlog-proof@v1", "tlog-proof@v9", 1),
            Some("malformed_receipt"),
        ),
        vector(
            "no extra line: nothing to check the proof against",
            &key,
            &good.replacen(&format!("{}\n", good.lines().nth(1).expect("extra")), "", 1),
            Some("malformed_receipt"),
        ),
        vector(
            "a verifier key whose key id does not match its key",
            &bad_key_id,
            &good,
            Some("bad_verifier_key"),
        ),
        vector(
            "the verifier key of another log under the same name",
            &other_key,
            &good,
            Some("bad_checkpoint_signature"),
        ),
        vector(
            "the checkpoint's root line changed",
            &key,
            &with_line(&good, root_line, flip_b64),
            Some("bad_checkpoint_signature"),
        ),
        vector(
            "a checkpoint of another log, signed by this log's key",
            &key,
            &receipt(1, &foreign_note),
            Some("bad_checkpoint"),
        ),
        vector(
            "one byte of the leaf changed",
            &key,
            &with_line(&good, 1, |l| {
                let mut bytes = B64.decode(&l["extra ".len()..]).expect("leaf");
                let at = bytes
                    .windows(15)
                    .position(|w| w == b"\"timestamp_ms\":")
                    .expect("timestamp")
                    + 15;
                bytes[at] = if bytes[at] == b'9' { b'8' } else { b'9' };
                format!("extra {}", B64.encode(bytes))
            }),
            Some("bad_inclusion_proof"),
        ),
        vector(
            "one bit of a proof hash flipped",
            &key,
            &with_line(&good, 3, flip_b64),
            Some("bad_inclusion_proof"),
        ),
        vector(
            "the index line changed",
            &key,
            &with_line(&good, 2, |_| "index 2".to_owned()),
            Some("bad_inclusion_proof"),
        ),
        vector(
            "a leaf that names another index than its place in the log",
            &key,
            &receipt(4, &note),
            Some("malformed_leaf"),
        ),
        vector(
            "an envelope signature over another payload",
            &key,
            &receipt(3, &note),
            Some("bad_envelope_signature"),
        ),
        vector(
            "a purchase signed by its consumer, not its merchant",
            &key,
            &receipt(2, &note),
            Some("wrong_signers"),
        ),
    ];

    // Documents: the receipt of leaf 1 with an anchor at size 6 (or 5), and tampered twins.
    let anchored = |size: u64| -> ReceiptAnchor {
        let root = merkle::root(size, &tree).expect("root");
        let proof = merkle::prove_consistency(CHECKPOINT_SIZE, size, &tree).expect("proof");
        ReceiptAnchor {
            chain_id: 31337,
            contract: "0x5fbdb2315678afecb367f032d93f642f64180aa3".into(),
            tree_size: size,
            root_hash: wire::encode_hash(&root),
            root: hex::encode(root),
            status: AnchorStatus::Final,
            tx_hash: Some(format!("0x{}", "ab".repeat(32))),
            block_number: Some(7),
            proof: wire::encode_hashes(&proof),
            consistency_proof: proof.iter().map(hex::encode).collect(),
        }
    };
    let doc = |tlog_proof: &str, anchor: Option<ReceiptAnchor>| ReceiptDocument {
        tlog_proof: tlog_proof.to_owned(),
        index: 1,
        checkpoint_size: CHECKPOINT_SIZE,
        anchor,
    };
    let with_anchor = |f: &dyn Fn(&mut ReceiptAnchor)| {
        let mut a = anchored(6);
        f(&mut a);
        doc(&good, Some(a))
    };
    let mut other_index = doc(&good, Some(anchored(6)));
    other_index.index = 2;
    let documents = vec![
        doc_vector("no anchor yet", &key, &doc(&good, None), None),
        doc_vector(
            "anchored at a later size",
            &key,
            &doc(&good, Some(anchored(6))),
            None,
        ),
        doc_vector(
            "anchored at the checkpoint's own size (empty proof)",
            &key,
            &doc(&good, Some(anchored(CHECKPOINT_SIZE))),
            None,
        ),
        doc_vector(
            "the document's index is not its tlog-proof's",
            &key,
            &other_index,
            Some("malformed_receipt"),
        ),
        doc_vector(
            "the deprecated hex root disagrees with root_hash",
            &key,
            &with_anchor(&|a| a.root = hex::encode([7u8; 32])),
            Some("malformed_receipt"),
        ),
        doc_vector(
            "one bit of a consistency proof hash flipped",
            &key,
            &with_anchor(&|a| {
                a.proof[0] = flip_b64(&a.proof[0]);
                a.consistency_proof[0] = hex::encode(B64.decode(&a.proof[0]).expect("base64"));
            }),
            Some("bad_consistency_proof"),
        ),
        doc_vector(
            "another anchored root",
            &key,
            &with_anchor(&|a| {
                a.root_hash = flip_b64(&a.root_hash);
                a.root = hex::encode(B64.decode(&a.root_hash).expect("base64"));
            }),
            Some("bad_consistency_proof"),
        ),
        doc_vector(
            "an anchored size below the checkpoint's",
            &key,
            &with_anchor(&|a| a.tree_size = CHECKPOINT_SIZE - 1),
            Some("bad_consistency_proof"),
        ),
        doc_vector(
            "an anchored receipt of an entry signed by the wrong roles",
            &key,
            &ReceiptDocument {
                index: 2,
                ..doc(&receipt(2, &note), Some(anchored(6)))
            },
            Some("wrong_signers"),
        ),
    ];
    json!({
        "about": "Known-answer vectors for pointsledger receipts (docs/PROTOCOL.md §9.4, §9.5), \
                  made by tests/receipt_vectors.rs. Each `receipts` item is a tlog-proof text \
                  and the verifier key to check it with; each `documents` item a JSON receipt \
                  with its anchor. `valid` is the verdict; `code` names the first step that \
                  fails: malformed_receipt, bad_verifier_key, bad_checkpoint_signature, \
                  bad_checkpoint, bad_inclusion_proof, malformed_leaf, bad_envelope_signature, \
                  wrong_signers, bad_consistency_proof.",
        "receipts": receipts,
        "documents": documents,
    })
}

fn committed() -> Value {
    let text = std::fs::read_to_string(FILE).expect("tests/vectors/receipts/receipts.json");
    serde_json::from_str(&text).expect("the vector file is JSON")
}

#[test]
fn the_vector_file_is_what_the_generator_makes() {
    let made = generate();
    if std::env::var_os("POINTSLEDGER_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&made).expect("json") + "\n";
        std::fs::create_dir_all(std::path::Path::new(FILE).parent().expect("dir")).expect("mkdir");
        std::fs::write(FILE, text).expect("write the vectors");
    }
    assert!(
        committed() == made,
        "{FILE} is not what the generator makes; after a deliberate change run \
         POINTSLEDGER_WRITE_VECTORS=1 cargo test --test receipt_vectors"
    );
}

fn verdict(result: Result<receipt::VerifiedReceipt, ReceiptError>) -> Option<&'static str> {
    result.err().map(|e| e.code().as_str())
}

#[test]
fn the_library_gives_every_vector_its_verdict() {
    let file = committed();
    let mut codes = BTreeSet::new();
    let receipts = file["receipts"].as_array().expect("receipts");
    let documents = file["documents"].as_array().expect("documents");
    for v in receipts.iter().chain(documents) {
        let key = v["key"].as_str().expect("key");
        let got = match v.get("receipt") {
            Some(text) => verdict(receipt::verify_text(text.as_str().expect("text"), key)),
            None => {
                let doc: ReceiptDocument =
                    serde_json::from_value(v["document"].clone()).expect("a receipt document");
                let text = serde_json::to_string(&doc).expect("json");
                // Through a file's text too, as `pointsledger verify` reads it.
                let via_file = verdict(receipt::verify_file(&text, key));
                let got = verdict(receipt::verify_document(&doc, key));
                assert_eq!(via_file, got, "{}", v["name"]);
                got
            }
        };
        let want = v["code"].as_str();
        assert_eq!(got, want, "{}", v["name"]);
        assert_eq!(v["valid"].as_bool(), Some(want.is_none()), "{}", v["name"]);
        codes.extend(want);
    }
    // Every offline step has a vector that fails at it.
    let steps = [
        "malformed_receipt",
        "bad_verifier_key",
        "bad_checkpoint_signature",
        "bad_checkpoint",
        "bad_inclusion_proof",
        "malformed_leaf",
        "bad_envelope_signature",
        "wrong_signers",
        "bad_consistency_proof",
    ];
    assert_eq!(codes, steps.into_iter().collect::<BTreeSet<_>>());
}

#[test]
fn a_valid_receipt_says_what_it_proves() {
    let file = committed();
    let v = &file["documents"][1];
    let doc: ReceiptDocument = serde_json::from_value(v["document"].clone()).expect("document");
    let r = receipt::verify_document(&doc, v["key"].as_str().expect("key")).expect("valid");
    assert_eq!((r.index, r.kind.as_str()), (1, "purchase"));
    assert_eq!(r.checkpoint.size, CHECKPOINT_SIZE);
    assert_eq!(
        r.signers,
        [id(&SigningKey::from_bytes(&MERCHANT_SEED))],
        "exactly the merchant"
    );
    let a = r.anchor.expect("the anchor part");
    assert_eq!(a.tree_size, 6);
    assert_eq!(
        wire::encode_hash(&a.root),
        doc.anchor.expect("anchor").root_hash
    );
}
