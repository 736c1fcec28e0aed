//! `pointsledger migrate`: moves a data directory of the earlier layout, where sled's `DIR/db`
//! held the leaves and tree hashes beside the state, into the current one: the log in `DIR/log`
//! ([`crate::log`]) and the state in `DIR/state` ([`crate::state`]).
//!
//! Steps, each safe to repeat, so that a migration cut short by a crash resumes where it
//! stopped when it is run again:
//!
//! 1. copy the leaves into a new log in `DIR/log.migrating`, in groups of 1024, and check its
//!    root against the last signed checkpoint; then rename it to `DIR/log`;
//! 2. remove the leaves and hashes from sled and mark its state for a full replay;
//! 3. rename `DIR/db` to `DIR/state`;
//! 4. open the ledger, which replays every leaf (signatures, effects) into fresh state; the
//!    state digest before and after shows whether the old state was reproduced exactly.
//!
//! Until step 3 [`Ledger::open`] refuses the directory, naming this command, so a ledger in the
//! earlier layout never starts empty.

use crate::checkpoint;
use crate::clock::SystemClock;
use crate::ledger::{DataDir, Ledger, LedgerError};
use crate::log::LogWriter;
use crate::merkle::Hash;
use crate::state::{self, legacy, StoredConfig};
use std::path::Path;
use std::sync::Arc;

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Whether anything was moved (`false`: the directory was already in the current layout).
    pub moved: bool,
    /// Entries in the log.
    pub entries: u64,
    /// The state digest of the old store, before the migration (`None` when a migration cut
    /// short had already stripped it).
    pub digest_before: Option<Hash>,
    /// The state digest replayed from the new log.
    pub digest_after: Hash,
}

/// Migrates `dir`; `progress` is told `(what, done, total)` as leaves are copied and replayed.
/// A directory already in the current layout is left as it is (`moved: false`).
pub fn migrate(dir: &Path, progress: &dyn Fn(&str, u64, u64)) -> Result<Migration, LedgerError> {
    let data = DataDir(dir.to_owned());
    let old = data.legacy_db();
    if !old.exists() {
        let ledger = Ledger::open(dir, Arc::new(SystemClock))?;
        let digest = ledger.store().state_digest()?;
        return Ok(Migration {
            moved: false,
            entries: ledger.size(),
            digest_before: Some(digest),
            digest_after: digest,
        });
    }
    let db = state::open_db(&old)?;
    let config: StoredConfig = legacy::config(&db)?
        .ok_or_else(|| LedgerError::NotInitialized(dir.display().to_string()))?;
    let log_key = crate::keys::read_key_file(&data.log_key())?;
    let verifier = checkpoint::verifier_key(&config.log.origin, &log_key.verifying_key());
    let latest = legacy::latest_checkpoint(&db)?;
    let mut digest_before = None;
    if let Some(size) = legacy::size(&db)? {
        digest_before = Some(legacy::state_digest(&db)?);
        if !data.log().exists() {
            copy_leaves(&db, dir, size, progress)?;
        }
        let log = LogWriter::open(&data.log())?;
        if log.size() != size {
            return Err(LedgerError::SelfCheck(format!(
                "{} holds {} entries but the old store {size}; remove {} and migrate again",
                data.log().display(),
                log.size(),
                data.log().display()
            )));
        }
        if let Some((_, note)) = &latest {
            let cp = checkpoint::open_checkpoint(note, &verifier)?;
            log.verify_against(cp.size, &cp.root)
                .map_err(|e| LedgerError::SelfCheck(format!("the migrated log: {e}")))?;
        }
        log.close()?;
        legacy::strip(&db)?;
    }
    drop(db);
    rename(&old, &data.state())?;
    sync_dir(dir)?;
    let total = {
        let log = LogWriter::open(&data.log())?;
        let size = log.size();
        log.close()?;
        size
    };
    let ledger = Ledger::open_with_progress(dir, Arc::new(SystemClock), &|n| {
        progress("replaying", n, total)
    })?;
    Ok(Migration {
        moved: true,
        entries: ledger.size(),
        digest_before,
        digest_after: ledger.store().state_digest()?,
    })
}

/// Step 1: the leaves into `DIR/log.migrating`, then renamed to `DIR/log`.
fn copy_leaves(
    db: &sled::Db,
    dir: &Path,
    size: u64,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<(), LedgerError> {
    let data = DataDir(dir.to_owned());
    let tmp = dir.join("log.migrating");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .map_err(|e| LedgerError::Io(format!("removing {}: {e}", tmp.display())))?;
    }
    let mut log = LogWriter::open(&tmp)?;
    let mut next = 0;
    while next < size {
        let end = (next + 1024).min(size);
        log.append(&legacy::leaves(db, next, end)?)?;
        next = end;
        progress("copying", next, size);
    }
    log.close()?;
    rename(&tmp, &data.log())?;
    sync_dir(dir)
}

fn rename(from: &Path, to: &Path) -> Result<(), LedgerError> {
    std::fs::rename(from, to).map_err(|e| {
        LedgerError::Io(format!(
            "renaming {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })
}

fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LedgerError::Io(format!("syncing {}: {e}", dir.display())))
}
