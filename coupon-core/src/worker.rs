//! The issuing worker: source batches -> idempotent store -> ack.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Batch, CouponStore, Error, IssueFailure, IssueOutcome, IssueSource, IssueTicket, Result,
};

/// Settings of an [`IssueWorker`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Most tickets persisted in one store transaction. Default 500.
    pub batch_size: usize,
    /// Attempts at persisting a batch before its tickets are dead-lettered, counting the
    /// first. Only retryable errors are retried. Default 8.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles each attempt. Default 50 ms.
    pub initial_backoff: Duration,
    /// Upper bound of the wait between attempts. Default 5 s.
    pub max_backoff: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            max_attempts: 8,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl WorkerConfig {
    /// Sets [`WorkerConfig::batch_size`] (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Sets [`WorkerConfig::max_attempts`] (at least 1).
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Sets the backoff bounds.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// The wait after failed attempt number `attempt` (1-based).
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
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
    /// Tickets found already stored (redeliveries, repeated users).
    pub duplicates: u64,
    /// Tickets the store refused because the campaign was full; recorded as failures.
    pub over_cap: u64,
    /// Tickets dead-lettered (retry budget spent, permanent error, unknown campaign).
    pub dead_lettered: u64,
}

impl WorkerReport {
    fn add(&mut self, other: WorkerReport) {
        self.batches += other.batches;
        self.issued += other.issued;
        self.duplicates += other.duplicates;
        self.over_cap += other.over_cap;
        self.dead_lettered += other.dead_lettered;
    }
}

/// Moves tickets from an [`IssueSource`] into a [`CouponStore`], acking each batch only
/// after every ticket in it is persisted or dead-lettered.
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
/// queue.publish(&IssueTicket::new(campaign.id, UserId(7), 1)).await?;
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
        }
    }

    /// Processes batches until `shutdown` completes or the source is closed and drained.
    ///
    /// Shutdown is graceful: a batch in flight is finished and acked first; no new batch
    /// is taken after `shutdown` completes. Source errors are retried with backoff when
    /// retryable and returned otherwise.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<WorkerReport> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut report = WorkerReport::default();
        let mut source_failures = 0;
        loop {
            let next = tokio::select! {
                biased;
                () = &mut shutdown => break,
                next = self.source.next_batch(self.config.batch_size) => next,
            };
            match next {
                Ok(Some(batch)) => {
                    source_failures = 0;
                    match self.process(batch).await {
                        Ok(batch_report) => report.add(batch_report),
                        // The batch was not acked, so the source delivers it again.
                        Err(error) => {
                            tracing::warn!(%error, "batch left unacked for redelivery");
                            tokio::time::sleep(self.config.max_backoff).await;
                        }
                    }
                }
                Ok(None) => break,
                Err(error) if error.is_retryable() => {
                    source_failures += 1;
                    tracing::warn!(%error, "issue source unavailable");
                    tokio::time::sleep(self.config.backoff(source_failures)).await;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(report)
    }

    /// Persists one batch (retrying retryable store errors), dead-letters what cannot be
    /// persisted, then acks it.
    ///
    /// An error means the batch was not acked: a dead-letter hand-off or the ack failed.
    pub async fn process(&self, batch: Batch) -> Result<WorkerReport> {
        let mut report = WorkerReport {
            batches: 1,
            ..WorkerReport::default()
        };
        match self.persist(&batch.tickets).await {
            Ok(outcomes) => {
                for (ticket, outcome) in batch.tickets.iter().zip(outcomes) {
                    match outcome {
                        IssueOutcome::Issued(_) => report.issued += 1,
                        IssueOutcome::Duplicate => report.duplicates += 1,
                        IssueOutcome::OverCap => {
                            report.over_cap += 1;
                            // The store held the cap against an admission the counter made:
                            // the counter lost data or was restored wrongly. Keep a trace.
                            tracing::error!(campaign = %ticket.campaign, user = %ticket.user, "ticket over cap refused by the store");
                            self.record(ticket, "over cap: the store refused it", 1)
                                .await;
                        }
                        IssueOutcome::UnknownCampaign => {
                            self.give_up(ticket, "unknown campaign", 1).await?;
                            report.dead_lettered += 1;
                        }
                    }
                }
            }
            Err((error, attempts)) => {
                let reason = error.to_string();
                for ticket in &batch.tickets {
                    self.give_up(ticket, &reason, attempts).await?;
                }
                report.dead_lettered += batch.tickets.len() as u64;
            }
        }
        self.source.ack(batch).await?;
        Ok(report)
    }

    /// `issue_batch` with the retry budget; on failure, the last error and attempts made.
    async fn persist(
        &self,
        tickets: &[IssueTicket],
    ) -> std::result::Result<Vec<IssueOutcome>, (Error, u32)> {
        let mut attempt = 1;
        loop {
            match self.store.issue_batch(tickets).await {
                Ok(outcomes) if outcomes.len() == tickets.len() => return Ok(outcomes),
                Ok(outcomes) => {
                    let error = Error::backend(
                        "store",
                        format!(
                            "issue_batch answered {} outcomes for {} tickets",
                            outcomes.len(),
                            tickets.len()
                        ),
                        None,
                    );
                    return Err((error, attempt));
                }
                Err(error) if error.is_retryable() && attempt < self.config.max_attempts => {
                    tracing::warn!(%error, attempt, "issue_batch failed, retrying");
                    tokio::time::sleep(self.config.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err((error, attempt)),
            }
        }
    }

    /// Records the failure (best effort: the store may be what is failing) and parks the
    /// ticket on the dead-letter path, which must succeed before the batch is acked.
    async fn give_up(&self, ticket: &IssueTicket, reason: &str, attempts: u32) -> Result<()> {
        self.record(ticket, reason, attempts).await;
        self.source.dead_letter(ticket, reason).await
    }

    async fn record(&self, ticket: &IssueTicket, reason: &str, attempts: u32) {
        let failure = IssueFailure::new(ticket.clone(), reason, attempts);
        if let Err(error) = self.store.record_failure(&failure).await {
            tracing::warn!(ticket = %ticket.ticket_id, %error, "could not record an issue failure");
        }
    }
}
