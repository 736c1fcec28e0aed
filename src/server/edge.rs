//! The HTTP edge: the accept loop, connection limits and timeouts, request classes, body reading
//! and the per-address rate limit for writes no merchant or operator signs.
//!
//! What a hostile client can hold, and for how long:
//! - **Connections**: at most [`Edge::max_connections`] open at once (set from the descriptor
//!   limit, which [`descriptor_limit`] raises to its hard limit at start) and at most
//!   `max_connections_per_ip` from one address (one /64 for IPv6). A connection over either cap
//!   is closed as soon as it is accepted; open ones are not touched.
//! - **Silence**: a connection that sends nothing is closed `idle_timeout` after it opened or
//!   after its last response was sent. Until its first byte it holds no HTTP buffers, only the
//!   socket.
//! - **Headers**: once a request's first byte arrives its headers must be complete within
//!   `header_timeout`, or the connection is closed.
//! - **Bodies**: a body is read under its own `body_timeout`, before the request takes a
//!   concurrency slot; a slow body gets 408 `timeout` and its connection is closed. A body
//!   declared over the route's limit is refused with 413 `too_large` from its `Content-Length`
//!   without being read; a chunked one is cut off as soon as it passes the limit. Nothing beyond
//!   the limit is ever buffered.
//! - **Handlers**: writes and reads have separate concurrency limits, taken inside the request
//!   timeout; `/healthz` and `/metrics` take none, so no queue of either kind delays them.
//!
//! After a refusal that left a body unread the connection is closed "lingering": the server
//! stops writing, then reads and discards what the client still sends (at most
//! [`LINGER_BYTES`] for at most [`LINGER_TIME`]) so that the client reads the answer instead of
//! a connection reset.

use super::error::{error_response, ServerError};
use crate::errors::Code;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tower::ServiceExt as _;

/// Descriptors kept for the store, the anchorer, the runtime and the listener when the
/// connection cap is derived from the descriptor limit (half the limit when it is below twice
/// this).
pub(crate) const RESERVED_DESCRIPTORS: u64 = 256;
/// Most bytes read and discarded when closing a connection whose request body was not read.
pub(crate) const LINGER_BYTES: usize = 4 * 1024 * 1024;
/// Longest a closing connection is drained (see [`LINGER_BYTES`]).
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);
/// Most client addresses the rate limiter remembers; past this, the addresses idle longest are
/// forgotten, so its memory is bounded however many addresses write.
pub(crate) const MAX_RATE_ADDRESSES: usize = 65_536;
/// The listen backlog asked for (the kernel caps it, at `net.core.somaxconn` on Linux): room
/// for a burst of connections to wait for the accept loop instead of being dropped.
pub(crate) const LISTEN_BACKLOG: u32 = 4096;
/// How often at most a refused connection or a failed accept is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Raises the soft limit on open descriptors to the hard limit and returns the limit in force
/// (`None` where there is no such limit or it cannot be read).
pub(crate) fn descriptor_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// Binds a listener on `addr` (`host:port`) with a backlog of [`LISTEN_BACKLOG`], trying each
/// address the host resolves to.
pub(crate) async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As the standard library's bind does on Unix: a restarted server can bind at once.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// The connection cap that fits `limit` descriptors: the limit less [`RESERVED_DESCRIPTORS`],
/// or half of it when it is below twice that.
pub(crate) fn connections_for(limit: u64) -> usize {
    let cap = if limit >= 2 * RESERVED_DESCRIPTORS {
        limit - RESERVED_DESCRIPTORS
    } else {
        limit / 2
    };
    usize::try_from(cap).unwrap_or(usize::MAX).max(1)
}

/// The connection settings the accept loop runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Edge {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address.
    pub max_connections_per_ip: usize,
    /// How long a connection may wait for a request's first byte.
    pub idle_timeout: Duration,
    /// How long a request's headers may take from its first byte.
    pub header_timeout: Duration,
}

/// The key an address is counted under: itself for IPv4, its /64 for IPv6 (one host commonly
/// holds a whole /64).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Open connections, in all and per address.
#[derive(Default)]
struct Connections {
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Woken when the last connection closes.
    drained: Notify,
}

/// One admitted connection; dropping it frees its places.
struct Admitted {
    table: Arc<Connections>,
    key: IpAddr,
}

