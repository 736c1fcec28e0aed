//! The witness's memory: for each log it trusts, the latest checkpoint it cosigned, one file per
//! log under `DIR/logs/`, named by the SHA-256 of the origin in lower-case hex (the name the
//! monitoring API uses).
//!
//! Each file is the cosigned checkpoint itself (the log's signature and the witness's), replaced
//! atomically and durably (temporary file, fsync, rename, directory fsync) before a cosignature
//! is returned. On start every file is opened with its log's key: a file that does not verify
//! stops the witness rather than letting it forget what it cosigned, since forgetting would let
//! a log roll back.

use super::WitnessError;
use crate::checkpoint::{self, Checkpoint};
use crate::merkle::{self, Hash};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// What the witness holds of one log.
#[derive(Debug, Clone)]
pub(crate) struct Latest {
    /// Size of the latest cosigned checkpoint (0 before the first).
    pub size: u64,
    /// Its root (the empty tree's before the first).
    pub root: Hash,
    /// The cosigned note, as the monitoring API serves it; `None` before the first.
    pub note: Option<String>,
}

/// One trusted log: its verifier key and what the witness has cosigned of it.
struct Log {
    verifier_key: String,
    latest: Latest,
}

/// The logs the witness trusts and its record of each.
pub(crate) struct Logs {
    dir: PathBuf,
    by_origin: HashMap<String, Log>,
}

/// The file name of a log's record: the SHA-256 of its origin, lower-case hex.
pub(crate) fn origin_hash(origin: &str) -> String {
    hex::encode(Sha256::digest(origin.as_bytes()))
}

impl Logs {
    /// Opens the records under `dir/logs` for the logs of `verifier_keys`, creating the folder.
    pub(crate) fn open(dir: &Path, verifier_keys: &[String]) -> Result<Logs, WitnessError> {
        let dir = dir.join("logs");
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| WitnessError::Io("creating the records folder", e))?;
        let mut by_origin = HashMap::new();
        for vkey in verifier_keys {
            let (origin, _) = checkpoint::parse_verifier_key(vkey)
                .map_err(|e| WitnessError::Config(format!("--log-key {vkey}: {e}")))?;
            let latest = read_record(&dir, &origin, vkey)?;
            let log = Log {
                verifier_key: vkey.clone(),
                latest,
            };
            if by_origin.insert(origin.clone(), log).is_some() {
                return Err(WitnessError::Config(format!(
                    "--log-key is given twice for the log {origin}"
                )));
            }
        }
        Ok(Logs { dir, by_origin })
    }

    /// The verifier key of the log named `origin`, if trusted.
    pub(crate) fn verifier_key(&self, origin: &str) -> Option<&str> {
        self.by_origin.get(origin).map(|l| l.verifier_key.as_str())
    }

    /// What is recorded of `origin`, if trusted.
    pub(crate) fn latest(&self, origin: &str) -> Option<&Latest> {
        self.by_origin.get(origin).map(|l| &l.latest)
    }

    /// The cosigned note of the log whose origin hashes to `hash`.
    pub(crate) fn note_by_hash(&self, hash: &str) -> Option<&str> {
        self.by_origin
            .iter()
            .find(|(origin, _)| origin_hash(origin) == hash)
            .and_then(|(_, l)| l.latest.note.as_deref())
    }

    /// Records `note` (already cosigned) as the latest of `cp.origin`, durably, then in memory.
    pub(crate) fn record(&mut self, cp: &Checkpoint, note: String) -> Result<(), WitnessError> {
        let log = self
            .by_origin
            .get_mut(&cp.origin)
            .ok_or_else(|| WitnessError::Config(format!("{} is not a trusted log", cp.origin)))?;
        write_atomic(&self.dir, &origin_hash(&cp.origin), note.as_bytes())?;
        log.latest = Latest {
            size: cp.size,
            root: cp.root,
            note: Some(note),
        };
        Ok(())
    }
}

/// Reads and checks the record of `origin`, or the empty tree if it has none.
fn read_record(dir: &Path, origin: &str, vkey: &str) -> Result<Latest, WitnessError> {
    let path = dir.join(origin_hash(origin));
    let text = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Latest {
                size: 0,
                root: merkle::empty_root(),
                note: None,
            })
        }
        Err(e) => return Err(WitnessError::Io("reading a log's record", e)),
    };
    let bad = |why: String| WitnessError::Record {
        origin: origin.to_owned(),
        why,
    };
    let text = String::from_utf8(text).map_err(|_| bad("not UTF-8".into()))?;
    let cp = checkpoint::open_checkpoint(&text, vkey).map_err(|e| bad(e.to_string()))?;
    Ok(Latest {
        size: cp.size,
        root: cp.root,
        note: Some(text),
    })
}

/// Replaces `dir/name` with `bytes` atomically and durably.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), WitnessError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let io = |what| move |e| WitnessError::Io(what, e);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("writing a log's record"))?;
    f.write_all(bytes).map_err(io("writing a log's record"))?;
    f.sync_all().map_err(io("syncing a log's record"))?;
    drop(f);
    fs::rename(&tmp, dir.join(name)).map_err(io("replacing a log's record"))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing the records folder"))
}
