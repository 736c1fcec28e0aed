//! The worked example of docs/PROTOCOL.md, rebuilt with the public API.
//!
//! Every key, payload, PAE, signature, envelope, leaf, hash, root, checkpoint, proof and EVM
//! value that the document prints is computed here from the fixed seeds and timestamps and must
//! appear in the document verbatim, so the document cannot drift from the code. The example is
//! built twice: through a real ledger on a temporary directory (the write path users run), and
//! from the lower-level functions alone (what an independent verifier would do); both must give
//! the same bytes.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use pointsledger::checkpoint::{self, Checkpoint, TlogProof};
use pointsledger::clock::ManualClock;
use pointsledger::dsse::{self, Envelope};
use pointsledger::engine::{Effects, StateView as _};
use pointsledger::ledger::{Leaf, Ledger, LedgerError, Receipt};
use pointsledger::merkle::{self, MemoryHashes};
use pointsledger::payload::Payload;
use pointsledger::{evm, keys};
use sha2::{Digest as _, Sha256};

const DOC: &str = include_str!("../docs/PROTOCOL.md");

const ORIGIN: &str = "example.pointsledger.dev";
const OPERATOR_SEED: [u8; 32] = [0x01; 32];
const LOG_SEED: [u8; 32] = [0x02; 32];
const MERCHANT_SEED: [u8; 32] = [0x03; 32];
const CONSUMER_SEED: [u8; 32] = [0x04; 32];
/// secp256k1 secret of the consumer's EVM wallet in the link example.
const EVM_SECRET: [u8; 32] = [0x05; 32];

/// Leaf timestamps: 2026-01-01T00:00:00Z, one hour later, and fifteen days after the purchase.
const T_REGISTER: u64 = 1_767_225_600_000;
const T_PURCHASE: u64 = 1_767_229_200_000;
const T_REDEEM: u64 = 1_768_525_200_000;

/// Collects every value the document must contain and reports all the missing ones at once.
#[derive(Default)]
struct Doc {
    missing: Vec<String>,
}

impl Doc {
    fn has(&mut self, label: &str, value: &str) {
        assert!(!value.is_empty(), "{label} is empty");
        if !DOC.contains(value) {
            self.missing.push(format!("--- {label}:\n{value}"));
        }
    }

    fn finish(self) {
        assert!(
            self.missing.is_empty(),
            "docs/PROTOCOL.md does not contain these values of the worked example:\n{}",
            self.missing.join("\n")
        );
    }
}

fn id(key: &SigningKey) -> String {
    keys::public_id(&key.verifying_key())
}

fn register_payload(operator: &str, merchant: &str) -> String {
    format!(
        concat!(
            r#"{{"operator":"{}","merchant":"{}","name":"Example Shop","#,
            r#""rules":{{"earn_bps":1000,"point_value_milli":1000,"max_redeem_bps":5000,"#,
            r#""validity_ms":31536000000,"pending_ms":1209600000,"referee_discount_bps":1000,"#,
            r#""referee_discount_max":500,"referrer_reward_points":300,"referrer_reward_cap":5,"#,
            r#""max_points_per_order":100000}},"nonce":"op-1"}}"#
        ),
        operator, merchant
    )
}

fn purchase_payload(merchant: &str, consumer: &str) -> String {
    format!(
        r#"{{"merchant":"{merchant}","consumer":"{consumer}","order_id":"A-1","amount":2500,"nonce":"m-1"}}"#
    )
}

fn redeem_payload(consumer: &str, merchant: &str) -> String {
    format!(
        r#"{{"consumer":"{consumer}","merchant":"{merchant}","order_id":"A-2","order_amount":1000,"points":200,"nonce":"c-1"}}"#
    )
}

/// One request of the story: its kind, payload bytes, signers in signing order, leaf time.
struct Step {
    kind: &'static str,
    payload: String,
    signers: Vec<SigningKey>,
    timestamp_ms: u64,
}

