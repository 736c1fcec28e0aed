//! The payload kinds a signed request can carry, parsed strictly.
//!
//! A payload is a JSON object inside a DSSE envelope whose `payloadType` names its kind
//! (`application/vnd.pointsledger.<kind>+json`). Parsing here is the only place where untrusted
//! JSON becomes typed data, so it is deliberately unforgiving: unknown or duplicate fields,
//! integers above 2^53-1 (which a JavaScript client cannot read exactly), negative or fractional
//! numbers, empty or oversized strings and malformed keys are all refused with an error that names
//! the field. A payload must also be compact JSON (no whitespace outside strings) and fit its
//! kind's size limit ([`max_payload_bytes`]), so that no entry carries padding: every byte of a
//! leaf is a byte some field needs. Every payload names its signers explicitly
//! ([`Payload::required_signers`]) and carries a `nonce`, unique per signer, and an optional
//! `expires_at`.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The largest integer a payload may carry: 2^53 - 1, exact in every JSON implementation.
pub const MAX_SAFE_INT: u64 = (1 << 53) - 1;
/// Longest accepted `nonce`, `order_id` or merchant `name`, in bytes.
pub const MAX_TEXT: usize = 64;

/// The largest payload of a merchant program (`merchant.register`, `merchant.update`), in bytes.
pub const MAX_PROGRAM_PAYLOAD: usize = 1024;
/// The largest payload of every other kind, in bytes.
pub const MAX_REQUEST_PAYLOAD: usize = 512;

/// The largest payload of `kind`, in bytes: each limit holds the kind's largest payload (every
/// text at its longest, every integer at 2^53-1, `expires_at` present) written compactly, with
/// room to spare, and nothing like the DSSE limit of 32 KiB that padding could otherwise fill.
pub fn max_payload_bytes(kind: &str) -> usize {
    match kind {
        "merchant.register" | "merchant.update" => MAX_PROGRAM_PAYLOAD,
        _ => MAX_REQUEST_PAYLOAD,
    }
}

/// The byte offset of the first insignificant whitespace (space, tab, line feed, carriage
/// return outside a string), if any: what [`Payload::parse`] refuses.
pub fn first_insignificant_whitespace(bytes: &[u8]) -> Option<usize> {
    let (mut in_string, mut escaped) = (false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return Some(i);
        }
    }
    None
}

/// `bytes` with every insignificant whitespace removed: how tools turn a hand-written payload
/// file into the compact form the ledger accepts. Strings are kept byte for byte.
pub fn compact(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(i) = first_insignificant_whitespace(rest) {
        out.extend_from_slice(&rest[..i]);
        rest = &rest[i + 1..];
        // Whitespace never starts inside a string, so scanning again from here is exact.
    }
    out.extend_from_slice(rest);
    out
}

/// Why a payload was refused before any rule looked at it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// The `payloadType` names a kind this ledger does not know.
    #[error("unknown payload kind {0:?}")]
    UnknownKind(String),
    /// The payload is longer than its kind allows ([`max_payload_bytes`]).
    #[error("a {kind} payload is at most {max} bytes; this one is {size}")]
    TooLarge {
        /// The payload kind.
        kind: &'static str,
        /// The payload's length in bytes.
        size: usize,
        /// The kind's limit.
        max: usize,
    },
    /// The payload holds whitespace outside strings.
    #[error(
        "a payload must be compact JSON: whitespace outside a string at byte {offset} \
         (space, tab, CR and LF are only allowed inside strings)"
    )]
    NotCompact {
        /// Offset of the first such byte.
        offset: usize,
    },
    /// The payload is not valid JSON of the kind's shape (includes unknown and duplicate fields).
    #[error("malformed {kind} payload: {reason}")]
    Malformed {
        /// The payload kind.
        kind: &'static str,
        /// What the JSON parser or a field check found.
        reason: String,
    },
    /// An integer is zero where it must be positive, or above 2^53-1.
    #[error("field {field} is {value}: it must be between {min} and {max}")]
    OutOfRange {
        /// The field's name.
        field: &'static str,
        /// The value received.
        value: u64,
        /// The least value allowed.
        min: u64,
        /// The greatest value allowed.
        max: u64,
    },
    /// A display name is empty, too long or holds control characters.
    #[error("field name must be 1 to {MAX_TEXT} bytes without control characters (got {value:?})")]
    BadName {
        /// The start of the value received.
        value: String,
    },
    /// An EVM address or signature is not in its hex form.
    #[error(transparent)]
    Evm(#[from] crate::evm::EvmError),
    /// A text field is empty, too long or uses characters outside its alphabet.
    #[error("field {field} must be 1 to {MAX_TEXT} characters of [A-Za-z0-9._:-] (got {value:?})")]
    BadText {
        /// The field's name.
        field: &'static str,
        /// The start of the value received.
        value: String,
    },
    /// A field that must hold a public key id is not a usable key's id.
    #[error("field {field} must be a public key id: 64 lowercase hex digits of a valid, non-weak Ed25519 key")]
    BadKeyId {
        /// The field's name.
        field: &'static str,
    },
}

