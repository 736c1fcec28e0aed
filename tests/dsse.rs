//! DSSE envelopes: known answers, round trips, every rejection, batch verification.

#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use pointsledger::dsse::{self, DsseError, Envelope};
use pointsledger::keys::{self, KeyError};
use proptest::prelude::*;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha512};

/// Seed of the known-answer key: 32 bytes of 0x02.
const KAT_SEED: [u8; 32] = [2; 32];
const KAT_KEYID: &str = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";
const KAT_SIG: &str =
    "8DyYj6qbhYXRueRIF16tirJMmTJ9zq2eM30W41cpFtAiQNVk371F8ixgLa2GA7TTlR95DqF+6DNpVn2xwtY8Bg==";
const KAT_JSON: &str = concat!(
    r#"{"payloadType":"application/vnd.pointsledger.test+json","#,
    r#""payload":"eyJoZWxsbyI6IndvcmxkIn0=","#,
    r#""signatures":[{"keyid":"8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394","#,
    r#""sig":"8DyYj6qbhYXRueRIF16tirJMmTJ9zq2eM30W41cpFtAiQNVk371F8ixgLa2GA7TTlR95DqF+6DNpVn2xwtY8Bg=="}]}"#
);
/// SHA-256 of the PAE of the known-answer envelope.
const KAT_DIGEST: &str = "d381a5659366b1e93a34d0a325da59d72189ae574174eae705acbdbf92aaa4fe";

const IDENTITY_POINT: &str = "0100000000000000000000000000000000000000000000000000000000000000";

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn signed(kind: &str, payload: &[u8], signers: &[&SigningKey]) -> Envelope {
    let mut env = dsse::sign(kind, payload.to_vec(), signers[0]).unwrap();
    for k in &signers[1..] {
        env.add_signature(k).unwrap();
    }
    env
}

fn kat_value() -> Value {
    serde_json::from_str(KAT_JSON).unwrap()
}

fn parse_value(v: &Value) -> Result<Envelope, DsseError> {
    dsse::parse(&serde_json::to_vec(v).unwrap())
}

fn parse_str(s: &str) -> Result<Envelope, DsseError> {
    dsse::parse(s.as_bytes())
}

/// Replaces signature `i` of `env` (keeping its keyid) by `sig`.
fn with_sig(env: &Envelope, i: usize, sig: &[u8]) -> Envelope {
    let mut v: Value = serde_json::from_slice(&env.to_json_bytes()).unwrap();
    v["signatures"][i]["sig"] = json!(BASE64.encode(sig));
    parse_value(&v).unwrap()
}

fn flip_bit(env: &Envelope, i: usize, bit: usize) -> Envelope {
    let mut sig = env.signatures()[i].signature().to_bytes();
    sig[bit / 8] ^= 1 << (bit % 8);
    with_sig(env, i, &sig)
}

// ---------------------------------------------------------------------------------------------
// Known answers and round trips

