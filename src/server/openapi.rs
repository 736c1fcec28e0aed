//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes.
//!
//! The core types the API returns unchanged (receipts, leaves, account views, history rows,
//! quotes, program rules) do not depend on utoipa, so they are described here by schema structs
//! with the same field names and types as their `serde` form. They are descriptions only: the
//! service serializes the core types themselves, and `tests/http.rs` checks the property names
//! against real responses.

use super::routes;
use utoipa::{OpenApi, ToSchema};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "pointsledger",
        description = "A verifiable points-and-rewards ledger: DSSE-signed requests appended to \
                       an RFC 6962 Merkle log with C2SP signed checkpoints. Every error answer \
                       is `{\"error\": CODE, \"message\": TEXT}`."
    ),
    paths(
        routes::submit_entry,
        routes::submit_batch,
        routes::get_entry,
        routes::list_entries,
        routes::latest_checkpoint,
        routes::checkpoint_at,
        routes::inclusion_proof,
        routes::consistency_proof,
        routes::receipt,
        routes::account,
        routes::account_history,
        routes::merchant,
        routes::quote,
        routes::log_info,
        routes::healthz,
        routes::metrics,
        routes::openapi_json,
    ),
    tags(
        (name = "entries", description = "Appending and reading entries"),
        (name = "proofs", description = "Checkpoints, proofs and receipts"),
        (name = "accounts", description = "Accounts, merchants and quotes"),
        (name = "service", description = "The log and the service"),
    )
)]
pub struct ApiDoc;

/// The document as JSON text.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.to_pretty_json().unwrap_or_else(|e| {
        // Serializing a document built from literals does not fail; answer with a valid stub.
        serde_json::json!({"openapi": "3.1.0", "info": {"title": "pointsledger", "version": e.to_string()}, "paths": {}}).to_string()
    })
}

/// A DSSE envelope (see `crate::dsse`).
#[derive(ToSchema)]
#[allow(non_snake_case)]
pub struct Envelope {
    /// `application/vnd.pointsledger.<kind>+json`.
    pub payloadType: String,
    /// Standard base64 of the payload JSON bytes.
    pub payload: String,
    /// One to four signatures by distinct keys.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(ToSchema)]
pub struct EnvelopeSignature {
    /// The signer's public key id (64 hex digits).
    pub keyid: String,
    /// Standard base64 of the 64-byte Ed25519 signature over the PAE.
    pub sig: String,
}

/// What the writer returns for an accepted entry (`crate::ledger::Receipt`).
#[derive(ToSchema)]
pub struct Receipt {
    /// Position in the log.
    pub index: u64,
    /// Hex SHA-256(0x00 || leaf bytes).
    pub leaf_hash: String,
    /// Sequencing time, unix milliseconds.
    pub timestamp_ms: u64,
    /// What the entry did.
    pub effects: Effects,
}

/// The bytes the log stores for one entry (`crate::ledger::Leaf`).
#[derive(ToSchema)]
pub struct Leaf {
    /// Position in the log.
    pub index: u64,
    /// Sequencing time, unix milliseconds.
    pub timestamp_ms: u64,
    /// The envelope as received.
    pub envelope: Envelope,
    /// What the engine computed.
    pub effects: Effects,
}

/// What an entry did (`crate::engine::Effects`).
#[derive(ToSchema)]
pub struct Effects {
    /// Point movements, in the order they happened.
    pub changes: Vec<Change>,
    /// The discount granted, if any (absent otherwise).
    pub discount: Option<Discount>,
}

/// One account's change in one entry (`crate::engine::Change`).
#[derive(ToSchema)]
pub struct Change {
    /// The account's key id.
    pub account: String,
    /// Change in the account's total.
    pub delta: i64,
    /// Why.
    pub reason: Reason,
    /// The lot touched; absent for debt changes.
    pub lot: Option<String>,
    /// For a new lot: when it becomes spendable (absent otherwise).
    pub available_at: Option<u64>,
    /// For a new lot: when it expires (absent otherwise).
    pub expires_at: Option<u64>,
}

/// Why an account's points moved (`crate::engine::Reason`).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Reason {
    /// Points earned by a purchase.
    Earn,
    /// A referrer's reward.
    ReferralReward,
    /// Points spent on a redemption.
    Redeem,
    /// Earned points reversed by a refund.
    RefundReversal,
    /// Redeemed points given back by a refund.
    RedeemReturn,
    /// A referrer's reward taken back by a refund.
    ReferralClawback,
    /// A lot's remainder expired.
    Expire,
    /// A reversal no lot could cover, owed by the account.
    Debt,
    /// Debt paid from a lot.
    DebtSettled,
}

