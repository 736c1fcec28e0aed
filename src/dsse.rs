//! DSSE envelopes: the signed form of every request to the ledger.
//!
//! A request is a [Dead Simple Signing Envelope](https://github.com/secure-systems-lab/dsse)
//! (the in-toto / Sigstore format) whose signatures are Ed25519:
//!
//! ```text
//! {"payloadType": "application/vnd.pointsledger.<kind>+json",
//!  "payload": "<standard base64 of the payload bytes>",
//!  "signatures": [{"keyid": "<64 hex public key>", "sig": "<standard base64 of 64 bytes>"}]}
//!
//! signed message = PAE(type, payload)
//!                = "DSSEv1" SP len(type) SP type SP len(payload) SP payload
//! ```
//!
//! with the lengths as ASCII decimal byte counts. Signatures cover the payload bytes exactly as they
//! travel, so an [`Envelope`] keeps the payload's base64 string as received and writes it back
//! verbatim: nobody re-encodes or re-serializes anything to verify it.
//!
//! [`parse`] is strict and bounded: it refuses oversized bodies, unknown or duplicate fields,
//! unknown payload types, non-canonical base64, too many or duplicate signers and weak or
//! malformed keys, each with its own [`DsseError`]. Parsing does not verify signatures; call
//! [`Envelope::verify`] for one envelope or [`verify_all`] for many, which batches them.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey, SIGNATURE_LENGTH};
use rayon::prelude::*;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::errors::Code;
use crate::keys::{self, KeyError};

/// Largest envelope body accepted, in bytes.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// Largest decoded payload accepted, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 32 * 1024;

/// Most signatures one envelope may carry (the most any kind needs is two, consumer and merchant).
pub const MAX_SIGNATURES: usize = 4;

/// Longest `<kind>` in a payload type, in characters.
pub const MAX_KIND_LEN: usize = 32;

/// What every payload type starts with.
pub const PAYLOAD_TYPE_PREFIX: &str = "application/vnd.pointsledger.";

/// What every payload type ends with.
pub const PAYLOAD_TYPE_SUFFIX: &str = "+json";

/// How much of an input an error message repeats, so a huge input cannot make a huge message.
const ECHO_CHARS: usize = 120;

/// Length of the base64 of a 64-byte signature.
const SIG_BASE64_LEN: usize = 88;

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error)]
pub enum DsseError {
    /// The body is larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// Size of the body.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// The body is not UTF-8, not JSON, or not an object with exactly the fields `payloadType`,
    /// `payload` and `signatures` (each signature exactly `keyid` and `sig`), each once.
    #[error("malformed envelope: {0}")]
    Malformed(String),

    /// The payload type is not `application/vnd.pointsledger.<kind>+json` with a kind of 1 to 32
    /// characters from `[a-z0-9._]`.
    #[error(
        "unsupported payload type {0:?}: expected application/vnd.pointsledger.<kind>+json, \
         kind 1 to 32 characters of a-z 0-9 . _"
    )]
    UnsupportedPayloadType(String),

    /// A field that must be standard base64 (with padding) is not.
    #[error("{field} is not standard base64 with padding")]
    BadBase64 {
        /// Which field, e.g. `payload` or `signatures[1].sig`.
        field: String,
    },

    /// A field decodes as base64 but is not the one canonical encoding of its bytes (missing
    /// padding or non-zero unused bits). Refused so that each payload has exactly one envelope
    /// form.
    #[error("{field} is not canonical base64 (check padding and the last character)")]
    NonCanonicalBase64 {
        /// Which field.
        field: String,
    },

    /// The decoded payload is larger than [`MAX_PAYLOAD_BYTES`].
    #[error("payload is {size} bytes, more than the {max} allowed")]
    PayloadTooLarge {
        /// Size of the payload (or a lower bound, when refused before decoding).
        size: usize,
        /// The limit.
        max: usize,
    },

    /// The envelope carries no signature.
    #[error("envelope has no signatures")]
    NoSignatures,

    /// The envelope carries more than [`MAX_SIGNATURES`] signatures.
    #[error("envelope has {count} signatures, more than the {max} allowed")]
    TooManySignatures {
        /// How many it has (or would have).
        count: usize,
        /// The limit.
        max: usize,
    },

    /// Two signatures name the same key; each signer signs once.
    #[error("key {0} signs the envelope more than once")]
    DuplicateSigner(String),

    /// A signature's `keyid` is not an acceptable public key (malformed, or weak).
    #[error("signatures[{position}]: key id {keyid:?} refused: {reason}")]
    BadKey {
        /// The key id as received (cut to its first 120 characters).
        keyid: String,
        /// Index of the signature in the envelope.
        position: usize,
        /// Why the key was refused.
        #[source]
        reason: KeyError,
    },

    /// A signature does not decode to exactly 64 bytes.
    #[error("signatures[{position}] (key {keyid}): sig must be the base64 of 64 bytes")]
    BadSignatureLength {
        /// The signer's key id.
        keyid: String,
        /// Index of the signature in the envelope.
        position: usize,
    },

    /// A signature does not verify (under strict Ed25519 rules) for its key and the envelope.
    #[error("signatures[{position}] by key {keyid} does not verify")]
    BadSignature {
        /// The signer's key id.
        keyid: String,
        /// Index of the signature in the envelope.
        position: usize,
    },
}

