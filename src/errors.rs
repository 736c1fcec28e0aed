//! The one table of error codes: every refusal or failure the ledger, the service and the
//! command line report carries one [`Code`], and the code alone decides its [`Class`], its HTTP
//! status and the command line's exit code.
//!
//! Each layer keeps its own error type (engine, envelope, ledger, service) with the detail of
//! what went wrong, and maps each variant to a code here; nothing else maps errors to statuses
//! or exit codes. docs/PROTOCOL.md §10 is this table printed as Markdown
//! ([`markdown_tables`]); `tests/error_table.rs` fails when the two differ.

use std::fmt;

/// Whose problem a refusal is, and so what a client can do about it. Each class has one exit
/// code of the command line; HTTP statuses are per code, since one class spans several (an
/// oversized body is 413, a rate limit 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// The request itself is malformed: fix it before sending it again.
    Malformed,
    /// A signature does not verify, or the request is not signed by the keys its kind needs.
    Forbidden,
    /// What a read names does not exist (yet).
    NotFound,
    /// It reuses a nonce, order, merchant, address or account with other content.
    Conflict,
    /// Well formed and signed, but a ledger rule refuses it now (it may pass later).
    Rule,
    /// Over a size, count, time or rate limit of the service: send less, or later.
    Limit,
    /// The service cannot take the request now; the same request may be retried as is.
    Unavailable,
    /// A fault of the service itself; it is logged on the server. Retrying may not help.
    Internal,
    /// A receipt, proof or checkpoint does not verify: what it claims is not proven, so it must
    /// not be trusted. Only verifiers (`pointsledger verify`, the auditor) give these.
    Unverified,
}

impl Class {
    /// Every class, in the order the docs list them.
    pub const ALL: [Class; 9] = [
        Class::Malformed,
        Class::Forbidden,
        Class::NotFound,
        Class::Conflict,
        Class::Rule,
        Class::Limit,
        Class::Unavailable,
        Class::Internal,
        Class::Unverified,
    ];

    /// The class's name as the docs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Malformed => "malformed",
            Class::Forbidden => "forbidden",
            Class::NotFound => "not_found",
            Class::Conflict => "conflict",
            Class::Rule => "rule",
            Class::Limit => "limit",
            Class::Unavailable => "unavailable",
            Class::Internal => "internal",
            Class::Unverified => "unverified",
        }
    }

    /// The command line's exit code for an error of this class. 1 is left for failures that
    /// carry no code (a file that cannot be read, bad arguments), and 2 is the argument
    /// parser's own.
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Malformed => 3,
            Class::Forbidden => 4,
            Class::NotFound => 5,
            Class::Conflict => 6,
            Class::Rule => 7,
            Class::Limit => 8,
            Class::Unavailable => 9,
            Class::Internal => 10,
            Class::Unverified => 11,
        }
    }

    /// What the class means, as the docs say it.
    pub fn meaning(self) -> &'static str {
        match self {
            Class::Malformed => "The request itself is malformed; fix it before sending it again.",
            Class::Forbidden => {
                "A signature does not verify, or the request is not signed by the keys its kind needs."
            }
            Class::NotFound => "What a read names does not exist (yet).",
            Class::Conflict => {
                "It reuses a nonce, order, merchant, address or account with other content."
            }
            Class::Rule => {
                "Well formed and signed, but a ledger rule refuses it now (it may pass later)."
            }
            Class::Limit => {
                "Over a size, count, time or rate limit of the service: send less, or later."
            }
            Class::Unavailable => {
                "The service cannot take the request now; the same request may be retried as is."
            }
            Class::Internal => {
                "A fault of the service itself, logged on the server; retrying may not help."
            }
            Class::Unverified => {
                "A receipt, proof or checkpoint does not verify: what it claims is not proven; do not trust it."
            }
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status column of the table: an HTTP status, or 0 for a code no service answers with.
const fn http(status: u16) -> Option<u16> {
    match status {
        0 => None,
        s => Some(s),
    }
}

/// Declares [`Code`] and its table from one list: variant, code string, class, HTTP status and
/// meaning (Markdown, as docs/PROTOCOL.md §10 prints it). A status of 0 marks a code that only
/// verifiers give.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $class:ident, $status:expr, $meaning:literal;)*) => {
        /// A stable, machine-readable error code, as the API's `error` field and the command
        /// line's one-line errors carry it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code, in the table's order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as the API writes it.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// The code's class.
            pub fn class(self) -> Class {
                match self { $(Code::$variant => Class::$class,)* }
            }

            /// The HTTP status a service answers with; `None` for the codes only verifiers
            /// give, which no service answers with.
            pub fn status(self) -> Option<u16> {
                match self { $(Code::$variant => http($status),)* }
            }

            /// When the code is given (Markdown).
            pub fn meaning(self) -> &'static str {
                match self { $(Code::$variant => $meaning,)* }
            }
        }
    };
}

