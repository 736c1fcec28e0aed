//! The HTTP service: `pointsledger serve`.
//!
//! [`serve`] runs the API on a bound listener around a [`Ledger`]: writes go through one
//! [`Sequencer`] (verify, sequence, group commit, periodic checkpoints), reads go to a clone of
//! the store and never wait for the writer. With a contract configured, the anchorer runs
//! beside them as a task ([`crate::anchor::service`]). When the shutdown future completes the listener
//! stops accepting, in-flight requests finish (bounded by the request timeout), the sequencer
//! drains its open group, a final checkpoint is signed and the store is flushed; the ledger is
//! handed back. [`run`] is the command: settings, logging, signals (SIGTERM, Ctrl-C) and the
//! `listening on http://ADDR` line on stdout.
//!
//! Logs go to stderr, filtered by `RUST_LOG` (default `info`; `tower_http=debug` adds one line
//! per request). They name methods, paths, statuses and errors, never bodies, headers or keys.
//!
//! - [`config`]: flags, environment variables and the TOML file, and [`ConfigError`].
//! - `state`: what every handler shares (the store, the writer, settings, counters).
//! - `routes`: the API's handlers and the layers around them (limits, timeouts, metrics).
//! - `edge`: the accept loop, connection caps and timeouts, body reading, the per-address rate
//!   limit.
//! - [`error`]: [`ServerError`] and the status and code of every refusal.
//! - `tiles`: the C2SP tlog-tiles read API (`/checkpoint`, `/tile/...`).
//! - `explorer`: the web explorer at `/`, its files embedded in the binary.
//! - the JSON shapes the service serves are [`crate::wire`]'s, shared with the client.
//! - [`metrics`]: the Prometheus counters.
//! - [`witnesses`]: each new checkpoint sent to the configured witnesses, their cosignatures
//!   added to it.
//! - [`openapi`]: the generated OpenAPI document and its route; `schemas`: the bodies' shapes.

pub mod config;
pub(crate) mod edge;
pub mod error;
mod explorer;
pub mod metrics;
pub mod openapi;
mod routes;
mod schemas;
mod state;
mod tiles;
pub mod witnesses;

pub use config::{ConfigError, ServeArgs, ServeConfig, Settings};
pub use error::ServerError;

use crate::clock::{Clock, SystemClock};
use crate::ledger::Ledger;
use crate::sequencer::{Sequencer, SequencerOptions};
use anyhow::Context as _;
use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long after the request timeout shutdown waits for connections before it stops waiting.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(2);

