//! The receipt verifier: the one place that decides whether a receipt proves an entry.
//!
//! A receipt is a c2sp.org/tlog-proof whose `extra` line carries the leaf bytes (docs/PROTOCOL.md
//! §9.4), or the JSON document `GET /v1/receipts/{index}` serves with `Accept: application/json`
//! ([`ReceiptDocument`]), which wraps that text and adds the on-chain anchor covering its
//! checkpoint. `pointsledger verify`, the auditor and the tests all check receipts here; the
//! explorer's `verify.js` runs the same steps in the browser and is held to the same
//! known-answer vectors (tests/vectors/receipts/).
//!
//! The checks, in order; the first that fails decides, and each has its own [`ReceiptError`]
//! with a stable [`code`](ReceiptError::code):
//!
//! 1. the receipt parses (strict tlog-proof; a leaf on the `extra` line);
//! 2. the log verifier key parses;
//! 3. the checkpoint carries a valid signature by that key;
//! 4. the checkpoint body is well formed and names the key's log;
//! 5. the inclusion proof leads from the leaf's hash to the checkpoint's root;
//! 6. the leaf decodes, says the proof's index, and holds a well-formed envelope and payload;
//! 7. every envelope signature verifies (strict Ed25519);
//! 8. the signers are exactly those the kind requires;
//! 9. with an anchor: the consistency proof leads from the checkpoint to the anchored root.
//!
//! [`check_on_chain`] adds the last link, the root the contract holds at the anchored size, read
//! through the chain reader of [`crate::anchor`].

use crate::anchor::{Chain, ChainError};
use crate::checkpoint::{self, Checkpoint, CheckpointError, TlogProof};
use crate::errors::Code;
use crate::ledger::Leaf;
use crate::merkle::{self, Hash, MerkleError};
use crate::payload::Payload;
use crate::wire::{self, ReceiptAnchor, ReceiptDocument};
use serde::Serialize;

/// Why a receipt does not prove its entry. One variant per verification step.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// The receipt is not a well-formed tlog-proof or receipt document.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// The log verifier key given is not a valid key.
    #[error("the log verifier key: {0}")]
    VerifierKey(CheckpointError),
    /// The checkpoint carries no valid signature by the log key.
    #[error("the checkpoint's signature: {0}")]
    CheckpointSignature(CheckpointError),
    /// The checkpoint is signed but its body is malformed or names another log.
    #[error("the checkpoint: {0}")]
    Checkpoint(CheckpointError),
    /// The inclusion proof does not place the leaf in the checkpoint's tree.
    #[error("the inclusion proof does not lead to the checkpoint's root: {0}")]
    Inclusion(MerkleError),
    /// The leaf is not a well-formed entry, or not the entry at the proof's index.
    #[error("the leaf: {0}")]
    Leaf(String),
    /// An envelope signature does not verify.
    #[error("the envelope's signatures: {0}")]
    EnvelopeSignature(String),
    /// The envelope is signed by other keys than its kind requires.
    #[error("a {kind} must be signed by exactly {required:?}; it is signed by {found:?}")]
    WrongSigners {
        /// The entry's kind.
        kind: String,
        /// The signers the payload requires, sorted.
        required: Vec<String>,
        /// The signers of the envelope, sorted.
        found: Vec<String>,
    },
    /// The anchor's consistency proof does not link the checkpoint to the anchored root.
    #[error("the anchor: {0}")]
    Consistency(String),
    /// The checkpoint does not carry the witness cosignatures asked for.
    #[error("the checkpoint's witnesses: {0}")]
    Witnesses(#[from] crate::witness::cosignature::CosignatureError),
    /// The chain holds another root (or contract) than the receipt's anchor.
    #[error("the chain: {0}")]
    AnchorMismatch(String),
    /// The chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl ReceiptError {
    /// The failed step's code in the one table ([`crate::errors`]), as the known-answer
    /// vectors and `verify.js` name it; its class gives `verify`'s exit code.
    pub fn code(&self) -> Code {
        match self {
            ReceiptError::Malformed(_) => Code::MalformedReceipt,
            ReceiptError::VerifierKey(_) => Code::BadVerifierKey,
            ReceiptError::CheckpointSignature(_) => Code::BadCheckpointSignature,
            ReceiptError::Checkpoint(_) => Code::BadCheckpoint,
            ReceiptError::Inclusion(_) => Code::BadInclusionProof,
            ReceiptError::Leaf(_) => Code::MalformedLeaf,
            ReceiptError::EnvelopeSignature(_) => Code::BadEnvelopeSignature,
            ReceiptError::WrongSigners { .. } => Code::WrongSigners,
            ReceiptError::Consistency(_) => Code::BadConsistencyProof,
            ReceiptError::AnchorMismatch(_) => Code::AnchorMismatch,
            ReceiptError::Chain(_) => Code::ChainUnavailable,
            ReceiptError::Witnesses(_) => Code::NotWitnessed,
        }
    }
}

