//! The write pipeline as two threads: signature checks, then one sequencer with group commit.
//!
//! ```text
//! submit() ──► verifier thread ──────────────► sequencer thread ──► reply after the sync
//!              drains what is queued (a group)   engine over the state, the leaves appended
//!              verifies it in parallel (strict)  to the log (one fdatasync), then the state
//!                                                written behind; checkpoints each interval
//! ```
//!
//! The two stages overlap: while the sequencer commits group k, the verifier checks group k+1.
//! Producers wait on a oneshot reply that is sent only once the group holding their entry is
//! durable. The sequencer thread owns the [`Ledger`], so nothing else appends while it runs
//! (the anchorer writes only its own records); when every [`SequencerHandle`] is
//! dropped, both threads drain, a final checkpoint is cut, and [`Sequencer::join`] hands the
//! ledger back.
//!
//! - `verify`: the first stage, groups and their signature checks.
//! - `write`: the second, sequencing and commit, witness cosignatures and checkpoints.

mod verify;
mod write;

use crate::dsse::Envelope;
use crate::ledger::{Ledger, LedgerError, Receipt};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Tuning of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct SequencerOptions {
    /// Most envelopes in one group (one log record, one `fdatasync`).
    pub max_group: usize,
    /// How often a checkpoint is cut if the tree grew.
    pub checkpoint_interval: Duration,
}

impl Default for SequencerOptions {
    fn default() -> Self {
        SequencerOptions {
            max_group: 4096,
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

type Reply = oneshot::Sender<Vec<Result<Receipt, LedgerError>>>;

struct Job {
    envelopes: Vec<Envelope>,
    reply: Reply,
}

struct Verified {
    items: Vec<Result<Envelope, LedgerError>>,
    replies: Vec<(usize, Reply)>,
}

/// Counters the sequencer keeps about its work, for metrics.
#[derive(Debug, Default)]
pub struct SequencerStats {
    /// Groups committed (one log record and one `fdatasync` each).
    pub groups: AtomicU64,
    /// Entries appended (identical resubmissions and refusals excluded).
    pub entries: AtomicU64,
    /// Total time spent sequencing and committing groups, in microseconds.
    pub commit_micros: AtomicU64,
}

/// A cloneable handle to submit envelopes.
#[derive(Clone)]
pub struct SequencerHandle {
    tx: mpsc::Sender<Job>,
    stats: Arc<SequencerStats>,
}

/// Why a submission got no result.
#[derive(Debug, thiserror::Error)]
#[error("the sequencer has stopped")]
pub struct Stopped;

impl SequencerHandle {
    /// The sequencer's counters.
    pub fn stats(&self) -> Arc<SequencerStats> {
        self.stats.clone()
    }

    /// Submits one envelope and waits until it is durable (or refused).
    pub async fn submit(
        &self,
        envelope: Envelope,
    ) -> Result<Result<Receipt, LedgerError>, Stopped> {
        let mut results = self.submit_many(vec![envelope]).await?;
        results.pop().ok_or(Stopped)
    }

    /// Submits envelopes together; one result each, in order.
    pub async fn submit_many(
        &self,
        envelopes: Vec<Envelope>,
    ) -> Result<Vec<Result<Receipt, LedgerError>>, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { envelopes, reply })
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}

/// Witness cosignature lines for the checkpoint of a size, for the sequencer to add to it.
pub type Cosignatures = (u64, String);

/// The running pipeline.
pub struct Sequencer {
    verifier: JoinHandle<()>,
    writer: JoinHandle<Result<Ledger, LedgerError>>,
    cosignatures: std_mpsc::Sender<Cosignatures>,
}

impl Sequencer {
    /// Starts both threads around `ledger`.
    pub fn spawn(ledger: Ledger, options: SequencerOptions) -> (Sequencer, SequencerHandle) {
        let (tx, rx) = mpsc::channel::<Job>(options.max_group.max(1));
        let (vtx, vrx) = std_mpsc::sync_channel::<Verified>(2);
        let (ctx, crx) = std_mpsc::channel::<Cosignatures>();
        let stats = Arc::new(SequencerStats::default());
        let writer_stats = stats.clone();
        let verifier = std::thread::Builder::new()
            .name("verifier".into())
            .spawn(move || verify::verify_loop(rx, vtx, options.max_group))
            .expect("spawning the verifier thread");
        let writer = std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || {
                write::write_loop(ledger, vrx, crx, options.checkpoint_interval, &writer_stats)
            })
            .expect("spawning the sequencer thread");
        (
            Sequencer {
                verifier,
                writer,
                cosignatures: ctx,
            },
            SequencerHandle { tx, stats },
        )
    }

    /// Where witness cosignatures go: the sequencer thread adds them to their checkpoint
    /// ([`Ledger::add_cosignatures`]) between groups, at least once a checkpoint interval. A
    /// sender does not keep the sequencer running.
    pub fn cosignatures(&self) -> std_mpsc::Sender<Cosignatures> {
        self.cosignatures.clone()
    }

    /// Waits for both threads to finish (after every handle is dropped) and returns the ledger.
    pub fn join(self) -> Result<Ledger, LedgerError> {
        let _ = self.verifier.join();
        self.writer.join().unwrap_or_else(|_| {
            Err(LedgerError::Internal(
                "the sequencer thread panicked".into(),
            ))
        })
    }
}
