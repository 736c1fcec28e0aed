//! A transparency-log witness: `pointsledger witness` serves c2sp.org/tlog-witness for the logs
//! it is told to trust, and returns a c2sp.org/tlog-cosignature (Ed25519 `cosignature/v1`) on
//! every checkpoint consistent with the last one it cosigned for that log.
//!
//! A witness is what makes a split view visible: a log that showed one tree to some and another
//! tree to others would need every witness to cosign both, and no witness cosigns a checkpoint
//! that is not an extension of the last it cosigned.
//!
//! - [`cosignature`]: cosigner keys, cosigning, and checking a quorum of cosignatures.
//! - `add`: the `add-checkpoint` request and its checks, one refusal per status code.
//! - `store`: the latest cosigned checkpoint of each log, on disk.
//! - [`client`]: the log's side of the protocol.
//!
//! The HTTP API:
//! - `POST /add-checkpoint`: `old N`, the consistency proof lines, an empty line, the signed
//!   checkpoint. 200 with the cosignature line; 400 malformed or `old` past the size; 403 no
//!   valid signature by the log's key; 404 unknown log; 409 `text/x.tlog.size` with the size
//!   the witness last cosigned; 422 a proof that does not verify, a size-0 checkpoint without
//!   the empty root, the same size under another root, or a proof from size 0.
//! - `GET /<hex SHA-256 of the origin>/checkpoint`: the latest cosigned checkpoint (404 before
//!   the first).
//! - `GET /healthz`.

pub mod add;
pub mod client;
pub mod cosignature;
mod store;

use crate::keys;
use crate::server::edge::{self, BodyRule, Edge};
use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use cosignature::Cosigner;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::Logs;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::timeout::TimeoutLayer;

/// The witness's key file under its directory.
pub const KEY_FILE: &str = "witness.key";

/// Requests handled at once; the rest wait (inside the request timeout).
const MAX_CONCURRENCY: usize = 64;

/// Longest a request may take, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the witness could not start or record a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// A flag is wrong.
    #[error("{0}")]
    Config(String),
    /// A log's record on disk does not verify under the log's key.
    #[error("the record of log {origin} does not verify ({why}); it is kept as it is and the witness does not start")]
    Record {
        /// The log.
        origin: String,
        /// What failed.
        why: String,
    },
    /// The disk failed.
    #[error("{0}: {1}")]
    Io(&'static str, #[source] std::io::Error),
}

/// `pointsledger witness`.
#[derive(clap::Args, Debug, Clone)]
pub struct WitnessArgs {
    /// The witness's directory: its key (`witness.key`, 0600, made on first start) and its record
    /// of each log (`logs/`).
    #[arg(long)]
    pub dir: PathBuf,
    /// The witness's name, by convention a schema-less URL (`witness.example.com/w1`).
    #[arg(long)]
    pub name: String,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: String,
    /// A log to witness, by its verifier key (`origin+keyid+key`, as `pointsledger init`
    /// prints). Repeatable.
    #[arg(long = "log-key")]
    pub log_keys: Vec<String>,
    /// Print the witness key (`name+keyid+key`) and exit, making the key first if needed.
    #[arg(long)]
    pub print_key: bool,
}

/// Loads the witness key from `dir`, making it (0600, in a 0700 folder) on first use.
fn load_cosigner(dir: &Path, name: &str) -> anyhow::Result<Cosigner> {
    let path = dir.join(KEY_FILE);
    if !path.exists() {
        keys::write_key_file(&path, &keys::generate()).context("making the witness key")?;
    }
    let key = keys::read_key_file(&path).context("reading the witness key")?;
    Ok(Cosigner::new(name, key)?)
}

/// Refusals logged per second at most: anyone can send a request that is refused, and the log
/// must not grow at their pace.
const REFUSALS_LOGGED_PER_SECOND: u64 = 10;

/// What every handler shares.
#[derive(Clone)]
struct Witness {
    cosigner: Arc<Cosigner>,
    logs: Arc<Mutex<Logs>>,
    /// Refusals in the current second, and those left unlogged since the last logged one.
    refusals: Arc<Mutex<RefusalCount>>,
}

/// A count of refusals per second, so that at most [`REFUSALS_LOGGED_PER_SECOND`] are logged.
#[derive(Debug, Default)]
struct RefusalCount {
    second: u64,
    in_second: u64,
    unlogged: u64,
}

