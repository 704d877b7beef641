//! [`IssueQueue`] as a table: `publish` returns once the ticket is committed, and
//! concurrent publishes share one commit.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use coupon_core::{Error, IssueQueue, IssueTicket, QueueMark, Result};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::{Notify, oneshot};

use crate::error::{BACKEND, classify};
use crate::sql::SqlBuilder;
use crate::{SeaOrmStore, SqlIssueSource};

/// Settings of the SQL hand-off ([`SqlIssueQueue`] and [`SqlIssueSource`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqlQueueConfig {
    /// How long a batch handed to a worker stays its own: a worker that dies mid-batch
    /// leaves its tickets to be taken again this long after it took them. Default 60 s.
    pub lease: Duration,
    /// How often an idle source looks for tickets published by other processes (those
    /// of its own process wake it at once). Default 50 ms.
    pub poll_interval: Duration,
    /// Most tickets committed together. Default 2,000.
    pub max_group: usize,
    /// Groups committed at once. Default 1: measured on SQLite and PostgreSQL, one group
    /// at a time gathers more tickets per commit and goes faster than two overlapping
    /// (docs/benchmarks.md).
    pub concurrent_commits: usize,
    /// The store is the queue: each group's tickets become their coupons in the commit
    /// that makes them durable (one write per coupon instead of three: a queue row, the
    /// coupon, the row's delete), and only a ticket that cannot be issued there (over
    /// the cap, an unknown campaign, numbers no row holds) is left in `issue_queue` for
    /// a worker to settle as before. Default off. For SQLite only, whose one writer
    /// serialises every transaction anyway ([`SqlIssueQueue::new`] turns it off on
    /// other databases: there the campaign rows it locks inside the queue's commit would
    /// serialise the admitting processes' commits, in the opposite lock order of a seal).
    pub issue_at_commit: bool,
}

impl Default for SqlQueueConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(50),
            max_group: 2_000,
            concurrent_commits: 1,
            issue_at_commit: false,
        }
    }
}

impl SqlQueueConfig {
    /// Sets [`SqlQueueConfig::lease`].
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets [`SqlQueueConfig::max_group`] (at least 1).
    pub fn with_max_group(mut self, max_group: usize) -> Self {
        self.max_group = max_group.max(1);
        self
    }

    /// Sets [`SqlQueueConfig::concurrent_commits`] (at least 1).
    pub fn with_concurrent_commits(mut self, commits: usize) -> Self {
        self.concurrent_commits = commits.max(1);
        self
    }

    /// Sets [`SqlQueueConfig::issue_at_commit`].
    pub fn with_issue_at_commit(mut self, issue: bool) -> Self {
        self.issue_at_commit = issue;
        self
    }

    /// Sets [`SqlQueueConfig::poll_interval`] (at least 1 ms).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }
}

/// What the producing and consuming sides of one process share.
pub(crate) struct Shared {
    pub(crate) db: DatabaseConnection,
    pub(crate) config: SqlQueueConfig,
    pending: Mutex<Vec<Waiting>>,
    /// A permit per group being committed: the others queue behind them and usually
    /// find their ticket committed when their turn comes.
    committing: tokio::sync::Semaphore,
    /// Wakes this process's sources when tickets were committed.
    pub(crate) arrived: Notify,
    pub(crate) commits: AtomicU64,
}

pub(crate) struct Waiting {
    pub(crate) ticket: IssueTicket,
    pub(crate) done: oneshot::Sender<Result<()>>,
}

