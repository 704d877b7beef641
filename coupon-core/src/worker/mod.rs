//! The issuing worker: source batches -> idempotent store -> ack.

mod batch;
mod retry;
mod running;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{Batch, CouponStore, Error, IssueSource, Result};

pub use self::running::RunningWorker;

/// Settings of an [`IssueWorker`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Most tickets persisted in one store transaction. Default 500.
    pub batch_size: usize,
    /// Wait before the second attempt of a call that failed retryably; doubles each
    /// attempt. Default 50 ms.
    pub initial_backoff: Duration,
    /// Upper bound of the wait between attempts. Default 5 s. There is no bound on the
    /// number of attempts: a retryable failure never drops a ticket.
    pub max_backoff: Duration,
    /// How often the source is kept alive ([`IssueSource::keep_alive`]) while the
    /// worker waits to retry. Default 1 s.
    pub keep_alive_interval: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            keep_alive_interval: Duration::from_secs(1),
        }
    }
}

impl WorkerConfig {
    /// Sets [`WorkerConfig::batch_size`] (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Sets the backoff bounds.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets [`WorkerConfig::keep_alive_interval`] (at least 10 ms).
    pub fn with_keep_alive_interval(mut self, interval: Duration) -> Self {
        self.keep_alive_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The wait after failed attempt number `attempt` (1-based).
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// What a worker did, summed over the batches it processed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerReport {
    /// Batches acked.
    pub batches: u64,
    /// Coupons newly persisted.
    pub issued: u64,
    /// Tickets found already stored (redeliveries, republished admissions).
    pub duplicates: u64,
    /// Tickets the store refused because the campaign was full; recorded as failures.
    /// Each one is a broken promise (its applicant was told yes): logged as an error.
    pub over_cap: u64,
    /// Tickets of a counter epoch a rebuild superseded without counting them: their
    /// applicants were never told yes, and nothing is recorded.
    pub superseded: u64,
    /// Tickets the store refused for good (a permanent error found by splitting the
    /// batch, an unknown campaign): recorded as failures, replayable.
    pub dead_lettered: u64,
    /// Store, source or record calls that failed retryably and were tried again.
    pub retries: u64,
}

impl WorkerReport {
    fn add(&mut self, other: WorkerReport) {
        self.batches += other.batches;
        self.issued += other.issued;
        self.duplicates += other.duplicates;
        self.over_cap += other.over_cap;
        self.superseded += other.superseded;
        self.dead_lettered += other.dead_lettered;
        self.retries += other.retries;
    }
}

/// The worker stopped waiting because shutdown arrived: its batch stays unacked.
struct Stopped;

/// A shutdown future that may be awaited from several places in turn, and remembers
/// that it completed.
struct Stop<'a> {
    signal: Pin<&'a mut (dyn Future<Output = ()> + Send)>,
    fired: bool,
}

impl Stop<'_> {
    async fn wait(&mut self) {
        if !self.fired {
            self.signal.as_mut().await;
            self.fired = true;
        }
    }
}

/// Moves tickets from an [`IssueSource`] into a [`CouponStore`], acking each batch only
/// after every ticket in it is persisted or recorded as a failure.
///
/// - A retryable (or unknown-outcome) store error is retried forever with capped
///   backoff, keeping the source alive meanwhile: a database outage of any length
///   drops nothing, and the worker resumes where it was.
/// - A permanent error splits the batch in halves until the ticket(s) to blame are
///   found; only those are recorded ([`FailureLedger::record_failure`](crate::FailureLedger::record_failure), durable before the
///   ack) and mirrored to [`IssueSource::dead_letter`]. The rest are persisted.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
/// use std::sync::Arc;
/// use coupon_core::memory::{MemoryQueue, MemoryStore};
/// use coupon_core::{CouponStore, IssueQueue, IssueTicket, IssueWorker, NewCampaign, UserId};
///
/// let store = Arc::new(MemoryStore::new());
/// let queue = Arc::new(MemoryQueue::new(16));
/// let campaign = store.create_campaign(NewCampaign::new("launch", 10)).await?;
/// queue.publish(&IssueTicket::new(campaign.id, UserId(7), 1, 1)).await?;
/// queue.close();
///
/// let report = IssueWorker::new(queue, store.clone()).run(std::future::pending()).await?;
/// assert_eq!(report.issued, 1);
/// assert_eq!(store.issued_count(campaign.id).await?, 1);
/// # Ok(()) }
/// ```
pub struct IssueWorker {
    source: Arc<dyn IssueSource>,
    store: Arc<dyn CouponStore>,
    config: WorkerConfig,
    totals: WorkerTotals,
}