impl DsseError {
    /// The error's code in the one table ([`crate::errors`]): a signature that does not
    /// verify is `bad_signature`, an envelope or payload over its size limit `too_large`,
    /// anything else about the envelope `malformed_envelope`.
    pub fn code(&self) -> Code {
        match self {
            DsseError::BadSignature { .. } => Code::BadSignature,
            DsseError::TooLarge { .. } | DsseError::PayloadTooLarge { .. } => Code::TooLarge,
            _ => Code::MalformedEnvelope,
        }
    }
}

/// The pre-authentication encoding that each signature covers:
/// `"DSSEv1" SP len(type) SP type SP len(payload) SP payload`, lengths as ASCII decimal byte
/// counts. Binding the type into the signed bytes means a signature for one kind of request can
/// never be replayed as another kind.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut header = String::with_capacity(payload_type.len() + 32);
    // Writing to a String cannot fail.
    let _ = write!(
        header,
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    );
    let mut out = Vec::with_capacity(header.len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// One signature of an envelope, decoded once at parse time and kept with its wire form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// The `keyid` as received; parsing accepts only canonical ids, so it equals
    /// [`keys::public_id`] of `key` and can be compared as a string.
    keyid: String,
    /// The decoded key, checked not to be weak, so verification needs no further parsing.
    key: VerifyingKey,
    /// The decoded signature.
    signature: Signature,
    /// The `sig` as received, written back verbatim.
    sig_b64: String,
}

impl EnvelopeSignature {
    /// The signer's public id (64 lowercase hex).
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The signer's public key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The Ed25519 signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }
}

/// A parsed (or freshly signed) envelope. Parsing checks its shape, not its signatures: call
/// [`Envelope::verify`] or [`verify_all`] before trusting it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// `application/vnd.pointsledger.<kind>+json`, validated.
    payload_type: String,
    /// The payload's base64 exactly as received, so serialization gives back the signed form.
    payload_b64: String,
    /// The decoded payload: the bytes the signatures cover (with the type, via [`pae`]).
    payload: Vec<u8>,
    /// One to [`MAX_SIGNATURES`] signatures by distinct keys, in the order received.
    signatures: Vec<EnvelopeSignature>,
}

/// Wire form used to parse; `deny_unknown_fields` also makes serde refuse a repeated field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEnvelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<WireSignature>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSignature {
    keyid: String,
    sig: String,
}

