//! The schemas of the API's bodies, as the OpenAPI document names them.
//!
//! The core types the API returns unchanged (receipts, effects, account views, history rows,
//! quotes, program rules) derive their schemas where they are defined; those the handlers name
//! are re-exported here. Envelopes and leaves travel as raw JSON, so their shapes are described
//! here; `tests/http.rs` checks the property names against real responses.

// The shapes below are described, never built: their fields are read by nobody.
#![allow(dead_code)]

use utoipa::ToSchema;

pub(super) use crate::engine::{Effects, Quote};
pub(super) use crate::ledger::Receipt;
pub(super) use crate::views::AccountView;

/// A DSSE envelope (see `crate::dsse`).
#[derive(ToSchema)]
#[allow(non_snake_case)]
pub(super) struct Envelope {
    /// `application/vnd.pointsledger.<kind>+json`.
    pub(super) payloadType: String,
    /// Standard base64 of the payload JSON bytes.
    pub(super) payload: String,
    /// One to four signatures by distinct keys.
    pub(super) signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(ToSchema)]
pub(super) struct EnvelopeSignature {
    /// The signer's public key id (64 hex digits).
    pub(super) keyid: String,
    /// Standard base64 of the 64-byte Ed25519 signature over the PAE.
    pub(super) sig: String,
}

/// The bytes the log stores for one entry (`crate::ledger::Leaf`).
#[derive(ToSchema)]
pub(super) struct Leaf {
    /// Position in the log.
    pub(super) index: u64,
    /// Sequencing time, unix milliseconds.
    pub(super) timestamp_ms: u64,
    /// The envelope as received.
    pub(super) envelope: Envelope,
    /// What the engine computed.
    pub(super) effects: Effects,
}
