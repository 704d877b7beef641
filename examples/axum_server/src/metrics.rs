//! Prometheus text metrics, kept with atomics: no registry crate for a handful of series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use coupon_core::{Batch, IssueSource, IssueTicket, Result, Settler, WorkerTotals};

/// A histogram with fixed upper bounds.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    total: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if value <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let total = self.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// The service's metrics.
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    apply_latency: Histogram,
    batch_sizes: Histogram,
    worker_errors: AtomicU64,
    /// What this process's worker has done, when it runs one.
    worker: std::sync::OnceLock<WorkerTotals>,
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            apply_latency: Histogram::new(LATENCY_BOUNDS),
            batch_sizes: Histogram::new(BATCH_BOUNDS),
            worker_errors: AtomicU64::new(0),
            worker: std::sync::OnceLock::new(),
        }
    }

    /// Reports what `totals` counts: this process's worker's tickets by outcome.
    pub fn watch_worker(&self, totals: WorkerTotals) {
        let _ = self.worker.set(totals);
    }

    /// Counts one answer of `route` with `outcome`.
    pub fn request(&self, route: &'static str, outcome: &'static str) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((route, outcome)).or_default() += 1;
    }

    /// Records how long one apply took.
    pub fn apply_latency(&self, elapsed: Duration) {
        self.apply_latency.observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition, with the queue lag when the source could tell it
    /// and what the settler found in its last pass (a worker-only process has none).
    pub fn render(&self, queue_lag: Option<u64>, settler: Option<&Settler>) -> String {
        let mut out = String::new();
        out.push_str("# HELP firstcome_requests_total Answers by route and outcome.\n# TYPE firstcome_requests_total counter\n");
        for ((route, outcome), count) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "firstcome_requests_total{{route=\"{route}\",outcome=\"{outcome}\"}} {count}"
            );
        }
        self.apply_latency.render(
            &mut out,
            "firstcome_apply_seconds",
            "Latency of POST /campaigns/{id}/apply.",
        );
        self.batch_sizes.render(
            &mut out,
            "firstcome_worker_batch_tickets",
            "Tickets per batch the worker took.",
        );
        let errors = self.worker_errors.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP firstcome_worker_errors_total Worker errors (source or store).\n# TYPE firstcome_worker_errors_total counter\nfirstcome_worker_errors_total {errors}"
        );
        if let Some(totals) = self.worker.get() {
            render_worker(&mut out, &totals.report());
        }
        if let Some(settler) = settler {
            render_settler(&mut out, settler);
        }
        if let Some(lag) = queue_lag {
            let _ = writeln!(
                out,
                "# HELP firstcome_queue_lag Tickets waiting for this process's worker.\n# TYPE firstcome_queue_lag gauge\nfirstcome_queue_lag {lag}"
            );
        }
        process_stats::render(&mut out);
        out
    }
}

/// What the alerting rules watch besides the counters: whether every backend answers
/// (as `/readyz` says), and how many campaigns that may admit wait for their counter to
/// be rebuilt (fenced after a loss; absent when the campaigns could not be read).
pub fn render_health(out: &mut String, ready: bool, rebuilding: Option<usize>) {
    let _ = writeln!(
        out,
        "# HELP firstcome_ready Whether every backend answers (1) or not (0), as GET /readyz.\n# TYPE firstcome_ready gauge\nfirstcome_ready {}",
        u8::from(ready)
    );
    if let Some(rebuilding) = rebuilding {
        let _ = writeln!(
            out,
            "# HELP firstcome_campaigns_rebuilding Campaigns that may admit whose counter is being rebuilt after a loss.\n# TYPE firstcome_campaigns_rebuilding gauge\nfirstcome_campaigns_rebuilding {rebuilding}"
        );
    }
}

/// What the settler did and found in its last pass.
fn render_settler(out: &mut String, settler: &Settler) {
    let _ = writeln!(
        out,
        "# HELP firstcome_republished_tickets_total Tickets the settler published again.\n# TYPE firstcome_republished_tickets_total counter\nfirstcome_republished_tickets_total {}",
        settler.republished_total()
    );
    let _ = writeln!(
        out,
        "# HELP firstcome_settler_seconds_since_complete_pass Time since a settlement pass last compared every campaign with the store.\n# TYPE firstcome_settler_seconds_since_complete_pass gauge\nfirstcome_settler_seconds_since_complete_pass {:.3}",
        settler.since_complete_pass().as_secs_f64()
    );
    if let Some(report) = settler.last_report() {
        let oldest = report.oldest_unsettled_ms.unwrap_or(0) as f64 / 1e3;
        let _ = writeln!(
            out,
            "# HELP firstcome_admissions_in_flight Admitted slots without a coupon yet, of any age.\n# TYPE firstcome_admissions_in_flight gauge\nfirstcome_admissions_in_flight {}\n# HELP firstcome_admissions_unsettled Admitted slots older than the settler's grace period without a coupon.\n# TYPE firstcome_admissions_unsettled gauge\nfirstcome_admissions_unsettled {}\n# HELP firstcome_oldest_unsettled_seconds Age of the oldest unsettled admission.\n# TYPE firstcome_oldest_unsettled_seconds gauge\nfirstcome_oldest_unsettled_seconds {oldest}",
            report.in_flight, report.unsettled
        );
    }
}