codes! {
    /// The envelope breaks §3.
    MalformedEnvelope = "malformed_envelope", Malformed, 400,
        "The envelope breaks [§3](#3-dsse-envelopes).";
    /// The payload breaks §4/§5, or the kind is unknown.
    MalformedPayload = "malformed_payload", Malformed, 400,
        "The payload breaks [§4](#4-payloads-common-rules) (not compact JSON, a field out of shape or range, a weak key id, an EVM field not in its canonical form) or its kind's rules in [§5](#5-payload-kinds), or the kind is unknown.";
    /// The body is not the JSON the route takes.
    MalformedJson = "malformed_json", Malformed, 400,
        "The body is not the JSON the route takes (a batch that is not a JSON array, a quote request with missing fields).";
    /// A path or query parameter does not parse.
    MalformedRequest = "malformed_request", Malformed, 400,
        "A path or query parameter does not parse, or the request is otherwise malformed.";
    /// An account or merchant id in a path is not a key id.
    MalformedId = "malformed_id", Malformed, 400,
        "An account or merchant id in a path is not 64 lowercase hex digits naming a usable key.";
    /// A size, index or range in a read is out of range.
    OutOfRange = "out_of_range", Malformed, 400,
        "A read's index, size or range cannot exist: an index at or past the tree size, a consistency proof from 0 or backwards, a history cursor or limit out of bounds.";
    /// The route does not take this method.
    MethodNotAllowed = "method_not_allowed", Malformed, 405,
        "The route does not take this HTTP method.";
    /// A signature does not verify.
    BadSignature = "bad_signature", Forbidden, 401,
        "A signature does not verify.";
    /// The signers are not exactly the kind's signers.
    WrongSigners = "wrong_signers", Forbidden, 403,
        "The signers are not exactly the kind's signers.";
    /// A merchant program signed by a key other than the operator's.
    NotOperator = "not_operator", Forbidden, 403,
        "A merchant program names a key other than the log's operator key.";
    /// Nothing exists where a read points.
    NotFound = "not_found", NotFound, 404,
        "A read names an entry, checkpoint, merchant or route that does not exist (yet).";
    /// An account read at a size whose versions the server no longer keeps.
    NotKept = "not_kept", NotFound, 410,
        "`GET /v1/accounts/{id}?at=SIZE`: the server keeps accounts as they were for the checkpoints of its most recent entries only (`--account-versions`, [§12.3](#123-get-v1accountsid)); SIZE is older than that, or older than the server's start. Ask at a newer checkpoint.";
    /// A signer already used the nonce.
    NonceReused = "nonce_reused", Conflict, 409,
        "A signer already used the nonce for another request.";
    /// The order already has a purchase or a redemption.
    OrderExists = "order_exists", Conflict, 409,
        "The order already has a purchase (`purchase`) or a redemption (`redeem`).";
    /// `merchant.register` for a registered merchant.
    MerchantExists = "merchant_exists", Conflict, 409,
        "`merchant.register` for a registered merchant.";
    /// The EVM address is linked to another consumer.
    AddressLinked = "address_linked", Conflict, 409,
        "The EVM address is linked to another consumer.";
    /// The consumer already linked an address.
    EvmAlreadyLinked = "evm_already_linked", Conflict, 409,
        "`account.link_evm` for a consumer that already linked an address (a link is permanent).";
    /// The request's `expires_at` has passed.
    RequestExpired = "request_expired", Rule, 422,
        "Leaf timestamp ≥ `expires_at`.";
    /// The merchant is not registered.
    UnknownMerchant = "unknown_merchant", Rule, 422,
        "The merchant is not registered (`merchant.update`, `purchase`, `redeem`, `refund`, quotes).";
    /// `refund` of an order without a purchase.
    UnknownOrder = "unknown_order", Rule, 422,
        "`refund` of an order without a purchase.";
    /// More points than are spendable.
    InsufficientPoints = "insufficient_points", Rule, 422,
        "`points` > spendable − debt.";
    /// A redemption would draw from more lots than one may.
    TooManyLots = "too_many_lots", Rule, 422,
        "The redemption would draw from more than 100 lots (debt settled included, [§5.3](#53-redeem)); the message says how many points the first 100 give: redeem at most that many on this order.";
    /// The discount exceeds the share payable with points.
    RedeemShareExceeded = "redeem_share_exceeded", Rule, 422,
        "The discount exceeds the share payable with points.";
    /// The points are worth less than one minor unit.
    DiscountZero = "discount_zero", Rule, 422,
        "The points are worth less than one minor unit.";
    /// `redeem` on an order whose purchase is recorded.
    RedeemAfterPurchase = "redeem_after_purchase", Rule, 422,
        "`redeem` on an order whose purchase is recorded.";
    /// A purchase of a redeemed order for another consumer.
    OrderConsumerMismatch = "order_consumer_mismatch", Rule, 422,
        "`purchase` of a redeemed order for another consumer than the redemption's.";
    /// A purchase of a redeemed order with another amount.
    OrderAmountMismatch = "order_amount_mismatch", Rule, 422,
        "`purchase` of a redeemed order with another amount than the redemption's `order_amount`.";
    /// Refunds would exceed the purchase amount.
    RefundExceedsOrder = "refund_exceeds_order", Rule, 422,
        "Refunds would exceed the purchase amount.";
    /// `consumer` = `referrer`.
    SelfReferral = "self_referral", Rule, 422,
        "`consumer` = `referrer`.";
    /// The referee already has a referrer.
    ReferrerAlreadyBound = "referrer_already_bound", Rule, 422,
        "The referee already has a referrer.";
    /// The referee already has a purchase.
    RefereeHasPurchases = "referee_has_purchases", Rule, 422,
        "The referee already has a purchase.";
    /// The referrer has no purchase.
    ReferrerNotCustomer = "referrer_not_customer", Rule, 422,
        "The referrer has no purchase.";
    /// The referrer already has the most referees allowed.
    ReferralCapReached = "referral_cap_reached", Rule, 422,
        "The referrer already has 100 referees.";
    /// `account.link_evm` for a consumer without a purchase.
    ConsumerNotCustomer = "consumer_not_customer", Rule, 422,
        "`account.link_evm` for a consumer with no recorded purchase.";
    /// The EIP-191 signature recovers to another address.
    BadEvmSignature = "bad_evm_signature", Rule, 422,
        "A well-formed EIP-191 signature recovers to no address, or to another address than `address`.";
    /// A credit would take a figure past 2^53 − 1.
    BalanceOverflow = "balance_overflow", Rule, 422,
        "A credit (`earn`, `referral_reward`, `redeem_return`) would make an account's lots hold more than 2^53 − 1 points, or a debt or count would pass 2^53 − 1 ([§6](#6-points-lots-rounding-debt-expiry)).";
    /// The request took longer than the service allows.
    Timeout = "timeout", Limit, 408,
        "The request (its body, or its handling) took longer than the service allows; an entry may still have been appended: resubmit the identical envelope to get its receipt.";
    /// The body or an envelope is larger than the route or the format accepts.
    TooLarge = "too_large", Limit, 413,
        "The body is larger than the route accepts, an envelope or payload is larger than [§3](#3-dsse-envelopes) allows, or a payload is longer than its kind allows (1024 bytes for programs, 512 for the other kinds, [§4](#4-payloads-common-rules)), or the entry's leaf would pass the 65,535 bytes an entry bundle holds ([§12.12](#1212-the-log-as-tlog-tiles); the rules keep every entry well inside it, so this is a fault of the service). A body declared too large is refused before it is read.";
    /// A batch holds more envelopes than the service takes.
    TooManyEntries = "too_many_entries", Limit, 413,
        "A batch holds more envelopes than the service takes (`max_batch`).";
    /// A consumer-signed write over the per-address rate.
    RateLimited = "rate_limited", Limit, 429,
        "Over the per-address rate of writes signed by a consumer alone (`referral.accept`, `account.link_evm`); retry after the `Retry-After` header's seconds ([§10.1](#101-limits-at-the-http-edge)).";
    /// The data volume is below the writer's free-space reserve.
    StorageFull = "storage_full", Unavailable, 503,
        "The data volume has less free space than the writer keeps in reserve (`--min-free-bytes`); nothing is written, reads go on, and writes pass again once space is freed.";
    /// The store or the writer cannot take the request now.
    Unavailable = "unavailable", Unavailable, 503,
        "The store cannot be read or written, the free space of the data volume cannot be read, the log could not append a group (nothing of it was acknowledged; the next group is tried afresh), or writing a group's state failed after its append: that group is in the log and was acknowledged, and every later write is refused until the server is restarted, which replays it into the state.";
    /// The data directory is of the earlier layout.
    NeedsMigration = "needs_migration", Unavailable, 0,
        "The data directory holds a ledger of the earlier layout (the log inside sled's `DIR/db`): run `pointsledger migrate --data DIR` once; nothing was changed.";
    /// The service's settings are unusable.
    BadSettings = "bad_settings", Malformed, 0,
        "`serve`: a flag, environment variable or the settings file holds a value the service cannot run with, a needed setting is missing, or the file cannot be read; nothing is started.";
    /// The receipt or its document does not parse.
    MalformedReceipt = "malformed_receipt", Malformed, 0,
        "`verify`: the receipt (tlog-proof text or JSON document) does not parse.";
    /// The verifier key does not parse.
    BadVerifierKey = "bad_verifier_key", Malformed, 0,
        "`verify`: the log's verifier key does not parse ([§9.3](#93-verifier-key)).";
    /// No valid log signature on the checkpoint.
    BadCheckpointSignature = "bad_checkpoint_signature", Unverified, 0,
        "`verify`, audit: the checkpoint carries no valid signature by the log key.";
    /// The checkpoint body is malformed or names another log.
    BadCheckpoint = "bad_checkpoint", Unverified, 0,
        "`verify`, audit: the checkpoint body is malformed or names another log.";
    /// The inclusion proof does not reach the checkpoint's root.
    BadInclusionProof = "bad_inclusion_proof", Unverified, 0,
        "`verify`: the inclusion proof does not lead from the leaf to the checkpoint's root.";
    /// The leaf does not decode or names another index.
    MalformedLeaf = "malformed_leaf", Unverified, 0,
        "`verify`: the leaf does not decode ([§7](#7-leaves-and-effects)), or names another index than its place.";
    /// An envelope signature in the leaf does not verify.
    BadEnvelopeSignature = "bad_envelope_signature", Unverified, 0,
        "`verify`: a signature of the leaf's envelope does not verify.";
    /// The anchor's consistency proof fails.
    BadConsistencyProof = "bad_consistency_proof", Unverified, 0,
        "`verify`: the anchor's consistency proof does not link the checkpoint to the anchored root ([§9.5](#95-anchored-receipt)).";
    /// The chain holds something else than the receipt's anchor says.
    AnchorMismatch = "anchor_mismatch", Unverified, 0,
        "`verify --rpc`: the chain holds another root at the anchored size, or the contract or chain id differ.";
    /// Too few valid witness cosignatures on the checkpoint.
    NotWitnessed = "not_witnessed", Unverified, 0,
        "`verify --witness-key`: the checkpoint carries fewer valid cosignatures by the given witnesses than the quorum ([§9.6](#96-witness-cosignatures)); the message names the witnesses missing and those whose line does not verify.";
    /// The chain could not be read.
    ChainUnavailable = "chain_unavailable", Unavailable, 0,
        "`verify --rpc`: the chain could not be read; try again.";
    /// A fault of the service itself.
    Internal = "internal", Internal, 500,
        "A fault of the service itself: a corrupt or missing leaf behind the store's indexes, derived state that breaks the rules' invariants, a stopped sequencer thread, key or checkpoint files that cannot be used.";
}

