//! The log asks its witnesses: every new checkpoint is sent to each witness configured with
//! `--witness NAME+KEYID+KEY@URL` (c2sp.org/tlog-witness `add-checkpoint`, with a consistency
//! proof from the size the witness last cosigned); each cosignature that verifies under the
//! witness's key is handed to the sequencer, which adds it to the checkpoint, so
//! `/checkpoint`, `/v1/checkpoint`, `/v1/checkpoints` and receipts carry it.
//!
//! A witness that is down or refuses is retried with a doubling wait (1 s to 60 s) and counted;
//! a 409 is followed once with a proof from the size the witness names. The checkpoint is
//! served before it is witnessed: the cosignatures arrive within a round trip and a checkpoint
//! interval, and `pointsledger_witnessed_size` says which checkpoint has a quorum.

use crate::anchor::service::Backoff;
use crate::merkle;
use crate::sequencer::Cosignatures;
use crate::state::Store;
use crate::witness::client;
use crate::witness::cosignature::{self, CosignerKey};
use std::str::FromStr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often the gatherer looks for a new checkpoint.
const POLL: Duration = Duration::from_millis(200);

/// A witness the log asks: its key and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessTarget {
    /// The witness's cosigner key.
    pub key: CosignerKey,
    /// Its submission prefix (`http://host:port`).
    pub url: String,
}

impl FromStr for WitnessTarget {
    type Err = String;

    /// `NAME+KEYID+KEY@URL`: a `cosignature/v1` key (as `pointsledger witness --print-key`
    /// prints it) and the witness's `http://` or `https://` URL.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| format!("witness {s:?}: {why}; want NAME+KEYID+KEY@URL");
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("no key"));
        };
        let (key, url) = rest.split_once('@').ok_or_else(|| bad("no @URL"))?;
        let key =
            CosignerKey::parse(&format!("{name}+{id}+{key}")).map_err(|e| bad(&e.to_string()))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048 {
            return Err(bad("the URL must start with http:// or https://"));
        }
        Ok(WitnessTarget {
            key,
            url: url.trim_end_matches('/').to_owned(),
        })
    }
}

/// What the gatherer knows of one witness, for `/metrics` and `/v1/log`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WitnessHealth {
    /// The witness's name.
    pub name: String,
    /// The largest checkpoint it cosigned for this log (0 before the first).
    pub cosigned_size: u64,
    /// Cosignatures gathered since start.
    pub cosignatures: u64,
    /// Failed requests since start (unreachable, refused, or an answer that did not verify).
    pub failures: u64,
    /// The last failure, if the last request failed.
    pub last_error: Option<String>,
}

/// Shared view of every witness's health, and the size that has a quorum.
#[derive(Debug, Default)]
pub struct WitnessBoard {
    inner: Mutex<(Vec<WitnessHealth>, u64)>,
    /// Cosignatures the served checkpoint must carry to count as witnessed.
    pub quorum: usize,
}

impl WitnessBoard {
    /// A board for `targets`, of which `quorum` must cosign.
    pub fn new(targets: &[WitnessTarget], quorum: usize) -> WitnessBoard {
        let each = targets
            .iter()
            .map(|t| WitnessHealth {
                name: t.key.name.clone(),
                ..WitnessHealth::default()
            })
            .collect();
        WitnessBoard {
            inner: Mutex::new((each, 0)),
            quorum,
        }
    }

    /// A copy of each witness's health and the largest checkpoint size with a quorum.
    pub fn get(&self) -> (Vec<WitnessHealth>, u64) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut (Vec<WitnessHealth>, u64))) {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// One witness as the gatherer tracks it.
struct Tracked {
    target: WitnessTarget,
    /// The size the witness is believed to hold (a 409 corrects it).
    old: u64,
    /// The largest checkpoint it cosigned for this log, as far as the gatherer knows.
    cosigned: u64,
    backoff: Backoff,
    next_try: Instant,
}

/// Runs until `stop`: sends each new checkpoint to every witness and hands what they cosign to
/// the sequencer through `out`.
pub(crate) async fn run(
    targets: Vec<WitnessTarget>,
    store: Store,
    board: Arc<WitnessBoard>,
    out: mpsc::Sender<Cosignatures>,
    mut stop: watch::Receiver<bool>,
) {
    let http = match reqwest::Client::builder()
        .timeout(client::REQUEST_TIMEOUT)
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "witnesses: no HTTP client; not witnessing");
            return;
        }
    };
    let now = Instant::now();
    let mut tracked: Vec<Tracked> = targets
        .into_iter()
        .map(|target| Tracked {
            target,
            old: 0,
            cosigned: 0,
            backoff: Backoff::default(),
            next_try: now,
        })
        .collect();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(POLL) => {}
        }
        let latest = match store.latest_checkpoint() {
            Ok(Some(latest)) => latest,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "witnesses: reading the latest checkpoint failed");
                continue;
            }
        };
        round(&http, &mut tracked, latest, &store, &board, &out).await;
    }
}

/// Asks every witness that has not cosigned `note` (and whose wait is over) to cosign it.
async fn round(
    http: &reqwest::Client,
    tracked: &mut [Tracked],
    (size, note): (u64, String),
    store: &Store,
    board: &WitnessBoard,
    out: &mpsc::Sender<Cosignatures>,
) {
    for (i, t) in tracked.iter_mut().enumerate() {
        // Cosignatures already on the note (gathered before a restart) are not asked again.
        if t.cosigned < size
            && cosignature::check_quorum(&note, std::slice::from_ref(&t.target.key), 1).is_ok()
        {
            (t.cosigned, t.old) = (size, size);
            board.update(|b| b.0[i].cosigned_size = size);
        }
    }
    let witnessed = tracked.iter().filter(|t| t.cosigned >= size).count();
    if witnessed >= board.quorum {
        board.update(|b| b.1 = b.1.max(size));
    }
    let now = Instant::now();
    let due: Vec<usize> = (0..tracked.len())
        .filter(|&i| tracked[i].cosigned < size && tracked[i].next_try <= now)
        .collect();
    if due.is_empty() {
        return;
    }
    let prove = |from: u64| merkle::prove_consistency(from, size, store).map_err(|e| e.to_string());
    let asks = due.iter().map(|&i| {
        let t = &tracked[i];
        client::cosign(http, &t.target.url, &t.target.key, &note, t.old, prove)
    });
    let answers = futures::future::join_all(asks).await;
    let mut lines = String::new();
    for (&i, answer) in due.iter().zip(answers) {
        let t = &mut tracked[i];
        match answer {
            Ok(line) => {
                lines.push_str(&line);
                (t.old, t.cosigned) = (size, size);
                t.backoff.reset();
                board.update(|b| {
                    let h = &mut b.0[i];
                    h.cosigned_size = size;
                    h.cosignatures += 1;
                    h.last_error = None;
                });
            }
            Err(e) => {
                let wait = t.backoff.next();
                t.next_try = Instant::now() + wait;
                tracing::warn!(witness = %t.target.key.name, error = %e, retry_in = ?wait, "witness did not cosign");
                board.update(|b| {
                    let h = &mut b.0[i];
                    h.failures += 1;
                    h.last_error = Some(e.to_string());
                });
            }
        }
    }
    if !lines.is_empty() && out.send((size, lines)).is_err() {
        tracing::warn!("witnesses: the sequencer has stopped; cosignatures dropped");
    }
}
