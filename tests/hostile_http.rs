//! The HTTP edge under hostile load, against the real binary on loopback.
//!
//! - 2,000 slow uploads and 10,000 idle connections from many loopback addresses: `/healthz`
//!   and reads answer within 100 ms, a well-behaved client's writes succeed, and the server's
//!   resident memory grows by at most 64 MiB;
//! - the per-address and the global connection caps close connections over them at once and
//!   keep serving the others;
//! - slow bodies get 408 and a closed connection; half-sent headers and silent connections are
//!   closed after their timeouts;
//! - a body declared over the limit is refused from its `Content-Length` unread, a chunked one
//!   once it passes the limit, and many such requests do not grow the server;
//! - the per-address rate limit on consumer-signed writes: 429 `rate_limited` with
//!   `Retry-After`, other addresses and merchant-signed writes unaffected.
//!
//! Hostile connections come from 127.1.0.0/16 and other 127.x addresses (the client socket is
//! bound before it connects), the well-behaved client from 127.0.0.1.

mod common;
#[path = "common/server.rs"]
mod server;

use common::{rules, Party};
use futures::StreamExt as _;
use pointsledger::keys;
use pointsledger::ledger::{self, DataDir};
use serde_json::Value;
use server::{Api, Binary, Signer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A fresh ledger and the real server on it, with `extra` flags.
struct Served {
    _tmp: tempfile::TempDir,
    bin: Binary,
    signer: Signer,
    addr: SocketAddr,
    log: PathBuf,
}

fn start(extra: &[&str]) -> Served {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("ledger");
    ledger::init(&data, "hostile.pointsledger.local").expect("init");
    let operator = keys::read_key_file(&DataDir(data.clone()).operator_key()).expect("op key");
    let d = data.to_str().expect("path").to_owned();
    let mut args = vec![
        "--data",
        &d,
        "--listen",
        "127.0.0.1:0",
        "--checkpoint-interval",
        "50ms",
    ];
    args.extend_from_slice(extra);
    let log = tmp.path().join("serve.log");
    let bin = Binary::start(&args, &[], &log);
    let addr = bin
        .api
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    Served {
        _tmp: tmp,
        bin,
        signer: Signer::new(operator),
        addr,
        log,
    }
}

impl Served {
    fn pid(&self) -> u32 {
        self.bin.child.id()
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The server's resident memory, in bytes (VmRSS of /proc/PID/status).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Descriptors the server holds open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Raises this process's descriptor limit to its hard limit and returns it.
fn raise_own_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise RLIMIT_NOFILE")
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    tokio::time::timeout(Duration::from_secs(10), socket.connect(to))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// Opens `n` connections to `to` from `from(i)`, at most 256 connecting at once; on each runs
/// `first` (bytes to send right away, may be empty).
async fn open_many(
    n: usize,
    to: SocketAddr,
    from: impl Fn(usize) -> Ipv4Addr,
    first: &'static [u8],
) -> Vec<TcpStream> {
    let addrs: Vec<Ipv4Addr> = (0..n).map(from).collect();
    let results: Vec<std::io::Result<TcpStream>> = futures::stream::iter(addrs)
        .map(|ip| async move {
            let mut s = connect_from(ip, to).await?;
            if !first.is_empty() {
                s.write_all(first).await?;
            }
            Ok(s)
        })
        .buffer_unordered(256)
        .collect()
        .await;
    results
        .into_iter()
        .map(|r| r.expect("open a hostile connection"))
        .collect()
}

/// Whether the server has closed `s` (EOF or reset), without waiting.
fn closed(s: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    !matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Reads from `s` until EOF, a reset or `limit`; returns what came and whether EOF came.
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// One raw HTTP/1.1 request on a kept-alive connection; returns the status line and the body.
async fn raw_get(s: &mut TcpStream, path: &str) -> (String, String) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().expect("length"))
                })
                .expect("content-length");
            if got.len() >= end + 4 + len {
                let status = text.lines().next().unwrap_or_default().to_owned();
                return (status, text[end + 4..end + 4 + len].to_owned());
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        assert!(n > 0, "the connection closed mid-answer: {text}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// A client bound to the loopback address `from`.
fn api_from(base: &str, from: Ipv4Addr) -> Api {
    Api {
        base: base.to_owned(),
        http: reqwest::Client::builder()
            .local_address(IpAddr::V4(from))
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client"),
    }
}

const SLOW_UPLOAD: &[u8] = b"POST /v1/entries HTTP/1.1\r\nhost: t\r\n\
    content-type: application/json\r\ncontent-length: 60000\r\n\r\n{";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_uploads_and_idle_connections_hold_up_nothing() {
    const SLOW: usize = 2_000;
    const IDLE: usize = 10_000;
    let limit = raise_own_limit();
    assert!(
        limit >= (SLOW + IDLE + 1_000) as u64,
        "this test needs {} descriptors; the hard limit is {limit}",
        SLOW + IDLE + 1_000
    );
    // Timeouts far longer than the test, so that the hostile connections stay open throughout
    // and only the separation of limits can keep the server answering.
    let s = start(&[
        "--body-timeout",
        "5m",
        "--header-timeout",
        "5m",
        "--idle-timeout",
        "5m",
    ]);
    let run = async {
        let api = &s.bin.api;
        let shop = Party::new();
        api.accept(&s.signer.register(&shop, &rules())).await;
        let buyer = Party::new();
        for n in 0..20 {
            api.accept(&s.signer.purchase(&shop, &buyer, &format!("warm{n}"), 1_000))
                .await;
            assert_eq!(api.get("/healthz").await.0, 200);
            assert_eq!(api.get("/v1/log").await.0, 200);
        }
        api.tree().await;
        let rss_before = rss(s.pid());
        let fds_before = open_fds(s.pid());

        // 2,000 slow uploads from 100 addresses, 10,000 idle connections from 100 others, in
        // steps of 500 that wait for the server to have accepted them (a flood of connects
        // faster than the accept loop would only overflow the kernel's accept queue).
        let started = Instant::now();
        let mut slow = Vec::new();
        let mut idle = Vec::new();
        for step in 0..(SLOW + IDLE) / 500 {
            let (into, first, net) = if step * 500 < SLOW {
                (&mut slow, SLOW_UPLOAD, 0)
            } else {
                (&mut idle, &b""[..], 1)
            };
            let base = into.len();
            into.extend(
                open_many(
                    500,
                    s.addr,
                    |i| Ipv4Addr::new(127, 1, net, 1 + ((base + i) % 100) as u8),
                    first,
                )
                .await,
            );
            let want = fds_before + slow.len() + idle.len();
            let deadline = Instant::now() + Duration::from_secs(30);
            while open_fds(s.pid()) < want {
                assert!(
                    Instant::now() < deadline,
                    "the server holds {} descriptors, {fds_before} before, {want} expected; {} \
                     slow and {} idle connections closed; log: {}",
                    open_fds(s.pid()),
                    slow.iter().filter(|c| closed(c)).count(),
                    idle.iter().filter(|c| closed(c)).count(),
                    s.server_log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if (step + 1) * 500 == SLOW {
                eprintln!(
                    "server VmRSS with {SLOW} slow uploads: {} KiB",
                    rss(s.pid()) >> 10
                );
            }
        }
        let slow = Arc::new(slow);
        // Each slow upload sends one more byte a second.
        let dripping = {
            let slow = slow.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    for c in slow.iter() {
                        let _ = c.try_write(b" ");
                    }
                }
            })
        };
        eprintln!(
            "{SLOW} slow uploads and {IDLE} idle connections open in {:?}",
            started.elapsed()
        );

        // Probes from a well-behaved client at 127.0.0.1 on its own connections.
        let probe = Api::new(&api.base);
        assert_eq!(probe.get("/healthz").await.0, 200, "connect the probe");
        let mut figures = Vec::new();
        for round in 0..10 {
            let t = Instant::now();
            let (status, _) = probe.get("/healthz").await;
            let health = t.elapsed();
            assert_eq!(status, 200);
            let t = Instant::now();
            let (status, _, _) = probe.get_text("/v1/checkpoint").await;
            let checkpoint = t.elapsed();
            assert_eq!(status, 200);
            let t = Instant::now();
            let (status, body) = probe.get(&format!("/v1/accounts/{}", buyer.id)).await;
            let account = t.elapsed();
            assert_eq!(status, 200, "{body}");
            let t = Instant::now();
            probe
                .accept(
                    &s.signer
                        .purchase(&shop, &buyer, &format!("probe{round}"), 500),
                )
                .await;
            let write = t.elapsed();
            figures.push((health, checkpoint, account, write));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("(healthz, checkpoint, account, write) per probe: {figures:?}");
        for (health, checkpoint, account, _) in &figures {
            assert!(
                *health < Duration::from_millis(100)
                    && *checkpoint < Duration::from_millis(100)
                    && *account < Duration::from_millis(100),
                "a probe took 100 ms or more: {figures:?}"
            );
        }
        // The hostile connections were held open, not shed.
        let shed = slow.iter().chain(idle.iter()).filter(|c| closed(c)).count();
        assert_eq!(shed, 0, "the server closed hostile connections");
        let rss_after = rss(s.pid());
        let grown = rss_after.saturating_sub(rss_before);
        eprintln!(
            "server VmRSS {} MiB before, {} MiB with the hostile connections open (+{} KiB)",
            rss_before >> 20,
            rss_after >> 20,
            grown >> 10
        );
        assert!(grown <= 64 << 20, "the server grew by {} MiB", grown >> 20);
        dripping.abort();
        drop(idle);
        drop(slow);
        // Once they are gone the server still answers and writes.
        api.accept(&s.signer.purchase(&shop, &buyer, "after", 700))
            .await;
    };
    tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the test finishes within 180 s");
    s.bin.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_and_global_connection_caps_hold() {
    raise_own_limit();
    let s = start(&["--max-connections", "300", "--max-connections-per-ip", "50"]);
    let run = async {
        let logged = Instant::now() + Duration::from_secs(10);
        while !s.server_log().contains("max_connections=300") {
            assert!(
                Instant::now() < logged,
                "no log line with the cap: {}",
                s.server_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A kept-alive connection from 127.0.0.1, opened first.
        let mut kept = connect_from(Ipv4Addr::LOCALHOST, s.addr)
            .await
            .expect("connect");
        assert!(raw_get(&mut kept, "/healthz").await.0.contains("200"));

        // 80 connections from one address: 50 are kept, 30 closed at once.
        let one = open_many(80, s.addr, |_| Ipv4Addr::new(127, 2, 0, 1), b"").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let shut = one.iter().filter(|c| closed(c)).count();
        assert_eq!(shut, 30, "per-address cap of 50 over 80 connections");
        // Others are served: the kept connection and a new one from another address.
        assert!(raw_get(&mut kept, "/healthz").await.0.contains("200"));
        let mut other = connect_from(Ipv4Addr::new(127, 2, 0, 2), s.addr)
            .await
            .expect("connect");
        assert!(raw_get(&mut other, "/v1/log").await.0.contains("200"));
        drop(other);
        tokio::time::sleep(Duration::from_millis(200)).await;

        // 300 more from ten addresses (30 each, under the per-address cap): the server holds
        // 300 in all, so 249 more fit (50 + the kept one are open) and 51 are closed.
        let many = open_many(
            300,
            s.addr,
            |i| Ipv4Addr::new(127, 3, 0, 1 + (i % 10) as u8),
            b"",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let shut_many = many.iter().filter(|c| closed(c)).count();
        let open_now = one.iter().chain(many.iter()).filter(|c| !closed(c)).count() + 1;
        assert_eq!(open_now, 300, "global cap of 300");
        assert_eq!(shut_many, 51);
        // The existing connection is still served, a new one is refused while at the cap.
        assert!(raw_get(&mut kept, "/healthz").await.0.contains("200"));
        let mut late = connect_from(Ipv4Addr::LOCALHOST, s.addr)
            .await
            .expect("connect");
        let (answer, eof) = read_to_close(&mut late, Duration::from_secs(2)).await;
        assert!(eof && answer.is_empty(), "over the cap: {answer:?}");
        // Freed places are given again.
        drop(many);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut again = connect_from(Ipv4Addr::LOCALHOST, s.addr)
            .await
            .expect("connect");
        assert!(raw_get(&mut again, "/healthz").await.0.contains("200"));
        assert!(
            s.server_log().contains("connection refused: over the cap"),
            "{}",
            s.server_log()
        );
        drop(one);
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the test finishes within 60 s");
    s.bin.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_slow_headers_and_silent_connections_are_cut_off() {
    let s = start(&[
        "--body-timeout",
        "500ms",
        "--header-timeout",
        "500ms",
        "--idle-timeout",
        "1s",
    ]);
    let run = async {
        let from = Ipv4Addr::new(127, 5, 0, 1);
        // A slow body: 408 `timeout`, and the connection is closed.
        let mut c = connect_from(from, s.addr).await.expect("connect");
        c.write_all(SLOW_UPLOAD).await.expect("write");
        let t = Instant::now();
        let (answer, eof) = read_to_close(&mut c, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"error\":\"timeout\""), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        assert!(eof, "the connection stays open after the 408");
        assert!(
            t.elapsed() >= Duration::from_millis(450),
            "{:?}",
            t.elapsed()
        );

        // Half-sent headers: closed without an answer.
        let mut c = connect_from(from, s.addr).await.expect("connect");
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\nx-slow:")
            .await
            .expect("write");
        let t = Instant::now();
        let (answer, eof) = read_to_close(&mut c, Duration::from_secs(5)).await;
        assert!(eof && answer.is_empty(), "half-sent headers: {answer:?}");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(3),
            "{took:?}"
        );

        // A connection that sends nothing, and one idle after an answer: closed after 1 s.
        let mut silent = connect_from(from, s.addr).await.expect("connect");
        let mut kept = connect_from(from, s.addr).await.expect("connect");
        assert!(raw_get(&mut kept, "/healthz").await.0.contains("200"));
        let t = Instant::now();
        for c in [&mut silent, &mut kept] {
            let (answer, eof) = read_to_close(c, Duration::from_secs(5)).await;
            assert!(eof && answer.is_empty(), "idle: {answer:?}");
        }
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{took:?}"
        );

        // A kept-alive connection that keeps asking is not idle.
        let mut busy = connect_from(from, s.addr).await.expect("connect");
        for _ in 0..6 {
            assert!(raw_get(&mut busy, "/healthz").await.0.contains("200"));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the test finishes within 60 s");
    s.bin.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_unread_and_leave_no_memory_behind() {
    let s = start(&[]);
    let run = async {
        let from = Ipv4Addr::new(127, 6, 0, 1);
        // 100 MB declared, nothing sent: 413 at once, so the body was never waited for.
        for route in ["/v1/entries", "/v1/quote", "/v1/entries/batch"] {
            let mut c = connect_from(from, s.addr).await.expect("connect");
            c.write_all(
                format!(
                    "POST {route} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
                     content-length: 100000000\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .expect("write");
            let t = Instant::now();
            let (answer, eof) = read_to_close(&mut c, Duration::from_secs(5)).await;
            assert!(answer.starts_with("HTTP/1.1 413"), "{route}: {answer}");
            assert!(
                answer.contains("\"error\":\"too_large\""),
                "{route}: {answer}"
            );
            assert!(eof, "{route}: the connection is closed");
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "{route}: {:?}",
                t.elapsed()
            );
        }

        // A chunked body is cut off once it passes the limit (64 KiB), without waiting for
        // its end.
        let mut c = connect_from(from, s.addr).await.expect("connect");
        c.write_all(
            b"POST /v1/quote HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
              transfer-encoding: chunked\r\n\r\n",
        )
        .await
        .expect("write");
        let chunk = format!("8000\r\n{}\r\n", " ".repeat(0x8000));
        for _ in 0..3 {
            c.write_all(chunk.as_bytes()).await.expect("write");
        }
        let (answer, _) = read_to_close(&mut c, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"error\":\"too_large\""), "{answer}");

        // 200 requests declaring 4 MiB and sending 1 MiB of it each, 20 at a time: each gets
        // its 413, and the server does not grow.
        let rss_before = rss(s.pid());
        let answers: Vec<String> = futures::stream::iter(0..200u32)
            .map(|i| async move {
                let mut c = connect_from(Ipv4Addr::new(127, 6, 1, 1 + (i % 50) as u8), s.addr)
                    .await
                    .expect("connect");
                let head = "POST /v1/quote HTTP/1.1\r\nhost: t\r\ncontent-type: \
                            application/json\r\ncontent-length: 4194304\r\n\r\n";
                c.write_all(head.as_bytes()).await.expect("write");
                let body = vec![b' '; 1 << 20];
                // The server may answer and close before all of it is sent.
                let _ = c.write_all(&body).await;
                read_to_close(&mut c, Duration::from_secs(10)).await.0
            })
            .buffer_unordered(20)
            .collect()
            .await;
        for a in &answers {
            assert!(a.starts_with("HTTP/1.1 413"), "{a}");
        }
        let grown = rss(s.pid()).saturating_sub(rss_before);
        eprintln!("200 oversized requests: server VmRSS +{} KiB", grown >> 10);
        assert!(grown <= 16 << 20, "the server grew by {} MiB", grown >> 20);

        // The normal path still works with reqwest, body sent in full.
        let (status, body) = s.bin.api.post_raw("/v1/entries", vec![b' '; 70_000]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (413, Some("too_large")),
            "{body}"
        );
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the test finishes within 60 s");
    s.bin.stop();
}

/// `(status, error code, Retry-After)` of one submission.
async fn submit_from(api: &Api, body: Vec<u8>) -> (u16, Value, Option<u64>) {
    let resp = api
        .http
        .post(api.url("/v1/entries"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .expect("POST");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, resp.json().await.expect("json"), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_signed_writes_are_rate_limited_per_address() {
    let s = start(&[
        "--consumer-writes-per-minute",
        "12",
        "--consumer-write-burst",
        "3",
    ]);
    let run = async {
        let base = &s.bin.api.base;
        let me = api_from(base, Ipv4Addr::LOCALHOST);
        let other = api_from(base, Ipv4Addr::new(127, 7, 0, 1));
        let shop = Party::new();
        me.accept(&s.signer.register(&shop, &rules())).await;
        let referrer = Party::new();
        me.accept(&s.signer.purchase(&shop, &referrer, "first", 100))
            .await;
        for _ in 0..3 {
            let env = s.signer.refer(&Party::new(), &referrer);
            let (status, body, _) = submit_from(&me, env.to_json_bytes()).await;
            assert_eq!(status, 200, "{body}");
        }
        let env = s.signer.refer(&Party::new(), &referrer);
        let (status, body, retry) = submit_from(&me, env.to_json_bytes()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (429, Some("rate_limited")),
            "{body}"
        );
        let retry = retry.expect("Retry-After");
        assert!((1..=5).contains(&retry), "Retry-After {retry}");
        // The same envelope from another address is accepted.
        let (status, body, _) = submit_from(&other, env.to_json_bytes()).await;
        assert_eq!(status, 200, "{body}");
        // Merchant-signed writes from the limited address are not limited.
        for n in 0..20 {
            let env = s.signer.purchase(&shop, &referrer, &format!("o{n}"), 100);
            let (status, body, _) = submit_from(&me, env.to_json_bytes()).await;
            assert_eq!(status, 200, "{body}");
        }
        // In a batch, the limited envelope is refused on its own.
        let batch = format!(
            "[{},{}]",
            String::from_utf8(s.signer.refer(&Party::new(), &referrer).to_json_bytes())
                .expect("utf8"),
            String::from_utf8(
                s.signer
                    .purchase(&shop, &referrer, "batch", 100)
                    .to_json_bytes()
            )
            .expect("utf8"),
        );
        let (status, body) = me.post_raw("/v1/entries/batch", batch.into_bytes()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["results"][0]["error"], "rate_limited", "{body}");
        assert_eq!(body["results"][0]["status"], 429, "{body}");
        assert!(body["results"][1]["receipt"].is_object(), "{body}");
        // After the wait it names, the address may write again.
        tokio::time::sleep(Duration::from_secs(retry)).await;
        let env = s.signer.refer(&Party::new(), &referrer);
        let (status, body, _) = submit_from(&me, env.to_json_bytes()).await;
        assert_eq!(status, 200, "{body}");
        let metrics = me.metrics().await;
        assert!(
            metrics.contains("pointsledger_errors_total{code=\"rate_limited\"} 2"),
            "{metrics}"
        );
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the test finishes within 60 s");
    s.bin.stop();
}