/// The rules of a merchant's points program, set by the operator.
///
/// Rates are integers in basis points (1/10,000) or thousandths so that every computation is
/// exact integer arithmetic; every division rounds down (see docs/PROTOCOL.md, "Rounding").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramRules {
    /// Points earned per 10,000 minor units paid in money (500 = 5 points per 100 units).
    pub earn_bps: u64,
    /// Discount value of one point at redemption, in thousandths of a minor unit (1000 = 1 unit).
    pub point_value_milli: u64,
    /// Largest share of an order's amount that may be paid with points, in basis points.
    pub max_redeem_bps: u64,
    /// How long points stay spendable once available, in milliseconds.
    pub validity_ms: u64,
    /// How long new points stay pending (the refund window), in milliseconds.
    pub pending_ms: u64,
    /// Discount on a referred consumer's first purchase, in basis points of its amount.
    pub referee_discount_bps: u64,
    /// Cap on that discount, in minor units.
    pub referee_discount_max: u64,
    /// Points credited (pending) to the referrer when a referee makes a first purchase here.
    pub referrer_reward_points: u64,
    /// How many referees' first purchases here may reward one referrer.
    pub referrer_reward_cap: u64,
    /// Cap on the points one purchase can earn.
    pub max_points_per_order: u64,
}

impl ProgramRules {
    fn check(&self) -> Result<(), PayloadError> {
        let bounded = [
            ("earn_bps", self.earn_bps, 0, 1_000_000),
            ("point_value_milli", self.point_value_milli, 1, 1_000_000),
            ("max_redeem_bps", self.max_redeem_bps, 0, 10_000),
            ("validity_ms", self.validity_ms, 1, MAX_SAFE_INT),
            ("pending_ms", self.pending_ms, 0, MAX_SAFE_INT),
            ("referee_discount_bps", self.referee_discount_bps, 0, 10_000),
            (
                "referee_discount_max",
                self.referee_discount_max,
                0,
                MAX_SAFE_INT,
            ),
            (
                "referrer_reward_points",
                self.referrer_reward_points,
                0,
                MAX_SAFE_INT,
            ),
            (
                "referrer_reward_cap",
                self.referrer_reward_cap,
                0,
                MAX_SAFE_INT,
            ),
            (
                "max_points_per_order",
                self.max_points_per_order,
                0,
                MAX_SAFE_INT,
            ),
        ];
        bounded
            .into_iter()
            .try_for_each(|(field, value, min, max)| range(field, value, min, max))
    }
}

