//! The ledger: a data directory holding keys and the store, and the one writer that appends.
//!
//! [`Ledger::submit`] is the whole write path in one call: verify every envelope's signatures
//! (in parallel, each with strict verification), then sequence the valid ones one by one
//! through the engine into one [`Group`], then commit the group with one batch and one flush.
//! Receipts come back only after the flush, so an acknowledged entry is durable. The sequencer
//! ([`crate::sequencer`]) drives the same calls from two threads for concurrent producers.
//!
//! A data directory `DIR` holds `DIR/keys/log.key` (signs checkpoints), `DIR/keys/operator.key`
//! (signs merchant programs) and `DIR/db` (the sled store).

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::clock::Clock;
use crate::dsse::{DsseError, Envelope};
use crate::engine::{self, Effects, EngineError, LogConfig};
use crate::errors::Code;
use crate::keys::{self, KeyError};
use crate::log::layout::MAX_LEAF_LEN;
use crate::merkle::{self, Hash, HashSource, MerkleError};
use crate::payload::Payload;
use crate::store::{Group, Store, StoreError, StoredConfig, WriterCache};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the ledger refused an entry or an operation.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The envelope is malformed or a signature does not verify.
    #[error(transparent)]
    Envelope(#[from] DsseError),
    /// The engine refused the request.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key file could not be read or written.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The Merkle tree could not be read.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    /// A checkpoint could not be signed or verified.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The directory holds no initialised ledger.
    #[error("{0} holds no ledger: run `pointsledger init --data {0} --origin ORIGIN` first")]
    NotInitialized(String),
    /// `init` on a directory that already holds a ledger.
    #[error("{0} already holds a ledger")]
    AlreadyInitialized(String),
    /// The start-up self-check failed: the stored tree does not match the last checkpoint.
    #[error("self-check failed: {0}; refusing to start (restore the data directory from a backup, or run `pointsledger rebuild` if only derived state is damaged)")]
    SelfCheck(String),
    /// A request names a leaf, size or range that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A fault of the ledger itself: a leaf missing behind an index that names it, a stopped
    /// sequencer thread. Never a refusal of the request.
    #[error("internal error: {0}")]
    Internal(String),
    /// The entry's leaf would not fit an entry bundle of the tlog-tiles API, whose lengths are
    /// `u16` (a redemption drawing from very many lots); refused before it is sequenced.
    #[error("the entry's leaf would be {len} bytes, over the {max} bytes a tlog-tiles entry bundle holds; a redemption drawing from this many lots must be split into smaller ones")]
    LeafTooLarge {
        /// The leaf's length.
        len: usize,
        /// The largest leaf ([`crate::log::layout::MAX_LEAF_LEN`]).
        max: usize,
    },
    /// The data directory's volume has less free space than the writer keeps in reserve, so
    /// the write is refused before it could fail half-way; it goes through once space returns.
    #[error("the data volume has {free} bytes free, below the {reserve} bytes kept in reserve: writes are refused until space is freed (reads go on)")]
    StorageFull {
        /// Bytes free on the volume when the write was refused.
        free: u64,
        /// The reserve (`--min-free-bytes`).
        reserve: u64,
    },
    /// An earlier group commit failed in the store; the store cannot be trusted with another
    /// write until the ledger is reopened (what was acknowledged is on disk; what failed was
    /// never acknowledged).
    #[error("the store failed to commit a write ({0}); writes are refused until the ledger is reopened (restart the server); every acknowledged entry is on disk")]
    WriterFailed(String),
    /// The free space of the data volume could not be read, so no write is started.
    #[error(
        "the free space of the data volume cannot be read ({0}); writes are refused until it can"
    )]
    FreeSpaceUnknown(String),
    /// A leaf in the store does not decode.
    #[error("leaf {index} is corrupt: {reason}")]
    CorruptLeaf {
        /// The leaf index.
        index: u64,
        /// What failed.
        reason: String,
    },
    /// Replaying the log computed other effects than a leaf records.
    #[error("replay of leaf {index} computed other effects than recorded: expected {expected}, found {found}")]
    ReplayMismatch {
        /// The leaf index.
        index: u64,
        /// Effects recorded in the leaf.
        expected: String,
        /// Effects the replay computed (or the error it hit).
        found: String,
    },
}