/// What a verified receipt proves.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedReceipt {
    /// The checkpoint the entry is proven against, signed by the log key.
    pub checkpoint: Checkpoint,
    /// The entry's index.
    pub index: u64,
    /// The leaf bytes, as the log hashes them.
    pub leaf_bytes: Vec<u8>,
    /// The decoded leaf.
    pub leaf: Leaf,
    /// The entry's kind.
    pub kind: String,
    /// The envelope's signers, sorted: exactly the kind's required signers.
    pub signers: Vec<String>,
    /// The anchor whose root the checkpoint is proven a prefix of, when the receipt has one.
    pub anchor: Option<VerifiedAnchor>,
    /// The signed checkpoint note, verbatim, with whatever witness cosignatures it carries
    /// (see [`VerifiedReceipt::witnessed`]).
    pub note: String,
}

impl VerifiedReceipt {
    /// Requires the receipt's checkpoint to carry valid cosignatures by at least `quorum` of
    /// `witnesses`; returns them, or says which are missing and which are bad.
    pub fn witnessed(
        &self,
        witnesses: &[crate::witness::cosignature::CosignerKey],
        quorum: usize,
    ) -> Result<Vec<crate::witness::cosignature::Cosigned>, ReceiptError> {
        Ok(crate::witness::cosignature::check_quorum(
            &self.note, witnesses, quorum,
        )?)
    }
}

/// An anchor linked to a receipt's checkpoint by a verified consistency proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedAnchor {
    /// The chain id.
    pub chain_id: u64,
    /// The `LedgerAnchor` contract, as the receipt names it.
    pub contract: String,
    /// The anchored tree size.
    pub tree_size: u64,
    /// The anchored root.
    #[serde(serialize_with = "serialize_hash")]
    pub root: Hash,
}

fn serialize_hash<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&wire::encode_hash(h))
}

/// Verifies a receipt file: a JSON [`ReceiptDocument`] (text starting with `{`) or a bare
/// tlog-proof.
pub fn verify_file(text: &str, verifier_key: &str) -> Result<VerifiedReceipt, ReceiptError> {
    if text.trim_start().starts_with('{') {
        let doc: ReceiptDocument = serde_json::from_str(text)
            .map_err(|e| ReceiptError::Malformed(format!("not a receipt document: {e}")))?;
        verify_document(&doc, verifier_key)
    } else {
        verify_text(text, verifier_key)
    }
}

/// Verifies a receipt document: its tlog-proof (steps 1 to 8) and, when it has an anchor, the
/// consistency proof from the checkpoint to the anchored root (step 9).
pub fn verify_document(
    doc: &ReceiptDocument,
    verifier_key: &str,
) -> Result<VerifiedReceipt, ReceiptError> {
    let mut v = verify_text(&doc.tlog_proof, verifier_key)?;
    if doc.index != v.index || doc.checkpoint_size != v.checkpoint.size {
        return Err(ReceiptError::Malformed(format!(
            "the document says entry {} at checkpoint size {}, its tlog-proof entry {} at size {}",
            doc.index, doc.checkpoint_size, v.index, v.checkpoint.size
        )));
    }
    if let Some(a) = &doc.anchor {
        v.anchor = Some(verify_anchor(&v.checkpoint, a)?);
    }
    Ok(v)
}

