//! The ledger: a data directory holding keys, the log and the state, and the one writer that
//! appends.
//!
//! [`Ledger::submit`] is the whole write path in one call: verify every envelope's signatures
//! (in parallel, each with strict verification), then sequence the valid ones one by one
//! through the engine into one [`Group`] (an overlay over the state store), then append the
//! group's leaves to the log with one `fdatasync`. Receipts come back only after that sync, so
//! an acknowledged entry is durable. The group's state is then queued for the state store,
//! which a thread of its own writes behind the log in large batches without a flush
//! ([`crate::state`]); reads see it at once. It is derived from the log, and [`Ledger::open`]
//! replays whatever part of the log the state store does not reflect after a crash. The sequencer
//! ([`crate::sequencer`]) drives the same calls from two threads for concurrent producers.
//!
//! A data directory `DIR` holds `DIR/keys/log.key` (signs checkpoints), `DIR/keys/operator.key`
//! (signs merchant programs), `DIR/log` (the log, [`crate::log`]) and `DIR/state` (the sled
//! state store). A directory of the earlier layout, with the log inside `DIR/db`, is refused
//! until `pointsledger migrate` ([`crate::migrate`]) has moved it.

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::clock::Clock;
use crate::dsse::{DsseError, Envelope};
use crate::engine::state::Account;
use crate::engine::{self, Effects, EngineError, LogConfig, StateView};
use crate::errors::Code;
use crate::keys::{self, KeyError};
use crate::log::io::{LogFs, StdFs};
use crate::log::layout::MAX_LEAF_LEN;
use crate::log::MAX_GROUP_BYTES;
use crate::log::{LogError, LogOptions, LogWriter};
use crate::merkle::{self, Hash, MerkleError};
use crate::payload::Payload;
use crate::state::{Group, StateWriter, Store, StoreError, StoredConfig, WriterCache};
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
    /// The log could not be opened or read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The log could not take a group (an I/O error while appending it); nothing of the group
    /// was acknowledged, and the next group is tried afresh.
    #[error("the log could not append the group ({0}); nothing of it was acknowledged")]
    LogAppend(String),
    /// A file operation on the data directory itself failed (a rename or sync while migrating).
    #[error("{0}")]
    Io(String),
    /// The directory is in the earlier layout, with the log inside sled.
    #[error("{0} holds a ledger of the earlier layout (the log inside DIR/db); run `pointsledger migrate --data {0}` once to move it (nothing was changed)")]
    NeedsMigration(String),
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
    /// `u16`; refused before it is sequenced. The engine's bounds (lots per redemption, `expire`
    /// changes per sweep, payload sizes) keep every entry far inside it: this is the last guard.
    #[error("the entry's leaf would be {len} bytes, over the {max} bytes a tlog-tiles entry bundle holds")]
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
    /// A leaf of the log does not replay ([`ReplayFault`]).
    #[error(transparent)]
    Replay(#[from] ReplayFault),
}

/// Why a leaf of the log does not replay: what was checked, what it should be (the index it
/// sits at, valid signatures, the effects the engine computes...) and what the leaf holds. The
/// ledger's replay fails with it and the auditor reports it as a discrepancy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("leaf {index} does not replay: {what}: expected {expected}, found {found}")]
pub struct ReplayFault {
    /// The leaf index.
    pub index: u64,
    /// What was checked.
    pub what: &'static str,
    /// What it should be.
    pub expected: String,
    /// What the leaf holds or makes the engine do.
    pub found: String,
}

impl ReplayFault {
    fn new(index: u64, what: &'static str, expected: impl ToString, found: impl ToString) -> Self {
        ReplayFault {
            index,
            what,
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }
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
            LedgerError::NeedsMigration(_) => Code::NeedsMigration,
            LedgerError::Log(e) => log_code(e),
            LedgerError::LogAppend(_) | LedgerError::Io(_) => Code::Unavailable,
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
            | LedgerError::Replay(_)
            | LedgerError::Internal(_) => Code::Internal,
        }
    }
}

