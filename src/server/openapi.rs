//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes.
//!
//! The core types the API returns unchanged (receipts, effects, account views, history rows,
//! quotes, program rules) derive their schemas where they are defined and are re-exported here.
//! Envelopes and leaves travel as raw JSON, so their shapes are described here; `tests/http.rs`
//! checks the property names against real responses.

use super::routes;
use utoipa::{OpenApi, ToSchema};

pub use crate::engine::state::{Balance, Lot, LotSource};
pub use crate::engine::{Change, Discount, DiscountSource, Effects, Quote, Reason};
pub use crate::ledger::Receipt;
pub use crate::payload::ProgramRules;
pub use crate::views::{AccountView, HistoryRow};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "pointsledger",
        description = "A verifiable points-and-rewards ledger: DSSE-signed requests appended to \
                       an RFC 6962 Merkle log with C2SP signed checkpoints. Every error answer \
                       is `{\"error\": CODE, \"message\": TEXT}`. Every hash and proof is \
                       standard base64; hex is for key ids and EVM values. The hex fields \
                       `leaf_hash`, `root` and `consistency_proof` are deprecated twins of \
                       `hash`, `root_hash` and `proof` and go in the next release \
                       (docs/PROTOCOL.md §12.1)."
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
        routes::anchors,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_path_has_its_schemas() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert_eq!(doc["paths"].as_object().unwrap().len(), 17);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "Receipt",
            "Envelope",
            "AccountView",
            "HistoryPage",
            "ErrorBody",
            "Quote",
            "AnchorsPage",
            "ReceiptAnchor",
        ] {
            assert!(schemas.contains_key(name), "{name} missing");
        }
    }
}