/// `merchant.register` and `merchant.update`: the operator sets a merchant's program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantProgram {
    /// The operator key (signer).
    pub operator: String,
    /// The merchant's public key id.
    pub merchant: String,
    /// A display name.
    pub name: String,
    /// The program rules.
    pub rules: ProgramRules,
    /// Unique per signer.
    pub nonce: String,
    /// Refused if sequenced at or after this unix time in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// `purchase`: a merchant records an order paid by a consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purchase {
    /// The merchant (signer).
    pub merchant: String,
    /// The consumer who bought.
    pub consumer: String,
    /// The merchant's order reference, unique per merchant.
    pub order_id: String,
    /// The order's price before discounts, in minor units.
    pub amount: u64,
    /// Unique per signer.
    pub nonce: String,
    /// Refused if sequenced at or after this unix time in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// `redeem`: a consumer spends points on an order; both consumer and merchant sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    /// The consumer (signer).
    pub consumer: String,
    /// The merchant (signer).
    pub merchant: String,
    /// The order the discount applies to; at most one redemption per order.
    pub order_id: String,
    /// The order's price, in minor units (bounds the share payable in points).
    pub order_amount: u64,
    /// Points to spend.
    pub points: u64,
    /// Unique per signer.
    pub nonce: String,
    /// Refused if sequenced at or after this unix time in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// `refund`: a merchant refunds part or all of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refund {
    /// The merchant (signer).
    pub merchant: String,
    /// The order being refunded.
    pub order_id: String,
    /// The part of the order's price refunded, in minor units.
    pub amount: u64,
    /// Unique per signer.
    pub nonce: String,
    /// Refused if sequenced at or after this unix time in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// `referral.accept`: a new consumer names the customer who referred them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralAccept {
    /// The referee (signer).
    pub consumer: String,
    /// The referrer.
    pub referrer: String,
    /// Unique per signer.
    pub nonce: String,
    /// Refused if sequenced at or after this unix time in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// `account.link_evm`: a consumer binds an EVM wallet address, proven by an EIP-191 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEvm {
    /// The consumer (signer).
    pub consumer: String,
    /// The EVM address, `0x` and 40 hex digits.
    pub address: String,
    /// EIP-191 signature by `address` over [`crate::evm::link_message`], `0x` and 130 hex digits.
    pub evm_signature: String,
    /// Unique per signer.
    pub nonce: String,
    /// Refused if sequenced at or after this unix time in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// A parsed payload of any kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// `merchant.register`
    MerchantRegister(MerchantProgram),
    /// `merchant.update`
    MerchantUpdate(MerchantProgram),
    /// `purchase`
    Purchase(Purchase),
    /// `redeem`
    Redeem(Redeem),
    /// `refund`
    Refund(Refund),
    /// `referral.accept`
    ReferralAccept(ReferralAccept),
    /// `account.link_evm`
    LinkEvm(LinkEvm),
}

/// Every kind, as written in `payloadType`.
pub const KINDS: [&str; 7] = [
    "merchant.register",
    "merchant.update",
    "purchase",
    "redeem",
    "refund",
    "referral.accept",
    "account.link_evm",
];

fn decode<T: DeserializeOwned>(kind: &'static str, bytes: &[u8]) -> Result<T, PayloadError> {
    serde_json::from_slice(bytes).map_err(|e| PayloadError::Malformed {
        kind,
        reason: e.to_string(),
    })
}

fn range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), PayloadError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(PayloadError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

fn text(field: &'static str, value: &str) -> Result<(), PayloadError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_TEXT
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(PayloadError::BadText {
            field,
            value: value.chars().take(MAX_TEXT).collect(),
        })
    }
}

/// Checks that a key id names a usable Ed25519 key: 64 lowercase hex digits encoding a
/// canonical point that is not of small order (docs/PROTOCOL.md §2). Fields whose key does not
/// sign the request (a purchase's consumer, a referrer, a registered merchant) are checked the
/// same way, so that points can never be credited to an id no one can ever sign for.
fn key_id(field: &'static str, value: &str) -> Result<(), PayloadError> {
    crate::keys::check_public_id(value).map_err(|_| PayloadError::BadKeyId { field })
}

fn expiry(expires_at: Option<u64>) -> Result<(), PayloadError> {
    expires_at.map_or(Ok(()), |v| range("expires_at", v, 0, MAX_SAFE_INT))
}