/// The code of a log error: a full volume and oversized groups are the request's limits; a log
/// that contradicts itself or its checkpoint is a fault; the rest is the store being unavailable.
fn log_code(e: &LogError) -> Code {
    match e {
        LogError::StorageFull { .. } => Code::StorageFull,
        LogError::LeafTooLarge { .. } | LogError::GroupTooLarge { .. } => Code::TooLarge,
        LogError::Beyond { .. } | LogError::NotYet { .. } | LogError::BadPath(_) => Code::NotFound,
        LogError::RangeTooLarge { .. } => Code::OutOfRange,
        LogError::Corrupt(_) | LogError::CheckpointAhead { .. } | LogError::RootMismatch { .. } => {
            Code::Internal
        }
        LogError::Locked | LogError::Io { .. } | LogError::Poisoned | LogError::Tree(_) => {
            Code::Unavailable
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
    /// The log ([`crate::log`]).
    pub fn log(&self) -> PathBuf {
        self.0.join("log")
    }
    /// The state store (sled).
    pub fn state(&self) -> PathBuf {
        self.0.join("state")
    }
    /// Where the earlier layout kept everything, the log included (see [`crate::migrate`]).
    pub fn legacy_db(&self) -> PathBuf {
        self.0.join("db")
    }
}

/// Creates a new ledger in `dir`: log and operator keys (0600), an empty log and state store.
pub fn init(dir: &Path, origin: &str) -> Result<StoredConfig, LedgerError> {
    init_with_keys(dir, origin, &keys::generate(), &keys::generate())
}

/// [`init`] with given log and operator keys (the protocol's worked example uses fixed ones).
pub fn init_with_keys(
    dir: &Path,
    origin: &str,
    log_key: &SigningKey,
    operator_key: &SigningKey,
) -> Result<StoredConfig, LedgerError> {
    let data = DataDir(dir.to_owned());
    if data.state().exists()
        || data.log().exists()
        || data.legacy_db().exists()
        || data.log_key().exists()
    {
        return Err(LedgerError::AlreadyInitialized(dir.display().to_string()));
    }
    // Validate the origin as a checkpoint origin / note key name before writing anything.
    checkpoint::parse_verifier_key(&checkpoint::verifier_key(origin, &log_key.verifying_key()))?;
    keys::write_key_file(&data.log_key(), log_key)?;
    keys::write_key_file(&data.operator_key(), operator_key)?;
    let config = StoredConfig {
        log: LogConfig {
            origin: origin.to_owned(),
            operator: keys::public_id(&operator_key.verifying_key()),
        },
        log_key: keys::public_id(&log_key.verifying_key()),
    };
    let log = LogWriter::open(&data.log())?;
    let store = Store::open(&data.state(), log.reader())?;
    store.put_config(&config)?;
    log.close()?;
    Ok(config)
}

/// Opens an initialised ledger for reading, replaying into the state whatever part of the log
/// it does not reflect; the writer is closed again, and the store stays readable.
pub fn open_store(dir: &Path) -> Result<(Store, StoredConfig), LedgerError> {
    let ledger = Ledger::open(dir, Arc::new(crate::clock::SystemClock))?;
    Ok((ledger.store().clone(), ledger.config().clone()))
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
    /// The log; the only thing written before an entry is acknowledged.
    log: LogWriter,
    /// The store (the log's reader and the state); clones of it serve reads while the writer
    /// appends.
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
    /// The state the writer read or wrote recently (see [`WriterCache`]).
    cache: WriterCache,
    /// Writes the groups' state into the state store behind the log.
    state: StateWriter,
    /// The data directory: its volume is checked for free space before every write.
    data: DataDir,
    /// Free bytes the writer leaves on the volume: a group is refused, not started, below it,
    /// so that the state store (sled, which poisons itself for good on a failed write) always
    /// has room for what follows an append.
    min_free_bytes: u64,
    /// The size of the checkpoint in the log's own `checkpoint` file (0 if none): behind the
    /// state store's latest only when writing the file failed, and then written again at the
    /// next [`Ledger::checkpoint`].
    log_checkpoint: u64,
}

/// Why the writer refuses a whole group, before sequencing it or when the log does not take
/// it; one [`LedgerError`] per envelope is made from it.
#[derive(Debug, Clone)]
enum Blocked {
    Full {
        free: u64,
        reserve: u64,
    },
    Failed(String),
    Unknown(String),
    /// The log did not take the group (after sequencing it, unlike the others).
    Append(String),
}

impl From<Blocked> for LedgerError {
    fn from(b: Blocked) -> Self {
        match b {
            Blocked::Full { free, reserve } => LedgerError::StorageFull { free, reserve },
            Blocked::Failed(why) => LedgerError::WriterFailed(why),
            Blocked::Unknown(why) => LedgerError::FreeSpaceUnknown(why),
            Blocked::Append(why) => LedgerError::LogAppend(why),
        }
    }
}

/// Free bytes the writer keeps on the data volume unless told otherwise. A group that passes the
/// check may still grow the log by one preallocation step (at most a quarter of the reserve,
/// [`Ledger::set_min_free_bytes`]), write its own bytes (at most [`crate::log::MAX_GROUP_BYTES`]
/// and in practice a few MiB) and have its state written behind it: the reserve covers all three,
/// so a group that starts also finishes.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;

impl Ledger {
    /// Opens the ledger in `dir`: opens the log (cutting a torn tail a crash left), checks it
    /// against the last signed checkpoint, and replays into the state whatever part of the log
    /// it does not reflect yet (all of it after an interrupted rebuild).
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Ledger, LedgerError> {
        Self::open_with_progress(dir, clock, &|_| {})
    }

    /// [`Ledger::open`], telling `progress` the log size the state has reached while it
    /// replays.
    pub fn open_with_progress(
        dir: &Path,
        clock: Arc<dyn Clock>,
        progress: &dyn Fn(u64),
    ) -> Result<Ledger, LedgerError> {
        Self::open_inner(dir, clock, Arc::new(StdFs), progress)
    }

    /// [`Ledger::open`] with the log's files on `fs`: the tests that cut the power under a
    /// ledger pass the simulated file system ([`crate::log::sim::PowerCutFs`]) here. The keys
    /// and the state store stay on the real one.
    pub fn open_on(
        dir: &Path,
        clock: Arc<dyn Clock>,
        fs: Arc<dyn LogFs>,
    ) -> Result<Ledger, LedgerError> {
        Self::open_inner(dir, clock, fs, &|_| {})
    }

    fn open_inner(
        dir: &Path,
        clock: Arc<dyn Clock>,
        fs: Arc<dyn LogFs>,
        progress: &dyn Fn(u64),
    ) -> Result<Ledger, LedgerError> {
        let data = DataDir(dir.to_owned());
        if data.legacy_db().exists() {
            return Err(LedgerError::NeedsMigration(dir.display().to_string()));
        }
        if !data.state().exists() || !data.log().exists() {
            return Err(LedgerError::NotInitialized(dir.display().to_string()));
        }
        let log = LogWriter::open_with(fs, &data.log(), LogOptions::default())?;
        let store = Store::open(&data.state(), log.reader())?;
        let config = store
            .config()?
            .ok_or_else(|| LedgerError::NotInitialized(dir.display().to_string()))?;
        let log_key = keys::read_key_file(&data.log_key())?;
        if keys::public_id(&log_key.verifying_key()) != config.log_key {
            return Err(LedgerError::SelfCheck(
                "keys/log.key is not the key this log was created with".into(),
            ));
        }
        let size = log.size();
        let last_ts = match size {
            0 => 0,
            n => Leaf::decode(n - 1, &log.reader().leaf(n - 1)?)?.timestamp_ms,
        };
        let mut ledger = Ledger {
            log,
            state: StateWriter::start(&store),
            store,
            config,
            log_key,
            clock,
            last_ts,
            size,
            cache: WriterCache::default(),
            data,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            log_checkpoint: 0,
        };
        ledger.self_check()?;
        let rebuilding = ledger.store.rebuild_pending()?;
        let stale = ledger.store.stale_layout()?;
        if rebuilding {
            tracing::warn!("a rebuild was interrupted; replaying the whole log into fresh state");
        } else if let Some(layout) = stale {
            tracing::warn!(
                layout,
                current = crate::state::LAYOUT,
                entries = ledger.size,
                "the derived state is of an earlier layout; rebuilding it from the log"
            );
        }
        if rebuilding || stale.is_some() {
            ledger.store.clear_derived()?;
        }
        ledger.catch_up(progress)?;
        if rebuilding || stale.is_some() {
            ledger.store.finish_rebuild()?;
        }
        Ok(ledger)
    }

    /// The log must reproduce the last checkpoint's root, and the checkpoint must carry this
    /// log's valid signature. The latest checkpoint is kept twice: in the state store's list
    /// (`C`) and as the log's own `checkpoint` file, the one the tlog-tiles API serves. Each is
    /// checked; the newer one wins and the other is brought up to it (the file is written
    /// after the list, so a crash between the two leaves the file one behind). Of two notes of
    /// one size the listed one wins: it differs only by witness cosignatures added to the list
    /// first ([`Ledger::add_cosignatures`]).
    fn self_check(&mut self) -> Result<(), LedgerError> {
        let listed = match self.store.latest_checkpoint()? {
            Some((size, note)) => {
                let cp = self.checked_checkpoint(&note, "the checkpoint list")?;
                if cp.size != size {
                    return Err(LedgerError::SelfCheck(format!(
                        "the checkpoint listed at size {size} signs size {}",
                        cp.size
                    )));
                }
                Some((size, note))
            }
            None => None,
        };
        let filed = match self.log.reader().checkpoint()? {
            Some(bytes) => {
                let note = String::from_utf8(bytes).map_err(|_| {
                    LedgerError::SelfCheck("the log's checkpoint file is not UTF-8".into())
                })?;
                let cp = self.checked_checkpoint(&note, "the log's checkpoint file")?;
                Some((cp.size, note))
            }
            None => None,
        };
        let size_of = |c: &Option<(u64, String)>| c.as_ref().map_or(0, |(size, _)| *size);
        let (listed_size, filed_size) = (size_of(&listed), size_of(&filed));
        match (&listed, &filed) {
            (Some((size, note)), filed)
                if *size > filed_size
                    || filed
                        .as_ref()
                        .is_some_and(|(fs, f)| fs == size && f != note) =>
            {
                self.log.write_checkpoint(note.as_bytes())?;
            }
            (_, Some((size, note))) if *size > listed_size => {
                self.store.put_checkpoint(*size, note)?;
            }
            _ => {}
        }
        self.log_checkpoint = listed_size.max(filed_size);
        Ok(())
    }

    /// Opens `note` with this log's key and checks the log against it.
    fn checked_checkpoint(&self, note: &str, what: &str) -> Result<Checkpoint, LedgerError> {
        let cp = checkpoint::open_checkpoint(note, &self.verifier_key())
            .map_err(|e| LedgerError::SelfCheck(format!("{what}: {e}")))?;
        self.log
            .verify_against(cp.size, &cp.root)
            .map_err(|e| LedgerError::SelfCheck(format!("{what}: {e}")))?;
        Ok(cp)
    }

    /// Replays the log from the size the state reflects to the end, checking every leaf's
    /// effects. A state ahead of the log means acknowledged entries are missing from it.
    fn catch_up(&mut self, progress: &dyn Fn(u64)) -> Result<(), LedgerError> {
        let from = self.store.state_size()?;
        if from > self.size {
            return Err(LedgerError::SelfCheck(format!(
                "the state reflects {from} entries but the log holds {}: acknowledged entries \
                 are missing from the log; restore the data directory from a backup",
                self.size
            )));
        }
        if from < self.size {
            tracing::info!(from, to = self.size, "replaying the log into the state");
        }
        self.replay(from, progress)
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

    /// An account as of the last group: from the writer's cache when it holds it, else read
    /// like any other read (the queued groups, then the state store).
    pub fn account(&self, id: &str) -> Result<Option<Arc<Account>>, LedgerError> {
        if let Some(a) = self.cache.account(id) {
            return Ok(Some(a));
        }
        Ok(StateView::account(&self.store, id)?.map(Arc::new))
    }

    /// The verifier key in the C2SP `name+keyid+base64` form.
    pub fn verifier_key(&self) -> String {
        checkpoint::verifier_key(&self.config.log.origin, &self.log_key.verifying_key())
    }

    /// Appends the group's leaves to the log (one sync), then queues its state for the state
    /// store ([`Group::commit_to`]). `Err` means nothing of the group was acknowledged.
    fn commit(&mut self, group: Group) -> Result<(), Blocked> {
        let size = group.size();
        let (result, cache) = group.commit_to(&mut self.log, &self.state);
        self.cache = cache;
        match result {
            Err(e) => {
                tracing::error!(error = %e, "the log could not append a group; none of it was acknowledged");
                Err(match e {
                    LogError::StorageFull { .. } => Blocked::Full {
                        free: fs2::available_space(&self.data.0).unwrap_or(0),
                        reserve: self.min_free_bytes,
                    },
                    e => Blocked::Append(e.to_string()),
                })
            }
            Ok(()) => {
                self.size = size;
                Ok(())
            }
        }
    }

    /// Sets the free space the writer keeps on the data volume (0 turns the check off). The
    /// log then grows its segment by at most a quarter of it at a time, so that one growth step
    /// after the check cannot use up the reserve.
    pub fn set_min_free_bytes(&mut self, bytes: u64) {
        self.min_free_bytes = bytes;
        self.log.limit_growth((bytes > 0).then_some(bytes / 4));
    }

    /// Whether a write may start: writing the state behind the log has not failed (sled keeps
    /// a failed batch in memory and refuses every later write; the groups it did not take stay
    /// readable in memory and are replayed from the log on the next open), and the volume has
    /// more free space than the reserve. Checked once per group (one `statvfs`); `Err` holds
    /// the refusal.
    fn writable(&self) -> Result<(), Blocked> {
        if let Some(why) = self.state.failed() {
            return Err(Blocked::Failed(why));
        }
        if self.min_free_bytes == 0 {
            return Ok(());
        }
        match fs2::available_space(&self.data.0) {
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
        if let Err(blocked) = self.commit(group) {
            self.last_ts = last_ts;
            return Err((0, blocked.into()));
        }
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
        let total = items.len();
        let mut results: Vec<Result<Receipt, LedgerError>> = Vec::with_capacity(total);
        let mut items = items.into_iter();
        // One log record per group, cut where one more leaf might not fit a record: a batch
        // of large leaves becomes several groups rather than one the log refuses.
        let full = MAX_GROUP_BYTES - (2 + MAX_LEAF_LEN);
        loop {
            let (start, last_ts, first) = (self.size, self.last_ts, results.len());
            let store = self.store.clone();
            let mut group = Group::new(&store, self.size, std::mem::take(&mut self.cache));
            for item in items.by_ref() {
                results.push(item.and_then(|env| self.sequence_one(&mut group, &env)));
                if group.record_bytes() > full {
                    break;
                }
            }
            if let Err(blocked) = self.commit(group) {
                // Nothing of the group is durable: every receipt of it is withdrawn, and what
                // was still to come is refused for the same reason.
                self.last_ts = last_ts;
                for r in results[first..].iter_mut() {
                    if matches!(r, Ok(rc) if rc.index >= start) {
                        *r = Err(blocked.clone().into());
                    }
                }
                results.extend(items.map(|item| item.and_then(|_| Err(blocked.clone().into()))));
                return results;
            }
            if results.len() == total {
                return results;
            }
        }
    }

    fn sequence_one(&mut self, group: &mut Group, env: &Envelope) -> Result<Receipt, LedgerError> {
        let payload = Payload::parse(env.kind(), env.payload()).map_err(EngineError::from)?;
        let signers: Vec<String> = env.signers().map(str::to_owned).collect();
        let now = self.clock.now_ms().max(self.last_ts);
        let index = group.size();
        // An entry already in the log is always refused by the engine (its nonce is used), so
        // only a refusal is looked up as a resubmission: an accepted entry reads its nonces
        // once, in the engine.
        let (effects, writes) =
            match engine::apply(&*group, &self.config.log, &payload, &signers, now, index) {
                Ok(applied) => applied,
                Err(refused) => {
                    return match self.resubmission(group, env, &payload)? {
                        Some(receipt) => Ok(receipt),
                        None => Err(refused.into()),
                    }
                }
            };
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
        group.push(bytes, writes)?;
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
    /// It goes into the state store's list (flushed), then into the log's `checkpoint` file
    /// (written whole and renamed into place); a file that could not be written is written
    /// at the next call.
    pub fn checkpoint(&mut self) -> Result<Option<String>, LedgerError> {
        let (size, note, signed) = match self.store.latest_checkpoint()? {
            Some((size, note)) if size == self.size => (size, note, false),
            _ if self.size == 0 => return Ok(None),
            _ => {
                let cp = Checkpoint {
                    origin: self.config.log.origin.clone(),
                    size: self.size,
                    root: self.log.root(),
                };
                let note = checkpoint::sign_checkpoint(&cp, &self.log_key)?;
                self.store.put_checkpoint(self.size, &note)?;
                (self.size, note, true)
            }
        };
        if size != self.log_checkpoint {
            self.log.write_checkpoint(note.as_bytes())?;
            self.log_checkpoint = size;
        }
        Ok(signed.then_some(note))
    }

    /// Adds witness cosignature lines (`— name base64`, as witnesses answer) to the checkpoint
    /// listed at `size`, replacing an earlier line by a witness of the same name, and rewrites
    /// the log's `checkpoint` file if that is the checkpoint it holds. The lines are checked by
    /// whoever gathered them ([`crate::witness::client::cosign`]); the note must still open
    /// under the log key and stay within [`checkpoint::MAX_NOTE_SIGNATURES`]. Returns whether
    /// the note changed.
    pub fn add_cosignatures(&mut self, size: u64, lines: &str) -> Result<bool, LedgerError> {
        let Some(note) = self.store.checkpoint(size)? else {
            return Ok(false);
        };
        let origin_line = format!("— {} ", self.config.log.origin);
        let mut merged = note.clone();
        for line in lines.lines().filter(|l| l.starts_with("— ")) {
            let Some((signer, _)) = line.rsplit_once(' ') else {
                continue;
            };
            let signer = format!("{signer} ");
            if signer == origin_line {
                continue;
            }
            let kept: String = merged
                .split_inclusive('\n')
                .filter(|l| !l.starts_with(&signer))
                .collect();
            merged = format!("{kept}{line}\n");
        }
        if merged == note {
            return Ok(false);
        }
        let cp = checkpoint::open_checkpoint(&merged, &self.verifier_key())?;
        if cp.size != size {
            return Err(LedgerError::Internal(format!(
                "the checkpoint listed at size {size} signs size {}",
                cp.size
            )));
        }
        self.store.put_checkpoint(size, &merged)?;
        if size == self.log_checkpoint {
            self.log.write_checkpoint(merged.as_bytes())?;
        }
        Ok(true)
    }

    /// Replays every leaf into fresh derived state, checking each leaf's effects.
    ///
    /// Returns the state digest before and after: equal digests show the state was reproduced
    /// exactly. `progress` is called with the number of leaves replayed so far.
    pub fn rebuild(&mut self, progress: &dyn Fn(u64)) -> Result<(Hash, Hash), LedgerError> {
        let before = self.store.state_digest()?;
        // The digest waited for every queued group, so the replay below starts on a quiet store.
        self.store.clear_derived()?;
        self.cache = WriterCache::default();
        self.replay(0, progress)?;
        self.store.finish_rebuild()?;
        Ok((before, self.store.state_digest()?))
    }

    fn replay(&mut self, from: u64, progress: &dyn Fn(u64)) -> Result<(), LedgerError> {
        replay(
            &self.store,
            &self.config.log,
            &mut self.cache,
            from..self.size,
            progress,
        )
    }
}

/// Replays the log's leaves `range` into `store`'s state (which must reflect the log up to
/// `range.start`, with nothing queued behind the log), in groups of 1024 each written as one
/// batch, then flushes: every leaf is checked by [`checked_leaf`] and [`replay_leaf`], the
/// checks the auditor makes of a mirrored log too. The one replay behind [`Ledger::open`],
/// `rebuild` and the auditor's mirror; `progress` is called with the size reached after each
/// group.
pub fn replay(
    store: &Store,
    log: &LogConfig,
    cache: &mut WriterCache,
    range: std::ops::Range<u64>,
    progress: &dyn Fn(u64),
) -> Result<(), LedgerError> {
    const CHUNK: u64 = 1024;
    let mut next = range.start;
    // The time of the leaf before the range, which the first one must not precede.
    let mut last_ts = match next {
        0 => 0,
        _ if range.is_empty() => 0,
        n => {
            let bytes = store
                .leaf(n - 1)?
                .ok_or_else(|| LedgerError::Internal(format!("leaf {} is missing", n - 1)))?;
            Leaf::decode(n - 1, &bytes)?.timestamp_ms
        }
    };
    while next < range.end {
        let end = (next + CHUNK).min(range.end);
        let leaves = store.leaves(next, end)?;
        let mut group = Group::new(store, next, std::mem::take(cache));
        for item in checked_leaves(next, &leaves) {
            let replayed = item.and_then(|(leaf, env)| {
                let (_, writes) = replay_leaf(&group, log, &leaf, &env, last_ts)?;
                last_ts = leaf.timestamp_ms;
                Ok(writes)
            });
            let pushed = replayed
                .map_err(LedgerError::from)
                .and_then(|writes| Ok(group.push_replayed(writes)?));
            if let Err(e) = pushed {
                *cache = group.into_cache();
                return Err(e);
            }
        }
        let (result, returned) = group.commit();
        *cache = returned;
        result?;
        next = end;
        progress(next);
    }
    store.flush()?;
    Ok(())
}

/// Leaves `first..` checked by [`checked_leaf`], in parallel on every core (the signature
/// checks are most of a replay's work), in order.
pub fn checked_leaves(
    first: u64,
    leaves: &[Vec<u8>],
) -> Vec<Result<(Leaf, Envelope), ReplayFault>> {
    use rayon::prelude::*;
    leaves
        .par_iter()
        .enumerate()
        .map(|(offset, bytes)| checked_leaf(first + offset as u64, bytes))
        .collect()
}

/// Leaf `index` decoded, naming its own index, with its envelope's signatures verified.
pub fn checked_leaf(index: u64, bytes: &[u8]) -> Result<(Leaf, Envelope), ReplayFault> {
    let leaf = Leaf::decode(index, bytes)
        .map_err(|e| ReplayFault::new(index, "leaf bytes", "a leaf", e))?;
    if leaf.index != index {
        return Err(ReplayFault::new(
            index,
            "leaf index (an entry missing or out of place)",
            index,
            leaf.index,
        ));
    }
    let env = leaf
        .envelope()
        .and_then(|env| Ok(env.verify().map(|()| env)?))
        .map_err(|e| ReplayFault::new(index, "envelope signatures", "valid", e))?;
    Ok((leaf, env))
}

/// Replays one checked leaf over `group` (the state before it), the leaf before it stamped
/// `last_ts`: its time must not go backwards, the rules must accept it, and the engine must
/// compute exactly the effects it records. Returns those effects and the state's writes, for
/// the caller to push onto the group.
pub fn replay_leaf(
    group: &Group,
    log: &LogConfig,
    leaf: &Leaf,
    env: &Envelope,
    last_ts: u64,
) -> Result<(Effects, engine::Writes), ReplayFault> {
    let index = leaf.index;
    if leaf.timestamp_ms < last_ts {
        return Err(ReplayFault::new(
            index,
            "timestamps never go backwards",
            format!("at least {last_ts}"),
            leaf.timestamp_ms,
        ));
    }
    let (effects, writes) = Payload::parse(env.kind(), env.payload())
        .map_err(EngineError::from)
        .and_then(|payload| {
            let signers: Vec<String> = env.signers().map(str::to_owned).collect();
            engine::apply(group, log, &payload, &signers, leaf.timestamp_ms, index)
        })
        .map_err(|e| {
            ReplayFault::new(
                index,
                "the rules accept the entry",
                "accepted",
                format!("refused: {e}"),
            )
        })?;
    if effects != leaf.effects {
        return Err(ReplayFault::new(
            index,
            "effects (replayed by the points engine)",
            serde_json::to_string(&effects).unwrap_or_default(),
            serde_json::to_string(&leaf.effects).unwrap_or_default(),
        ));
    }
    Ok((effects, writes))
}

impl Drop for Ledger {
    /// Writes what is queued into the state store and flushes it, so that the next open has
    /// nothing to replay (nothing is lost if this fails or never runs: the log holds every
    /// entry).
    fn drop(&mut self) {
        self.state.close();
        let _ = self.store.flush();
    }
}