impl LedgerError {
    /// The error's code in the one table ([`crate::errors`]), which gives its class, HTTP
    /// status and exit code.
    pub fn code(&self) -> Code {
        match self {
            LedgerError::Envelope(e) => e.code(),
            LedgerError::Engine(e) => e.code(),
            LedgerError::NotFound(_) | LedgerError::NotInitialized(_) => Code::NotFound,
            LedgerError::AlreadyInitialized(_) => Code::MalformedRequest,
            LedgerError::StorageFull { .. } => Code::StorageFull,
            LedgerError::LeafTooLarge { .. } => Code::TooLarge,
            LedgerError::Merkle(
                MerkleError::IndexOutOfRange { .. }
                | MerkleError::SizeZero
                | MerkleError::SizesOutOfOrder { .. },
            ) => Code::OutOfRange,
            LedgerError::Store(_)
            | LedgerError::Merkle(MerkleError::Storage(_))
            | LedgerError::WriterFailed(_)
            | LedgerError::FreeSpaceUnknown(_) => Code::Unavailable,
            LedgerError::Merkle(_)
            | LedgerError::Key(_)
            | LedgerError::Checkpoint(_)
            | LedgerError::SelfCheck(_)
            | LedgerError::CorruptLeaf { .. }
            | LedgerError::ReplayMismatch { .. }
            | LedgerError::Internal(_) => Code::Internal,
        }
    }
}

/// The bytes the log stores for one entry; its hash is the Merkle leaf hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leaf {
    /// Position in the log.
    pub index: u64,
    /// Sequencing time, the only time the rules use.
    pub timestamp_ms: u64,
    /// The DSSE envelope as received (payload base64 verbatim).
    pub envelope: serde_json::Value,
    /// What the engine computed.
    pub effects: Effects,
}

impl Leaf {
    /// Decodes leaf bytes.
    pub fn decode(index: u64, bytes: &[u8]) -> Result<Leaf, LedgerError> {
        serde_json::from_slice(bytes).map_err(|e| LedgerError::CorruptLeaf {
            index,
            reason: e.to_string(),
        })
    }

    /// The envelope, parsed again from the leaf.
    pub fn envelope(&self) -> Result<Envelope, LedgerError> {
        let bytes = serde_json::to_vec(&self.envelope).map_err(|e| LedgerError::CorruptLeaf {
            index: self.index,
            reason: e.to_string(),
        })?;
        Ok(crate::dsse::parse(&bytes)?)
    }
}

/// What the writer returns for an accepted entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Receipt {
    /// Position in the log.
    pub index: u64,
    /// The leaf's hash SHA-256(0x00 || leaf bytes), standard base64.
    pub hash: String,
    /// Deprecated (removed in the next release): `hash` in lowercase hex.
    #[schema(deprecated)]
    pub leaf_hash: String,
    /// Sequencing time.
    pub timestamp_ms: u64,
    /// What the entry did.
    pub effects: Effects,
}

impl Receipt {
    fn from_leaf(index: u64, bytes: &[u8]) -> Result<Receipt, LedgerError> {
        let leaf = Leaf::decode(index, bytes)?;
        let hash = merkle::leaf_hash(bytes);
        Ok(Receipt {
            index,
            hash: crate::wire::encode_hash(&hash),
            leaf_hash: hex::encode(hash),
            timestamp_ms: leaf.timestamp_ms,
            effects: leaf.effects,
        })
    }
}

/// The name of a failed commit's marker, before the size (see [`DataDir::write_failed_marker`]).
const WRITE_FAILED_PREFIX: &str = "write-failed.";

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir(pub PathBuf);