#[test]
fn pae_known_answer_from_the_spec() {
    assert_eq!(
        dsse::pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
}

#[test]
fn known_answer_envelope() {
    let k = SigningKey::from_bytes(&KAT_SEED);
    assert_eq!(keys::public_id(&k.verifying_key()), KAT_KEYID);
    let env = dsse::sign("test", br#"{"hello":"world"}"#.to_vec(), &k).unwrap();
    assert_eq!(
        BASE64.encode(env.signatures()[0].signature().to_bytes()),
        KAT_SIG
    );
    assert_eq!(String::from_utf8(env.to_json_bytes()).unwrap(), KAT_JSON);
    assert_eq!(hex::encode(env.digest()), KAT_DIGEST);
    assert_eq!(env.kind(), "test");
    assert_eq!(env.payload_type(), "application/vnd.pointsledger.test+json");
    assert_eq!(env.payload(), br#"{"hello":"world"}"#);
    assert_eq!(env.signers().collect::<Vec<_>>(), [KAT_KEYID]);
    assert_eq!(env.to_json(), kat_value());
    env.verify().unwrap();

    let parsed = parse_str(KAT_JSON).unwrap();
    assert_eq!(parsed, env);
    parsed.verify().unwrap();
}

#[test]
fn round_trip_keeps_the_payload_string_verbatim() {
    // Spacing and field order differ from the canonical output; the strings survive unchanged.
    let spaced = format!(
        "  {{ \"signatures\" : [ {{ \"sig\": \"{KAT_SIG}\", \"keyid\": \"{KAT_KEYID}\" }} ],\n\
         \"payload\": \"eyJoZWxsbyI6IndvcmxkIn0=\", \
         \"payloadType\": \"application/vnd.pointsledger.test+json\" }}\n"
    );
    let env = parse_str(&spaced).unwrap();
    env.verify().unwrap();
    assert_eq!(env.payload_base64(), "eyJoZWxsbyI6IndvcmxkIn0=");
    assert_eq!(String::from_utf8(env.to_json_bytes()).unwrap(), KAT_JSON);
    assert_eq!(dsse::parse(&env.to_json_bytes()).unwrap(), env);

    let three = signed("redeem", br#"{"points":5}"#, &[&key(3), &key(4), &key(5)]);
    let again = dsse::parse(&three.to_json_bytes()).unwrap();
    assert_eq!(again, three);
    assert_eq!(again.to_json_bytes(), three.to_json_bytes());
    assert_eq!(
        serde_json::from_slice::<Value>(&three.to_json_bytes()).unwrap(),
        three.to_json()
    );
}

#[test]
fn digest_ignores_signatures_but_not_type_or_payload() {
    let a = signed("purchase", b"{}", &[&key(3)]);
    let b = signed("purchase", b"{}", &[&key(3), &key(4)]);
    let c = signed("refund", b"{}", &[&key(3)]);
    let d = signed("purchase", b"{ }", &[&key(3)]);
    assert_eq!(a.digest(), b.digest());
    assert_ne!(a.digest(), c.digest());
    assert_ne!(a.digest(), d.digest());
}

#[test]
fn kinds_with_dots_and_binary_payloads() {
    let env = signed("merchant.register", &[0, 255, 10, 13], &[&key(3)]);
    assert_eq!(env.kind(), "merchant.register");
    let again = dsse::parse(&env.to_json_bytes()).unwrap();
    assert_eq!(again.payload(), &[0, 255, 10, 13]);
    again.verify().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Signing refusals

#[test]
fn signing_refuses_what_parsing_would_refuse() {
    let k = key(3);
    for kind in ["", "Purchase", "a b", "x/y", &"a".repeat(33)] {
        assert!(matches!(
            dsse::sign(kind, b"{}".to_vec(), &k),
            Err(DsseError::UnsupportedPayloadType(_))
        ));
    }
    assert!(matches!(
        dsse::sign("big", vec![b'a'; dsse::MAX_PAYLOAD_BYTES + 1], &k),
        Err(DsseError::PayloadTooLarge { .. })
    ));
    let mut env = dsse::sign("big", vec![b'a'; dsse::MAX_PAYLOAD_BYTES], &k).unwrap();
    assert!(matches!(
        env.add_signature(&k),
        Err(DsseError::DuplicateSigner(id)) if id == keys::public_id(&k.verifying_key())
    ));
    for n in 4..7 {
        env.add_signature(&key(n)).unwrap();
    }
    assert!(matches!(
        env.add_signature(&key(9)),
        Err(DsseError::TooManySignatures { .. })
    ));
    // The largest envelope signing allows still parses.
    let bytes = env.to_json_bytes();
    assert!(bytes.len() <= dsse::MAX_ENVELOPE_BYTES);
    dsse::parse(&bytes).unwrap().verify().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Parse refusals

#[test]
fn oversized_body_is_refused() {
    let mut body = KAT_JSON.as_bytes().to_vec();
    body.resize(dsse::MAX_ENVELOPE_BYTES + 1, b' ');
    assert!(matches!(
        dsse::parse(&body),
        Err(DsseError::TooLarge { .. })
    ));
    body.truncate(dsse::MAX_ENVELOPE_BYTES);
    dsse::parse(&body).unwrap();
}

#[test]
fn malformed_bodies_are_refused() {
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"x\"".to_vec(),
        b"{".to_vec(),
        vec![0xff, 0xfe, b'{', b'}'],
        format!("\u{feff}{KAT_JSON}").into_bytes(),
        format!("{KAT_JSON} {{}}").into_bytes(),
        format!("{KAT_JSON}x").into_bytes(),
        KAT_JSON.replace("}]}", "}],}").into_bytes(),
    ];
    for c in cases {
        assert!(
            matches!(dsse::parse(&c), Err(DsseError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(&c)
        );
    }
}

#[test]
fn missing_wrong_typed_and_unknown_fields_are_refused() {
    let mut cases = Vec::new();
    for field in ["payloadType", "payload", "signatures"] {
        let mut v = kat_value();
        v.as_object_mut().unwrap().remove(field);
        cases.push(v);
    }
    for field in ["keyid", "sig"] {
        let mut v = kat_value();
        v["signatures"][0].as_object_mut().unwrap().remove(field);
        cases.push(v);
    }
    let mut v = kat_value();
    v["extra"] = json!(1);
    cases.push(v);
    let mut v = kat_value();
    v["signatures"][0]["extra"] = json!("x");
    cases.push(v);
    let mut v = kat_value();
    v["payload"] = json!(5);
    cases.push(v);
    let mut v = kat_value();
    v["signatures"] = json!({});
    cases.push(v);
    let mut v = kat_value();
    v["signatures"][0]["keyid"] = Value::Null;
    cases.push(v);
    for v in cases {
        assert!(
            matches!(parse_value(&v), Err(DsseError::Malformed(_))),
            "{v}"
        );
    }
}

#[test]
fn duplicate_fields_are_refused() {
    let dup_top = KAT_JSON.replacen(
        r#""payload":"#,
        r#""payload":"eyJoZWxsbyI6IndvcmxkIn0=","payload":"#,
        1,
    );
    let dup_type = KAT_JSON.replacen(
        r#"{"payloadType":"#,
        r#"{"payloadType":"application/vnd.pointsledger.other+json","payloadType":"#,
        1,
    );
    let dup_inner = KAT_JSON.replacen(r#""sig":"#, &format!(r#""keyid":"{KAT_KEYID}","sig":"#), 1);
    for s in [dup_top, dup_type, dup_inner] {
        let err = parse_str(&s).unwrap_err();
        assert!(
            matches!(&err, DsseError::Malformed(m) if m.contains("duplicate field")),
            "{err}"
        );
    }
}

#[test]
fn unsupported_payload_types_are_refused() {
    for t in [
        "application/json",
        "application/vnd.in-toto+json",
        "application/vnd.pointsledger.+json",
        "application/vnd.pointsledger.Purchase+json",
        "application/vnd.pointsledger.purchase",
        "application/vnd.pointsledger.purchase+json\n",
        "application/vnd.pointsledger.pur chase+json",
        "application/vnd.pointsledger.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa+json",
        "",
    ] {
        let mut v = kat_value();
        v["payloadType"] = json!(t);
        assert!(
            matches!(parse_value(&v), Err(DsseError::UnsupportedPayloadType(_))),
            "{t:?}"
        );
    }
}

#[test]
fn bad_and_non_canonical_payload_base64_is_refused() {
    let bad = |p: &str| {
        let mut v = kat_value();
        v["payload"] = json!(p);
        parse_value(&v)
    };
    for p in ["eyJoZWxsbyI6IndvcmxkIn0", "eyJoZWxsbyI6IndvcmxkIn1="] {
        assert!(
            matches!(bad(p), Err(DsseError::NonCanonicalBase64 { ref field }) if field == "payload"),
            "{p}"
        );
    }
    for p in [
        "eyJoZWxsbyI6IndvcmxkIn0=\n",
        "eyJoZWxsbyI6 IndvcmxkIn0=",
        "eyJoZWxsbyI6IndvcmxkIn0-",
        "e",
        "!!!!",
    ] {
        assert!(
            matches!(bad(p), Err(DsseError::BadBase64 { ref field }) if field == "payload"),
            "{p:?}"
        );
    }
    // Empty payload is valid base64 of zero bytes; the payload layer judges its content.
    assert!(bad("").is_ok());
}

#[test]
fn oversized_payload_is_refused() {
    let big = BASE64.encode(vec![b'a'; dsse::MAX_PAYLOAD_BYTES + 1]);
    let mut v = kat_value();
    v["payload"] = json!(big);
    assert!(matches!(
        parse_value(&v),
        Err(DsseError::PayloadTooLarge { .. })
    ));
}

#[test]
fn signature_count_is_bounded() {
    let mut v = kat_value();
    v["signatures"] = json!([]);
    assert!(matches!(parse_value(&v), Err(DsseError::NoSignatures)));

    let five: Vec<Value> = (3..8)
        .map(|n| json!({"keyid": keys::public_id(&key(n).verifying_key()), "sig": KAT_SIG}))
        .collect();
    v["signatures"] = json!(five);
    assert!(matches!(
        parse_value(&v),
        Err(DsseError::TooManySignatures { count: 5, max: 4 })
    ));
}

#[test]
fn duplicate_signer_is_refused() {
    let mut v = kat_value();
    let s = v["signatures"][0].clone();
    v["signatures"] = json!([s.clone(), s]);
    assert!(matches!(
        parse_value(&v),
        Err(DsseError::DuplicateSigner(id)) if id == KAT_KEYID
    ));
}

#[test]
fn malformed_and_weak_keyids_are_refused_by_name() {
    let cases = [
        (KAT_KEYID.to_uppercase(), false),
        (KAT_KEYID[..62].to_string(), false),
        (format!("{KAT_KEYID}00"), false),
        (format!("02{}", "0".repeat(62)), false),
        (IDENTITY_POINT.to_string(), true),
        (
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f".to_string(),
            true,
        ),
    ];
    for (keyid, weak) in cases {
        let mut v = kat_value();
        v["signatures"][0]["keyid"] = json!(keyid);
        let err = parse_value(&v).unwrap_err();
        match &err {
            DsseError::BadKey {
                keyid: named,
                position: 0,
                reason,
            } => {
                assert_eq!(named, &keyid);
                if weak {
                    assert!(matches!(reason, KeyError::WeakPublicKey { .. }), "{err}");
                } else {
                    assert!(
                        matches!(reason, KeyError::MalformedPublicId { .. }),
                        "{err}"
                    );
                }
            }
            other => panic!("{keyid}: {other}"),
        }
        assert!(err.to_string().contains(&keyid), "{err}");
    }
}

#[test]
fn bad_signature_encodings_are_refused() {
    let with = |sig: &str| {
        let mut v = kat_value();
        v["signatures"][0]["sig"] = json!(sig);
        parse_value(&v)
    };
    for sig in [
        BASE64.encode([1u8; 63]),
        BASE64.encode([1u8; 65]),
        String::new(),
        KAT_SIG.trim_end_matches('=').to_string(),
    ] {
        assert!(
            matches!(
                with(&sig),
                Err(DsseError::BadSignatureLength { position: 0, .. })
            ),
            "{sig}"
        );
    }
    let bad_chars = KAT_SIG.replacen('8', "*", 1);
    assert!(matches!(
        with(&bad_chars),
        Err(DsseError::BadBase64 { ref field }) if field == "signatures[0].sig"
    ));
    // 64 bytes end in "==": the last data character must leave its unused bits zero.
    let non_canonical = KAT_SIG.replace("Bg==", "Bh==");
    assert!(matches!(
        with(&non_canonical),
        Err(DsseError::NonCanonicalBase64 { .. })
    ));
}

#[test]
fn errors_do_not_echo_huge_inputs() {
    let mut v = kat_value();
    v["payloadType"] = json!("x".repeat(40_000));
    let msg = parse_value(&v).unwrap_err().to_string();
    assert!(msg.len() < 400, "{}", msg.len());
    let mut v = kat_value();
    v["x".repeat(40_000)] = json!(1);
    let msg = parse_value(&v).unwrap_err().to_string();
    assert!(msg.len() < 400, "{}", msg.len());
    let mut v = kat_value();
    v["signatures"][0]["keyid"] = json!("k".repeat(40_000));
    let msg = parse_value(&v).unwrap_err().to_string();
    assert!(msg.len() < 600, "{}", msg.len());
}

// ---------------------------------------------------------------------------------------------
// Verification

#[test]
fn flipped_bits_fail_verification() {
    let env = signed("purchase", br#"{"a":1}"#, &[&key(3)]);
    for bit in [0, 7, 100, 255, 256, 300, 500, 507] {
        let bad = flip_bit(&env, 0, bit);
        let err = bad.verify().unwrap_err();
        assert!(
            matches!(&err, DsseError::BadSignature { keyid, position: 0 }
                if keyid == &keys::public_id(&key(3).verifying_key())),
            "bit {bit}: {err}"
        );
        assert!(dsse::verify_all(&[bad])[0].is_err(), "bit {bit}");
    }
}

#[test]
fn signature_by_another_key_fails() {
    let env = signed("purchase", br#"{"a":1}"#, &[&key(3)]);
    let other = key(4).sign(&env.pae()).to_bytes();
    let bad = with_sig(&env, 0, &other);
    assert!(matches!(
        bad.verify(),
        Err(DsseError::BadSignature { position: 0, .. })
    ));
    assert!(dsse::verify_all(&[bad])[0].is_err());
}

#[test]
fn signature_over_another_type_fails() {
    // Same payload, signed as a different kind: PAE binds the type.
    let env = signed("purchase", br#"{"a":1}"#, &[&key(3)]);
    let refund = signed("refund", br#"{"a":1}"#, &[&key(3)]);
    let bad = with_sig(&env, 0, &refund.signatures()[0].signature().to_bytes());
    assert!(bad.verify().is_err());
}

#[test]
fn three_of_three_with_bad_middle_names_position_1() {
    let env = signed("redeem", br#"{"n":1}"#, &[&key(3), &key(4), &key(5)]);
    env.verify().unwrap();
    let bad = flip_bit(&env, 1, 42);
    let middle = keys::public_id(&key(4).verifying_key());
    for result in [
        bad.verify(),
        dsse::verify_all(&[env.clone(), bad.clone()]).remove(1),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, DsseError::BadSignature { keyid, position: 1 } if keyid == &middle),
            "{err}"
        );
        assert!(err.to_string().contains("signatures[1]"), "{err}");
    }
}

#[test]
fn verify_all_reports_exactly_the_bad_envelopes() {
    let signers: Vec<SigningKey> = (10..20).map(key).collect();
    let mut envs: Vec<Envelope> = (0..200)
        .map(|i| {
            let a = &signers[i % 10];
            let b = &signers[(i + 1) % 10];
            let payload = format!(r#"{{"nonce":{i}}}"#).into_bytes();
            if i % 3 == 0 {
                signed("redeem", &payload, &[a, b])
            } else {
                signed("purchase", &payload, &[a])
            }
        })
        .collect();
    assert!(dsse::verify_all(&envs).iter().all(Result::is_ok));

    // Bad ones at chunk edges and in the middle, of different kinds.
    let bad_at = [0usize, 63, 64, 99, 129, 199];
    envs[0] = flip_bit(&envs[0], 0, 3);
    envs[63] = flip_bit(&envs[63], 1, 400);
    envs[64] = with_sig(&envs[64], 0, &key(99).sign(b"x").to_bytes());
    let swapped = envs[98].signatures()[0].signature().to_bytes();
    envs[99] = with_sig(&envs[99], 1, &swapped);
    let mut high_s = envs[129].signatures()[0].signature().to_bytes();
    high_s[63] |= 0xf0;
    envs[129] = with_sig(&envs[129], 0, &high_s);
    envs[199] = flip_bit(&envs[199], 0, 511);

    let results = dsse::verify_all(&envs);
    assert_eq!(results.len(), 200);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.is_err(), bad_at.contains(&i), "envelope {i}: {r:?}");
        // Same verdict and same error as verifying alone.
        assert_eq!(
            r.as_ref().err().map(ToString::to_string),
            envs[i].verify().err().map(|e| e.to_string()),
            "envelope {i}"
        );
    }
    assert!(matches!(
        &results[63],
        Err(DsseError::BadSignature { position: 1, .. })
    ));
    assert!(matches!(
        &results[99],
        Err(DsseError::BadSignature { position: 1, .. })
    ));
    assert!(dsse::verify_all(&[]).is_empty());
}

/// `Scalar` cannot be named without depending on curve25519-dalek directly; this builds one from
/// a value of the same type.
fn scalar_like<T: From<u64>>(_like: &T, v: u64) -> T {
    T::from(v)
}

/// The `s` half of a signature by `signer` over `msg` with the given `R` bytes:
/// s = r + k·a with k = SHA-512(R || A || M) mod l, a the signer's secret scalar and r the secret
/// scalar of `nonce` (or 0). Used to build signatures that honest signing never makes.
fn s_for(signer: &SigningKey, nonce: Option<&SigningKey>, r: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let a = signer.to_scalar();
    let hash = Sha512::new()
        .chain_update(r)
        .chain_update(signer.verifying_key().as_bytes())
        .chain_update(msg)
        .finalize();
    let mut k = scalar_like(&a, 0);
    for byte in hash.iter().rev() {
        k = k * scalar_like(&a, 256) + scalar_like(&a, u64::from(*byte));
    }
    let r_scalar = nonce.map_or(scalar_like(&a, 0), SigningKey::to_scalar);
    (r_scalar + k * a).to_bytes()
}

/// A signature with R = identity and s = k·a: the batch equation holds, but `verify_strict`
/// refuses a small-order R. The screen in `verify_all` must send it to strict verification.
#[test]
fn small_order_r_passes_the_raw_batch_but_not_verify_all() {
    let signer = key(3);
    let env = signed("purchase", br#"{"n":1}"#, &[&signer]);
    let pae = env.pae();
    let r: [u8; 32] = hex::decode(IDENTITY_POINT).unwrap().try_into().unwrap();
    let forged = Signature::from_components(r, s_for(&signer, None, &r, &pae));
    assert!(
        ed25519_dalek::verify_batch(&[&pae[..]], &[forged], &[signer.verifying_key()]).is_ok(),
        "the raw batch equation accepts it"
    );
    let bad = with_sig(&env, 0, &forged.to_bytes());
    assert!(bad.verify().is_err());
    assert!(dsse::verify_all(&[bad])[0].is_err());
}

/// A key holder who puts a small-order component T into R (R = rB + T, s = r + k·a) makes a
/// signature that `verify_strict` refuses and that a batch equation accepts about one time in
/// eight. `verify_all` must refuse every one of them, so that the write path, replay and auditors
/// always agree.
#[test]
fn torsion_in_r_is_always_refused() {
    let signer = key(3);
    let nonce = key(8);
    let order_8 = VerifyingKey::from_bytes(
        &hex::decode("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
            .unwrap()
            .try_into()
            .unwrap(),
    )
    .unwrap()
    .to_edwards();
    let r = (nonce.verifying_key().to_edwards() + order_8)
        .compress()
        .to_bytes();
    let mut batch_would_accept = 0;
    for i in 0..200 {
        let env = signed("purchase", format!(r#"{{"n":{i}}}"#).as_bytes(), &[&signer]);
        let pae = env.pae();
        let s = s_for(&signer, Some(&nonce), &r, &pae);
        let sig = Signature::from_components(r, s);
        if ed25519_dalek::verify_batch(&[&pae[..]], &[sig], &[signer.verifying_key()]).is_ok() {
            batch_would_accept += 1;
        }
        let bad = with_sig(&env, 0, &sig.to_bytes());
        assert!(bad.verify().is_err());
        assert!(dsse::verify_all(&[bad])[0].is_err(), "attempt {i} accepted");
    }
    // The attack is real: the raw batch equation lets about one in eight through.
    assert!(
        (5..60).contains(&batch_would_accept),
        "{batch_would_accept}"
    );
}

// ---------------------------------------------------------------------------------------------
// Fuzzing

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = dsse::parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_json_like_text(
        text in r#"[{}\[\]":,a-zA-Z0-9+/= \\]{0,300}"#
    ) {
        let _ = dsse::parse(text.as_bytes());
    }

    #[test]
    fn mutated_envelopes_never_panic_and_reparse_consistently(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)
    ) {
        let base = signed("redeem", br#"{"points":5,"nonce":"n"}"#, &[&key(3), &key(4)]);
        let mut bytes = base.to_json_bytes();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 if i < bytes.len() => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        if let Ok(env) = dsse::parse(&bytes) {
            let verdict = env.verify().is_ok();
            prop_assert_eq!(dsse::verify_all(std::slice::from_ref(&env))[0].is_ok(), verdict);
            let again = dsse::parse(&env.to_json_bytes()).unwrap();
            prop_assert_eq!(&again, &env);
            if verdict {
                prop_assert_eq!(env.digest(), base.digest());
            }
        }
    }
}