/// Parses an envelope strictly. See the module documentation for what is refused; no input makes
/// it panic, and the work done is bounded by [`MAX_ENVELOPE_BYTES`].
pub fn parse(bytes: &[u8]) -> Result<Envelope, DsseError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(DsseError::TooLarge {
            size: bytes.len(),
            max: MAX_ENVELOPE_BYTES,
        });
    }
    let text =
        std::str::from_utf8(bytes).map_err(|e| DsseError::Malformed(format!("not UTF-8 ({e})")))?;
    let wire: WireEnvelope =
        serde_json::from_str(text).map_err(|e| DsseError::Malformed(echo(&e.to_string())))?;

    check_payload_type(&wire.payload_type)?;

    // Refuse an oversized payload before decoding it.
    let max_b64 = base64::encoded_len(MAX_PAYLOAD_BYTES, true).unwrap_or(usize::MAX);
    if wire.payload.len() > max_b64 {
        return Err(DsseError::PayloadTooLarge {
            size: wire.payload.len() / 4 * 3,
            max: MAX_PAYLOAD_BYTES,
        });
    }
    let payload = decode_base64(&wire.payload, "payload")?;
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DsseError::PayloadTooLarge {
            size: payload.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }

    if wire.signatures.is_empty() {
        return Err(DsseError::NoSignatures);
    }
    if wire.signatures.len() > MAX_SIGNATURES {
        return Err(DsseError::TooManySignatures {
            count: wire.signatures.len(),
            max: MAX_SIGNATURES,
        });
    }
    let mut signatures: Vec<EnvelopeSignature> = Vec::with_capacity(wire.signatures.len());
    for (position, ws) in wire.signatures.into_iter().enumerate() {
        let key = keys::public_key(&ws.keyid).map_err(|reason| DsseError::BadKey {
            keyid: echo(&ws.keyid),
            position,
            reason,
        })?;
        if signatures.iter().any(|s| s.keyid == ws.keyid) {
            return Err(DsseError::DuplicateSigner(ws.keyid));
        }
        let bad_length = || DsseError::BadSignatureLength {
            keyid: ws.keyid.clone(),
            position,
        };
        if ws.sig.len() != SIG_BASE64_LEN {
            return Err(bad_length());
        }
        let sig_bytes = decode_base64(&ws.sig, &format!("signatures[{position}].sig"))?;
        let sig_bytes: [u8; SIGNATURE_LENGTH] = sig_bytes.try_into().map_err(|_| bad_length())?;
        signatures.push(EnvelopeSignature {
            keyid: ws.keyid,
            key,
            signature: Signature::from_bytes(&sig_bytes),
            sig_b64: ws.sig,
        });
    }

    Ok(Envelope {
        payload_type: wire.payload_type,
        payload_b64: wire.payload,
        payload,
        signatures,
    })
}

