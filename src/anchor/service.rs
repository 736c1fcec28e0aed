//! The anchorer as a background task of `serve`: connects, checks the contract, then steps
//! the state machine each interval, backing off while the chain cannot be reached.

use super::chain::{Chain, ChainError, ChainSettings};
use super::state::{AnchorPolicy, AnchorStatus, AnchorStore, Anchorer};
use ethers::types::{Address, U256};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Shortest wait after a failure; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between attempts while the chain is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often a transaction in flight is looked at (capped by the interval).
const POLL: Duration = Duration::from_secs(1);
/// Longest one step (a handful of RPC calls) may take; a node that accepts connections but
/// never answers must not stall the anchorer for good.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// `f` bounded by [`STEP_TIMEOUT`].
async fn bounded<T, E: From<ChainError>>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| {
            Err(ChainError::Rpc {
                url: "the chain".into(),
                reason: format!("no answer within {STEP_TIMEOUT:?}"),
            }
            .into())
        })
}

/// Anchoring settings of `serve`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorSettings {
    /// Chain, key and gas price ceiling.
    pub chain: ChainSettings,
    /// The `LedgerAnchor` contract.
    pub contract: Address,
    /// Blocks on top of the anchoring block before an anchor is final (1 = its own block).
    pub confirmations: u64,
    /// How often the newest checkpoint is anchored if the chain is behind it.
    pub interval: Duration,
    /// How long a transaction may wait unmined before it is sent again with more gas.
    pub resend_after: Duration,
    /// How often the anchors called final are read back from the chain (and once at start).
    pub recheck_interval: Duration,
}

impl AnchorSettings {
    /// The state machine's policy.
    pub fn policy(&self) -> AnchorPolicy {
        AnchorPolicy {
            confirmations: self.confirmations.max(1),
            resend_after: self.resend_after,
            gas_price_ceiling: U256::from(self.chain.gas_price_ceiling_gwei) * U256::exp10(9),
        }
    }
}

/// What the running anchorer last saw, for `GET /v1/anchors` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnchorHealth {
    /// The chain's latest block at the last successful step.
    pub head: Option<u64>,
    /// The last failure, cleared by the next successful step (RPC URLs redacted).
    pub last_error: Option<String>,
    /// Failed steps since start.
    pub failures: u64,
    /// Anchors called final that the chain was found no longer to hold (a reorg deeper than
    /// the confirmation depth, a reset chain) since start; each is anchored again.
    pub lost: u64,
}

/// Shared view of [`AnchorHealth`].
#[derive(Debug, Default)]
pub struct AnchorBoard(Mutex<AnchorHealth>);

impl AnchorBoard {
    /// A copy of the current health.
    pub fn get(&self) -> AnchorHealth {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut AnchorHealth)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn failed(&self, e: &dyn std::fmt::Display) {
        self.update(|h| {
            h.failures += 1;
            h.last_error = Some(e.to_string());
        });
    }
}

/// Doubling waits between failed attempts, from 1 s to 60 s (the witness gatherer's too).
#[derive(Debug, Default)]
pub(crate) struct Backoff(Option<Duration>);

impl Backoff {
    pub(crate) fn next(&mut self) -> Duration {
        let d = self.0.map_or(MIN_BACKOFF, |d| (d * 2).min(MAX_BACKOFF));
        self.0 = Some(d);
        d
    }

    pub(crate) fn reset(&mut self) {
        self.0 = None;
    }
}

/// Sleeps for `d` unless `stop` turns true first; returns whether to stop.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let stopped = tokio::select! {
        _ = stop.wait_for(|s| *s) => true,
        () = tokio::time::sleep(d) => false,
    };
    stopped || *stop.borrow()
}