/// What a worker has done so far, readable while it runs (for metrics): the sum of the
/// reports of the batches it finished.
///
/// ```
/// use coupon_core::memory::{MemoryQueue, MemoryStore};
/// use coupon_core::IssueWorker;
/// use std::sync::Arc;
/// let worker = IssueWorker::new(Arc::new(MemoryQueue::new(1)), Arc::new(MemoryStore::new()));
/// assert_eq!(worker.totals().report().issued, 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct WorkerTotals(Arc<std::sync::Mutex<WorkerReport>>);

impl WorkerTotals {
    /// The totals now.
    pub fn report(&self) -> WorkerReport {
        *crate::sync::lock(&self.0)
    }

    fn add(&self, batch: WorkerReport) {
        crate::sync::lock(&self.0).add(batch);
    }
}

impl IssueWorker {
    /// A worker with the default [`WorkerConfig`].
    pub fn new(source: Arc<dyn IssueSource>, store: Arc<dyn CouponStore>) -> Self {
        Self::with_config(source, store, WorkerConfig::default())
    }

    /// A worker with explicit settings.
    pub fn with_config(
        source: Arc<dyn IssueSource>,
        store: Arc<dyn CouponStore>,
        config: WorkerConfig,
    ) -> Self {
        Self {
            source,
            store,
            config,
            totals: WorkerTotals::default(),
        }
    }

    /// What this worker has done so far, shared: it goes on counting while the worker
    /// runs.
    pub fn totals(&self) -> WorkerTotals {
        self.totals.clone()
    }

    /// Processes batches until `shutdown` completes or the source is closed and drained.
    ///
    /// Shutdown is graceful: a batch in flight is finished and acked first, and no new
    /// batch is taken after `shutdown` completes. A batch still waiting for an
    /// unavailable store when shutdown arrives is left unacked, for the source to deliver
    /// again. Source errors are retried with backoff when retryable and returned
    /// otherwise.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<WorkerReport> {
        let signal = std::pin::pin!(shutdown);
        let mut stop = Stop {
            signal,
            fired: false,
        };
        let mut report = WorkerReport::default();
        let mut source_failures = 0;
        loop {
            let next = tokio::select! {
                biased;
                () = stop.wait() => break,
                next = self.source.next_batch(self.config.batch_size) => next,
            };
            match next {
                Ok(Some(batch)) => {
                    source_failures = 0;
                    match self.process_until(batch, &mut stop).await {
                        Ok(batch_report) => {
                            report.add(batch_report);
                            self.totals.add(batch_report);
                        }
                        Err(None) => break,
                        // The batch was not acked, so the source delivers it again.
                        Err(Some(error)) => {
                            tracing::warn!(%error, "batch left unacked for redelivery");
                            tokio::time::sleep(self.config.max_backoff).await;
                        }
                    }
                }
                Ok(None) => break,
                Err(error) if error.is_retryable() => {
                    source_failures += 1;
                    report.retries += 1;
                    tracing::warn!(%error, "issue source unavailable");
                    tokio::time::sleep(self.config.backoff(source_failures)).await;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(report)
    }

    /// Persists one batch (retrying retryable failures for as long as it takes, and
    /// splitting it to find the tickets a permanent error is about), records what the
    /// store refused, then acks it.
    ///
    /// An error means the batch was not acked: the ack failed for good.
    pub async fn process(&self, batch: Batch) -> Result<WorkerReport> {
        let mut never = Stop {
            signal: std::pin::pin!(std::future::pending::<()>()),
            fired: false,
        };
        match self.process_until(batch, &mut never).await {
            Ok(report) => Ok(report),
            Err(error) => Err(error.unwrap_or(Error::Closed { what: "worker" })),
        }
    }
}