impl Code {
    /// The code named `s`, if the table has it (a client reading an error body).
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Code> for &str {
    fn eq(&self, other: &Code) -> bool {
        *self == other.as_str()
    }
}

/// The two tables of docs/PROTOCOL.md §10, classes then codes, in Markdown.
pub fn markdown_tables() -> String {
    let mut out = String::from("| Class | Exit code | Meaning |\n|---|---|---|\n");
    for class in Class::ALL {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            class,
            class.exit_code(),
            class.meaning()
        ));
    }
    out.push_str("\n| Code | Class | HTTP | Given when |\n|---|---|---|---|\n");
    for code in Code::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            code,
            code.class(),
            code.status()
                .map_or_else(|| "—".to_owned(), |s| s.to_string()),
            code.meaning()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert_eq!(Code::parse(code.as_str()), Some(*code));
        }
        assert_eq!(Code::parse("no_such_code"), None);
    }

    #[test]
    fn statuses_fit_their_classes() {
        for code in Code::ALL {
            let Some(status) = code.status() else {
                // Only verifiers give these: they are about what a client holds.
                assert!(
                    matches!(
                        code.class(),
                        Class::Malformed | Class::Unverified | Class::Unavailable
                    ),
                    "{code}"
                );
                continue;
            };
            let ok = match code.class() {
                Class::Malformed | Class::NotFound | Class::Conflict | Class::Rule => {
                    (400..500).contains(&status)
                }
                Class::Forbidden => [401, 403].contains(&status),
                Class::Limit => [408, 413, 429].contains(&status),
                Class::Unavailable => status == 503,
                Class::Internal => status == 500,
                Class::Unverified => false,
            };
            assert!(ok, "{code} is {status} in class {}", code.class());
        }
    }
}