/// Connects to the chain (retrying with backoff) and binds the store's anchor records to the
/// contract; `None` if stopped first.
async fn connect(
    settings: &AnchorSettings,
    store: &AnchorStore,
    board: &AnchorBoard,
    stop: &mut watch::Receiver<bool>,
) -> Option<Chain> {
    let mut backoff = Backoff(None);
    loop {
        let attempt = async {
            let chain = Chain::connect(&settings.chain, settings.contract).await?;
            chain.check().await?;
            let contract = format!("{:#x}", settings.contract);
            let dropped = store
                .bind_target(settings.chain.chain_id, &contract)
                .map_err(|e| ChainError::Contract(format!("saving the anchor target: {e}")))?;
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    %contract,
                    "anchor records of another contract dropped; anchoring to this one"
                );
            }
            Ok::<_, ChainError>(chain)
        };
        match bounded(attempt).await {
            Ok(chain) => {
                tracing::info!(
                    contract = %format!("{:#x}", settings.contract),
                    operator = %format!("{:#x}", chain.operator()),
                    chain_id = settings.chain.chain_id,
                    "anchoring"
                );
                return Some(chain);
            }
            Err(e) => {
                let wait = backoff.next();
                tracing::warn!(error = %e, retry_in = ?wait, "anchorer cannot start");
                board.failed(&e);
                if pause(stop, wait).await {
                    return None;
                }
            }
        }
    }
}

/// Runs the anchorer until `stop` turns true: anchors the newest checkpoint each interval,
/// follows the transaction in flight every second, re-reads the final anchors from the chain at
/// start and every recheck interval ([`Anchorer::recheck_final`]), and backs off (1 s doubling
/// to 60 s) while the chain fails. Every state change is in the store first, so a restart picks up where
/// this left off.
pub async fn run(
    settings: AnchorSettings,
    store: AnchorStore,
    verifier_key: String,
    board: Arc<AnchorBoard>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(chain) = connect(&settings, &store, &board, &mut stop).await else {
        return;
    };
    let anchorer = Anchorer {
        chain,
        store,
        verifier_key,
        policy: settings.policy(),
    };
    let mut backoff = Backoff(None);
    let mut last: Option<(u64, AnchorStatus, u32)> = None;
    // Due at once: a restart re-reads what was final before it.
    let mut recheck_at = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= recheck_at {
            match bounded(anchorer.recheck_final()).await {
                Ok(lost) => {
                    for size in &lost {
                        tracing::warn!(
                            tree_size = size,
                            "an anchor called final is no longer on the chain; anchoring again"
                        );
                    }
                    board.update(|h| h.lost += lost.len() as u64);
                    recheck_at = tokio::time::Instant::now() + settings.recheck_interval;
                }
                Err(e) => {
                    let wait = backoff.next();
                    tracing::warn!(error = %e, retry_in = ?wait, "re-reading final anchors failed");
                    board.failed(&e);
                    if pause(&mut stop, wait).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let wait = match bounded(anchorer.step()).await {
            Ok(rec) => {
                backoff.reset();
                let head = anchorer.chain.head().await.ok();
                board.update(|h| {
                    h.last_error = None;
                    h.head = head.or(h.head);
                });
                match rec {
                    Some(rec) => {
                        let now = (rec.tree_size, rec.status, rec.sends);
                        if last != Some(now) {
                            tracing::info!(
                                tree_size = rec.tree_size,
                                status = ?rec.status,
                                sends = rec.sends,
                                tx = rec.tx_hash.as_deref().unwrap_or("-"),
                                block = rec.block_number,
                                "anchor"
                            );
                            last = Some(now);
                        }
                        match rec.status {
                            // Look for anything newer right away.
                            AnchorStatus::Final => Duration::ZERO,
                            _ => POLL.min(settings.interval),
                        }
                    }
                    None => settings.interval,
                }
            }
            Err(e) => {
                let wait = backoff.next();
                tracing::warn!(error = %e, retry_in = ?wait, "anchoring step failed");
                board.failed(&e);
                wait
            }
        };
        if pause(&mut stop, wait).await {
            return;
        }
    }
}