impl Connections {
    fn admit(self: &Arc<Self>, ip: IpAddr, edge: &Edge) -> Result<Admitted, &'static str> {
        let key = address_key(ip);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if self.open.load(Ordering::SeqCst) >= edge.max_connections {
            return Err("max_connections");
        }
        let n = per_ip.entry(key).or_insert(0);
        if *n >= edge.max_connections_per_ip {
            return Err("max_connections_per_ip");
        }
        *n += 1;
        self.open.fetch_add(1, Ordering::SeqCst);
        Ok(Admitted {
            table: self.clone(),
            key,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_ip = self.table.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.key);
            }
        }
        drop(per_ip);
        if self.table.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.table.drained.notify_waiters();
        }
    }
}

/// Logs at most once per [`LOG_EVERY`], counting what it did not log.
struct Throttled {
    last: Option<Instant>,
    skipped: u64,
}

impl Throttled {
    fn new() -> Throttled {
        Throttled {
            last: None,
            skipped: 0,
        }
    }

    /// Whether to log now, and how many were skipped since the last line.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.skipped += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.skipped))
    }
}

/// Accepts connections on `listener` and serves `app` on each until `stop` turns true; then
/// stops accepting, lets each connection finish its request in flight and returns once all are
/// closed.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    edge: Edge,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let table = Arc::new(Connections::default());
    let mut refused_log = Throttled::new();
    let mut error_log = Throttled::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors or memory, or a connection reset before it was accepted:
                // none of these stops the server. A short pause keeps a persistent failure
                // from spinning.
                if let Some(skipped) = error_log.due() {
                    tracing::warn!(error = %e, skipped, "accepting a connection failed");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let admitted = match table.admit(peer.ip(), &edge) {
            Ok(a) => a,
            Err(cap) => {
                if let Some(skipped) = refused_log.due() {
                    tracing::warn!(cap, skipped, "connection refused: over the cap");
                }
                // Closed at once: no read, no answer, nothing held.
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            app.clone(),
            edge,
            stop.clone(),
            admitted,
        ));
    }
    drop(listener);
    loop {
        let drained = table.drained.notified();
        if table.open.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        drained.await;
    }
}

/// One connection: waits for its first byte holding nothing but the socket, then serves HTTP/1.1
/// on it.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    edge: Edge,
    mut stop: watch::Receiver<bool>,
    admitted: Admitted,
) {
    // `peek`, not `readable`: readiness can be reported before any byte has arrived.
    let mut byte = [0u8; 1];
    let first = tokio::select! {
        r = tokio::time::timeout(edge.idle_timeout, stream.peek(&mut byte)) => r,
        _ = stop.wait_for(|s| *s) => return,
    };
    if matches!(first, Ok(Ok(n)) if n > 0) {
        // Boxed so that a connection waiting for its first byte is small.
        Box::pin(http(stream, peer, app, edge, stop)).await;
    }
    drop(admitted);
}

/// What the watchdog of one connection needs to know.
struct Activity {
    state: Mutex<ActivityState>,
    changed: Notify,
}

struct ActivityState {
    /// Requests being handled.
    busy: usize,
    /// When the current request's first byte arrived, while its headers are being read.
    head_since: Option<Instant>,
    /// Last time bytes moved or a request ended.
    last: Instant,
    /// An answer was sent with `Connection: close` before its request's body was read.
    linger: bool,
}