/// A discount on an order, in minor units (`crate::engine::Discount`).
#[derive(ToSchema)]
pub struct Discount {
    /// What paid for it.
    pub source: DiscountSource,
    /// Value in minor units.
    pub value: u64,
}

/// What paid for a discount.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum DiscountSource {
    /// The referee discount on a referred consumer's first purchase.
    Referee,
    /// Points redeemed.
    Points,
}

/// An account at a given time (`crate::views::AccountView`).
#[derive(ToSchema)]
pub struct AccountView {
    /// The account's key id.
    pub account: String,
    /// How its points stand.
    pub balance: Balance,
    /// Lots not yet swept, in drawing order.
    pub lots: Vec<Lot>,
    /// The referrer, once bound.
    pub referrer: Option<String>,
    /// Referees brought so far.
    pub referees: u64,
    /// Purchases recorded.
    pub purchases: u64,
    /// The linked EVM address.
    pub evm_address: Option<String>,
}

/// How an account's points stand (`crate::engine::state::Balance`).
#[derive(ToSchema)]
pub struct Balance {
    /// Σ remaining over all lots − debt.
    pub total: i64,
    /// Points spendable now (before settling debt).
    pub available: u64,
    /// Points still in their refund window.
    pub pending: u64,
    /// Available points that expire within 30 days.
    pub expiring_30d: u64,
    /// Points past expiry not yet swept.
    pub expired_unswept: u64,
    /// Clawback debt.
    pub debt: u64,
}

/// A batch of points credited by one entry (`crate::engine::state::Lot`).
#[derive(ToSchema)]
pub struct Lot {
    /// `"<leaf index>.<ordinal>"`.
    pub id: String,
    /// The merchant whose program issued the points.
    pub merchant: String,
    /// Why the lot exists.
    pub source: LotSource,
    /// The order that earned it.
    pub order_id: String,
    /// Points credited.
    pub points: u64,
    /// Points still in the lot.
    pub remaining: u64,
    /// Unix ms from which the points may be spent.
    pub available_at: u64,
    /// Unix ms at which the remaining points expire.
    pub expires_at: u64,
}

/// Why a lot was credited.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum LotSource {
    /// Points earned by a purchase.
    Purchase,
    /// A referrer's reward.
    ReferralReward,
}

/// One row of an account's history (`crate::views::HistoryRow`).
#[derive(ToSchema)]
pub struct HistoryRow {
    /// The entry's leaf index.
    pub index: u64,
    /// When it was sequenced.
    pub timestamp_ms: u64,
    /// The entry's kind.
    pub kind: String,
    /// The merchant involved, if any.
    pub merchant: Option<String>,
    /// The order involved, if any.
    pub order_id: Option<String>,
    /// Net change of this account's total.
    pub delta: i64,
    /// This account's changes.
    pub changes: Vec<Change>,
    /// The discount the entry granted, if any.
    pub discount: Option<Discount>,
}

/// A quote (`crate::engine::Quote`).
#[derive(ToSchema)]
pub struct Quote {
    /// The merchant asking.
    pub merchant: String,
    /// The consumer at the till.
    pub consumer: String,
    /// The order's price, in minor units.
    pub order_amount: u64,
    /// The referee discount a purchase of this amount would get now.
    pub referee_discount: u64,
    /// Points the consumer can spend now.
    pub spendable_points: u64,
    /// The most points a redemption on this order may spend.
    pub redeemable_points: u64,
    /// The discount those points are worth, in minor units.
    pub redeemable_value: u64,
}

/// A merchant's program (`crate::payload::ProgramRules`).
#[derive(ToSchema)]
pub struct ProgramRules {
    /// Points earned per 10,000 minor units paid in money.
    pub earn_bps: u64,
    /// Discount value of one point, in thousandths of a minor unit.
    pub point_value_milli: u64,
    /// Largest share of an order payable with points, in basis points.
    pub max_redeem_bps: u64,
    /// How long points stay spendable once available, in ms.
    pub validity_ms: u64,
    /// How long new points stay pending, in ms.
    pub pending_ms: u64,
    /// Discount on a referred consumer's first purchase, in basis points.
    pub referee_discount_bps: u64,
    /// Cap on that discount, in minor units.
    pub referee_discount_max: u64,
    /// Points credited to the referrer on a referee's first purchase.
    pub referrer_reward_points: u64,
    /// How many referees' first purchases may reward one referrer.
    pub referrer_reward_cap: u64,
    /// Cap on the points one purchase can earn.
    pub max_points_per_order: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_path_has_its_schemas() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert_eq!(doc["paths"].as_object().unwrap().len(), 16);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "Receipt",
            "Envelope",
            "AccountView",
            "HistoryPage",
            "ErrorBody",
            "Quote",
        ] {
            assert!(schemas.contains_key(name), "{name} missing");
        }
    }
}