/// Verifies a tlog-proof text (steps 1 to 8).
pub fn verify_text(text: &str, verifier_key: &str) -> Result<VerifiedReceipt, ReceiptError> {
    let proof = TlogProof::parse(text).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    let leaf_bytes = proof.extra.clone().ok_or_else(|| {
        ReceiptError::Malformed("the proof carries no leaf (no `extra` line)".into())
    })?;
    checkpoint::parse_verifier_key(verifier_key).map_err(ReceiptError::VerifierKey)?;
    let cp = checkpoint::open_checkpoint(&proof.checkpoint, verifier_key).map_err(|e| match e {
        CheckpointError::MalformedCheckpoint | CheckpointError::OriginMismatch { .. } => {
            ReceiptError::Checkpoint(e)
        }
        other => ReceiptError::CheckpointSignature(other),
    })?;
    merkle::verify_inclusion(
        proof.index,
        cp.size,
        &merkle::leaf_hash(&leaf_bytes),
        &proof.proof,
        &cp.root,
    )
    .map_err(ReceiptError::Inclusion)?;
    let leaf =
        Leaf::decode(proof.index, &leaf_bytes).map_err(|e| ReceiptError::Leaf(format!("{e}")))?;
    if leaf.index != proof.index {
        return Err(ReceiptError::Leaf(format!(
            "the leaf says it is entry {}, the proof places it at {}",
            leaf.index, proof.index
        )));
    }
    let env = leaf
        .envelope()
        .map_err(|e| ReceiptError::Leaf(format!("its envelope: {e}")))?;
    let payload = Payload::parse(env.kind(), env.payload())
        .map_err(|e| ReceiptError::Leaf(format!("its payload: {e}")))?;
    env.verify()
        .map_err(|e| ReceiptError::EnvelopeSignature(e.to_string()))?;
    let mut signers: Vec<String> = env.signers().map(str::to_owned).collect();
    signers.sort_unstable();
    if let Err(crate::engine::EngineError::WrongSigners {
        required, actual, ..
    }) = crate::engine::check_signers(&payload, &signers)
    {
        return Err(ReceiptError::WrongSigners {
            kind: env.kind().to_owned(),
            required,
            found: actual,
        });
    }
    Ok(VerifiedReceipt {
        checkpoint: cp,
        index: proof.index,
        kind: env.kind().to_owned(),
        leaf_bytes,
        leaf,
        signers,
        anchor: None,
        note: proof.checkpoint,
    })
}

/// Step 9: the anchor's base64 fields decode, agree with their deprecated hex twins, and the
/// consistency proof leads from the checkpoint's root to the anchored root.
fn verify_anchor(cp: &Checkpoint, a: &ReceiptAnchor) -> Result<VerifiedAnchor, ReceiptError> {
    let malformed = |e: wire::BadHash| ReceiptError::Malformed(format!("the anchor: {e}"));
    let root = wire::decode_hash("the anchored root", &a.root_hash).map_err(malformed)?;
    let proof = wire::decode_hashes("a consistency proof hash", &a.proof).map_err(malformed)?;
    let hex_proof: Vec<String> = proof.iter().map(hex::encode).collect();
    if a.root != hex::encode(root) || a.consistency_proof != hex_proof {
        return Err(ReceiptError::Malformed(
            "the anchor's hex fields (deprecated) disagree with its base64 ones".into(),
        ));
    }
    if a.tree_size < cp.size {
        return Err(ReceiptError::Consistency(format!(
            "the anchored size {} is below the checkpoint's {}",
            a.tree_size, cp.size
        )));
    }
    merkle::verify_consistency(cp.size, a.tree_size, &cp.root, &root, &proof).map_err(|e| {
        ReceiptError::Consistency(format!(
            "the checkpoint of size {} is not a prefix of the anchored tree of size {}: {e}",
            cp.size, a.tree_size
        ))
    })?;
    Ok(VerifiedAnchor {
        chain_id: a.chain_id,
        contract: a.contract.clone(),
        tree_size: a.tree_size,
        root,
    })
}

/// The last link: the root that `LedgerAnchor` at `contract` on the chain behind `rpc_url`
/// (which must report `chain_id`) holds at the receipt's anchored size is the anchored root.
/// A receipt without an anchor must find its checkpoint's own root on chain at its size.
/// Returns what was checked.
pub async fn check_on_chain(
    v: &VerifiedReceipt,
    rpc_url: &str,
    chain_id: u64,
    contract: crate::anchor::Address,
) -> Result<VerifiedAnchor, ReceiptError> {
    let (size, root) = match &v.anchor {
        Some(a) => {
            let named: Option<crate::anchor::Address> = a.contract.parse().ok();
            if named != Some(contract) || a.chain_id != chain_id {
                return Err(ReceiptError::AnchorMismatch(format!(
                    "the receipt's anchor is in contract {} on chain {}, not {contract:#x} on \
                     chain {chain_id}",
                    a.contract, a.chain_id
                )));
            }
            (a.tree_size, a.root)
        }
        None => (v.checkpoint.size, v.checkpoint.root),
    };
    let chain = Chain::read_only(rpc_url, chain_id, contract).await?;
    let on_chain = chain.root_at(size).await?;
    if on_chain != root {
        return Err(ReceiptError::AnchorMismatch(format!(
            "the chain holds root {} at size {size}, not the receipt's {}",
            wire::encode_hash(&on_chain),
            wire::encode_hash(&root)
        )));
    }
    Ok(VerifiedAnchor {
        chain_id,
        contract: format!("{contract:#x}"),
        tree_size: size,
        root,
    })
}
