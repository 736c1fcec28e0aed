//! What every handler shares: the store the reads go to, the writer the writes go to, the
//! service's settings, counters and per-address rate limit, and the log's identity.

use super::config::Settings;
use super::edge::RateLimiter;
use super::error::ServerError;
use super::metrics::Metrics;
use super::witnesses::WitnessBoard;
use crate::anchor::AnchorBoard;
use crate::clock::Clock;
use crate::dsse::Envelope;
use crate::ledger::{LedgerError, Receipt};
use crate::sequencer::{SequencerHandle, SequencerStats};
use crate::state::Store;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The log's fixed identity, served by `GET /v1/log`.
#[derive(Debug, Clone)]
pub(super) struct LogIdentity {
    pub(super) origin: String,
    pub(super) verifier_key: String,
    pub(super) operator_key: String,
}

/// What the background tasks publish for `/metrics`, `/healthz` and `/v1/log`: each is there
/// when its task runs.
pub(super) struct Boards {
    pub(super) anchor: Option<Arc<AnchorBoard>>,
    pub(super) witness: Option<Arc<WitnessBoard>>,
}

/// What every handler shares; reached through [`AppState`].
pub(super) struct Inner {
    pub(super) store: Store,
    /// The writer; taken out at shutdown so that lingering connections cannot keep the
    /// sequencer alive.
    writer: Mutex<Option<SequencerHandle>>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) settings: Settings,
    pub(super) log: LogIdentity,
    pub(super) metrics: Metrics,
    /// The sequencer's own counters (groups committed, time spent committing).
    pub(super) sequencer: Arc<SequencerStats>,
    /// What the running anchorer last saw, if anchoring is on.
    pub(super) anchor_board: Option<Arc<AnchorBoard>>,
    /// What the witness gatherer last saw, if witnesses are configured.
    pub(super) witness_board: Option<Arc<WitnessBoard>>,
    /// The per-address limit on writes no merchant or operator signs.
    pub(super) rate: RateLimiter,
}

/// Cheap-to-clone handle on [`Inner`], the state of every route.
#[derive(Clone)]
pub(super) struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub(super) fn new(
        store: Store,
        writer: SequencerHandle,
        clock: Arc<dyn Clock>,
        settings: Settings,
        log: LogIdentity,
        start_size: u64,
        boards: Boards,
    ) -> AppState {
        AppState(Arc::new(Inner {
            store,
            sequencer: writer.stats(),
            writer: Mutex::new(Some(writer)),
            clock,
            rate: RateLimiter::new(
                settings.consumer_writes_per_minute,
                settings.consumer_write_burst,
            ),
            settings,
            log,
            metrics: Metrics::new(start_size),
            anchor_board: boards.anchor,
            witness_board: boards.witness,
        }))
    }

    /// Drops the state's writer handle; submissions after this get 503.
    pub(super) fn close_writer(&self) {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn writer(&self) -> Result<SequencerHandle, ServerError> {
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| ServerError::Unavailable("the service is shutting down".into()))
    }

    /// Hands envelopes to the sequencer and waits until they are durable or refused.
    pub(super) async fn submit(
        &self,
        envelopes: Vec<Envelope>,
    ) -> Result<Vec<Result<Receipt, LedgerError>>, ServerError> {
        let writer = self.writer()?;
        let started = Instant::now();
        let results = writer.submit_many(envelopes).await.map_err(|_| {
            ServerError::Unavailable("the writer has stopped; the store cannot take writes".into())
        })?;
        self.metrics.observe_commit(started.elapsed());
        Ok(results)
    }

    /// Runs a read against the store on the blocking pool, so that it never stalls the async
    /// workers.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T, ServerError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, ServerError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ServerError::Unavailable(format!("the read failed: {e}")))?
    }
}