/// Signs `payload` as a request of `kind` with `key`, giving a one-signature envelope that
/// [`parse`] accepts. Refuses a kind or payload that [`parse`] would refuse, so a signer finds out
/// before sending.
pub fn sign(kind: &str, payload: Vec<u8>, key: &SigningKey) -> Result<Envelope, DsseError> {
    let payload_type = format!("{PAYLOAD_TYPE_PREFIX}{kind}{PAYLOAD_TYPE_SUFFIX}");
    check_payload_type(&payload_type)?;
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DsseError::PayloadTooLarge {
            size: payload.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    let mut envelope = Envelope {
        payload_type,
        payload_b64: BASE64.encode(&payload),
        payload,
        signatures: Vec::with_capacity(1),
    };
    envelope.add_signature(key)?;
    Ok(envelope)
}

impl Envelope {
    /// The full payload type, `application/vnd.pointsledger.<kind>+json`.
    pub fn payload_type(&self) -> &str {
        &self.payload_type
    }

    /// The request kind, e.g. `purchase` or `merchant.register`: what the ledger dispatches on.
    pub fn kind(&self) -> &str {
        self.payload_type
            .strip_prefix(PAYLOAD_TYPE_PREFIX)
            .and_then(|rest| rest.strip_suffix(PAYLOAD_TYPE_SUFFIX))
            .unwrap_or_default()
    }

    /// The payload bytes the signatures cover.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload's base64 as received.
    pub fn payload_base64(&self) -> &str {
        &self.payload_b64
    }

    /// The signers' public ids, in signature order: what the ledger checks roles against.
    pub fn signers(&self) -> impl Iterator<Item = &str> + '_ {
        self.signatures.iter().map(|s| s.keyid.as_str())
    }

    /// The signatures, in order.
    pub fn signatures(&self) -> &[EnvelopeSignature] {
        &self.signatures
    }

    /// The bytes every signature covers: [`pae`] of the type and payload.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// SHA-256 of [`Envelope::pae`]. Two envelopes with the same digest carry the same signed
    /// request (whatever their signatures or JSON spacing), which is how an identical
    /// resubmission is recognised.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.pae()).into()
    }

    /// The envelope as a JSON value, with the base64 strings as received.
    pub fn to_json(&self) -> serde_json::Value {
        let signatures: Vec<serde_json::Value> = self
            .signatures
            .iter()
            .map(|s| serde_json::json!({"keyid": s.keyid, "sig": s.sig_b64}))
            .collect();
        serde_json::json!({
            "payloadType": self.payload_type,
            "payload": self.payload_b64,
            "signatures": signatures,
        })
    }

    /// The envelope as compact JSON with fields in the DSSE order (`payloadType`, `payload`,
    /// `signatures`; `keyid`, `sig`), the base64 strings as received. The same envelope always
    /// gives the same bytes.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.payload_b64.len() + 256);
        out.push_str("{\"payloadType\":");
        out.push_str(&json_string(&self.payload_type));
        out.push_str(",\"payload\":");
        out.push_str(&json_string(&self.payload_b64));
        out.push_str(",\"signatures\":[");
        for (i, s) in self.signatures.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"keyid\":");
            out.push_str(&json_string(&s.keyid));
            out.push_str(",\"sig\":");
            out.push_str(&json_string(&s.sig_b64));
            out.push('}');
        }
        out.push_str("]}");
        out.into_bytes()
    }

    /// Adds a signature by `key` (a cosignature, e.g. the merchant's on a consumer's redemption).
    /// Refuses a key that already signed and a signature beyond [`MAX_SIGNATURES`].
    pub fn add_signature(&mut self, key: &SigningKey) -> Result<(), DsseError> {
        let keyid = keys::public_id(&key.verifying_key());
        if self.signatures.iter().any(|s| s.keyid == keyid) {
            return Err(DsseError::DuplicateSigner(keyid));
        }
        if self.signatures.len() >= MAX_SIGNATURES {
            return Err(DsseError::TooManySignatures {
                count: self.signatures.len() + 1,
                max: MAX_SIGNATURES,
            });
        }
        let signature = key.sign(&self.pae());
        self.signatures.push(EnvelopeSignature {
            keyid,
            key: key.verifying_key(),
            signature,
            sig_b64: BASE64.encode(signature.to_bytes()),
        });
        Ok(())
    }

    /// Verifies every signature with `verify_strict` (canonical `s`, canonical `R` not of small
    /// order, key not of small order). The first failure is reported with its key and position.
    pub fn verify(&self) -> Result<(), DsseError> {
        self.verify_with_pae(&self.pae())
    }

    fn verify_with_pae(&self, pae: &[u8]) -> Result<(), DsseError> {
        if self.signatures.is_empty() {
            return Err(DsseError::NoSignatures);
        }
        for (position, s) in self.signatures.iter().enumerate() {
            s.key
                .verify_strict(pae, &s.signature)
                .map_err(|_| DsseError::BadSignature {
                    keyid: s.keyid.clone(),
                    position,
                })?;
        }
        Ok(())
    }
}

/// Verifies many envelopes in parallel, giving one result per envelope in the same order.
///
/// Each signature is checked with `verify_strict`, exactly as [`Envelope::verify`] does, so the
/// verdict the sequencer reaches is the verdict every replay and every auditor reaches.
///
/// Why not `ed25519_dalek::verify_batch`: the batch equation combines signatures with random
/// coefficients, and a signer who puts a small-order component into their own `R` gets a
/// signature that `verify_strict` refuses but that a batch accepts whenever its coefficient is a
/// multiple of 8, about one attempt in eight. Such an entry would be logged and then refused by
/// `rebuild` and by auditors, leaving an honest operator with a log that does not verify. No
/// cheap check tells such an `R` apart (it takes a scalar multiplication per signature, more
/// than the batch saves), so the write path pays for strict checks on all cores instead;
/// `pointsledger bench` reports both ceilings.
pub fn verify_all(envelopes: &[Envelope]) -> Vec<Result<(), DsseError>> {
    envelopes.par_iter().map(Envelope::verify).collect()
}

