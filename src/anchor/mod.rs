//! Anchoring checkpoints to an EVM chain through the `LedgerAnchor` contract.
//!
//! This is the only module that talks to a chain, and the only one that uses the `ethers`
//! client (archived upstream; this seam is where a move to alloy would happen). Other modules
//! name EVM addresses through [`Address`]; the EIP-191 recovery in [`crate::evm`] uses only the
//! `ethers-core` crypto. The contract keeps the last
//! anchored `(treeSize, root)` and accepts a new root only with a valid RFC 6962 consistency
//! proof from it, so the chain itself refuses a rewritten or forked history.
//!
//! The anchorer is a persistent state machine per checkpoint, kept in records of its own in the
//! ledger's store, which it reaches only through [`AnchorStore`]: the signed checkpoints and the
//! tree hashes under them, and those records; none of the state derived from the log.
//!
//! ```text
//! pending ──send──► sent {tx, nonce, gas price} ──receipt──► confirmed {block, hash}
//!    ▲                  │ dropped / stuck: resend, same nonce,     │ depth reached and the block
//!    │                  │ gas price bumped within the ceiling      │ hash still the same
//!    └──── reorged: the receipt's block is gone ◄──────────────────┴──► final
//! ```
//!
//! `serve` runs it as a background task ([`service`]): the newest checkpoint each interval,
//! backoff while the chain is unreachable, and `GET /v1/anchors` showing where it stands.
//!
//! The chain's `treeSize()` is the ground truth for what is anchored: a checkpoint the chain
//! already covers is never sent, and a second transaction for the same size would be refused
//! by the contract (`SizeNotGrowing`), so nothing is anchored twice.

pub mod chain;
pub mod service;
pub mod state;

/// An EVM address, as the chain client speaks it (re-exported so that no other module imports
/// `ethers`).
pub use ethers::types::Address;

pub use chain::{deploy, redact_url, Chain, ChainError, ChainSettings};
pub use service::{AnchorBoard, AnchorHealth, AnchorSettings};
pub use state::{AnchorError, AnchorPolicy, AnchorRecord, AnchorStatus, AnchorStore, Anchorer};
