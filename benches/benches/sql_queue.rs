//! Accepted applies per second through the database's queue (`SqlIssueQueue`: group
//! commit), on SQLite and PostgreSQL, at 64 and 512 concurrent applicants, beside two
//! baselines in the same run: the in-process channel (no durability), and one
//! `INSERT` + `COMMIT` per ticket (durable, without grouping).
//!
//! ```sh
//! scripts/services.sh start /tmp/fc && source /tmp/fc/env
//! # PostgreSQL with fsync on (the harness's runs with fsync off), e.g. the machine's own:
//! export BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//! cargo bench -p firstcome-benches --bench sql_queue
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coupon_core::memory::{MemoryCounter, MemoryQueue};
use coupon_core::{
    ApplyOutcome, Campaign, CouponService, IssueQueue, IssueSource, IssueTicket, NewCampaign,
    UserId, codec,
};
use coupon_seaorm::{
    SeaOrmStore, SeaOrmStoreConfig, SqlIssueQueue, SqlQueueConfig, placeholder, testkit,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sea_orm::{ConnectionTrait, Statement};
use tokio::runtime::Runtime;

const CONCURRENCY: [u64; 2] = [64, 512];

/// The baseline queue: every ticket its own autocommitted `INSERT`.
struct OneCommitPerTicket {
    store: SeaOrmStore,
}

#[async_trait]
impl IssueQueue for OneCommitPerTicket {
    async fn publish(&self, ticket: &IssueTicket) -> coupon_core::Result<()> {
        let db = self.store.connection();
        let backend = db.get_database_backend();
        let [p1, p2, p3, p4, p5, p6] = [1, 2, 3, 4, 5, 6].map(|n| placeholder(backend, n));
        let sql = format!(
            "INSERT INTO issue_queue (ticket_id, campaign_id, user_id, ticket, enqueued_at, available_at, deliveries) VALUES ({p1}, {p2}, {p3}, {p4}, {p5}, {p6}, 0)"
        );
        let now = chrono::Utc::now();
        let mut values: Vec<sea_orm::Value> = vec![
            ticket.ticket_id.to_string().into(),
            (ticket.campaign.get() as i64).into(),
            (ticket.user.get() as i64).into(),
            String::from_utf8(codec::encode(ticket))
                .unwrap_or_default()
                .into(),
            now.into(),
        ];
        values.push(now.into()); // available_at
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .map(|_| ())
            .map_err(|e| coupon_core::Error::PublishRefused {
                backend: "bench",
                source: e.into(),
            })
    }
}

/// `CouponService::apply` from `tasks` concurrent tasks, each a new user, until `iters`
/// are accepted; the time taken.
fn rush(
    runtime: &Runtime,
    issuer: &Arc<CouponService>,
    campaign: &Campaign,
    next: &Arc<AtomicU64>,
    tasks: u64,
    iters: u64,
) -> Duration {
    let per_task = iters.div_ceil(tasks);
    runtime.block_on(async {
        let started = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let (issuer, campaign, next) = (issuer.clone(), campaign.id, next.clone());
            handles.push(tokio::spawn(async move {
                for _ in 0..per_task {
                    let user = UserId(next.fetch_add(1, Ordering::Relaxed));
                    let outcome = issuer.apply(campaign, user).await.expect("apply");
                    assert!(
                        matches!(outcome, ApplyOutcome::Accepted { .. }),
                        "{outcome:?}"
                    );
                }
            }));
        }
        for handle in handles {
            handle.await.expect("task");
        }
        started
            .elapsed()
            .mul_f64(iters as f64 / (per_task * tasks) as f64)
    })
}

async fn sqlite_store() -> SeaOrmStore {
    let path = std::env::temp_dir().join(format!(
        "firstcome-bench-queue-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    SeaOrmStore::connect(SeaOrmStoreConfig::new(format!(
        "sqlite://{}?mode=rwc",
        path.display()
    )))
    .await
    .expect("SQLite store")
}

async fn postgres_store() -> SeaOrmStore {
    let server = std::env::var("BENCH_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| coupon_testkit::service_url("DATABASE_URL"));
    SeaOrmStore::connect(SeaOrmStoreConfig::new(
        testkit::fresh_database(&server).await,
    ))
    .await
    .expect("PostgreSQL store")
}

fn sql_queue(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut group = c.benchmark_group("sql_queue");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(6));
    group.warm_up_time(Duration::from_secs(1));

    let stores = runtime.block_on(async {
        [
            ("sqlite", sqlite_store().await),
            ("postgres", postgres_store().await),
        ]
    });
    // The in-process channel, drained as fast as it fills: what durability costs.
    {
        let store = stores[0].1.clone();
        let queue = Arc::new(MemoryQueue::new(65_536));
        let drain = queue.clone();
        runtime.spawn(async move {
            while let Ok(Some(batch)) = drain.next_batch(4_096).await {
                let _ = drain.ack(batch).await;
            }
        });
        let (issuer, campaign) = runtime.block_on(issuer(queue, store));
        let next = Arc::new(AtomicU64::new(0));
        for tasks in CONCURRENCY {
            group.bench_with_input(
                BenchmarkId::new("baseline: in-process channel", tasks),
                &tasks,
                |b, &tasks| {
                    b.iter_custom(|iters| rush(&runtime, &issuer, &campaign, &next, tasks, iters));
                },
            );
        }
    }
    for (name, store) in stores {
        for commits in [1, 2] {
            let config = SqlQueueConfig::default().with_concurrent_commits(commits);
            let grouped = Arc::new(SqlIssueQueue::new(&store, config));
            let (issuer, campaign) = runtime.block_on(self::issuer(grouped.clone(), store.clone()));
            let next = Arc::new(AtomicU64::new(0));
            for tasks in CONCURRENCY {
                let id = format!("SqlIssueQueue, {name}, {commits} commit(s) at once");
                group.bench_with_input(BenchmarkId::new(id, tasks), &tasks, |b, &tasks| {
                    b.iter_custom(|iters| rush(&runtime, &issuer, &campaign, &next, tasks, iters));
                });
            }
            println!("  {name}, {commits} at once: {} commits", grouped.commits());
        }
        let single = Arc::new(OneCommitPerTicket {
            store: store.clone(),
        });
        let (issuer, campaign) = runtime.block_on(self::issuer(single, store.clone()));
        let next = Arc::new(AtomicU64::new(0));
        for tasks in CONCURRENCY {
            group.bench_with_input(
                BenchmarkId::new(format!("baseline: one commit per ticket, {name}"), tasks),
                &tasks,
                |b, &tasks| {
                    b.iter_custom(|iters| rush(&runtime, &issuer, &campaign, &next, tasks, iters));
                },
            );
        }
    }
    group.finish();
}

async fn issuer(queue: Arc<dyn IssueQueue>, store: SeaOrmStore) -> (Arc<CouponService>, Campaign) {
    let store = Arc::new(store);
    let issuer = CouponService::new(Arc::new(MemoryCounter::new()), queue, store);
    let campaign = issuer
        .create_campaign(NewCampaign::new("bench", i64::MAX as u64))
        .await
        .expect("campaign");
    (Arc::new(issuer), campaign)
}

criterion_group!(benches, sql_queue);
criterion_main!(benches);
