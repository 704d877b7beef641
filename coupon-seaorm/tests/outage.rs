//! The worker through database faults, on a PostgreSQL of the test's own: an outage of
//! a minute drops nothing; a ticket the store refuses for good is dead-lettered alone.
//! The counter lease through a session the database ended.

mod support;

use std::sync::Arc;
use std::time::Duration;

use coupon_core::memory::MemoryQueue;
use coupon_core::{
    CouponStore, IssueQueue, IssueTicket, IssueWorker, NewCampaign, UserId, WorkerReport,
};
use coupon_seaorm::{CounterLease, SeaOrmStore, SeaOrmStoreConfig};
use coupon_testkit::services::PrivateService;
use coupon_testkit::wait_for_issued;

async fn publish(queue: &MemoryQueue, tickets: &[IssueTicket]) {
    for ticket in tickets {
        queue.publish(ticket).await.expect("publish");
    }
}

/// PostgreSQL is killed with 2,000 tickets accepted, half of them not yet persisted, and
/// stays away for 60 s while 1,000 more arrive. The worker runs on its defaults. When
/// the database is back, all 3,000 are persisted, none twice, none dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minute_without_the_database_drops_no_ticket() {
    let pg = PrivateService::start("postgres");
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port());
    let store = Arc::new(
        SeaOrmStore::connect(SeaOrmStoreConfig::new(&url))
            .await
            .expect("connect"),
    );
    let campaign = store
        .create_campaign(NewCampaign::new("outage", 5_000))
        .await
        .expect("campaign");
    let tickets: Vec<IssueTicket> = (1..=3_000)
        .map(|user| IssueTicket::new(campaign.id, UserId(user), 1, user))
        .collect();
    let queue = Arc::new(MemoryQueue::new(10_000));
    publish(&queue, &tickets[..1_000]).await;

    let worker = IssueWorker::new(queue.clone(), store.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        worker
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });
    assert_eq!(
        wait_for_issued(store.as_ref(), campaign.id, 1_000, Duration::from_secs(30)).await,
        1_000
    );

    publish(&queue, &tickets[1_000..2_000]).await;
    pg.kill();
    publish(&queue, &tickets[2_000..]).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    pg.restart();

    let issued = wait_for_issued(store.as_ref(), campaign.id, 3_000, Duration::from_secs(60)).await;
    let _ = stop.send(());
    let report: WorkerReport = running.await.expect("worker task").expect("worker");
    assert_eq!(issued, 3_000, "every accepted ticket persisted");
    assert_eq!(report.dead_lettered, 0, "nothing dead-lettered: {report:?}");
    assert!(report.retries > 0, "the worker did wait: {report:?}");
    assert_eq!(
        store.holders(campaign.id).await.expect("holders").len(),
        3_000
    );
    assert!(
        store
            .failures(Some(campaign.id))
            .await
            .expect("failures")
            .is_empty(),
        "no failure recorded"
    );
}

/// One ticket among 500 that no coupon row can hold (a rank past a signed 64-bit
/// column): the batch is split until that ticket is found; 499 coupons, one durable
/// failure record naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_ticket_in_a_batch_of_500_is_dead_lettered_alone() {
    let store = Arc::new(support::postgres().await);
    let campaign = store
        .create_campaign(NewCampaign::new("poison", 1_000))
        .await
        .expect("campaign");
    let mut tickets: Vec<IssueTicket> = (1..=500)
        .map(|user| IssueTicket::new(campaign.id, UserId(user), 1, user))
        .collect();
    tickets[321] = IssueTicket::new(campaign.id, UserId(322), 1, u64::MAX);
    let queue = Arc::new(MemoryQueue::new(1_000));
    publish(&queue, &tickets).await;
    queue.close();

    let report = IssueWorker::new(queue, store.clone())
        .run(std::future::pending())
        .await
        .expect("worker");
    assert_eq!(
        (report.batches, report.issued, report.dead_lettered),
        (1, 499, 1)
    );
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 499);
    let failures = store.failures(Some(campaign.id)).await.expect("failures");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].ticket, tickets[321]);
    assert!(failures[0].error.contains("rank"), "{}", failures[0].error);
    assert!(
        store
            .coupons_of(campaign.id, UserId(322))
            .await
            .expect("coupons_of")
            .is_empty()
    );
}

/// The counter lease on each server database: one holder at a time; a session the
/// database ended (an administrator, a holder gone silent) loses the lease, the check
/// says so, and another process takes it.
async fn one_holder_of_the_lease_at_a_time(url: &str, end_sessions: &str) {
    let (mut first, mut second) = (CounterLease::new(url), CounterLease::new(url));
    assert!(first.try_acquire().await.expect("first"));
    assert!(
        !second.try_acquire().await.expect("second"),
        "held by the first"
    );
    assert!(first.check().await.expect("check"), "still the first's");
    let admin = sea_orm::Database::connect(url).await.expect("connect");
    sea_orm::ConnectionTrait::execute_unprepared(&admin, end_sessions)
        .await
        .expect("end the holder's session");
    assert!(!first.check().await.unwrap_or(false), "the session ended");
    assert!(second.try_acquire().await.expect("second"), "free again");
    assert!(
        !first.try_acquire().await.expect("first again"),
        "the second's now"
    );
}

#[tokio::test]
async fn the_counter_lease_on_postgres() {
    let url = support::fresh_database(&coupon_testkit::service_url("DATABASE_URL")).await;
    let database = url.rsplit('/').next().expect("a database name").to_owned();
    let end = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    );
    one_holder_of_the_lease_at_a_time(&url, &end).await;
}