/// The worker's tickets by outcome, and the refusals of promised tickets on their own:
/// each one over the cap is a promise broken, each dead letter one waiting for an
/// operator.
fn render_worker(out: &mut String, report: &coupon_core::WorkerReport) {
    let _ = writeln!(
        out,
        "# HELP firstcome_worker_tickets_total Tickets this process's worker settled, by outcome.\n# TYPE firstcome_worker_tickets_total counter"
    );
    for (outcome, count) in [
        ("issued", report.issued),
        ("duplicate", report.duplicates),
        ("superseded", report.superseded),
        ("over_cap", report.over_cap),
        ("dead_lettered", report.dead_lettered),
    ] {
        let _ = writeln!(
            out,
            "firstcome_worker_tickets_total{{outcome=\"{outcome}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP firstcome_tickets_refused_total Tickets the store refused for good (over the cap: a promise broken; dead-lettered: waiting for a replay).\n# TYPE firstcome_tickets_refused_total counter\nfirstcome_tickets_refused_total{{reason=\"over_cap\"}} {}\nfirstcome_tickets_refused_total{{reason=\"dead_letter\"}} {}",
        report.over_cap, report.dead_lettered
    );
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// An [`IssueSource`] that records batch sizes and errors.
pub struct MeteredSource {
    inner: Arc<dyn IssueSource>,
    metrics: Arc<Metrics>,
}

impl MeteredSource {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn IssueSource>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn counted<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.metrics.worker_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

#[async_trait]
impl IssueSource for MeteredSource {
    async fn next_batch(&self, max: usize) -> Result<Option<Batch>> {
        let batch = self.counted(self.inner.next_batch(max).await)?;
        if let Some(batch) = &batch {
            self.metrics.batch_sizes.observe(batch.len() as f64);
        }
        Ok(batch)
    }

    async fn ack(&self, batch: Batch) -> Result<()> {
        self.counted(self.inner.ack(batch).await)
    }

    async fn dead_letter(&self, ticket: &IssueTicket, reason: &str) -> Result<()> {
        self.counted(self.inner.dead_letter(ticket, reason).await)
    }

    /// Forwarded: Kafka's consumer polls here while the worker waits out a store
    /// outage, or it leaves its group after `max.poll.interval.ms` and its partitions
    /// move. Not counted as a worker error: it is called every second of an outage.
    async fn keep_alive(&self) -> Result<()> {
        self.inner.keep_alive().await
    }

    async fn lag(&self) -> Result<Option<u64>> {
        self.inner.lag().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that counts the calls of each kind it receives.
    #[derive(Default)]
    struct Counting {
        keep_alives: AtomicU64,
    }

    #[async_trait]
    impl IssueSource for Counting {
        async fn next_batch(&self, _max: usize) -> Result<Option<Batch>> {
            Ok(None)
        }

        async fn ack(&self, _batch: Batch) -> Result<()> {
            Ok(())
        }

        async fn keep_alive(&self) -> Result<()> {
            self.keep_alives.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }

        async fn lag(&self) -> Result<Option<u64>> {
            Ok(Some(7))
        }
    }

    #[test]
    fn refused_tickets_are_counted_apart() {
        let mut report = coupon_core::WorkerReport::default();
        report.issued = 7;
        report.over_cap = 2;
        report.dead_lettered = 1;
        let mut out = String::new();
        render_worker(&mut out, &report);
        for line in [
            "firstcome_worker_tickets_total{outcome=\"issued\"} 7",
            "firstcome_worker_tickets_total{outcome=\"over_cap\"} 2",
            "firstcome_tickets_refused_total{reason=\"over_cap\"} 2",
            "firstcome_tickets_refused_total{reason=\"dead_letter\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in\n{out}");
        }
    }

    #[tokio::test]
    async fn the_metered_source_forwards_keep_alive_and_lag() {
        let inner = Arc::new(Counting::default());
        let metered = MeteredSource::new(inner.clone(), Arc::new(Metrics::new()));
        metered.keep_alive().await.expect("keep_alive");
        metered.keep_alive().await.expect("keep_alive");
        assert_eq!(inner.keep_alives.load(Ordering::Relaxed), 2);
        assert_eq!(metered.lag().await.expect("lag"), Some(7));
    }
}
