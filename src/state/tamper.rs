//! Deliberate damage to a closed ledger's state store, for the tests that show the auditor and
//! the ledger's self-check catching an operator with disk access (a forged checkpoint list, a
//! balance that is not the log's). Nothing in the service calls these; they live in the library
//! so that integration tests need not know the store's keys. Each but the last opens the store in
//! `dir` (a data directory's `state`), makes its change and flushes.

use super::{lots_prefix, num_key, open_db, Store, StoreError, StoredConfig, META_CONFIG};
use std::path::Path;

/// The log's configuration as the store holds it.
pub fn config(dir: &Path) -> Result<StoredConfig, StoreError> {
    let db = open_db(dir)?;
    super::get_json(&db, META_CONFIG)?.ok_or_else(|| StoreError::Corrupt {
        key: "mconfig".into(),
        reason: "no configuration".into(),
    })
}

/// The sizes of the checkpoints the store lists, ascending.
pub fn checkpoint_sizes(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let db = open_db(dir)?;
    db.scan_prefix([b'C'])
        .map(|kv| super::decode_u64(b"C", &kv?.0[1..]))
        .collect()
}

/// Lists `note` as the checkpoint of `size`, in place of any note listed there, unchecked.
pub fn put_checkpoint(dir: &Path, size: u64, note: &str) -> Result<(), StoreError> {
    let db = open_db(dir)?;
    db.insert(num_key(b'C', size), note.as_bytes())?;
    db.flush()?;
    Ok(())
}

/// Removes the checkpoint listed at `size`.
pub fn remove_checkpoint(dir: &Path, size: u64) -> Result<(), StoreError> {
    let db = open_db(dir)?;
    db.remove(num_key(b'C', size))?;
    db.flush()?;
    Ok(())
}

/// Removes the first lot (in drawing order) of `account` from the derived state, as if the
/// store had lost it; whether there was one.
pub fn remove_first_lot(dir: &Path, account: &str) -> Result<bool, StoreError> {
    let db = open_db(dir)?;
    let Some(kv) = db.scan_prefix(lots_prefix(account)).next() else {
        return Ok(false);
    };
    db.remove(kv?.0)?;
    db.flush()?;
    Ok(true)
}

/// Makes the next batch the state writer of `store` takes fail, as a sled write error would:
/// the failure the ledger must survive without losing an acknowledged entry or its reads.
pub fn fail_next_state_write(store: &Store) {
    store
        .pending
        .fail_next
        .store(true, std::sync::atomic::Ordering::SeqCst);
}
