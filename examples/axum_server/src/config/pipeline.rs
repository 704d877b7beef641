//! The settings of admission, the worker and the settler.

use clap::Args;

#[allow(clippy::wildcard_imports)]
use super::*;

/// The worker that persists tickets, and the settler that rolls admissions forward.
#[derive(Clone, Args)]
#[command(next_help_heading = "Worker and settler")]
pub struct WorkerSettings {
    /// Tickets per store transaction in the worker.
    #[arg(long, env = "WORKER_BATCH_SIZE", default_value_t = WorkerConfig::default().batch_size)]
    pub worker_batch_size: usize,
    /// The worker's first wait (ms) after a store or queue error; it doubles up to
    /// `--worker-max-backoff-ms`.
    #[arg(long, env = "WORKER_INITIAL_BACKOFF_MS", default_value_t = ms(WorkerConfig::default().initial_backoff))]
    pub worker_initial_backoff_ms: u64,
    /// The worker's longest wait (ms) between retries; it retries without end.
    #[arg(long, env = "WORKER_MAX_BACKOFF_MS", default_value_t = ms(WorkerConfig::default().max_backoff))]
    pub worker_max_backoff_ms: u64,
    /// How often (ms) a waiting worker keeps its source alive (Kafka: polls, so the
    /// group keeps its partitions).
    #[arg(long, env = "WORKER_KEEP_ALIVE_MS", default_value_t = ms(WorkerConfig::default().keep_alive_interval))]
    pub worker_keep_alive_ms: u64,
    /// How old (ms) an admission without a coupon must be before the settler publishes
    /// its ticket again.
    #[arg(long, env = "SETTLE_GRACE_MS", default_value_t = ms(SettlerConfig::default().grace))]
    pub settle_grace_ms: u64,
    /// How often (ms) the settler passes over every campaign.
    #[arg(long, env = "SETTLE_INTERVAL_MS", default_value_t = ms(SettlerConfig::default().interval))]
    pub settle_interval_ms: u64,
}

/// How an apply is answered: the queue it hands off to and what it caches.
#[derive(Clone, Args)]
#[command(next_help_heading = "Admission")]
pub struct IssuerSettings {
    /// The hand-off: `auto` is Kafka when KAFKA_BROKERS is set, else the database's
    /// `issue_queue` table (on SQLite, tickets become coupons in the commit that makes
    /// them durable; `sql` keeps them in the table for the worker).
    #[arg(long, env = "QUEUE", value_enum, default_value = "auto")]
    pub queue: QueueKind,
    /// Tickets the in-process queue (`--queue memory`) holds before an apply waits.
    #[arg(long, env = "MEMORY_QUEUE_CAPACITY", default_value_t = 100_000)]
    pub memory_queue_capacity: usize,
    /// How long (ms) a "sold out" answer from the counter is reused in this process
    /// (0: ask the counter every time).
    #[arg(long, env = "SOLD_OUT_TTL_MS", default_value_t = ms(IssuerConfig::default().sold_out_ttl))]
    pub sold_out_ttl_ms: u64,
    /// Longest wait (ms) for the queue to take an admitted ticket; after it the apply
    /// answers `pending` and settlement rolls it forward. Also bounds each settlement
    /// pass's republishes.
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = ms(IssuerConfig::default().publish_timeout))]
    pub publish_timeout_ms: u64,
    /// How long (ms) a campaign's definition is cached before it is read again (how
    /// soon a close or reopen by another process takes effect here).
    #[arg(long, env = "CAMPAIGN_REFRESH_MS", default_value_t = ms(IssuerConfig::default().campaign_refresh))]
    pub campaign_refresh_ms: u64,
    /// How long (ms) a counter rebuild waits for the queue to drain when the queue
    /// cannot tell its position (every queue this service runs on can: Kafka, the
    /// database's and the in-process one; it is for queues built on the library).
    #[arg(long, env = "DRAIN_FALLBACK_MS", default_value_t = ms(IssuerConfig::default().drain_fallback))]
    pub drain_fallback_ms: u64,
}