impl Activity {
    fn new() -> Activity {
        let now = Instant::now();
        Activity {
            state: Mutex::new(ActivityState {
                busy: 0,
                head_since: Some(now),
                last: now,
                linger: false,
            }),
            changed: Notify::new(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut ActivityState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Bytes moved; `read` says whether they came in.
    fn moved(&self, read: bool) {
        let started_head = self.with(|s| {
            s.last = Instant::now();
            if read && s.busy == 0 && s.head_since.is_none() {
                s.head_since = Some(s.last);
                true
            } else {
                false
            }
        });
        if started_head {
            self.changed.notify_one();
        }
    }

    /// When the connection is to be closed if nothing changes, or `None` while a request is
    /// being handled (the body and request timeouts bound that).
    fn deadline(&self, edge: &Edge) -> Option<Instant> {
        self.with(|s| {
            if s.busy > 0 {
                None
            } else if let Some(t) = s.head_since {
                Some(t + edge.header_timeout)
            } else {
                Some(s.last + edge.idle_timeout)
            }
        })
    }
}

/// Marks a request as being handled until dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Busy {
        activity.with(|s| {
            s.busy += 1;
            s.head_since = None;
        });
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.with(|s| {
            s.busy = s.busy.saturating_sub(1);
            s.last = Instant::now();
        });
        self.0.changed.notify_one();
    }
}

/// The socket, noting every byte that moves on it.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.moved(true);
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved(false);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved(false);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// Serves HTTP/1.1 on one connection until it closes, times out or the server stops.
async fn http(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    edge: Edge,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let busy = Busy::new(service_activity.clone());
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        let fut: ResponseFuture = Box::pin(async move {
            let resp = app.oneshot(req).await;
            if let Ok(r) = &resp {
                if r.headers()
                    .get(header::CONNECTION)
                    .is_some_and(|v| v == "close")
                {
                    busy.0.with(|s| s.linger = true);
                }
            }
            drop(busy);
            resp
        });
        fut
    });
    let mut conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // The watchdog below times headers and idleness; hyper's own header timer would also
        // run between requests and close kept-alive connections early.
        .header_read_timeout(None::<Duration>)
        .serve_connection(io, service);
    let mut stopping = false;
    let finished = loop {
        let deadline = activity.deadline(&edge);
        let changed = activity.changed.notified();
        tokio::select! {
            r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break r,
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
            () = changed => {}
            () = sleep_until(deadline) => {
                if activity.deadline(&edge).is_some_and(|d| d <= Instant::now()) {
                    // Headers too slow or the connection idle too long: closed without an
                    // answer, as nothing is owed.
                    return;
                }
            }
        }
    };
    if let Err(e) = finished {
        tracing::debug!(error = %e, "connection ended with an error");
        return;
    }
    if activity.with(|s| s.linger) {
        let mut stream = conn.into_parts().io.into_inner().inner;
        linger(&mut stream).await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Closes the write side and drains what the client still sends, so that an answer given
/// before a body was read reaches the client instead of a reset (see [`LINGER_BYTES`]).
async fn linger(stream: &mut TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        // On the heap: a buffer in the future would make every connection's state this large.
        let mut buf = vec![0u8; 8192];
        let mut total = 0usize;
        while total < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// The class of a route, for its concurrency limit.
#[derive(Clone)]
pub(crate) struct Slots(pub Arc<Semaphore>);

/// Holds a slot of the route's class while the handler runs. Placed inside the request
/// timeout, so that time spent waiting for a slot counts against it.
pub(crate) async fn take_slot(State(slots): State<Slots>, req: Request, next: Next) -> Response {
    match slots.0.acquire().await {
        Ok(_permit) => next.run(req).await,
        Err(_) => ServerError::Unavailable("the service is shutting down".into()).into_response(),
    }
}

/// How a route reads its body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyRule {
    /// Largest body accepted, in bytes.
    pub limit: usize,
    /// Longest the whole body may take to arrive.
    pub timeout: Duration,
}

/// A refusal after which the connection is closed (the body was not read to its end).
fn closing(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Reads the request body, whole, under the route's [`BodyRule`], before the request takes a
/// concurrency slot: a declared length over the limit is refused unread, a body of undeclared
/// length is cut off once it passes the limit, and a body slower than the timeout gets 408.
pub(crate) async fn read_body(State(rule): State<BodyRule>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared {
        if len > rule.limit as u64 {
            return closing(too_large(Some(len), rule.limit));
        }
    }
    let (parts, body) = req.into_parts();
    let collect = async {
        // Grown as bytes arrive, not from the declared length: a slow client that declares
        // 60 KB and sends one byte holds one byte.
        let mut buf: Vec<u8> = Vec::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Some(e.to_string()))?;
            if buf.len() + chunk.len() > rule.limit {
                return Err(None);
            }
            if buf.capacity() - buf.len() < chunk.len() {
                // Grow by doubling, but never past the limit.
                let want = (buf.len() + chunk.len())
                    .max(buf.capacity() * 2)
                    .min(rule.limit);
                buf.reserve_exact(want - buf.len());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok::<Vec<u8>, Option<String>>(buf)
    };
    match tokio::time::timeout(rule.timeout, collect).await {
        Ok(Ok(buf)) => next.run(Request::from_parts(parts, Body::from(buf))).await,
        Ok(Err(None)) => closing(too_large(None, rule.limit)),
        Ok(Err(Some(e))) => closing(
            ServerError::bad_request(
                Code::MalformedRequest,
                format!("the request body could not be read: {e}"),
            )
            .into_response(),
        ),
        Err(_) => closing(error_response(
            Code::Timeout,
            format!(
                "the request body did not arrive within the body timeout ({} ms); nothing was \
                 appended",
                rule.timeout.as_millis()
            ),
        )),
    }
}

fn too_large(declared: Option<u64>, limit: usize) -> Response {
    let what = match declared {
        Some(len) => format!("the body is {len} bytes"),
        None => format!("the body is over {limit} bytes"),
    };
    ServerError::TooLarge(format!("{what}; this route accepts at most {limit}")).into_response()
}

/// The client's address, as the accept loop recorded it (`None` only when the router is served
/// some other way).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The kinds no merchant or operator signs: a consumer's key alone makes them valid, so anyone
/// can mint keys and append them. These are rate limited per client address.
pub(crate) const CONSUMER_ONLY_KINDS: [&str; 2] = ["account.link_evm", "referral.accept"];

/// A token bucket per client address for [`CONSUMER_ONLY_KINDS`], in a table of at most
/// [`MAX_RATE_ADDRESSES`] addresses.
pub(crate) struct RateLimiter {
    /// Tokens added per second; 0 turns the limiter off.
    per_second: f64,
    /// Most tokens a bucket holds.
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_minute` writes per address per minute after a burst of `burst`; 0 for either turns
    /// it off.
    pub(crate) fn new(per_minute: u32, burst: u32) -> RateLimiter {
        let off = per_minute == 0 || burst == 0;
        RateLimiter {
            per_second: if off {
                0.0
            } else {
                f64::from(per_minute) / 60.0
            },
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for an envelope of `kind` from `client`, or says how long until one is
    /// free. Kinds a merchant or the operator signs are never limited.
    pub(crate) fn check(&self, client: Client, kind: &str) -> Result<(), ServerError> {
        if self.per_second == 0.0 || !CONSUMER_ONLY_KINDS.contains(&kind) {
            return Ok(());
        }
        let Some(ip) = client.0 else {
            return Ok(());
        };
        let key = address_key(ip);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&key) && buckets.len() >= MAX_RATE_ADDRESSES {
            self.evict(&mut buckets, now);
        }
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - b.tokens) / self.per_second).ceil().max(1.0);
        Err(ServerError::RateLimited {
            retry_after: wait as u64,
        })
    }

    /// Makes room in a full table: forgets every address whose bucket has refilled (it is as
    /// if never seen), or, if none has, the quarter idle longest.
    fn evict(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let full_after = Duration::from_secs_f64(self.burst / self.per_second);
        buckets.retain(|_, b| now.duration_since(b.at) < full_after);
        if buckets.len() >= MAX_RATE_ADDRESSES {
            let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
            let cut = ages.len() / 4;
            let (_, nth, _) = ages.select_nth_unstable(cut);
            let cutoff = *nth;
            buckets.retain(|_, b| b.at > cutoff);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_room_below_the_descriptor_limit() {
        assert_eq!(connections_for(20_000), 19_744);
        assert_eq!(connections_for(1024), 768);
        assert_eq!(connections_for(300), 150);
        assert_eq!(connections_for(1), 1);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(address_key(mapped), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_bucket_allows_its_burst_then_refuses_only_consumer_kinds() {
        let rl = RateLimiter::new(60, 3);
        let me = Client(Some("127.0.0.1".parse().unwrap()));
        let other = Client(Some("127.0.0.2".parse().unwrap()));
        for _ in 0..3 {
            rl.check(me, "referral.accept").unwrap();
        }
        let e = rl.check(me, "account.link_evm").unwrap_err();
        assert_eq!(e.code(), "rate_limited");
        assert!(
            matches!(e, ServerError::RateLimited { retry_after: 1 }),
            "{e:?}"
        );
        rl.check(me, "purchase").unwrap();
        rl.check(other, "referral.accept").unwrap();
        let off = RateLimiter::new(0, 3);
        for _ in 0..100 {
            off.check(me, "referral.accept").unwrap();
        }
    }

    #[test]
    fn the_table_stays_bounded() {
        let rl = RateLimiter::new(1, 1);
        for i in 0..(MAX_RATE_ADDRESSES as u32 + 1000) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            let _ = rl.check(Client(Some(ip)), "referral.accept");
        }
        assert!(rl.buckets.lock().unwrap().len() <= MAX_RATE_ADDRESSES);
    }
}
