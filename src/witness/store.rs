//! The witness's memory: for each log it trusts, the latest checkpoint it cosigned, one file per
//! log under `DIR/logs/`, named by the SHA-256 of the origin in lower-case hex (the name the
//! monitoring API uses).
//!
//! Each file is the cosigned checkpoint itself (the log's signature and the witness's), replaced
//! atomically and durably (temporary file, fsync, rename, directory fsync) before a cosignature
//! is returned. On start every file is opened with its log's key: a file that does not verify
//! stops the witness rather than letting it forget what it cosigned, since forgetting would let
//! a log roll back. The files go through the log's file-system seam ([`LogFs`]), so the power-cut
//! simulator checks this record as it checks the log.

use super::WitnessError;
use crate::checkpoint::{self, Checkpoint};
use crate::log::io::{self as fsio, LogFs, StdFs};
use crate::merkle::{self, Hash};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The largest record read back: a note of at most 16 signature lines is far below it.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

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
    fs: Arc<dyn LogFs>,
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
        Logs::open_on(Arc::new(StdFs), dir, verifier_keys)
    }

    /// [`Logs::open`] on the file system `fs`, the records in `dir` (which exists).
    fn open_on(
        fs: Arc<dyn LogFs>,
        dir: PathBuf,
        verifier_keys: &[String],
    ) -> Result<Logs, WitnessError> {
        let mut by_origin = HashMap::new();
        for vkey in verifier_keys {
            let (origin, _) = checkpoint::parse_verifier_key(vkey)
                .map_err(|e| WitnessError::Config(format!("--log-key {vkey}: {e}")))?;
            let latest = read_record(&*fs, &dir, &origin, vkey)?;
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
        Ok(Logs { fs, dir, by_origin })
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
        let name = origin_hash(&cp.origin);
        fsio::replace_file(
            &*self.fs,
            &self.dir,
            &format!("{name}.tmp"),
            &name,
            note.as_bytes(),
        )
        .map_err(|e| WitnessError::Io("replacing a log's record", e))?;
        log.latest = Latest {
            size: cp.size,
            root: cp.root,
            note: Some(note),
        };
        Ok(())
    }
}

/// Reads and checks the record of `origin`, or the empty tree if it has none.
fn read_record(
    fs: &dyn LogFs,
    dir: &Path,
    origin: &str,
    vkey: &str,
) -> Result<Latest, WitnessError> {
    let path = dir.join(origin_hash(origin));
    let text = match fsio::read_file(fs, &path, MAX_RECORD_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::sim::PowerCutFs;
    use rand::{Rng, SeedableRng};

    /// A record written through the power-cut simulator, the power cut at a random call of
    /// the next write: after the reboot the witness reads back the checkpoint it last
    /// acknowledged or, if the cut came after the rename was synced, the one it was writing,
    /// never a torn file or an older one. 200 cuts.
    #[test]
    fn a_record_survives_a_power_cut_at_any_point_of_its_replacement() {
        let key = crate::keys::generate();
        let origin = "power.witness.test";
        let vkey = checkpoint::verifier_key(origin, &key.verifying_key());
        let note = |size: u64| {
            let cp = Checkpoint {
                origin: origin.into(),
                size,
                root: [size as u8; 32],
            };
            (
                cp.clone(),
                checkpoint::sign_checkpoint(&cp, &key).expect("sign"),
            )
        };
        let dir = PathBuf::from("/w/logs");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..200u64 {
            let fs = PowerCutFs::new();
            let open = |fs: &PowerCutFs| {
                Logs::open_on(
                    Arc::new(fs.clone()),
                    dir.clone(),
                    std::slice::from_ref(&vkey),
                )
                .expect("open")
            };
            let mut logs = open(&fs);
            let (cp, n) = note(round + 1);
            logs.record(&cp, n).expect("the first record, no cut armed");
            fs.cut_after(rng.gen_range(0..6));
            let (next, n) = note(round + 2);
            let acknowledged = logs.record(&next, n).is_ok();
            fs.reboot(&mut rng);
            let held = open(&fs).latest(origin).expect("trusted").size;
            if acknowledged {
                assert_eq!(
                    held,
                    round + 2,
                    "round {round}: an acknowledged record was lost"
                );
            } else {
                assert!(
                    held == round + 1 || held == round + 2,
                    "round {round}: holds {held}"
                );
            }
        }
    }
}
