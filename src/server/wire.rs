//! The JSON shapes the service itself defines: request bodies, pages, proofs and the error body.
//!
//! Core types that travel unchanged (receipts, account views, history rows, quotes) are
//! serialized by their own `serde` derives; their OpenAPI descriptions live in
//! [`super::openapi`], referenced here with `value_type`.

use super::openapi as doc;
use crate::anchor::{AnchorRecord, AnchorStatus};
use crate::ledger::Receipt;
use crate::payload::ProgramRules;
use crate::views::HistoryRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `insufficient_points`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
}

/// The answer to a batch: one result per envelope, in order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One result per envelope of the request, in the same order.
    pub results: Vec<BatchItem>,
}

/// The result for one envelope of a batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    /// The envelope was appended (or is an identical resubmission of an entry).
    Accepted {
        /// Its receipt.
        #[schema(value_type = doc::Receipt)]
        receipt: Receipt,
    },
    /// The envelope was refused; nothing of it was written.
    Refused {
        /// The error code, as a single request would get it.
        error: String,
        /// What went wrong.
        message: String,
        /// The HTTP status a single request would get.
        status: u16,
    },
}

/// A page of leaves.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LeavesPage {
    /// Index of the first leaf in `leaves`.
    pub start: u64,
    /// Leaf bytes, standard base64, from `start` on.
    pub leaves: Vec<String>,
    /// Where the next page starts when the page was clipped at 1000 leaves; `null` otherwise.
    pub next: Option<u64>,
}

/// An RFC 6962 inclusion proof.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InclusionProof {
    /// The leaf index.
    pub index: u64,
    /// The tree size the proof is for.
    pub size: u64,
    /// Hex SHA-256(0x00 || leaf bytes).
    pub leaf_hash: String,
    /// The audit path, leaf's sibling first, standard base64 hashes.
    pub proof: Vec<String>,
}

/// An RFC 6962 consistency proof.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsistencyProof {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size.
    pub to: u64,
    /// The proof, standard base64 hashes.
    pub proof: Vec<String>,
}

/// A receipt as JSON: the tlog-proof text and what it is against.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceiptDocument {
    /// The c2sp.org/tlog-proof text (leaf bytes on the `extra` line).
    pub tlog_proof: String,
    /// The leaf index.
    pub index: u64,
    /// The size of the checkpoint the proof is against.
    pub checkpoint_size: u64,
    /// The newest mined anchor that covers the checkpoint, or `null` if none does yet.
    pub anchor: Option<ReceiptAnchor>,
}

/// The on-chain anchor that covers a receipt's checkpoint, with what links the two.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceiptAnchor {
    /// The chain id.
    pub chain_id: u64,
    /// The `LedgerAnchor` contract, `0x` hex.
    pub contract: String,
    /// The anchored tree size (at least the checkpoint's).
    pub tree_size: u64,
    /// The anchored root, hex.
    pub root: String,
    /// `confirmed` (mined) or `final` (mined and as deep as the confirmation depth).
    pub status: AnchorStatus,
    /// The anchoring transaction, `0x` hex.
    pub tx_hash: Option<String>,
    /// The block that holds it.
    pub block_number: Option<u64>,
    /// The RFC 6962 consistency proof from the checkpoint's size to `tree_size`, as hex
    /// hashes (bytes32, as the contract's `verifyConsistency` takes them); empty when the
    /// sizes are equal.
    pub consistency_proof: Vec<String>,
}

/// `GET /v1/anchors`: where anchoring stands, and a page of anchor records, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AnchorsPage {
    /// Whether this server runs the anchorer.
    pub enabled: bool,
    /// The chain id anchored to, once known.
    pub chain_id: Option<u64>,
    /// The `LedgerAnchor` contract, `0x` hex, once known.
    pub contract: Option<String>,
    /// Blocks on top of an anchor's block before it is final.
    pub confirmations: Option<u64>,
    /// The chain's latest block as the anchorer last saw it (confirmations of an anchor are
    /// `head - block_number + 1`).
    pub head: Option<u64>,
    /// The anchorer's last failure (RPC outage, refusal), cleared by its next success.
    pub last_error: Option<String>,
    /// Anchor records, newest first.
    pub anchors: Vec<AnchorRecord>,
    /// The `before` of the next page, or `null` if this is the last.
    pub next: Option<u64>,
}

/// A page of an account's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryPage {
    /// Rows in leaf order.
    #[schema(value_type = Vec<doc::HistoryRow>)]
    pub rows: Vec<HistoryRow>,
    /// The `from` of the next page, or `null` if this is the last.
    pub next: Option<u64>,
}

/// A registered merchant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MerchantInfo {
    /// The merchant's key id.
    pub merchant: String,
    /// Display name.
    pub name: String,
    /// The program in force.
    #[schema(value_type = doc::ProgramRules)]
    pub rules: ProgramRules,
    /// Leaf index of the registration.
    pub registered_at_index: u64,
}

/// What `POST /v1/quote` takes.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// The merchant's key id.
    pub merchant: String,
    /// The consumer's key id.
    pub consumer: String,
    /// The order's price in minor units (1 to 2^53-1).
    pub order_amount: u64,
}

/// What the log is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogInfo {
    /// The log's origin (first line of every checkpoint).
    pub origin: String,
    /// The verifier key (`name+keyid+base64`) that checks checkpoints and receipts.
    pub verifier_key: String,
    /// The operator key id, the only signer of merchant programs.
    pub operator_key: String,
    /// Entries in the log.
    pub size: u64,
    /// Size of the latest checkpoint, or `null` before the first.
    pub checkpoint_size: Option<u64>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// Entries in the log.
    pub size: u64,
}
