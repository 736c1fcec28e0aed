//! Prometheus metrics, kept in atomics and small maps and written in the text exposition format.
//!
//! - `pointsledger_log_size` and `pointsledger_checkpoint_size`: read from the store at scrape.
//! - `pointsledger_entries_appended_total`: entries this process appended (log size now minus
//!   at start, so identical resubmissions and refusals never count).
//! - `pointsledger_commit_latency_seconds`: histogram of the time from handing a submission to
//!   the sequencer to its durable answer (queueing, signature checks, sequencing, group commit
//!   and flush).
//! - `pointsledger_submissions_total`: submissions handed to the sequencer (a batch counts once).
//! - `pointsledger_errors_total{code}`: error answers by code, batch items included.
//! - `pointsledger_http_requests_total{route,method,status}`: every answer, by matched route.
//!
//! - `pointsledger_groups_committed_total` and `pointsledger_group_commit_seconds_total`: from
//!   the sequencer's own counters (one batch and one flush per group).
//! - `pointsledger_anchored_size` (the newest mined anchor's tree size; how far the chain lags
//!   is `pointsledger_checkpoint_size` minus it) and `pointsledger_anchor_failures_total`
//!   (failed anchorer steps: RPC outages, refusals) and `pointsledger_anchors_lost_total`
//!   (final anchors the chain was found no longer to hold), when anchoring is on.
//! - `pointsledger_witnessed_size` (the largest size a quorum of witnesses cosigned) and,
//!   per witness, `pointsledger_witness_cosigned_size`, `pointsledger_witness_cosignatures_total`
//!   and `pointsledger_witness_failures_total{witness}`, when witnesses are configured.

use super::witnesses::{WitnessBoard, WitnessHealth};
use crate::errors::Code;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the commit latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What the anchorer contributes to a scrape.
#[derive(Debug, Clone, Copy)]
pub struct AnchorGauges {
    /// The newest mined anchor's tree size.
    pub anchored_size: u64,
    /// Failed anchorer steps since start.
    pub failures: u64,
    /// Final anchors found no longer on the chain since start.
    pub lost: u64,
}

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    start_size: u64,
    submissions: AtomicU64,
    commit_latency: Histogram,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    *map.entry(key).or_insert(0) += 1;
}

/// The method label: the standard methods by name, anything else as `other` (bounded labels).
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

impl Metrics {
    /// Counters for a process that started with `start_size` entries in the log.
    pub fn new(start_size: u64) -> Metrics {
        Metrics {
            start_size,
            ..Metrics::default()
        }
    }

    /// Records one submission to the sequencer and how long it took to be answered.
    pub fn observe_commit(&self, d: Duration) {
        self.submissions.fetch_add(1, Ordering::Relaxed);
        self.commit_latency.observe(d);
    }

    /// Counts one error answer (or batch item) with `code`.
    pub fn record_error(&self, code: Code) {
        bump(&self.errors, code.as_str());
    }

    /// Counts one HTTP answer.
    pub fn record_request(&self, route: &str, method: &str, status: u16) {
        bump(
            &self.requests,
            (route.to_owned(), method_label(method), status),
        );
    }