/// Checks `application/vnd.pointsledger.<kind>+json` with a kind of 1..=32 of `[a-z0-9._]`.
fn check_payload_type(payload_type: &str) -> Result<(), DsseError> {
    let kind = payload_type
        .strip_prefix(PAYLOAD_TYPE_PREFIX)
        .and_then(|rest| rest.strip_suffix(PAYLOAD_TYPE_SUFFIX));
    let ok = kind.is_some_and(|k| {
        (1..=MAX_KIND_LEN).contains(&k.len())
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
    });
    if ok {
        Ok(())
    } else {
        Err(DsseError::UnsupportedPayloadType(echo(payload_type)))
    }
}

/// Decodes standard base64 with padding, refusing any encoding but the canonical one.
fn decode_base64(text: &str, field: &str) -> Result<Vec<u8>, DsseError> {
    use base64::DecodeError;
    let bytes = BASE64.decode(text).map_err(|e| match e {
        DecodeError::InvalidLastSymbol(..) | DecodeError::InvalidPadding => {
            DsseError::NonCanonicalBase64 {
                field: field.to_owned(),
            }
        }
        DecodeError::InvalidByte(..) | DecodeError::InvalidLength(..) => DsseError::BadBase64 {
            field: field.to_owned(),
        },
    })?;
    // The decoder above is already strict; re-encoding makes "one encoding per byte string" a
    // checked property rather than a property of the decoder's configuration.
    if BASE64.encode(&bytes) != text {
        return Err(DsseError::NonCanonicalBase64 {
            field: field.to_owned(),
        });
    }
    Ok(bytes)
}

/// A JSON string literal for `s` (quoted and escaped).
fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The start of an untrusted string, for an error message.
fn echo(s: &str) -> String {
    if s.chars().count() <= ECHO_CHARS {
        s.to_owned()
    } else {
        let mut cut: String = s.chars().take(ECHO_CHARS).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pae_known_answer_from_the_spec() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn pae_counts_bytes_not_chars() {
        assert_eq!(pae("é", "ü".as_bytes()), "DSSEv1 2 é 2 ü".as_bytes());
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn payload_types() {
        for good in [
            "purchase",
            "merchant.register",
            "a",
            "x_1.2",
            &"a".repeat(32),
        ] {
            let t = format!("{PAYLOAD_TYPE_PREFIX}{good}{PAYLOAD_TYPE_SUFFIX}");
            assert!(check_payload_type(&t).is_ok(), "{t}");
        }
        for bad in [
            "",
            "Purchase",
            "buy-now",
            "a b",
            "é",
            &"a".repeat(33),
            "a/b",
        ] {
            let t = format!("{PAYLOAD_TYPE_PREFIX}{bad}{PAYLOAD_TYPE_SUFFIX}");
            assert!(check_payload_type(&t).is_err(), "{t}");
        }
        for bad in [
            "application/json",
            "application/vnd.pointsledger.purchase",
            "application/vnd.pointsledger.purchase+json ",
            "APPLICATION/vnd.pointsledger.purchase+json",
        ] {
            assert!(check_payload_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_strictness() {
        assert_eq!(decode_base64("aGk=", "f").unwrap(), b"hi");
        assert_eq!(decode_base64("", "f").unwrap(), b"");
        assert!(matches!(
            decode_base64("aGk", "f"),
            Err(DsseError::NonCanonicalBase64 { .. })
        ));
        assert!(matches!(
            decode_base64("aGl=", "f"),
            Err(DsseError::NonCanonicalBase64 { .. })
        ));
        for bad in ["aG!=", "aGk=\n", " aGk=", "aGk==", "aGk_", "a"] {
            assert!(
                matches!(
                    decode_base64(bad, "f"),
                    Err(DsseError::BadBase64 { .. } | DsseError::NonCanonicalBase64 { .. })
                ),
                "{bad:?}"
            );
        }
        // URL-safe alphabet is not standard base64.
        assert!(matches!(
            decode_base64("-_-_", "f"),
            Err(DsseError::BadBase64 { .. })
        ));
    }

    #[test]
    fn echo_cuts_long_input() {
        assert_eq!(echo("abc"), "abc");
        assert_eq!(echo(&"x".repeat(1000)).chars().count(), ECHO_CHARS + 1);
    }
}