/// Serves the API on `listener` until `shutdown` completes, then drains and hands the ledger
/// back with a final checkpoint signed and everything flushed.
///
/// At start the descriptor limit is raised to its hard limit, and the connection cap is derived
/// from it (or lowered to fit it), with a log line saying both.
///
/// `clock` is the time reads use (account balances, quotes); pass the clock the ledger was
/// opened with.
pub async fn serve<F>(
    mut ledger: Ledger,
    clock: Arc<dyn Clock>,
    settings: Settings,
    listener: TcpListener,
    shutdown: F,
) -> Result<Ledger, ServerError>
where
    F: Future<Output = ()> + Send + 'static,
{
    settings.validate()?;
    ledger.set_min_free_bytes(settings.min_free_bytes);
    let store = ledger.store().clone();
    store.keep_account_versions(settings.account_versions);
    let config = ledger.config().clone();
    let log = state::LogIdentity {
        origin: config.log.origin,
        verifier_key: ledger.verifier_key(),
        operator_key: config.log.operator,
    };
    let start_size = ledger.size();
    let edge = edge_settings(&settings);
    let grace = settings.request_timeout + SHUTDOWN_SLACK;
    let (sequencer, writer) = Sequencer::spawn(
        ledger,
        SequencerOptions {
            max_group: settings.max_group,
            checkpoint_interval: settings.checkpoint_interval,
        },
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let anchoring = settings.anchor.clone().map(|a| {
        let board = Arc::new(crate::anchor::AnchorBoard::default());
        let task = tokio::spawn(crate::anchor::service::run(
            a,
            crate::anchor::AnchorStore::new(store.clone()),
            log.verifier_key.clone(),
            board.clone(),
            stop_rx.clone(),
        ));
        (board, task)
    });
    if anchoring.is_none() {
        tracing::info!("anchoring is off (no contract configured)");
    }
    let witnessing = (!settings.witnesses.is_empty()).then(|| {
        let board = Arc::new(witnesses::WitnessBoard::new(
            &settings.witnesses,
            settings.witness_quorum,
        ));
        let task = tokio::spawn(witnesses::run(
            settings.witnesses.clone(),
            store.clone(),
            board.clone(),
            sequencer.cosignatures(),
            stop_rx.clone(),
        ));
        tracing::info!(
            witnesses = settings.witnesses.len(),
            quorum = settings.witness_quorum,
            "asking witnesses to cosign each checkpoint"
        );
        (board, task)
    });
    let state = state::AppState::new(
        store,
        writer,
        clock,
        settings,
        log,
        start_size,
        state::Boards {
            anchor: anchoring.as_ref().map(|(board, _)| board.clone()),
            witness: witnessing.as_ref().map(|(board, _)| board.clone()),
        },
    );
    let app = routes::router(
        state.clone(),
        openapi::routes()
            .merge(explorer::routes())
            .merge(tiles::routes()),
    );
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, size = start_size, "serving"),
        Err(e) => tracing::warn!(error = %e, "the listener has no local address"),
    }

    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let _ = stop_tx.send(true);
    });
    let serving = edge::serve(listener, app, edge, stop_rx.clone());
    let mut deadline_rx = stop_rx;
    let deadline = async move {
        let _ = deadline_rx.wait_for(|stop| *stop).await;
        tokio::time::sleep(grace).await;
    };
    let served = tokio::select! {
        r = serving => r.map_err(|source| {
            ServerError::Io { context: "serving".into(), source }
        }),
        () = deadline => {
            tracing::warn!("connections still open {grace:?} after shutdown began; closing");
            Ok(())
        }
    };

    state.close_writer();
    drop(state);
    if let Some((_, task)) = anchoring {
        // The anchorer stops between steps; a step cut short is no worse than a crash, which
        // its persisted state machine is built to survive.
        let abort = task.abort_handle();
        if tokio::time::timeout(SHUTDOWN_SLACK, task).await.is_err() {
            abort.abort();
            tracing::warn!("the anchorer did not stop within {SHUTDOWN_SLACK:?}; cut short");
        }
    }
    if let Some((_, task)) = witnessing {
        // Stops between rounds; cosignatures of a round cut short are asked again at start.
        let abort = task.abort_handle();
        if tokio::time::timeout(SHUTDOWN_SLACK, task).await.is_err() {
            abort.abort();
        }
    }
    let ledger = tokio::task::spawn_blocking(move || sequencer.join())
        .await
        .map_err(|e| ServerError::Unavailable(format!("the sequencer did not stop: {e}")))??;
    ledger.store().flush()?;
    served?;
    tracing::info!(
        size = ledger.size(),
        "stopped: log flushed and checkpointed"
    );
    Ok(ledger)
}

/// The accept loop's settings: the connection cap as configured, or derived from the descriptor
/// limit (raised to its hard limit first), and never above what that limit allows.
fn edge_settings(settings: &Settings) -> edge::Edge {
    let limit = edge::descriptor_limit();
    let fits = edge::connections_for(limit.unwrap_or(1024));
    let max_connections = match settings.max_connections {
        0 => fits,
        n if n > fits => {
            tracing::warn!(
                configured = n,
                max_connections = fits,
                "max_connections is over what the descriptor limit allows; lowered"
            );
            fits
        }
        n => n,
    };
    tracing::info!(
        descriptor_limit = limit,
        max_connections,
        max_connections_per_ip = settings.max_connections_per_ip,
        "connection cap"
    );
    edge::Edge {
        max_connections,
        max_connections_per_ip: settings.max_connections_per_ip,
        idle_timeout: settings.idle_timeout,
        header_timeout: settings.header_timeout,
    }
}

/// Completes on SIGTERM or Ctrl-C (SIGINT). The handlers are installed when this is called, so
/// a signal that arrives before the returned future is first polled is not lost.
pub(crate) fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("Ctrl-C received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("Ctrl-C received");
            }
        })
    }
}

pub(crate) fn init_tracing() {
    init_tracing_at("info");
}

/// Logs to stderr at `level` unless `RUST_LOG` says otherwise: `info` for the long-running
/// commands, `warn` for the others, so that what a command notices on its own (an interrupted
/// rebuild, a state store rebuilt for a new layout) is said without burying its output.
pub(crate) fn init_tracing_at(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs `pointsledger serve` until SIGTERM or Ctrl-C; returns once the log is flushed and a
/// final checkpoint is signed.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig::resolve(&args)?;
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ledger = Ledger::open(&config.data, clock.clone())?;
        let shutdown = shutdown_signal().context("installing signal handlers")?;
        let listener = edge::bind(&config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
        drop(out);
        serve(ledger, clock, config.settings, listener, shutdown).await?;
        Ok(())
    })
}
