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

/// Envelopes per batch in [`verify_all`]. Large enough that the batch equation's shared work pays
/// off, small enough that a failed batch costs little to re-check one by one and that chunks
/// spread over threads.
pub const BATCH_CHUNK: usize = 64;

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
        let key = keys::parse_public_id(&ws.keyid).map_err(|reason| DsseError::BadKey {
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

/// Verifies many envelopes, giving one result per envelope in the same order.
///
/// Envelopes are split into chunks of [`BATCH_CHUNK`], checked in parallel, each chunk with one
/// Ed25519 batch equation over all its signatures (about half the cost of checking them one by
/// one). When a chunk's batch fails, each of its envelopes is checked on its own with
/// [`Envelope::verify`], so good envelopes still pass and each bad one names its bad signature.
///
/// Batch and strict verification differ in edge cases, so before batching, each signature is
/// screened with cheap byte checks for what `verify_strict` refuses and the batch equation does
/// not: a non-canonical `s`, a non-canonical encoding of `R`, an `R` of small order (weak keys
/// are already refused by [`parse`]). A signature that fails the screen is checked alone. After
/// the screen, a batch success implies that each signature passes `verify_strict` whenever its
/// `R` and key lie in the prime-order subgroup, which holds for every signature made by honest
/// signing. The one remaining difference: a key holder who deliberately builds a key or an `R`
/// with a small-order component can make a signature of their own that the batch may accept and
/// `verify_strict` refuses. It cannot forge anyone else's signature. Closing this gap would cost
/// a full scalar multiplication per signature (more than the batch saves), so it is left open;
/// code that must reach the same verdict as [`Envelope::verify`] on such inputs should use that.
pub fn verify_all(envelopes: &[Envelope]) -> Vec<Result<(), DsseError>> {
    envelopes
        .par_chunks(BATCH_CHUNK)
        .map(verify_chunk)
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect()
}

fn verify_chunk(chunk: &[Envelope]) -> Vec<Result<(), DsseError>> {
    let paes: Vec<Vec<u8>> = chunk.iter().map(Envelope::pae).collect();
    let batchable: Vec<bool> = chunk
        .iter()
        .map(|e| {
            !e.signatures.is_empty()
                && e.signatures
                    .iter()
                    .all(|s| passes_strict_screen(&s.signature))
        })
        .collect();

    let mut messages: Vec<&[u8]> = Vec::new();
    let mut signatures: Vec<Signature> = Vec::new();
    let mut verifying_keys: Vec<VerifyingKey> = Vec::new();
    for ((envelope, pae), batched) in chunk.iter().zip(&paes).zip(&batchable) {
        if !batched {
            continue;
        }
        for s in &envelope.signatures {
            messages.push(pae);
            signatures.push(s.signature);
            verifying_keys.push(s.key);
        }
    }
    let batch_ok = !messages.is_empty()
        && ed25519_dalek::verify_batch(&messages, &signatures, &verifying_keys).is_ok();

    chunk
        .iter()
        .zip(&paes)
        .zip(&batchable)
        .map(|((envelope, pae), &batched)| {
            if batched && batch_ok {
                Ok(())
            } else {
                envelope.verify_with_pae(pae)
            }
        })
        .collect()
}

/// Byte checks for what `verify_strict` refuses and the batch equation accepts: `s` not reduced
/// modulo the group order, `R` not canonically encoded (y ≥ p, or the sign bit set on a point with
/// x = 0), and `R` of small order.
fn passes_strict_screen(signature: &Signature) -> bool {
    let r = signature.r_bytes();
    scalar_is_canonical(signature.s_bytes())
        && point_encoding_is_canonical(r)
        && !SMALL_ORDER_ENCODINGS.contains(r)
}

/// The group order l = 2^252 + 27742317777372353535851937790883648493, little-endian.
const GROUP_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// Whether a little-endian scalar is below the group order.
fn scalar_is_canonical(s: &[u8; 32]) -> bool {
    s.iter().rev().cmp(GROUP_ORDER.iter().rev()) == std::cmp::Ordering::Less
}

/// Whether the y coordinate (low 255 bits) is below p = 2^255 - 19. (The sign bit on x = 0 is
/// caught by [`SMALL_ORDER_ENCODINGS`], as the only points with x = 0 have small order.)
fn point_encoding_is_canonical(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f == 0x7f;
    let middle = bytes[1..31].iter().all(|&b| b == 0xff);
    !(top && middle && bytes[0] >= 0xed)
}

/// Every encoding with y < p of a point of order 1, 2, 4 or 8: the eight canonical ones, and the
/// identity and the order-2 point with the sign bit set (x = 0, so the bit is meaningless).
const SMALL_ORDER_ENCODINGS: [[u8; 32]; 10] = {
    let mut e = [[0u8; 32]; 10];
    // Identity (0, 1), and with the sign bit set.
    e[0][0] = 1;
    e[1][0] = 1;
    e[1][31] = 0x80;
    // Order 2: (0, -1), and with the sign bit set.
    let mut i = 0;
    while i < 32 {
        e[2][i] = 0xff;
        e[3][i] = 0xff;
        i += 1;
    }
    e[2][0] = 0xec;
    e[2][31] = 0x7f;
    e[3][0] = 0xec;
    // Order 4: (±sqrt(-1), 0).
    e[5][31] = 0x80;
    // Order 8 (y and -y with both signs of x).
    e[6] = ORDER_8_Y;
    e[7] = ORDER_8_Y;
    e[7][31] |= 0x80;
    e[8] = ORDER_8_NEG_Y;
    e[9] = ORDER_8_NEG_Y;
    e[9][31] |= 0x80;
    e
};

const ORDER_8_Y: [u8; 32] = [
    0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
    0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
];

const ORDER_8_NEG_Y: [u8; 32] = [
    0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
    0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
];

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
    fn scalar_screen() {
        let mut l = GROUP_ORDER;
        assert!(!scalar_is_canonical(&l));
        l[0] -= 1;
        assert!(scalar_is_canonical(&l));
        assert!(scalar_is_canonical(&[0; 32]));
        assert!(!scalar_is_canonical(&[0xff; 32]));
    }

    /// The byte-level screen for R agrees with decompressing the point and asking the curve
    /// library, on every special encoding and on random ones.
    #[test]
    fn point_screen_matches_the_curve_library() {
        let by_library = |bytes: &[u8; 32]| {
            VerifyingKey::from_bytes(bytes)
                .ok()
                .map(|p| !p.is_weak() && p.to_edwards().compress().as_bytes() == bytes)
        };
        let by_bytes = |bytes: &[u8; 32]| {
            point_encoding_is_canonical(bytes) && !SMALL_ORDER_ENCODINGS.contains(bytes)
        };

        let mut candidates: Vec<[u8; 32]> = SMALL_ORDER_ENCODINGS.to_vec();
        // Every y in [p - 20, 2^255) and every small y, with both sign bits.
        for low in 0u8..=0xff {
            let mut high = [0xffu8; 32];
            high[0] = low;
            high[31] = 0x7f;
            let mut small = [0u8; 32];
            small[0] = low;
            candidates.push(high);
            candidates.push(small);
        }
        for i in 0..2000u32 {
            let digest = Sha256::digest(i.to_le_bytes());
            candidates.push(digest.into());
        }
        for sk in 1..50u8 {
            candidates.push(SigningKey::from_bytes(&[sk; 32]).verifying_key().to_bytes());
        }
        let mut checked = 0;
        for mut c in candidates {
            for sign in [0, 0x80] {
                c[31] = (c[31] & 0x7f) | sign;
                if let Some(expected) = by_library(&c) {
                    assert_eq!(by_bytes(&c), expected, "{}", hex::encode(c));
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000);
        for e in SMALL_ORDER_ENCODINGS {
            assert_eq!(by_library(&e), Some(false), "{}", hex::encode(e));
        }
    }

    #[test]
    fn echo_cuts_long_input() {
        assert_eq!(echo("abc"), "abc");
        assert_eq!(echo(&"x".repeat(1000)).chars().count(), ECHO_CHARS + 1);
    }
}
