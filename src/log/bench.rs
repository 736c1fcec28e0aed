//! A benchmark of the log alone: appends of fixed-size leaves in fixed-size groups on the real
//! file system, with the figures the storage targets are stated in.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::io::{CountingFs, StdFs};
use super::{LogError, LogOptions, LogWriter};
use crate::merkle::{leaf_hash, prove_inclusion, verify_inclusion};

/// What [`bench_append`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendFigures {
    /// Entries appended.
    pub entries: u64,
    /// Leaves per group.
    pub group: usize,
    /// Bytes per leaf.
    pub leaf_len: usize,
    /// Wall time of the appends.
    pub seconds: f64,
    /// Durable entries per second.
    pub entries_per_s: f64,
    /// Durable groups per second.
    pub groups_per_s: f64,
    /// File and directory syncs per second during the appends.
    pub syncs_per_s: f64,
    /// Syncs per group (1 plus the amortized preallocation and watermark syncs).
    pub syncs_per_group: f64,
    /// Bytes the directory takes on disk (allocated blocks) per entry.
    pub disk_bytes_per_entry: f64,
    /// Time to reopen the log after the run (clean close).
    pub reopen_seconds: f64,
    /// Entries per second open re-derives when the watermark is behind, as after a crash:
    /// measured by putting back the new log's first watermark and reopening, so open replays
    /// the whole segment. A crash re-derives at most `LogOptions::flush_entries` entries.
    pub replay_entries_per_s: f64,
    /// Median of reading one leaf and building and checking its inclusion proof at the final
    /// size, in microseconds, over 1,000 random leaves.
    pub proof_p50_us: f64,
    /// 99th percentile of the same.
    pub proof_p99_us: f64,
}

/// Appends `entries` leaves of `leaf_len` bytes in groups of `group` to a new log in `dir`
/// (which must not hold one), then reopens it and times inclusion proofs.
pub fn bench_append(
    dir: &Path,
    entries: u64,
    group: usize,
    leaf_len: usize,
) -> Result<AppendFigures, LogError> {
    let group = group.max(1);
    let fs = Arc::new(CountingFs::new(StdFs));
    let mut w = LogWriter::open_with(fs.clone(), dir, LogOptions::default())?;
    if w.size() != 0 {
        return Err(LogError::Corrupt(
            "the benchmark needs an empty directory".into(),
        ));
    }
    let mut rng = StdRng::seed_from_u64(7);
    // JSON-like printable bytes, different per leaf, so nothing compresses or dedups.
    let base: Vec<u8> = (0..leaf_len).map(|_| rng.gen_range(b' '..=b'~')).collect();
    let first_watermark = std::fs::read(dir.join("watermark")).map_err(|source| LogError::Io {
        op: "reading the watermark",
        source,
    })?;
    let syncs_before = fs.syncs();
    let start = Instant::now();
    let mut done = 0u64;
    while done < entries {
        let n = (entries - done).min(group as u64) as usize;
        let leaves: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut l = base.clone();
                let tag = (done + i as u64).to_be_bytes();
                let k = l.len().min(8);
                l[..k].copy_from_slice(&tag[8 - k..]);
                l
            })
            .collect();
        w.append(&leaves)?;
        done += n as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    let syncs = fs.syncs() - syncs_before;
    let groups = entries.div_ceil(group as u64);
    w.close()?;
    let disk = dir_disk_bytes(dir).map_err(|source| LogError::Io {
        op: "measuring the log directory",
        source,
    })?;
    let t = Instant::now();
    let w = LogWriter::open(dir)?;
    let reopen_seconds = t.elapsed().as_secs_f64();
    drop(w);
    std::fs::write(dir.join("watermark"), &first_watermark).map_err(|source| LogError::Io {
        op: "writing the watermark",
        source,
    })?;
    let t = Instant::now();
    let w = LogWriter::open(dir)?;
    let replay_seconds = t.elapsed().as_secs_f64();
    if w.recovery().replayed_entries != entries {
        return Err(LogError::Corrupt(format!(
            "replayed {} entries, expected {entries}",
            w.recovery().replayed_entries
        )));
    }
    let r = w.reader();
    let size = r.size();
    let root = r.root_at(size)?;
    let mut times: Vec<Duration> = Vec::with_capacity(1000);
    for _ in 0..1000u64.min(size) {
        let i = rng.gen_range(0..size);
        let t = Instant::now();
        let leaf = r.leaf(i)?;
        let proof = prove_inclusion(size, i, &r)?;
        verify_inclusion(i, size, &leaf_hash(&leaf), &proof, &root)?;
        times.push(t.elapsed());
    }
    times.sort();
    let pct = |p: usize| {
        times
            .get(times.len().saturating_sub(1) * p / 100)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    Ok(AppendFigures {
        entries,
        group,
        leaf_len,
        seconds,
        entries_per_s: entries as f64 / seconds,
        groups_per_s: groups as f64 / seconds,
        syncs_per_s: syncs as f64 / seconds,
        syncs_per_group: syncs as f64 / groups.max(1) as f64,
        disk_bytes_per_entry: disk as f64 / entries.max(1) as f64,
        reopen_seconds,
        replay_entries_per_s: entries as f64 / replay_seconds,
        proof_p50_us: pct(50),
        proof_p99_us: pct(99),
    })
}

/// Allocated bytes of the files directly in `dir` (what `du` counts).
fn dir_disk_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let m = e?.metadata()?;
        if m.is_file() {
            total += m.blocks() * 512;
        }
    }
    Ok(total)
}