impl RefusalCount {
    /// Whether the refusal just made may be logged, and how many before it were not.
    fn take(&mut self, now: u64) -> Option<u64> {
        if now != self.second {
            (self.second, self.in_second) = (now, 0);
        }
        self.in_second += 1;
        if self.in_second > REFUSALS_LOGGED_PER_SECOND {
            self.unlogged += 1;
            return None;
        }
        Some(std::mem::take(&mut self.unlogged))
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

async fn add_checkpoint(State(w): State<Witness>, body: Bytes) -> Response {
    let refusals = w.refusals.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut logs = w.logs.lock().unwrap_or_else(|e| e.into_inner());
        add::add_checkpoint(&mut logs, &w.cosigner, &body, now_secs())
    })
    .await;
    use add::Refusal::*;
    match outcome {
        Ok(Ok((line, cp))) => {
            tracing::info!(origin = %cp.origin, size = cp.size, "cosigned");
            text(StatusCode::OK, TEXT_PLAIN, line)
        }
        Ok(Err(Conflict(size))) => text(
            StatusCode::CONFLICT,
            "text/x.tlog.size",
            format!("{size}\n"),
        ),
        Ok(Err(refusal)) => {
            let status = match &refusal {
                BadRequest(_) => StatusCode::BAD_REQUEST,
                Forbidden(_) => StatusCode::FORBIDDEN,
                UnknownLog(_) => StatusCode::NOT_FOUND,
                Conflict(_) => StatusCode::CONFLICT,
                Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
                Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if status.is_server_error() {
                tracing::error!(error = %refusal, "a checkpoint could not be recorded");
            } else if let Some(unlogged) = refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(now_secs())
            {
                tracing::warn!(status = status.as_u16(), error = %refusal, unlogged, "checkpoint refused");
            }
            text(status, TEXT_PLAIN, format!("{refusal}\n"))
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT_PLAIN,
            format!("the witness failed: {e}\n"),
        ),
    }
}

/// `GET /<origin hash>/checkpoint`: the latest cosigned note. The lock is taken off the
/// runtime's workers, since `add-checkpoint` holds it through its fsync.
async fn latest(State(w): State<Witness>, UrlPath(hash): UrlPath<String>) -> Response {
    let note = tokio::task::spawn_blocking(move || {
        let logs = w.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.note_by_hash(&hash).map(str::to_owned)
    })
    .await;
    match note {
        Ok(Some(note)) => text(StatusCode::OK, TEXT_PLAIN, note),
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            TEXT_PLAIN,
            "no checkpoint cosigned for this log\n".into(),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT_PLAIN,
            format!("the witness failed: {e}\n"),
        ),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

fn router(w: Witness) -> Router {
    let slots = edge::Slots(Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENCY)));
    let body = middleware::from_fn_with_state(
        BodyRule {
            limit: add::MAX_BODY_BYTES,
            timeout: REQUEST_TIMEOUT,
        },
        edge::read_body,
    );
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint).layer(body))
        .route("/{origin_hash}/checkpoint", get(latest))
        .route("/healthz", get(healthz))
        .layer(middleware::from_fn_with_state(slots, edge::take_slot))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(w)
}

/// Serves the witness on `listener` until `shutdown` completes.
async fn serve(
    w: Witness,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let limit = edge::descriptor_limit().unwrap_or(1024);
    let edge = Edge {
        max_connections: edge::connections_for(limit),
        max_connections_per_ip: 256,
        idle_timeout: Duration::from_secs(30),
        header_timeout: Duration::from_secs(10),
    };
    edge::serve(listener, router(w), edge, stop).await
}

/// Runs `pointsledger witness` until SIGTERM or Ctrl-C. Prints `witness KEY` and then
/// `listening on http://ADDR` on stdout.
pub fn run(args: WitnessArgs) -> anyhow::Result<()> {
    let cosigner = load_cosigner(&args.dir, &args.name)?;
    let vkey = cosigner.public().vkey();
    if args.print_key {
        println!("{vkey}");
        return Ok(());
    }
    if args.log_keys.is_empty() {
        anyhow::bail!("give at least one --log-key: the witness cosigns only logs it trusts");
    }
    let logs = Logs::open(&args.dir, &args.log_keys)?;
    crate::server::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = crate::server::shutdown_signal().context("installing signal handlers")?;
        let listener = edge::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "witness {vkey}")?;
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
        drop(out);
        tracing::info!(logs = args.log_keys.len(), "witness started");
        let w = Witness {
            cosigner: Arc::new(cosigner),
            logs: Arc::new(Mutex::new(logs)),
            refusals: Arc::default(),
        };
        serve(w, listener, shutdown).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_at_most_so_many_a_second_and_the_rest_counted() {
        let mut count = RefusalCount::default();
        for _ in 0..REFUSALS_LOGGED_PER_SECOND {
            assert_eq!(count.take(100), Some(0));
        }
        assert_eq!(count.take(100), None);
        assert_eq!(count.take(100), None);
        assert_eq!(
            count.take(101),
            Some(2),
            "the next second says how many were left out"
        );
        assert_eq!(count.take(101), Some(0));
    }
}
