//! Deliberate damage to a closed log, for the tests that show the auditor and the ledger's
//! self-check catching it (an operator with disk access rewriting history). Nothing in the
//! service calls these; they live in the library only so that integration tests need not
//! know the file formats.

use super::store::{OFFSETS, SEGMENT};
use super::{LogError, LogWriter};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

fn io(op: &'static str) -> impl Fn(std::io::Error) -> LogError {
    move |source| LogError::Io { op, source }
}

/// Where leaf `index`'s length prefix lies in the segment, and its length.
fn offset(dir: &Path, index: u64) -> Result<(u64, usize), LogError> {
    let f = std::fs::File::open(dir.join(OFFSETS)).map_err(io("opening offsets"))?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, 8 * index)
        .map_err(io("reading offsets"))?;
    let v = u64::from_be_bytes(b);
    Ok((v >> 16, (v & 0xffff) as usize))
}

/// Overwrites leaf `index` in place with `bytes` of the same length, leaving the tree hashes
/// as they are: the log then serves a leaf its tree does not hold.
pub fn replace_leaf(dir: &Path, index: u64, bytes: &[u8]) -> Result<(), LogError> {
    let (at, len) = offset(dir, index)?;
    if len != bytes.len() {
        return Err(LogError::Corrupt(format!(
            "leaf {index} is {len} bytes; the replacement must be as long"
        )));
    }
    let seg = OpenOptions::new()
        .write(true)
        .open(dir.join(SEGMENT))
        .map_err(io("opening the segment"))?;
    seg.write_all_at(bytes, at + 2)
        .map_err(io("writing the segment"))?;
    seg.sync_data().map_err(io("syncing the segment"))
}

/// Makes the log serve leaf `n + 1` at every index `n` from `from` on (the last leaf twice), as
/// if entry `from` had been cut out, while the tree stays as it was.
pub fn drop_leaf(dir: &Path, from: u64, size: u64) -> Result<(), LogError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(OFFSETS))
        .map_err(io("opening offsets"))?;
    for n in from..size.saturating_sub(1) {
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, 8 * (n + 1))
            .map_err(io("reading offsets"))?;
        f.write_all_at(&b, 8 * n).map_err(io("writing offsets"))?;
    }
    f.sync_data().map_err(io("syncing offsets"))
}

/// Replaces the log in `dir` with a new one holding `leaves`: a history rewritten
/// consistently, its tree recomputed (signing checkpoints over it is the forger's next step).
pub fn rewrite(dir: &Path, leaves: &[Vec<u8>]) -> Result<(), LogError> {
    std::fs::remove_dir_all(dir).map_err(io("removing the log"))?;
    let mut log = LogWriter::open(dir)?;
    for chunk in leaves.chunks(1024) {
        log.append(chunk)?;
    }
    log.close()
}
