//! pointsledger: a points-and-rewards ledger that anyone can verify.
//!
//! Consumers earn points when they buy from merchants, redeem them for discounts and earn rewards
//! for referring friends. Every change is a DSSE-signed request appended to a log; the log is an
//! RFC 6962 Merkle tree whose signed checkpoints (C2SP signed notes) let consumers, merchants and
//! auditors check what happened without trusting the operator.
//!
//! A tour of the modules, in the order data flows through them:
//!
//! - [`errors`]: the one table of error codes: class, HTTP status, exit code and meaning.
//! - [`keys`]: Ed25519 keys in 0600 files; public key ids; weak keys refused.
//! - [`dsse`]: the signed request envelope: PAE, signing, strict parsing, strict verification.
//! - [`payload`]: the payload kinds and their strict parsing (safe integers, no unknown fields).
//! - [`engine`]: the points rules: lots, pending periods, expiry, redemption, refunds, referrals.
//!   A pure function from (state, request, time) to effects.
//! - [`evm`]: EIP-191 proofs that bind an EVM address to a consumer.
//! - [`merkle`]: RFC 6962 hashes, proofs and verifiers over a persisted tree.
//! - [`checkpoint`]: C2SP checkpoints, signed notes, verifier keys and tlog-proof receipts.
//! - [`log`](mod@log): the append-only log on disk, the source of truth, served as C2SP
//!   tlog-tiles: one synced segment of group records, tiles and bundles cut from it by offset,
//!   torn tails cut on open. The only thing written before an entry is acknowledged.
//! - [`state`]: the read handle on the log, and the state derived from it (sled), written
//!   behind the log; checkpoints and anchor records.
//! - [`ledger`]: the data directory and the single writer: verify, sequence, append, write the
//!   state behind, checkpoint; the one replay (open after a crash, rebuild, the auditor).
//! - [`migrate`]: moves a data directory of the earlier layout (the log inside sled).
//! - [`anchor`]: the `LedgerAnchor` contract's client (ethers) and the anchorer's state machine.
//! - [`sequencer`]: the same write path as a pipeline of threads for concurrent producers.
//! - [`server`]: the HTTP API over the sequencer and the store.
//! - [`views`]: what reads return (account, history rows), shared by the CLI and the API.
//! - [`wire`]: the API's JSON shapes, one set for the server and the client.
//! - [`receipt`]: the one receipt verifier (tlog-proof, envelope signers, anchor), used by
//!   `verify`, the auditor and the tests.
//! - [`client`]: an HTTP client for the service, used by `--server` commands and the load benchmark.
//! - [`audit`]: the monitor: mirrors the log and checks signatures, replay, tree, checkpoints,
//!   anchors and reported balances.
//! - [`clock`]: where leaf timestamps come from (injectable for tests).
//! - [`demo`], [`bench`](mod@bench), [`cli`]: the seeded demo program, the benchmark and the command line.

// The library's lint table (the tests' helper modules are exempt): every public item is
// documented, and nothing is `pub` that the crate does not export.
#![warn(missing_docs, unreachable_pub)]

pub mod anchor;
pub mod audit;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod client;
pub mod clock;
pub mod demo;
pub mod dsse;
pub mod engine;
pub mod errors;
pub mod evm;
pub mod keys;
pub mod ledger;
pub mod log;
pub mod merkle;
pub mod migrate;
pub mod payload;
pub mod receipt;
pub mod sequencer;
pub mod server;
pub mod state;
pub mod views;
pub mod wire;
pub mod witness;