/// The hand-off as a table in the coupons' database (`issue_queue`), the
/// transactional-outbox pattern: no broker to run, and a ticket is as durable as a
/// coupon.
///
/// - `publish` returns only once the ticket's row is committed (durable as far as the
///   database's settings make commits durable). Concurrent publishes share one
///   transaction: the first caller to find no commit in progress commits every ticket
///   queued behind it, so a rush costs one commit per group, not one per apply.
/// - A failure before `COMMIT` is a definite refusal (nothing was stored); a failed
///   `COMMIT` is an unknown outcome.
/// - Publishing a ticket twice stores it twice; the store keeps one coupon.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
/// use coupon_core::{IssueQueue, IssueSource, IssueTicket, CampaignId, UserId};
/// use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig, SqlIssueQueue, SqlQueueConfig};
///
/// let store = SeaOrmStore::connect(SeaOrmStoreConfig::new("sqlite::memory:")).await?;
/// let queue = SqlIssueQueue::new(&store, SqlQueueConfig::default());
/// queue.publish(&IssueTicket::new(CampaignId(1), UserId(2), 1, 1)).await?;
/// let batch = queue.source().next_batch(10).await?.expect("the ticket");
/// assert_eq!(batch.tickets[0].user, UserId(2));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqlIssueQueue {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for SqlIssueQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlIssueQueue")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl SqlIssueQueue {
    /// The queue on `store`'s database (whose migrations created its table).
    /// [`SqlQueueConfig::issue_at_commit`] is honoured on SQLite only (with a warning
    /// elsewhere): on a server database its commits would take the campaign rows' locks
    /// after the epoch rows', the opposite of a seal's order.
    pub fn new(store: &SeaOrmStore, mut config: SqlQueueConfig) -> Self {
        if config.issue_at_commit
            && store.connection().get_database_backend() != sea_orm::DbBackend::Sqlite
        {
            tracing::warn!(
                "issue_at_commit is for SQLite only; this queue hands tickets to the worker"
            );
            config.issue_at_commit = false;
        }
        let permits = config.concurrent_commits.max(1);
        Self {
            shared: Arc::new(Shared {
                db: store.connection().clone(),
                config,
                pending: Mutex::new(Vec::new()),
                committing: tokio::sync::Semaphore::new(permits),
                arrived: Notify::new(),
                commits: AtomicU64::new(0),
            }),
        }
    }

    /// The consuming side, woken at once by this queue's commits.
    pub fn source(&self) -> SqlIssueSource {
        SqlIssueSource::new(self.shared.clone())
    }

    /// Transactions that committed tickets so far: fewer than publishes under load.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl IssueQueue for SqlIssueQueue {
    async fn publish(&self, ticket: &IssueTicket) -> Result<()> {
        let (done, mut committed) = oneshot::channel();
        self.lock_pending().push(Waiting {
            ticket: ticket.clone(),
            done,
        });
        loop {
            let Ok(turn) = self.shared.committing.acquire().await else {
                return Err(Error::Closed { what: "sql queue" });
            };
            if let Ok(result) = committed.try_recv() {
                return result; // a group committed ahead of us took our ticket
            }
            let group: Vec<Waiting> = {
                let mut pending = self.lock_pending();
                let take = pending.len().min(self.shared.config.max_group);
                pending.drain(..take).collect()
            };
            if group.is_empty() {
                // Ours is in a group whose commit still runs (its caller went away).
                drop(turn);
                return committed.await.unwrap_or_else(|_| {
                    Err(Error::PublishUnknown {
                        backend: BACKEND,
                        source: "the committing task ended without an answer".into(),
                    })
                });
            }
            // On a task of its own, so that a caller going away mid-commit cannot leave
            // the others of its group without an answer.
            let shared = self.shared.clone();
            let _ = tokio::spawn(async move { crate::commit::commit_group(&shared, group).await })
                .await;
            drop(turn);
            if let Ok(result) = committed.try_recv() {
                return result;
            }
            // More were queued than one group holds, ours among the later ones.
        }
    }

    /// The table answers a read.
    async fn ready(&self) -> Result<()> {
        let backend = self.shared.db.get_database_backend();
        self.shared
            .db
            .query_one_raw(
                SqlBuilder::new(backend, "SELECT 1 FROM issue_queue WHERE 1 = 0").build(),
            )
            .await
            .map(|_| ())
            .map_err(|e| classify(e, || "reading issue_queue".to_owned()))
    }

    /// Kept in the store's own database: its seals count the rows waiting here, and a
    /// publish of a superseded ticket is refused in the same transaction as its insert.
    fn in_store(&self) -> bool {
        true
    }

    /// The highest row id committed so far.
    async fn mark(&self) -> Result<Option<QueueMark>> {
        let top = self
            .count("SELECT COALESCE(MAX(id), 0) FROM issue_queue")
            .await?;
        Ok(Some(QueueMark {
            positions: vec![top],
        }))
    }

    /// No row at or below the mark waits (parked rows are dead letters: done).
    async fn drained(&self, mark: &QueueMark) -> Result<bool> {
        let top = mark.positions.first().copied().unwrap_or(0);
        let waiting = self
            .count(&format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM issue_queue WHERE dead_reason IS NULL AND id <= {top} LIMIT 1) waiting"
            ))
            .await?;
        Ok(waiting == 0)
    }
}

impl SqlIssueQueue {
    /// The single integer `sql` selects.
    async fn count(&self, sql: &str) -> Result<i64> {
        let backend = self.shared.db.get_database_backend();
        let row = self
            .shared
            .db
            .query_one_raw(SqlBuilder::new(backend, sql).build())
            .await
            .map_err(|e| classify(e, || format!("{sql:?}")))?;
        match row {
            Some(row) => row
                .try_get_by_index::<i64>(0)
                .map_err(|e| classify(e, || format!("{sql:?}"))),
            None => Ok(0),
        }
    }
}