impl Payload {
    /// Parses and checks a payload of the given kind.
    pub fn parse(kind: &str, bytes: &[u8]) -> Result<Payload, PayloadError> {
        let Some(&kind) = KINDS.iter().find(|k| **k == kind) else {
            return Err(PayloadError::UnknownKind(kind.chars().take(64).collect()));
        };
        let max = max_payload_bytes(kind);
        if bytes.len() > max {
            return Err(PayloadError::TooLarge {
                kind,
                size: bytes.len(),
                max,
            });
        }
        if let Some(offset) = first_insignificant_whitespace(bytes) {
            return Err(PayloadError::NotCompact { offset });
        }
        let payload = match kind {
            "merchant.register" => Payload::MerchantRegister(decode("merchant.register", bytes)?),
            "merchant.update" => Payload::MerchantUpdate(decode("merchant.update", bytes)?),
            "purchase" => Payload::Purchase(decode("purchase", bytes)?),
            "redeem" => Payload::Redeem(decode("redeem", bytes)?),
            "refund" => Payload::Refund(decode("refund", bytes)?),
            "referral.accept" => Payload::ReferralAccept(decode("referral.accept", bytes)?),
            "account.link_evm" => Payload::LinkEvm(decode("account.link_evm", bytes)?),
            other => return Err(PayloadError::UnknownKind(other.chars().take(64).collect())),
        };
        payload.check()?;
        Ok(payload)
    }