    /// The exposition text, given the log and checkpoint sizes read from the store.
    pub fn render(
        &self,
        log_size: u64,
        checkpoint_size: u64,
        sequencer: &crate::sequencer::SequencerStats,
        anchoring: Option<AnchorGauges>,
        witnesses: Option<&WitnessBoard>,
    ) -> String {
        let mut out = String::with_capacity(4096);
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "pointsledger_log_size",
            "Entries in the log.",
            "gauge",
            log_size,
        );
        gauge(
            &mut out,
            "pointsledger_checkpoint_size",
            "Tree size of the latest signed checkpoint.",
            "gauge",
            checkpoint_size,
        );
        gauge(
            &mut out,
            "pointsledger_entries_appended_total",
            "Entries appended by this process.",
            "counter",
            log_size.saturating_sub(self.start_size),
        );
        gauge(
            &mut out,
            "pointsledger_submissions_total",
            "Submissions handed to the sequencer (a batch counts once).",
            "counter",
            self.submissions.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "pointsledger_groups_committed_total",
            "Groups committed by the sequencer (one sled batch and one flush each).",
            "counter",
            sequencer.groups.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP pointsledger_group_commit_seconds_total Time the sequencer spent sequencing and committing groups.\n\
             # TYPE pointsledger_group_commit_seconds_total counter\n\
             pointsledger_group_commit_seconds_total {}",
            sequencer.commit_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        if let Some(a) = anchoring {
            gauge(
                &mut out,
                "pointsledger_anchored_size",
                "Tree size of the newest mined anchor (0 before the first).",
                "gauge",
                a.anchored_size,
            );
            gauge(
                &mut out,
                "pointsledger_anchor_failures_total",
                "Failed anchorer steps (RPC outages, refusals).",
                "counter",
                a.failures,
            );
            gauge(
                &mut out,
                "pointsledger_anchors_lost_total",
                "Anchors called final that the chain no longer held (deep reorgs, resets); each was anchored again.",
                "counter",
                a.lost,
            );
        }
        if let Some(board) = witnesses {
            let (each, witnessed) = board.get();
            gauge(
                &mut out,
                "pointsledger_witnessed_size",
                "The largest tree size a quorum of witnesses has cosigned (that checkpoint or a larger one).",
                "gauge",
                witnessed,
            );
            let families = [
                (
                    "pointsledger_witness_cosigned_size",
                    "Tree size of the newest checkpoint this witness cosigned.",
                    "gauge",
                    (|h: &WitnessHealth| h.cosigned_size) as fn(&WitnessHealth) -> u64,
                ),
                (
                    "pointsledger_witness_cosignatures_total",
                    "Cosignatures gathered from this witness.",
                    "counter",
                    |h: &WitnessHealth| h.cosignatures,
                ),
                (
                    "pointsledger_witness_failures_total",
                    "Requests to this witness that failed (down, refused, or a bad answer).",
                    "counter",
                    |h: &WitnessHealth| h.failures,
                ),
            ];
            for (name, help, kind, value) in families {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for h in &each {
                    let label = h.name.replace('\\', "\\\\").replace('"', "\\\"");
                    let _ = writeln!(out, "{name}{{witness=\"{label}\"}} {}", value(h));
                }
            }
        }
        let name = "pointsledger_commit_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from handing a submission to the sequencer to its durable answer.\n\
             # TYPE {name} histogram"
        );
        self.commit_latency.render(&mut out, name);

        let _ = writeln!(
            out,
            "# HELP pointsledger_errors_total Error answers by code (batch items included).\n\
             # TYPE pointsledger_errors_total counter"
        );
        for (code, n) in self.errors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "pointsledger_errors_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP pointsledger_http_requests_total HTTP answers by route, method and status.\n\
             # TYPE pointsledger_http_requests_total counter"
        );
        for ((route, method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "pointsledger_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new(10);
        m.observe_commit(Duration::from_micros(300));
        m.observe_commit(Duration::from_millis(3));
        m.observe_commit(Duration::from_secs(60));
        m.record_error(Code::InsufficientPoints);
        m.record_request("/v1/entries", "POST", 200);
        m.record_request("/v1/entries", "BREW", 405);
        let stats = crate::sequencer::SequencerStats::default();
        stats.groups.store(4, Ordering::Relaxed);
        let text = m.render(15, 12, &stats, None, None);
        assert!(text.contains("pointsledger_groups_committed_total 4\n"));
        assert!(text.contains("pointsledger_entries_appended_total 5\n"));
        assert!(text.contains("pointsledger_commit_latency_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("pointsledger_commit_latency_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("pointsledger_commit_latency_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("pointsledger_commit_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("pointsledger_errors_total{code=\"insufficient_points\"} 1\n"));
        assert!(text.contains("method=\"other\",status=\"405\"} 1\n"));
    }
}