fn sign(step: &Step) -> Envelope {
    let mut env = dsse::sign(
        step.kind,
        step.payload.clone().into_bytes(),
        &step.signers[0],
    )
    .expect("sign");
    for key in &step.signers[1..] {
        env.add_signature(key).expect("cosign");
    }
    env
}

/// Creates a ledger with the example's fixed log and operator keys.
fn init_with_fixed_keys(dir: &std::path::Path, log: &SigningKey, operator: &SigningKey) {
    pointsledger::ledger::init_with_keys(dir, ORIGIN, log, operator).expect("init");
}

#[test]
fn worked_example_matches_the_document() {
    let mut doc = Doc::default();
    let operator = SigningKey::from_bytes(&OPERATOR_SEED);
    let log = SigningKey::from_bytes(&LOG_SEED);
    let merchant = SigningKey::from_bytes(&MERCHANT_SEED);
    let consumer = SigningKey::from_bytes(&CONSUMER_SEED);

    // Keys: public ids, and a key file as `keys::write_key_file` writes it.
    for (label, key) in [
        ("operator id", &operator),
        ("log key id", &log),
        ("merchant id", &merchant),
        ("consumer id", &consumer),
    ] {
        doc.has(label, &id(key));
        assert_eq!(
            keys::parse_public_id(&id(key)).expect("id"),
            key.verifying_key()
        );
    }
    let key_dir = tempfile::tempdir().expect("tempdir");
    let key_path = key_dir.path().join("merchant.key");
    keys::write_key_file(&key_path, &merchant).expect("write key");
    let key_file = std::fs::read_to_string(&key_path).expect("read key");
    assert_eq!(key_file.len(), keys::KEY_FILE_LEN);
    doc.has("merchant key file", &key_file);
    assert_eq!(
        keys::read_key_file(&key_path).expect("read").to_bytes(),
        MERCHANT_SEED
    );
    // Weak and non-canonical ids named in the document are refused.
    for weak in [
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ] {
        doc.has("weak id", weak);
        assert!(matches!(
            keys::parse_public_id(weak),
            Err(keys::KeyError::WeakPublicKey { .. })
        ));
    }
    let non_canonical = "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
    doc.has("non-canonical id", non_canonical);
    assert!(matches!(
        keys::parse_public_id(non_canonical),
        Err(keys::KeyError::MalformedPublicId { .. })
    ));

    // The story.
    let (op_id, m_id, c_id) = (id(&operator), id(&merchant), id(&consumer));
    let steps = [
        Step {
            kind: "merchant.register",
            payload: register_payload(&op_id, &m_id),
            signers: vec![operator.clone()],
            timestamp_ms: T_REGISTER,
        },
        Step {
            kind: "purchase",
            payload: purchase_payload(&m_id, &c_id),
            signers: vec![merchant.clone()],
            timestamp_ms: T_PURCHASE,
        },
        Step {
            kind: "redeem",
            payload: redeem_payload(&c_id, &m_id),
            signers: vec![consumer.clone(), merchant.clone()],
            timestamp_ms: T_REDEEM,
        },
    ];

    let dir = tempfile::tempdir().expect("tempdir");
    init_with_fixed_keys(dir.path(), &log, &operator);
    let clock = ManualClock::new(T_REGISTER);
    let mut ledger = Ledger::open(dir.path(), Arc::new(clock.clone())).expect("open");
    let verifier_key = ledger.verifier_key();
    assert_eq!(
        verifier_key,
        checkpoint::verifier_key(ORIGIN, &log.verifying_key())
    );
    doc.has("verifier key", &verifier_key);
    let (_, key_id_and_key) = verifier_key.split_once('+').expect("name+");
    let (key_id_hex, _) = key_id_and_key.split_once('+').expect("+key");
    let mut key_id_input = format!("{ORIGIN}\n").into_bytes();
    key_id_input.push(0x01);
    key_id_input.extend_from_slice(log.verifying_key().as_bytes());
    assert_eq!(
        key_id_hex,
        hex::encode(&Sha256::digest(&key_id_input)[..4]),
        "key ID = first 4 bytes of SHA-256(name || 0x0A || 0x01 || pubkey)"
    );
    doc.has("verifier key ID", key_id_hex);

    let mut envelopes = Vec::new();
    let mut receipts: Vec<Receipt> = Vec::new();
    let mut leaves: Vec<Vec<u8>> = Vec::new();
    let mut memory = MemoryHashes::new();
    for (index, step) in steps.iter().enumerate() {
        let label = |what: &str| format!("{} {what}", step.kind);
        let env = sign(step);
        Payload::parse(step.kind, step.payload.as_bytes()).expect("payload");
        doc.has(&label("payload"), &step.payload);
        doc.has(&label("payload base64"), env.payload_base64());
        let pae = String::from_utf8(env.pae()).expect("PAE is ASCII here");
        assert_eq!(
            pae,
            format!(
                "DSSEv1 {} {} {} {}",
                env.payload_type().len(),
                env.payload_type(),
                step.payload.len(),
                step.payload
            )
        );
        doc.has(&label("PAE"), &pae);
        doc.has(&label("PAE SHA-256"), &hex::encode(env.digest()));
        for s in env.signatures() {
            doc.has(
                &label("signature"),
                &BASE64.encode(s.signature().to_bytes()),
            );
        }
        let env_json = String::from_utf8(env.to_json_bytes()).expect("utf-8");
        doc.has(&label("envelope"), &env_json);
        let parsed = dsse::parse(env_json.as_bytes()).expect("parse");
        assert_eq!(parsed, env);
        parsed.verify().expect("verify");

        clock.set(step.timestamp_ms);
        let receipt = ledger
            .submit(vec![env.clone()])
            .remove(0)
            .expect("accepted");
        assert_eq!(receipt.index, index as u64);
        assert_eq!(receipt.timestamp_ms, step.timestamp_ms);
        let leaf_bytes = ledger
            .store()
            .leaf(receipt.index)
            .expect("read")
            .expect("leaf");

        // The same leaf, built without the ledger: the envelope as a JSON value, the effects.
        let rebuilt = serde_json::to_vec(&Leaf {
            index: index as u64,
            timestamp_ms: step.timestamp_ms,
            envelope: env.to_json(),
            effects: receipt.effects.clone(),
        })
        .expect("leaf json");
        assert_eq!(rebuilt, leaf_bytes);
        let leaf = Leaf::decode(receipt.index, &leaf_bytes).expect("decode");
        assert_eq!(leaf.envelope().expect("envelope"), env);

        let leaf_text = String::from_utf8(leaf_bytes.clone()).expect("utf-8");
        doc.has(&label("leaf"), &leaf_text);
        let leaf_hash = merkle::leaf_hash(&leaf_bytes);
        assert_eq!(receipt.hash, BASE64.encode(leaf_hash));
        assert_eq!(receipt.leaf_hash, hex::encode(leaf_hash));
        doc.has(&label("leaf hash"), &receipt.leaf_hash);
        doc.has(
            &label("effects"),
            &serde_json::to_string(&receipt.effects).expect("json"),
        );
        memory.append(&leaf_hash).expect("append");
        envelopes.push(env);
        leaves.push(leaf_bytes);
        receipts.push(receipt);
    }

    // What the effects say, worked out by hand: 10% of 2500 = 250 points pending for 14 days,
    // then 200 of them spent for a discount of 200.
    let expected: [&str; 3] = [
        r#"{"changes":[]}"#,
        &format!(
            r#"{{"changes":[{{"account":"{c_id}","delta":250,"reason":"earn","lot":"1.0","available_at":1768438800000,"expires_at":1799974800000}}]}}"#
        ),
        &format!(
            r#"{{"changes":[{{"account":"{c_id}","delta":-200,"reason":"redeem","lot":"1.0"}}],"discount":{{"source":"points","value":200}}}}"#
        ),
    ];
    for (receipt, want) in receipts.iter().zip(expected) {
        let want: Effects = serde_json::from_str(want).expect("effects");
        assert_eq!(receipt.effects, want);
    }
    let balance = ledger
        .store()
        .account(&c_id)
        .expect("read")
        .expect("account")
        .balance(T_REDEEM);
    assert_eq!(
        (balance.total, balance.available, balance.pending),
        (50, 50, 0)
    );

    doc.has(
        "purchase receipt",
        &serde_json::to_string(&receipts[1]).expect("json"),
    );

    // The tree: the roots after each entry, and the one interior node of the first two leaves.
    let leaf_hashes: Vec<_> = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
    let node01 = merkle::node_hash(&leaf_hashes[0], &leaf_hashes[1]);
    let mut roots = Vec::new();
    for size in 1..=3u64 {
        let root = merkle::root(size, ledger.store()).expect("root");
        doc.has(&format!("root {size} hex"), &hex::encode(root));
        roots.push(root);
    }
    assert_eq!(roots[0], leaf_hashes[0]);
    assert_eq!(roots[1], node01);
    assert_eq!(roots[2], merkle::node_hash(&node01, &leaf_hashes[2]));
    assert_eq!(memory.root().expect("root"), roots[2]);
    doc.has("root 3 base64", &BASE64.encode(roots[2]));
    doc.has("empty root", &hex::encode(merkle::empty_root()));

    // The checkpoint of size 3: body and signed note, from the ledger and from the parts.
    let note = ledger.checkpoint().expect("checkpoint").expect("grew");
    let cp = Checkpoint {
        origin: ORIGIN.to_owned(),
        size: 3,
        root: roots[2],
    };
    assert_eq!(checkpoint::sign_checkpoint(&cp, &log).expect("sign"), note);
    assert_eq!(
        checkpoint::open_checkpoint(&note, &verifier_key).expect("open"),
        cp
    );
    doc.has("checkpoint body", &cp.body_text());
    doc.has("checkpoint note", &note);
    let (_, sig_line) = note.split_once("\n\n").expect("signature block");
    let sig_b64 = sig_line
        .trim_end()
        .rsplit_once(' ')
        .expect("signature line")
        .1;
    let sig_raw = BASE64.decode(sig_b64).expect("base64");
    assert_eq!(sig_raw.len(), 68);
    assert_eq!(hex::encode(&sig_raw[..4]), key_id_hex);
    doc.has("checkpoint signature", &BASE64.encode(&sig_raw[4..]));

    // Proofs against it: inclusion of the purchase (leaf 1), consistency from size 1.
    let inclusion = merkle::prove_inclusion(3, 1, ledger.store()).expect("inclusion");
    assert_eq!(inclusion, vec![leaf_hashes[0], leaf_hashes[2]]);
    merkle::verify_inclusion(1, 3, &leaf_hashes[1], &inclusion, &roots[2]).expect("verifies");
    let consistency = merkle::prove_consistency(1, 3, ledger.store()).expect("consistency");
    assert_eq!(consistency, vec![leaf_hashes[1], leaf_hashes[2]]);
    merkle::verify_consistency(1, 3, &roots[0], &roots[2], &consistency).expect("consistent");
    assert!(matches!(
        merkle::verify_consistency(0, 3, &merkle::empty_root(), &roots[2], &[]),
        Err(merkle::MerkleError::SizeZero)
    ));
    for (label, h) in [
        ("leaf 0 hash base64", leaf_hashes[0]),
        ("leaf 1 hash base64", leaf_hashes[1]),
        ("leaf 2 hash base64", leaf_hashes[2]),
    ] {
        doc.has(label, &BASE64.encode(h));
    }

    let proof = TlogProof {
        extra: Some(leaves[1].clone()),
        index: 1,
        proof: inclusion,
        checkpoint: note.clone(),
    };
    let proof_text = proof.to_text();
    doc.has("tlog-proof", &proof_text);
    let parsed = TlogProof::parse(&proof_text).expect("parse");
    assert_eq!(parsed, proof);
    let verified = checkpoint::verify_tlog_proof(&parsed, &verifier_key, &leaves[1]).expect("ok");
    assert_eq!(verified, cp);

    // A resubmitted envelope gets its original receipt and adds nothing; the same payload with
    // fewer signers is not a resubmission.
    let again = ledger
        .submit(vec![envelopes[1].clone()])
        .remove(0)
        .expect("same");
    assert_eq!(again, receipts[1]);
    let half_of_logged =
        dsse::sign("redeem", steps[2].payload.clone().into_bytes(), &consumer).expect("sign");
    assert_eq!(half_of_logged.digest(), envelopes[2].digest());
    let refused = ledger
        .submit(vec![half_of_logged])
        .remove(0)
        .expect_err("fewer signers");
    assert_eq!(refused.code(), "wrong_signers");
    // A new redemption the merchant has not countersigned is refused.
    let half = dsse::sign(
        "redeem",
        redeem_payload(&c_id, &m_id)
            .replace("A-2", "A-3")
            .replace("c-1", "c-2")
            .into_bytes(),
        &consumer,
    )
    .expect("sign");
    let refused = ledger.submit(vec![half]).remove(0);
    assert!(matches!(&refused, Err(e @ LedgerError::Engine(_)) if e.code() == "wrong_signers"));
    assert_eq!(ledger.size(), 3);

    // Payload examples of the kinds the story does not use.
    let friend = SigningKey::from_bytes(&FRIEND_SEED);
    let f_id = id(&friend);
    doc.has("friend id", &f_id);
    let refund = format!(r#"{{"merchant":"{m_id}","order_id":"A-1","amount":1000,"nonce":"m-2"}}"#);
    let referral = format!(r#"{{"consumer":"{f_id}","referrer":"{c_id}","nonce":"f-1"}}"#);
    for (kind, payload, signer) in [
        ("refund", &refund, &m_id),
        ("referral.accept", &referral, &f_id),
    ] {
        let parsed = Payload::parse(kind, payload.as_bytes()).expect("payload");
        assert_eq!(parsed.required_signers(), vec![signer.as_str()]);
        doc.has(&format!("{kind} payload"), payload);
    }

    // The EIP-191 link example: message, wallet address, signature, and its payload.
    let address = evm::address_of(&EVM_SECRET).expect("address");
    let message = evm::link_message(ORIGIN, &c_id, &address, "c-2");
    let evm_signature = evm::sign_link(&EVM_SECRET, &message).expect("sign");
    evm::verify_link(&address, &message, &evm_signature).expect("verifies");
    doc.has("EVM address", &address);
    doc.has("link message", &message);
    doc.has("EIP-191 signature", &evm_signature);
    let link_payload = format!(
        r#"{{"consumer":"{c_id}","address":"{address}","evm_signature":"{evm_signature}","nonce":"c-2"}}"#
    );
    Payload::parse("account.link_evm", link_payload.as_bytes()).expect("link payload");
    doc.has("link payload", &link_payload);
    let mut prefixed = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    prefixed.extend_from_slice(message.as_bytes());
    assert_eq!(
        ethers_core::utils::hash_message(&message).as_bytes(),
        &ethers_core::utils::keccak256(&prefixed)
    );
    doc.has(
        "EIP-191 digest",
        &hex::encode(ethers_core::utils::hash_message(&message).as_bytes()),
    );

    doc.finish();
}

/// Friend of the consumer in the rules walk-through (the referee).
const FRIEND_SEED: [u8; 32] = [0x06; 32];

/// One entry of the rules walk-through: what it is, the request, who signs, minutes after
/// `T_REGISTER` (or an absolute time).
struct Entry {
    what: &'static str,
    kind: &'static str,
    payload: serde_json::Value,
    signers: Vec<SigningKey>,
    at: u64,
}

/// The rules walk-through of docs/PROTOCOL.md: rounding, cumulative refunds, referral discount
/// and reward, debt and its settlement, expiry. Each entry's effects are rendered as one line
/// (`C` the consumer, `F` the friend) and the whole block must appear in the document.
#[test]
fn rules_walk_through_matches_the_document() {
    use serde_json::json;
    let operator = SigningKey::from_bytes(&OPERATOR_SEED);
    let log = SigningKey::from_bytes(&LOG_SEED);
    let merchant = SigningKey::from_bytes(&MERCHANT_SEED);
    let consumer = SigningKey::from_bytes(&CONSUMER_SEED);
    let friend = SigningKey::from_bytes(&FRIEND_SEED);
    let (op, m, c, f) = (id(&operator), id(&merchant), id(&consumer), id(&friend));
    let minute = 60_000;
    let year_later = T_REGISTER + 366 * pointsledger::clock::DAY_MS;
    let rules = json!({"earn_bps":1000,"point_value_milli":1000,"max_redeem_bps":5000,
        "validity_ms":31_536_000_000u64,"pending_ms":0,"referee_discount_bps":1000,
        "referee_discount_max":500,"referrer_reward_points":300,"referrer_reward_cap":5,
        "max_points_per_order":100_000});
    let purchase = |who: &str, order: &str, amount: u64, nonce: &str| {
        json!({"merchant": m, "consumer": who, "order_id": order,
               "amount": amount, "nonce": nonce})
    };
    let refund = |order: &str, amount: u64, nonce: &str| {
        json!({"merchant": m, "order_id": order,
               "amount": amount, "nonce": nonce})
    };
    let redeem = |order: &str, order_amount: u64, points: u64, nonce: &str| {
        json!({"consumer": f, "merchant": m, "order_id": order, "order_amount": order_amount,
               "points": points, "nonce": nonce})
    };
    let ms = |k: &SigningKey| vec![k.clone()];
    let both = vec![friend.clone(), merchant.clone()];
    let entries = vec![
        Entry {
            what: "merchant.register (pending_ms 0)",
            kind: "merchant.register",
            payload: json!({"operator": op, "merchant": m, "name": "Example Shop",
                            "rules": rules, "nonce": "op-1"}),
            signers: ms(&operator),
            at: 0,
        },
        Entry {
            what: "purchase C P-1 amount 100",
            kind: "purchase",
            payload: purchase(&c, "P-1", 100, "m-1"),
            signers: ms(&merchant),
            at: 1,
        },
        Entry {
            what: "refund P-1 amount 33",
            kind: "refund",
            payload: refund("P-1", 33, "m-2"),
            signers: ms(&merchant),
            at: 2,
        },
        Entry {
            what: "refund P-1 amount 33",
            kind: "refund",
            payload: refund("P-1", 33, "m-3"),
            signers: ms(&merchant),
            at: 3,
        },
        Entry {
            what: "refund P-1 amount 34",
            kind: "refund",
            payload: refund("P-1", 34, "m-4"),
            signers: ms(&merchant),
            at: 4,
        },
        Entry {
            what: "referral.accept F names C",
            kind: "referral.accept",
            payload: json!({"consumer": f, "referrer": c, "nonce": "f-1"}),
            signers: ms(&friend),
            at: 5,
        },
        Entry {
            what: "purchase F P-2 amount 10000",
            kind: "purchase",
            payload: purchase(&f, "P-2", 10_000, "m-5"),
            signers: ms(&merchant),
            at: 6,
        },
        Entry {
            what: "redeem F P-3 order 2000 points 900",
            kind: "redeem",
            payload: redeem("P-3", 2_000, 900, "f-2"),
            signers: both.clone(),
            at: 7,
        },
        Entry {
            what: "purchase F P-3 amount 2000",
            kind: "purchase",
            payload: purchase(&f, "P-3", 2_000, "m-6"),
            signers: ms(&merchant),
            at: 8,
        },
        Entry {
            what: "refund P-2 amount 10000",
            kind: "refund",
            payload: refund("P-2", 10_000, "m-7"),
            signers: ms(&merchant),
            at: 9,
        },
        Entry {
            what: "purchase F P-4 amount 10000",
            kind: "purchase",
            payload: purchase(&f, "P-4", 10_000, "m-8"),
            signers: ms(&merchant),
            at: 10,
        },
        Entry {
            what: "redeem F P-5 order 1000 points 100",
            kind: "redeem",
            payload: redeem("P-5", 1_000, 100, "f-3"),
            signers: both,
            at: 11,
        },
        Entry {
            what: "purchase F P-6 amount 10, 366 days on",
            kind: "purchase",
            payload: purchase(&f, "P-6", 10, "m-9"),
            signers: ms(&merchant),
            at: u64::MAX,
        },
    ];

    let dir = tempfile::tempdir().expect("tempdir");
    init_with_fixed_keys(dir.path(), &log, &operator);
    let clock = ManualClock::new(T_REGISTER);
    let mut ledger = Ledger::open(dir.path(), Arc::new(clock.clone())).expect("open");
    let name = |account: &str| {
        if account == c {
            "C"
        } else if account == f {
            "F"
        } else {
            "?"
        }
    };
    let mut lines = Vec::new();
    for (index, e) in entries.iter().enumerate() {
        clock.set(if e.at == u64::MAX {
            year_later
        } else {
            T_REGISTER + e.at * minute
        });
        let mut env = dsse::sign(
            e.kind,
            serde_json::to_vec(&e.payload).expect("json"),
            &e.signers[0],
        )
        .expect("sign");
        for k in &e.signers[1..] {
            env.add_signature(k).expect("cosign");
        }
        let r = ledger
            .submit(vec![env])
            .remove(0)
            .unwrap_or_else(|err| panic!("entry {index} ({}) refused: {err}", e.what));
        let mut parts: Vec<String> = r
            .effects
            .changes
            .iter()
            .map(|ch| {
                let reason = serde_json::to_value(ch.reason).expect("reason");
                let lot = ch
                    .lot
                    .as_deref()
                    .map(|l| format!(" {l}"))
                    .unwrap_or_default();
                format!(
                    "{} {:+} {}{lot}",
                    name(&ch.account),
                    ch.delta,
                    reason.as_str().expect("string")
                )
            })
            .collect();
        if let Some(d) = r.effects.discount {
            let source = serde_json::to_value(d.source).expect("source");
            parts.push(format!(
                "discount {} {}",
                source.as_str().expect("string"),
                d.value
            ));
        }
        if parts.is_empty() {
            parts.push("(no changes)".to_owned());
        }
        lines.push(format!("{index:>2} {:<38} {}", e.what, parts.join(", ")));
    }

    // The invariant: each account's deltas over the whole log add up to its balance.
    let now = year_later;
    for (label, account) in [("C", &c), ("F", &f)] {
        let sum: i64 = (0..ledger.size())
            .map(|i| {
                let bytes = ledger.store().leaf(i).expect("read").expect("leaf");
                Leaf::decode(i, &bytes).expect("leaf")
            })
            .flat_map(|l| l.effects.changes)
            .filter(|ch| &ch.account == account)
            .map(|ch| ch.delta)
            .sum();
        let acc = ledger
            .store()
            .account(account)
            .expect("read")
            .expect("account");
        let b = acc.balance(now);
        assert_eq!(sum, b.total, "{label}");
        lines.push(format!(
            "   {label}: sum of deltas {sum} = total {} (lots {} - debt {})",
            b.total,
            acc.held(),
            acc.debt
        ));
    }
    let block = format!("```text\n{}\n```", lines.join("\n"));
    assert!(
        DOC.contains(&block),
        "docs/PROTOCOL.md does not contain the rules walk-through:\n{block}"
    );
}