impl DataDir {
    /// The log key file.
    pub fn log_key(&self) -> PathBuf {
        self.0.join("keys").join("log.key")
    }
    /// The operator key file.
    pub fn operator_key(&self) -> PathBuf {
        self.0.join("keys").join("operator.key")
    }
    /// The sled database.
    pub fn db(&self) -> PathBuf {
        self.0.join("db")
    }
    /// An empty file left by a failed group commit, named after the log size before that
    /// group (see [`Ledger::open`], which repairs the store from it). The size is in the name
    /// because a full disk may still take a new empty file but not a byte of content.
    pub fn write_failed_marker(&self, size: u64) -> PathBuf {
        self.0.join(format!("{WRITE_FAILED_PREFIX}{size}"))
    }
}

/// Creates a new ledger in `dir`: log and operator keys (0600) and an empty store.
pub fn init(dir: &Path, origin: &str) -> Result<StoredConfig, LedgerError> {
    let data = DataDir(dir.to_owned());
    if data.db().exists() || data.log_key().exists() {
        return Err(LedgerError::AlreadyInitialized(dir.display().to_string()));
    }
    // Validate the origin as a checkpoint origin / note key name before writing anything.
    let log_key = keys::generate();
    checkpoint::parse_verifier_key(&checkpoint::verifier_key(origin, &log_key.verifying_key()))?;
    let operator_key = keys::generate();
    keys::write_key_file(&data.log_key(), &log_key)?;
    keys::write_key_file(&data.operator_key(), &operator_key)?;
    let config = StoredConfig {
        log: LogConfig {
            origin: origin.to_owned(),
            operator: keys::public_id(&operator_key.verifying_key()),
        },
        log_key: keys::public_id(&log_key.verifying_key()),
    };
    let store = Store::open(&data.db())?;
    store.put_config(&config)?;
    Ok(config)
}

/// The markers failed group commits left in `dir`, with the log size each names; the smallest
/// size is the one to cut back to.
fn write_failed_markers(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LedgerError> {
    let unreadable =
        |e: std::io::Error| LedgerError::SelfCheck(format!("reading {}: {e}", dir.display()));
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name();
        let Some(size) = name
            .to_str()
            .and_then(|n| n.strip_prefix(WRITE_FAILED_PREFIX))
        else {
            continue;
        };
        let size = size.parse().map_err(|_| {
            LedgerError::SelfCheck(format!(
                "{} does not name a log size; restore the data directory from a backup",
                entry.path().display()
            ))
        })?;
        found.push((size, entry.path()));
    }
    Ok(found)
}

/// Opens the store of an initialised ledger for reading.
pub fn open_store(dir: &Path) -> Result<(Store, StoredConfig), LedgerError> {
    let data = DataDir(dir.to_owned());
    if !data.db().exists() {
        return Err(LedgerError::NotInitialized(dir.display().to_string()));
    }
    let store = Store::open(&data.db())?;
    let config = store
        .config()?
        .ok_or_else(|| LedgerError::NotInitialized(dir.display().to_string()))?;
    Ok((store, config))
}

/// Checks the signatures of every envelope in `items`, in parallel on all cores (each with
/// `verify_strict`, see [`crate::dsse::verify_all`]); refusals already in `items` pass through.
/// This is the one signature stage of every write path: `submit`, the sequencer pipeline and
/// `append -`.
pub fn verified(items: Vec<Result<Envelope, LedgerError>>) -> Vec<Result<Envelope, LedgerError>> {
    use rayon::prelude::*;
    items
        .into_par_iter()
        .map(|item| item.and_then(|env| env.verify().map(|()| env).map_err(LedgerError::from)))
        .collect()
}

