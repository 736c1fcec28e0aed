//! The JSON shapes of the HTTP API, written once for both sides: the server ([`crate::server`])
//! serializes them and the client ([`crate::client`]) decodes them, so the two cannot drift.
//!
//! Core types that travel unchanged (receipts, account views, history rows, quotes, anchor
//! records) are serialized by their own `serde` derives and appear here as fields.
//!
//! Encoding: every hash and every proof is standard base64 with padding (as C2SP checkpoints and
//! tlog-proofs write them); hex is kept for key ids and EVM values (addresses, transaction and
//! block hashes). A few fields that were hex before are still served beside their base64
//! successors, marked deprecated, for one release (see docs/PROTOCOL.md §12.1).

use crate::anchor::{AnchorRecord, AnchorStatus};
use crate::ledger::Receipt;
use crate::merkle::Hash;
use crate::payload::ProgramRules;
use crate::views::HistoryRow;
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A hash or proof field that is not one SHA-256 hash in standard base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is not one SHA-256 hash in standard base64: {value:?}")]
pub struct BadHash {
    /// Which field.
    pub what: String,
    /// What it held (cut to 100 characters).
    pub value: String,
}

/// A hash as the API writes it: standard base64.
pub fn encode_hash(h: &Hash) -> String {
    B64.encode(h)
}

/// Hashes as the API writes them.
pub fn encode_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(encode_hash).collect()
}

/// Decodes one base64 hash; `what` names the field in the error.
pub fn decode_hash(what: &str, s: &str) -> Result<Hash, BadHash> {
    B64.decode(s)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| BadHash {
            what: what.to_owned(),
            value: s.chars().take(100).collect(),
        })
}

/// Decodes a list of base64 hashes (a proof).
pub fn decode_hashes(what: &str, list: &[String]) -> Result<Vec<Hash>, BadHash> {
    list.iter().map(|s| decode_hash(what, s)).collect()
}

/// Every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `insufficient_points`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
}

/// The answer to a batch: one result per envelope, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// One result per envelope of the request, in the same order.
    pub results: Vec<BatchItem>,
}

/// The result for one envelope of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    /// The envelope was appended (or is an identical resubmission of an entry).
    Accepted {
        /// Its receipt.
        #[schema(value_type = crate::ledger::Receipt)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeavesPage {
    /// Index of the first leaf in `leaves`.
    pub start: u64,
    /// Leaf bytes, standard base64, from `start` on.
    pub leaves: Vec<String>,
    /// Where the next page starts when the page was clipped at 1000 leaves; `null` otherwise.
    pub next: Option<u64>,
}

/// An RFC 6962 inclusion proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InclusionProof {
    /// The leaf index.
    pub index: u64,
    /// The tree size the proof is for.
    pub size: u64,
    /// The leaf's hash SHA-256(0x00 || leaf bytes), standard base64.
    pub hash: String,
    /// Deprecated (removed in the next release): `hash` in lowercase hex.
    #[schema(deprecated)]
    pub leaf_hash: String,
    /// The audit path, leaf's sibling first, standard base64 hashes.
    pub proof: Vec<String>,
}

/// An RFC 6962 consistency proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProof {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size.
    pub to: u64,
    /// The proof, standard base64 hashes.
    pub proof: Vec<String>,
}

/// A receipt as JSON (`GET /v1/receipts/{index}` with `Accept: application/json`): the
/// tlog-proof text and the on-chain anchor that covers its checkpoint. This is also the file
/// `pointsledger receipt --anchored` saves and `pointsledger verify` checks
/// ([`crate::receipt::verify_document`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptAnchor {
    /// The chain id.
    pub chain_id: u64,
    /// The `LedgerAnchor` contract, `0x` hex.
    pub contract: String,
    /// The anchored tree size (at least the checkpoint's).
    pub tree_size: u64,
    /// The anchored root, standard base64.
    pub root_hash: String,
    /// Deprecated (removed in the next release): `root_hash` in lowercase hex.
    #[schema(deprecated)]
    pub root: String,
    /// `confirmed` (mined) or `final` (mined and as deep as the confirmation depth).
    pub status: AnchorStatus,
    /// The anchoring transaction, `0x` hex.
    pub tx_hash: Option<String>,
    /// The block that holds it.
    pub block_number: Option<u64>,
    /// The RFC 6962 consistency proof from the checkpoint's size to `tree_size`, standard
    /// base64 hashes; empty when the sizes are equal.
    pub proof: Vec<String>,
    /// Deprecated (removed in the next release): `proof` as lowercase hex hashes.
    #[schema(deprecated)]
    pub consistency_proof: Vec<String>,
}