    /// The kind, as written in `payloadType`.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::MerchantRegister(_) => "merchant.register",
            Payload::MerchantUpdate(_) => "merchant.update",
            Payload::Purchase(_) => "purchase",
            Payload::Redeem(_) => "redeem",
            Payload::Refund(_) => "refund",
            Payload::ReferralAccept(_) => "referral.accept",
            Payload::LinkEvm(_) => "account.link_evm",
        }
    }

    fn check(&self) -> Result<(), PayloadError> {
        text("nonce", self.nonce())?;
        expiry(self.expires_at())?;
        match self {
            Payload::MerchantRegister(p) | Payload::MerchantUpdate(p) => {
                key_id("operator", &p.operator)?;
                key_id("merchant", &p.merchant)?;
                let name_ok = !p.name.trim().is_empty()
                    && p.name.len() <= MAX_TEXT
                    && !p.name.chars().any(char::is_control);
                if !name_ok {
                    return Err(PayloadError::BadName {
                        value: p.name.chars().take(MAX_TEXT).collect(),
                    });
                }
                p.rules.check()
            }
            Payload::Purchase(p) => {
                key_id("merchant", &p.merchant)?;
                key_id("consumer", &p.consumer)?;
                text("order_id", &p.order_id)?;
                range("amount", p.amount, 1, MAX_SAFE_INT)
            }
            Payload::Redeem(p) => {
                key_id("consumer", &p.consumer)?;
                key_id("merchant", &p.merchant)?;
                text("order_id", &p.order_id)?;
                range("order_amount", p.order_amount, 1, MAX_SAFE_INT)?;
                range("points", p.points, 1, MAX_SAFE_INT)
            }
            Payload::Refund(p) => {
                key_id("merchant", &p.merchant)?;
                text("order_id", &p.order_id)?;
                range("amount", p.amount, 1, MAX_SAFE_INT)
            }
            Payload::ReferralAccept(p) => {
                key_id("consumer", &p.consumer)?;
                key_id("referrer", &p.referrer)
            }
            Payload::LinkEvm(p) => {
                key_id("consumer", &p.consumer)?;
                crate::evm::check_address(&p.address)?;
                crate::evm::check_signature_format(&p.evm_signature)?;
                Ok(())
            }
        }
    }

    /// The public key ids that must sign this payload, and nobody else.
    pub fn required_signers(&self) -> Vec<&str> {
        match self {
            Payload::MerchantRegister(p) | Payload::MerchantUpdate(p) => vec![&p.operator],
            Payload::Purchase(p) => vec![&p.merchant],
            Payload::Redeem(p) => vec![&p.consumer, &p.merchant],
            Payload::Refund(p) => vec![&p.merchant],
            Payload::ReferralAccept(p) => vec![&p.consumer],
            Payload::LinkEvm(p) => vec![&p.consumer],
        }
    }

    /// The request's nonce.
    pub fn nonce(&self) -> &str {
        match self {
            Payload::MerchantRegister(p) | Payload::MerchantUpdate(p) => &p.nonce,
            Payload::Purchase(p) => &p.nonce,
            Payload::Redeem(p) => &p.nonce,
            Payload::Refund(p) => &p.nonce,
            Payload::ReferralAccept(p) => &p.nonce,
            Payload::LinkEvm(p) => &p.nonce,
        }
    }

    /// The request's expiry, if any.
    pub fn expires_at(&self) -> Option<u64> {
        match self {
            Payload::MerchantRegister(p) | Payload::MerchantUpdate(p) => p.expires_at,
            Payload::Purchase(p) => p.expires_at,
            Payload::Redeem(p) => p.expires_at,
            Payload::Refund(p) => p.expires_at,
            Payload::ReferralAccept(p) => p.expires_at,
            Payload::LinkEvm(p) => p.expires_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u8) -> String {
        crate::keys::public_id(&ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key())
    }

    fn purchase(amount: &str) -> String {
        let (k1, k2) = (id(1), id(2));
        format!(
            r#"{{"merchant":"{k1}","consumer":"{k2}","order_id":"o-1","amount":{amount},"nonce":"n1"}}"#
        )
    }

    #[test]
    fn accepts_a_good_purchase_and_names_its_signer() {
        let p = Payload::parse("purchase", purchase("2500").as_bytes()).expect("valid");
        assert_eq!(p.required_signers(), vec![id(1).as_str()]);
        assert_eq!(p.nonce(), "n1");
    }

    #[test]
    fn refuses_bad_numbers() {
        for bad in [
            "0",
            "-1",
            "1.5",
            "9007199254740992",
            "18446744073709551616",
            "\"5\"",
        ] {
            assert!(
                Payload::parse("purchase", purchase(bad).as_bytes()).is_err(),
                "amount {bad} accepted"
            );
        }
        assert!(Payload::parse("purchase", purchase("9007199254740991").as_bytes()).is_ok());
    }

    #[test]
    fn refuses_unknown_and_duplicate_fields_and_bad_ids() {
        let (k1, k2) = (id(1), id(2));
        let dup = format!(
            r#"{{"merchant":"{k1}","consumer":"{k2}","order_id":"o","amount":1,"amount":2,"nonce":"n"}}"#
        );
        assert!(Payload::parse("purchase", dup.as_bytes()).is_err());
        let extra = purchase("1").replace("\"nonce\"", "\"points\":5,\"nonce\"");
        assert!(Payload::parse("purchase", extra.as_bytes()).is_err());
        let upper = purchase("1").replace(&k1, &k1.to_uppercase());
        assert!(matches!(
            Payload::parse("purchase", upper.as_bytes()),
            Err(PayloadError::BadKeyId { field: "merchant" })
        ));
        // A well-formed hex id of a point that is not on the curve, or of small order.
        let weak = "0100000000000000000000000000000000000000000000000000000000000000";
        let not_a_key = purchase("1").replace(&k2, weak);
        assert!(matches!(
            Payload::parse("purchase", not_a_key.as_bytes()),
            Err(PayloadError::BadKeyId { field: "consumer" })
        ));
        let spaced = purchase("1").replace("o-1", "o 1");
        assert!(matches!(
            Payload::parse("purchase", spaced.as_bytes()),
            Err(PayloadError::BadText {
                field: "order_id",
                ..
            })
        ));
        assert!(matches!(
            Payload::parse("mint", b"{}"),
            Err(PayloadError::UnknownKind(_))
        ));
    }

    /// The largest payload of each kind (every text at 64 characters, every integer at its
    /// maximum, `expires_at` present) parses, so no valid request is refused for its size; one
    /// byte over the limit is refused with the limit named.
    #[test]
    fn every_kind_fits_its_size_limit() {
        let (k1, k2) = (id(1), id(2));
        let t = "x".repeat(MAX_TEXT);
        let big = MAX_SAFE_INT;
        let rules = format!(
            r#"{{"earn_bps":1000000,"point_value_milli":1000000,"max_redeem_bps":10000,"validity_ms":{big},"pending_ms":{big},"referee_discount_bps":10000,"referee_discount_max":{big},"referrer_reward_points":{big},"referrer_reward_cap":{big},"max_points_per_order":{big}}}"#
        );
        // A name of 64 bytes, each a character JSON must escape (with two bytes).
        let name = "\\\"".repeat(MAX_TEXT);
        let signature = format!("0x{}1b", "7".repeat(128));
        let address = format!("0x{}", "a".repeat(40));
        let largest = [
            (
                "merchant.register",
                format!(
                    r#"{{"operator":"{k1}","merchant":"{k2}","name":"{name}","rules":{rules},"nonce":"{t}","expires_at":{big}}}"#
                ),
            ),
            (
                "purchase",
                format!(
                    r#"{{"merchant":"{k1}","consumer":"{k2}","order_id":"{t}","amount":{big},"nonce":"{t}","expires_at":{big}}}"#
                ),
            ),
            (
                "redeem",
                format!(
                    r#"{{"consumer":"{k1}","merchant":"{k2}","order_id":"{t}","order_amount":{big},"points":{big},"nonce":"{t}","expires_at":{big}}}"#
                ),
            ),
            (
                "refund",
                format!(
                    r#"{{"merchant":"{k1}","order_id":"{t}","amount":{big},"nonce":"{t}","expires_at":{big}}}"#
                ),
            ),
            (
                "referral.accept",
                format!(
                    r#"{{"consumer":"{k1}","referrer":"{k2}","nonce":"{t}","expires_at":{big}}}"#
                ),
            ),
            (
                "account.link_evm",
                format!(
                    r#"{{"consumer":"{k1}","address":"{address}","evm_signature":"{signature}","nonce":"{t}","expires_at":{big}}}"#
                ),
            ),
        ];
        for (kind, payload) in largest {
            let max = max_payload_bytes(kind);
            assert!(payload.len() <= max, "{kind}: {} > {max}", payload.len());
            Payload::parse(kind, payload.as_bytes())
                .unwrap_or_else(|e| panic!("{kind}: the largest payload is refused: {e}"));
            // Padded to one byte over the limit inside a string (so it stays compact).
            let padded = payload.replacen(&t, &"x".repeat(t.len() + max + 1 - payload.len()), 1);
            assert_eq!(padded.len(), max + 1);
            let err = Payload::parse(kind, padded.as_bytes()).expect_err("over the limit");
            assert_eq!(
                err,
                PayloadError::TooLarge {
                    kind: KINDS.iter().find(|k| **k == kind).copied().expect("kind"),
                    size: max + 1,
                    max
                }
            );
            assert!(err.to_string().contains(&format!("at most {max} bytes")));
        }
        assert_eq!(max_payload_bytes("merchant.update"), MAX_PROGRAM_PAYLOAD);
    }

    #[test]
    fn refuses_whitespace_outside_strings_and_compact_removes_it() {
        let good = purchase("5");
        for (at, ws) in [(1, " "), (1, "\n"), (1, "\t"), (1, "\r")] {
            let bad = format!("{}{ws}{}", &good[..at], &good[at..]);
            assert_eq!(
                Payload::parse("purchase", bad.as_bytes()),
                Err(PayloadError::NotCompact { offset: at })
            );
            assert_eq!(compact(bad.as_bytes()), good.as_bytes());
        }
        let trailing = format!("{good}\n");
        assert_eq!(
            Payload::parse("purchase", trailing.as_bytes()),
            Err(PayloadError::NotCompact { offset: good.len() })
        );
        let pretty = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&good).expect("json"),
        )
        .expect("pretty");
        let compacted = compact(pretty.as_bytes());
        assert!(Payload::parse("purchase", &compacted).is_ok());
        assert_eq!(first_insignificant_whitespace(&compacted), None);
        // Spaces inside strings are content: kept by `compact`, accepted in a name.
        let named = r#"{"a":"x y \" z","b":[1, 2]}"#;
        assert_eq!(compact(named.as_bytes()), br#"{"a":"x y \" z","b":[1,2]}"#);
        assert_eq!(first_insignificant_whitespace(named.as_bytes()), Some(23));
    }
}