/// The single writer of a ledger.
pub struct Ledger {
    /// The store; clones of it serve reads while the writer appends.
    store: Store,
    /// Origin, operator and log key ids.
    config: StoredConfig,
    /// Signs checkpoints.
    log_key: SigningKey,
    /// Where leaf timestamps come from.
    clock: Arc<dyn Clock>,
    /// The last leaf timestamp: leaf times never go backwards, even if the clock does.
    last_ts: u64,
    /// Leaves in the log.
    size: u64,
    /// Committed state the writer read recently (see [`WriterCache`]).
    cache: WriterCache,
    /// The data directory: its database's volume is checked for free space before every
    /// write, and a failed group commit is recorded in it (see [`DataDir::write_failed_marker`]).
    data: DataDir,
    /// Free bytes the writer leaves on the volume: a group is refused, not started, below it,
    /// because sled poisons itself for good on a failed write (see [`LedgerError::WriterFailed`]).
    min_free_bytes: u64,
    /// Why the last group commit failed, once one has: sled keeps the failed batch in memory
    /// and refuses every later write, so the writer stops instead of building on it.
    failed: Option<String>,
}

/// Why the writer refuses a whole group before sequencing it; one [`LedgerError`] per envelope
/// is made from it.
#[derive(Debug, Clone)]
enum Blocked {
    Full { free: u64, reserve: u64 },
    Failed(String),
    Unknown(String),
}

impl From<Blocked> for LedgerError {
    fn from(b: Blocked) -> Self {
        match b {
            Blocked::Full { free, reserve } => LedgerError::StorageFull { free, reserve },
            Blocked::Failed(why) => LedgerError::WriterFailed(why),
            Blocked::Unknown(why) => LedgerError::FreeSpaceUnknown(why),
        }
    }
}

/// Free bytes the writer keeps on the data volume unless told otherwise: well above what one
/// group of ordinary entries writes, so a group that starts also finishes.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

