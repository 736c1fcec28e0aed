//! The second stage: the one thread that owns the ledger. It sequences each verified group and
//! commits it (log first, synced; then the state queued behind it), replies once the group is
//! durable, adds witness cosignatures between groups and cuts a checkpoint each interval.

use super::{Cosignatures, SequencerStats, Verified};
use crate::ledger::{Ledger, LedgerError};
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

pub(super) fn write_loop(
    mut ledger: Ledger,
    rx: std_mpsc::Receiver<Verified>,
    cosignatures: std_mpsc::Receiver<Cosignatures>,
    interval: Duration,
    stats: &SequencerStats,
) -> Result<Ledger, LedgerError> {
    let mut next_checkpoint = Instant::now() + interval;
    loop {
        let wait = next_checkpoint.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(group) => {
                let (before, started) = (ledger.size(), Instant::now());
                let mut results = ledger.sequence(group.items).into_iter();
                if ledger.size() > before {
                    stats.groups.fetch_add(1, Ordering::Relaxed);
                    stats
                        .entries
                        .fetch_add(ledger.size() - before, Ordering::Relaxed);
                }
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                stats.commit_micros.fetch_add(micros, Ordering::Relaxed);
                for (n, reply) in group.replies {
                    let _ = reply.send(results.by_ref().take(n).collect());
                }
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        }
        while let Ok((size, lines)) = cosignatures.try_recv() {
            if let Err(e) = ledger.add_cosignatures(size, &lines) {
                tracing::error!(error = %e, size, "adding witness cosignatures failed");
            }
        }
        if Instant::now() >= next_checkpoint {
            if let Err(e) = ledger.checkpoint() {
                tracing::error!(error = %e, "cutting a checkpoint failed");
            }
            next_checkpoint = Instant::now() + interval;
        }
    }
    ledger.checkpoint()?;
    Ok(ledger)
}