/// One anchor record as `GET /v1/anchors` lists it: the anchorer's record and its root in the
/// API's encoding.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AnchorView {
    /// The record (its `root` is hex: deprecated, removed from the API in the next release).
    #[serde(flatten)]
    pub record: AnchorRecord,
    /// The anchored root, standard base64.
    pub root_hash: String,
}

/// Read through a JSON object rather than serde's derive: a flattened record goes through
/// serde's buffer, which cannot hold the record's `u128` gas price.
impl<'de> Deserialize<'de> for AnchorView {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut object = serde_json::Map::deserialize(d)?;
        let root_hash = match object.remove("root_hash") {
            Some(serde_json::Value::String(s)) => s,
            _ => return Err(D::Error::missing_field("root_hash")),
        };
        let record = AnchorRecord::deserialize(serde_json::Value::Object(object))
            .map_err(D::Error::custom)?;
        Ok(AnchorView { record, root_hash })
    }
}

impl From<AnchorRecord> for AnchorView {
    fn from(record: AnchorRecord) -> Self {
        let root_hash = hex::decode(&record.root).map_or_else(|_| String::new(), |b| B64.encode(b));
        AnchorView { record, root_hash }
    }
}

/// `GET /v1/checkpoints`: a page of the checkpoints the log signed, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointsPage {
    /// The checkpoints, by tree size ascending.
    pub checkpoints: Vec<SignedCheckpoint>,
    /// The `from` of the next page, or `null` if this is the last.
    pub next: Option<u64>,
}

/// One signed checkpoint in [`CheckpointsPage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignedCheckpoint {
    /// Its tree size.
    pub size: u64,
    /// The C2SP signed note, verbatim (as `GET /v1/checkpoints/{size}` serves it).
    pub note: String,
}

/// `GET /v1/anchors`: where anchoring stands, and a page of anchor records, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    pub anchors: Vec<AnchorView>,
    /// The `before` of the next page, or `null` if this is the last.
    pub next: Option<u64>,
}

/// A page of an account's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// Rows in leaf order.
    #[schema(value_type = Vec<crate::views::HistoryRow>)]
    pub rows: Vec<HistoryRow>,
    /// The `from` of the next page, or `null` if this is the last.
    pub next: Option<u64>,
}

/// A registered merchant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MerchantInfo {
    /// The merchant's key id.
    pub merchant: String,
    /// Display name.
    pub name: String,
    /// The program in force.
    #[schema(value_type = crate::payload::ProgramRules)]
    pub rules: ProgramRules,
    /// Leaf index of the registration.
    pub registered_at_index: u64,
}

/// What `POST /v1/quote` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// The witnesses the log asks to cosign its checkpoints (empty when it asks none).
    #[serde(default)]
    pub witnesses: Vec<WitnessView>,
    /// Cosignatures a checkpoint needs to count as witnessed (0 when the log asks none).
    #[serde(default)]
    pub witness_quorum: usize,
    /// The largest tree size `witness_quorum` witnesses have cosigned (that checkpoint or a
    /// larger one), or `null` before (and when the log asks none).
    #[serde(default)]
    pub witnessed_size: Option<u64>,
}

/// One witness as the log sees it (`GET /v1/log`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WitnessView {
    /// Its cosigner key (`name+keyid+key`, signature type 0x04).
    pub key: String,
    /// The newest checkpoint it cosigned for this log since the server started, or `null`.
    pub cosigned_size: Option<u64>,
    /// Requests to it that failed since the server started.
    pub failures: u64,
    /// Why the last request failed, if it did.
    pub last_error: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// Entries in the log.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anchor::AnchorStatus;

    #[test]
    fn an_anchor_view_with_a_gas_price_reads_back() {
        let view = AnchorView::from(AnchorRecord {
            tree_size: 11,
            root: hex::encode([7u8; 32]),
            status: AnchorStatus::Sent,
            tx_hash: Some(format!("0x{}", "ab".repeat(32))),
            nonce: Some(3),
            gas_price_wei: Some(1_472_360_777),
            block_number: None,
            block_hash: None,
            sent_at_ms: Some(1),
            sends: 2,
            from_size: 10,
        });
        let json = serde_json::to_string(&view).expect("serialize");
        let back: AnchorView = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, view);
        assert_eq!(back.root_hash, B64.encode([7u8; 32]));
        let no_hash = json.replace("\"root_hash\"", "\"other\"");
        assert!(serde_json::from_str::<AnchorView>(&no_hash).is_err());
    }
}