impl Ledger {
    /// Opens the ledger in `dir` and runs the start-up self-check.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Ledger, LedgerError> {
        let (store, config) = open_store(dir)?;
        let log_key = keys::read_key_file(&DataDir(dir.to_owned()).log_key())?;
        if keys::public_id(&log_key.verifying_key()) != config.log_key {
            return Err(LedgerError::SelfCheck(
                "keys/log.key is not the key this log was created with".into(),
            ));
        }
        let markers = write_failed_markers(dir)?;
        let repair = markers.iter().map(|(size, _)| *size).min();
        if let Some(size) = repair {
            // What a failed flush left on disk is sled's business; none of the group was
            // acknowledged, so the log goes back to the last committed size and derived state
            // is replayed from it, whatever sled recovered.
            tracing::warn!(
                size,
                "the last group commit failed; cutting the log back to its last committed size and rebuilding derived state"
            );
            store.truncate_log(size)?;
        }
        // A repair rebuilds derived state anyway, so one cut short by a crash just runs again.
        if repair.is_none() && store.rebuild_pending()? {
            return Err(LedgerError::SelfCheck(
                "a rebuild was interrupted; run `pointsledger rebuild` to finish it".into(),
            ));
        }
        let size = store.size()?;
        let last_ts = match size {
            0 => 0,
            n => {
                let bytes = store
                    .leaf(n - 1)?
                    .ok_or_else(|| LedgerError::SelfCheck(format!("leaf {} is missing", n - 1)))?;
                Leaf::decode(n - 1, &bytes)?.timestamp_ms
            }
        };
        let mut ledger = Ledger {
            store,
            config,
            log_key,
            clock,
            last_ts,
            size,
            cache: WriterCache::default(),
            data: DataDir(dir.to_owned()),
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            failed: None,
        };
        if repair.is_some() {
            ledger.rebuild(&|_| {})?;
            for (_, path) in markers {
                std::fs::remove_file(&path).map_err(|e| {
                    LedgerError::SelfCheck(format!("removing {}: {e}", path.display()))
                })?;
            }
        }
        ledger.self_check()?;
        Ok(ledger)
    }

    /// The stored tree must reproduce the last checkpoint's root, and the checkpoint must carry
    /// this log's valid signature.
    fn self_check(&self) -> Result<(), LedgerError> {
        let Some((cp_size, note)) = self.store.latest_checkpoint()? else {
            return Ok(());
        };
        let cp = checkpoint::open_checkpoint(&note, &self.verifier_key())
            .map_err(|e| LedgerError::SelfCheck(format!("checkpoint {cp_size}: {e}")))?;
        if cp.size > self.size {
            return Err(LedgerError::SelfCheck(format!(
                "the last checkpoint covers {} entries but the store holds {}",
                cp.size, self.size
            )));
        }
        let root = merkle::root(cp.size, &self.store)
            .map_err(|e| LedgerError::SelfCheck(format!("tree at size {}: {e}", cp.size)))?;
        if root != cp.root {
            return Err(LedgerError::SelfCheck(format!(
                "the stored tree's root at size {} is {}, the checkpoint says {}",
                cp.size,
                hex::encode(root),
                hex::encode(cp.root)
            )));
        }
        Ok(())
    }

    /// A read handle on the store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The log's configuration.
    pub fn config(&self) -> &StoredConfig {
        &self.config
    }

    /// Leaves in the log.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The verifier key in the C2SP `name+keyid+base64` form.
    pub fn verifier_key(&self) -> String {
        checkpoint::verifier_key(&self.config.log.origin, &self.log_key.verifying_key())
    }

    /// Stops the writer after a failed group commit and records the size to cut back to, so
    /// that the next [`Ledger::open`] drops whatever part of the group reached the disk.
    fn commit_failed(&mut self, why: String) {
        tracing::error!(error = %why, "a group commit failed; the writer refuses every later write");
        // A small file outside sled: sled refuses every write after a failed one.
        let marker = self.data.write_failed_marker(self.size);
        if let Err(e) = std::fs::File::create(&marker) {
            tracing::error!(error = %e, size = self.size,
                "cannot record the failed commit; run `pointsledger rebuild` before serving again");
        }
        self.failed = Some(why);
    }

    /// Sets the free space the writer keeps on the data volume (0 turns the check off).
    pub fn set_min_free_bytes(&mut self, bytes: u64) {
        self.min_free_bytes = bytes;
    }

    /// Whether a write may start: the store has not failed, and the volume has more free space
    /// than the reserve. Checked once per group (one `statvfs`); `Err` holds the refusal.
    fn writable(&self) -> Result<(), Blocked> {
        if let Some(why) = &self.failed {
            return Err(Blocked::Failed(why.clone()));
        }
        if self.min_free_bytes == 0 {
            return Ok(());
        }
        let db = self.data.db();
        match fs2::available_space(&db) {
            Ok(free) if free < self.min_free_bytes => Err(Blocked::Full {
                free,
                reserve: self.min_free_bytes,
            }),
            Ok(_) => Ok(()),
            Err(e) => {
                // Neither the refusal nor the log names the path: clients are not told where
                // the data lives.
                tracing::error!(error = %e, "cannot read the free space of the data volume");
                Err(Blocked::Unknown(e.kind().to_string()))
            }
        }
    }

    /// Verifies, sequences and durably appends a batch of envelopes; one result per envelope,
    /// in order. An envelope identical to one already in the log gets the original receipt.
    pub fn submit(&mut self, envelopes: Vec<Envelope>) -> Vec<Result<Receipt, LedgerError>> {
        self.sequence(verified(envelopes.into_iter().map(Ok).collect()))
    }

    /// Verifies and appends envelopes all-or-nothing: if any is refused, nothing is written and
    /// the error names its position.
    pub fn submit_atomic(
        &mut self,
        envelopes: Vec<Envelope>,
    ) -> Result<Vec<Receipt>, (usize, LedgerError)> {
        self.writable().map_err(|b| (0, b.into()))?;
        let envelopes = verified(envelopes.into_iter().map(Ok).collect())
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.map_err(|e| (i, e)))
            .collect::<Result<Vec<Envelope>, _>>()?;
        let store = self.store.clone();
        let mut group = Group::new(&store, self.size, std::mem::take(&mut self.cache));
        let last_ts = self.last_ts;
        let mut receipts = Vec::with_capacity(envelopes.len());
        for (i, env) in envelopes.iter().enumerate() {
            match self.sequence_one(&mut group, env) {
                Ok(r) => receipts.push(r),
                Err(e) => {
                    self.last_ts = last_ts;
                    self.cache = group.into_cache();
                    return Err((i, e));
                }
            }
        }
        let new_size = group.size();
        let (result, cache) = group.commit();
        self.cache = cache;
        if let Err(e) = result {
            self.last_ts = last_ts;
            self.commit_failed(e.to_string());
            return Err((0, e.into()));
        }
        self.size = new_size;
        Ok(receipts)
    }

    /// Sequences envelopes whose signatures are already verified (errors pass through) and
    /// commits them as one group.
    pub fn sequence(
        &mut self,
        items: Vec<Result<Envelope, LedgerError>>,
    ) -> Vec<Result<Receipt, LedgerError>> {
        if let Err(blocked) = self.writable() {
            // Refusals already made keep their own reason.
            return items
                .into_iter()
                .map(|item| item.and_then(|_| Err(blocked.clone().into())))
                .collect();
        }
        let store = self.store.clone();
        let mut group = Group::new(&store, self.size, std::mem::take(&mut self.cache));
        let mut results: Vec<Result<Receipt, LedgerError>> = items
            .into_iter()
            .map(|item| item.and_then(|env| self.sequence_one(&mut group, &env)))
            .collect();
        let new_size = group.size();
        let (result, cache) = group.commit();
        self.cache = cache;
        if let Err(e) = result {
            // Nothing of the group is durable: every receipt of it is withdrawn, and the
            // writer stops (see `failed`).
            let msg = e.to_string();
            self.commit_failed(msg.clone());
            for r in results.iter_mut() {
                if matches!(r, Ok(rc) if rc.index >= self.size) {
                    *r = Err(LedgerError::WriterFailed(msg.clone()));
                }
            }
            return results;
        }
        self.size = new_size;
        results
    }

    fn sequence_one(&mut self, group: &mut Group, env: &Envelope) -> Result<Receipt, LedgerError> {
        let payload = Payload::parse(env.kind(), env.payload()).map_err(EngineError::from)?;
        if let Some(receipt) = self.resubmission(group, env, &payload)? {
            return Ok(receipt);
        }
        let signers: Vec<String> = env.signers().map(str::to_owned).collect();
        let now = self.clock.now_ms().max(self.last_ts);
        let index = group.size();
        let (effects, writes) =
            engine::apply(&*group, &self.config.log, &payload, &signers, now, index)?;
        let leaf = Leaf {
            index,
            timestamp_ms: now,
            envelope: env.to_json(),
            effects,
        };
        let bytes = serde_json::to_vec(&leaf).map_err(|e| LedgerError::CorruptLeaf {
            index,
            reason: e.to_string(),
        })?;
        if bytes.len() > MAX_LEAF_LEN {
            return Err(LedgerError::LeafTooLarge {
                len: bytes.len(),
                max: MAX_LEAF_LEN,
            });
        }
        let hash = merkle::leaf_hash(&bytes);
        let hashes = merkle::hashes_to_store(index, &hash, &*group)?;
        group.push(bytes, hashes, writes);
        self.last_ts = now;
        Ok(Receipt {
            index,
            hash: crate::wire::encode_hash(&hash),
            leaf_hash: hex::encode(hash),
            timestamp_ms: now,
            effects: leaf.effects,
        })
    }

    /// The original receipt if `env` repeats an entry already in the log: same payload type and
    /// bytes, same signers. Found through the nonce index, so no index of its own is needed.
    fn resubmission(
        &self,
        group: &Group,
        env: &Envelope,
        payload: &Payload,
    ) -> Result<Option<Receipt>, LedgerError> {
        let Some(signer) = env.signers().next() else {
            return Ok(None);
        };
        let Some(index) = group.nonce_entry(signer, payload.nonce())? else {
            return Ok(None);
        };
        let bytes = group
            .leaf(index)?
            .ok_or_else(|| LedgerError::Internal(format!("leaf {index} is missing")))?;
        let original = Leaf::decode(index, &bytes)?.envelope()?;
        let mut a: Vec<&str> = original.signers().collect();
        let mut b: Vec<&str> = env.signers().collect();
        a.sort_unstable();
        b.sort_unstable();
        if original.digest() == env.digest() && a == b {
            return Ok(Some(Receipt::from_leaf(index, &bytes)?));
        }
        Ok(None)
    }

    /// Signs and stores a checkpoint if the tree grew since the last one; returns the new note.
    pub fn checkpoint(&mut self) -> Result<Option<String>, LedgerError> {
        let last = self.store.latest_checkpoint()?.map(|(s, _)| s);
        if last == Some(self.size) || (last.is_none() && self.size == 0) {
            return Ok(None);
        }
        let cp = Checkpoint {
            origin: self.config.log.origin.clone(),
            size: self.size,
            root: merkle::root(self.size, &self.store)?,
        };
        let note = checkpoint::sign_checkpoint(&cp, &self.log_key)?;
        self.store.put_checkpoint(self.size, &note)?;
        Ok(Some(note))
    }

    /// Replays every leaf into fresh derived state, checking each leaf's effects and the tree.
    ///
    /// Returns the state digest before and after: equal digests show the state was reproduced
    /// exactly. `progress` is called with the number of leaves replayed so far.
    pub fn rebuild(&mut self, progress: &dyn Fn(u64)) -> Result<(Hash, Hash), LedgerError> {
        let before = self.store.state_digest()?;
        let total = self.size;
        self.store.clear_derived()?;
        self.cache = WriterCache::default();
        let store = self.store.clone();
        const CHUNK: u64 = 1024;
        let mut next = 0;
        while next < total {
            let end = (next + CHUNK).min(total);
            let mut group = Group::new(&store, next, std::mem::take(&mut self.cache));
            for (offset, bytes) in store.leaves(next, end)?.into_iter().enumerate() {
                let index = next + offset as u64;
                self.replay_one(&mut group, index, bytes)?;
            }
            let (result, cache) = group.commit();
            self.cache = cache;
            result?;
            next = end;
            progress(next);
        }
        if let Some((size, note)) = store.latest_checkpoint()? {
            let cp = checkpoint::open_checkpoint(&note, &self.verifier_key())?;
            if merkle::root(size, &store)? != cp.root {
                return Err(LedgerError::SelfCheck(format!(
                    "tree root at size {size} differs from its checkpoint"
                )));
            }
        }
        store.finish_rebuild()?;
        Ok((before, store.state_digest()?))
    }

    fn replay_one(&self, group: &mut Group, index: u64, bytes: Vec<u8>) -> Result<(), LedgerError> {
        let leaf = Leaf::decode(index, &bytes)?;
        if leaf.index != index {
            return Err(LedgerError::CorruptLeaf {
                index,
                reason: format!("leaf says index {}", leaf.index),
            });
        }
        let env = leaf.envelope()?;
        env.verify()?;
        let payload = Payload::parse(env.kind(), env.payload()).map_err(EngineError::from)?;
        let signers: Vec<String> = env.signers().map(str::to_owned).collect();
        let mismatch = |found: String| LedgerError::ReplayMismatch {
            index,
            expected: serde_json::to_string(&leaf.effects).unwrap_or_default(),
            found,
        };
        let (effects, writes) = engine::apply(
            &*group,
            &self.config.log,
            &payload,
            &signers,
            leaf.timestamp_ms,
            index,
        )
        .map_err(|e| mismatch(format!("refusal: {e}")))?;
        if effects != leaf.effects {
            return Err(mismatch(
                serde_json::to_string(&effects).unwrap_or_default(),
            ));
        }
        let stored = self
            .store
            .read_hashes(&[merkle::stored_index_of_leaf(index)])?;
        if stored.first() != Some(&merkle::leaf_hash(&bytes)) {
            return Err(LedgerError::CorruptLeaf {
                index,
                reason: "leaf hash differs from the stored tree".into(),
            });
        }
        group.push_replayed(writes);
        Ok(())
    }
}
