//! The log asks its witnesses: every new checkpoint is sent to each witness configured with
//! `--witness NAME+KEYID+KEY@URL` (c2sp.org/tlog-witness `add-checkpoint`, with a consistency
//! proof from the size the witness last cosigned); each cosignature that verifies under the
//! witness's key is handed to the sequencer, which adds it to the checkpoint, so
//! `/checkpoint`, `/v1/checkpoint`, `/v1/checkpoints` and receipts carry it.
//!
//! Each witness is asked by a task of its own. One that is down or refuses is retried with a
//! doubling wait (1 s to 60 s) and counted; a 409 is followed once with a proof from the size
//! the witness names. The checkpoint is served before it is witnessed: the cosignatures arrive
//! within a round trip and a checkpoint interval, and `pointsledger_witnessed_size` says how
//! far a quorum of witnesses has come.

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
        // The URL is shown in `/v1/log` and the explorer beside the witness's last error, so
        // it may carry nothing secret.
        if url.contains(['@', '?', '#']) {
            return Err(bad(
                "the URL may not carry credentials (user:password@), a query or a fragment: \
                 it is shown publicly in /v1/log",
            ));
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

/// Shared view of every witness's health.
#[derive(Debug, Default)]
pub struct WitnessBoard {
    each: Mutex<Vec<WitnessHealth>>,
    /// Witnesses that must have cosigned for a size to count as witnessed.
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
            each: Mutex::new(each),
            quorum,
        }
    }

    /// A copy of each witness's health, and the witnessed size: the largest size that at least
    /// `quorum` witnesses have cosigned a checkpoint of, or of a larger size that they checked
    /// consistent with it (0 before any).
    pub fn get(&self) -> (Vec<WitnessHealth>, u64) {
        let each = self.each.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut sizes: Vec<u64> = each.iter().map(|h| h.cosigned_size).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let witnessed = match self.quorum {
            0 => sizes.first().copied().unwrap_or(0),
            q => sizes.get(q - 1).copied().unwrap_or(0),
        };
        (each, witnessed)
    }

    fn update(&self, i: usize, f: impl FnOnce(&mut WitnessHealth)) {
        if let Some(h) = self
            .each
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(i)
        {
            f(h);
        }
    }
}

/// Runs until `stop`: one task per witness, each sending every new checkpoint to its witness
/// and handing what it cosigns to the sequencer through `out`. The witnesses are asked
/// independently, so one that hangs delays no other.
pub(crate) async fn run(
    targets: Vec<WitnessTarget>,
    store: Store,
    board: Arc<WitnessBoard>,
    out: mpsc::Sender<Cosignatures>,
    stop: watch::Receiver<bool>,
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
    let asks = targets
        .into_iter()
        .enumerate()
        .map(|(i, target)| ask(i, target, &http, &store, &board, out.clone(), stop.clone()));
    futures::future::join_all(asks).await;
}

/// One witness: every [`POLL`], if the latest checkpoint is newer than what it cosigned, asks
/// it (after the wait of its last failure).
async fn ask(
    i: usize,
    target: WitnessTarget,
    http: &reqwest::Client,
    store: &Store,
    board: &WitnessBoard,
    out: mpsc::Sender<Cosignatures>,
    mut stop: watch::Receiver<bool>,
) {
    // The size the witness is believed to hold (a 409 corrects it), and the largest
    // checkpoint it is known to have cosigned for this log.
    let (mut old, mut cosigned) = (0u64, 0u64);
    let mut backoff = Backoff::default();
    let mut wait = POLL;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = POLL;
        let (size, note) = match store.latest_checkpoint() {
            Ok(Some(latest)) => latest,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "witnesses: reading the latest checkpoint failed");
                continue;
            }
        };
        if cosigned >= size {
            continue;
        }
        // A cosignature already on the note (gathered before a restart) is not asked again.
        if cosignature::check_quorum(&note, std::slice::from_ref(&target.key), 1).is_ok() {
            (old, cosigned) = (size, size);
            board.update(i, |h| h.cosigned_size = size);
            continue;
        }
        let prove =
            |from: u64| merkle::prove_consistency(from, size, store).map_err(|e| e.to_string());
        match client::cosign(http, &target.url, &target.key, &note, old, prove).await {
            Ok(line) => {
                (old, cosigned) = (size, size);
                backoff.reset();
                board.update(i, |h| {
                    h.cosigned_size = size;
                    h.cosignatures += 1;
                    h.last_error = None;
                });
                if out.send((size, line)).is_err() {
                    tracing::warn!("witnesses: the sequencer has stopped; a cosignature dropped");
                }
            }
            Err(e) => {
                wait = backoff.next();
                tracing::warn!(witness = %target.key.name, error = %e, retry_in = ?wait, "witness did not cosign");
                board.update(i, |h| {
                    h.failures += 1;
                    h.last_error = Some(e.to_string());
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::witness::cosignature::Cosigner;

    #[test]
    fn the_witnessed_size_is_the_quorums_smallest() {
        let targets: Vec<WitnessTarget> = ["w.test/a", "w.test/b", "w.test/c"]
            .iter()
            .map(|name| {
                let key = Cosigner::new(name, crate::keys::generate())
                    .expect("cosigner")
                    .public();
                format!("{}@http://127.0.0.1:1", key.vkey())
                    .parse()
                    .expect("target")
            })
            .collect();
        for (quorum, want) in [(0, 10), (1, 10), (2, 7), (3, 0)] {
            let board = WitnessBoard::new(&targets, quorum);
            board.update(0, |h| h.cosigned_size = 7);
            board.update(1, |h| h.cosigned_size = 10);
            assert_eq!(board.get().1, want, "quorum {quorum}");
        }
    }

    #[test]
    fn witness_targets_are_parsed_strictly() {
        let key = Cosigner::new("w.test/a", crate::keys::generate())
            .expect("cosigner")
            .public()
            .vkey();
        let t: WitnessTarget = format!("{key}@https://w.example/").parse().expect("ok");
        assert_eq!(t.url, "https://w.example");
        for bad in [
            key.clone(),
            format!("{key}@ftp://w.example"),
            format!("{key}x@http://w.example"),
            "w.test/a@http://w.example".to_string(),
            format!("{key}@http://user:secret@w.example"),
            format!("{key}@http://w.example/?token=secret"),
            format!("{key}@http://w.example/#x"),
        ] {
            assert!(bad.parse::<WitnessTarget>().is_err(), "{bad}");
        }
    }
}
