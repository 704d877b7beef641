//! The SQL hand-off with `issue_at_commit` (the embedded default's): a ticket is its
//! coupon once `publish` returns, with no worker running, and only what cannot be issued
//! (over the cap) waits in the table for a worker.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;

use coupon_core::memory::MemoryCounter;
use coupon_core::{
    ApplyOutcome, CouponService, CouponStore, IssueQueue, IssueSource, IssueTicket, NewCampaign,
    UserId,
};
use coupon_seaorm::{SeaOrmStore, SqlIssueQueue, SqlQueueConfig};
use tokio::task::JoinSet;

fn issuing(store: &SeaOrmStore) -> SqlIssueQueue {
    SqlIssueQueue::new(store, SqlQueueConfig::default().with_issue_at_commit(true))
}

/// The queue's own contract still holds for every ticket the table keeps (here: of
/// campaigns the store does not know, so none is issued at commit).
fn queue_and_source(
    store: &SeaOrmStore,
) -> (Arc<SqlIssueQueue>, Arc<coupon_seaorm::SqlIssueSource>) {
    let sql = issuing(store);
    (Arc::new(sql.clone()), Arc::new(sql.source()))
}

coupon_testkit::queue_scenarios!(
    sqlite_issuing,
    queue_and_source(&support::sqlite_file().await)
);

/// 150 concurrent publishes on cap 100, no worker: when they have returned, exactly 100
/// coupons are stored and the 50 over the cap wait in the table; publishing an issued
/// ticket again stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_published_ticket_is_its_coupon_when_publish_returns() {
    let store = support::sqlite_file().await;
    let campaign = store
        .create_campaign(NewCampaign::new("at commit", 100))
        .await
        .expect("campaign");
    let sql = issuing(&store);
    let mut tasks = JoinSet::new();
    for user in 1..=150u64 {
        let sql = sql.clone();
        tasks.spawn(async move {
            let ticket = IssueTicket::new(campaign.id, UserId(user), 1, user);
            sql.publish(&ticket).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("publish");
    }
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 100);
    assert!(
        sql.commits() < 150,
        "{} commits: not grouped",
        sql.commits()
    );
    let source = sql.source();
    assert_eq!(
        source.lag().await.expect("lag"),
        Some(50),
        "over the cap: left for the worker"
    );
    // Which 100 of the 150 were issued depends on the order their publishes met the
    // commit turn: publish again the ticket of one that was.
    let mut holder = None;
    for user in 1..=150u64 {
        if !store
            .coupons_of(campaign.id, UserId(user))
            .await
            .expect("coupons")
            .is_empty()
        {
            holder = Some(user);
            break;
        }
    }
    let holder = holder.expect("a holder");
    let again = IssueTicket::new(campaign.id, UserId(holder), 1, holder);
    sql.publish(&again).await.expect("publish again");
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 100);
    assert_eq!(
        source.lag().await.expect("lag"),
        Some(50),
        "a duplicate is done"
    );
    let coupons = store
        .coupons_of(campaign.id, UserId(holder))
        .await
        .expect("coupons");
    assert_eq!(coupons.len(), 1);
    assert_eq!(coupons[0].ticket_id, again.ticket_id);
}

/// 1,000 applicants on cap 100 through the service, and no worker at all: when the
/// applies have returned, each of the 100 told yes holds a coupon with the rank they
/// were told, and nothing waits in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_yes_is_a_coupon_without_a_worker() {
    let store = Arc::new(support::sqlite_file().await);
    let sql = issuing(&store);
    let service = Arc::new(CouponService::new(
        Arc::new(MemoryCounter::new()),
        Arc::new(sql.clone()),
        store.clone(),
    ));
    let campaign = service
        .create_campaign(NewCampaign::new("no worker", 100))
        .await
        .expect("campaign");
    let mut tasks = JoinSet::new();
    for user in 1..=1_000u64 {
        let service = service.clone();
        tasks.spawn(async move { (user, service.apply(campaign.id, UserId(user)).await) });
    }
    let mut told_yes = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (user, outcome) = joined.expect("task");
        match outcome.expect("apply") {
            ApplyOutcome::Accepted { rank, .. } => {
                told_yes.insert(user, rank);
            }
            ApplyOutcome::SoldOut => {}
            other => panic!("user {user}: {other:?}"),
        }
    }
    assert_eq!(told_yes.len(), 100);
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 100);
    for (&user, &rank) in &told_yes {
        let coupons = store
            .coupons_of(campaign.id, UserId(user))
            .await
            .expect("coupons");
        assert_eq!(coupons.len(), 1, "user {user}");
        assert_eq!(coupons[0].rank, rank, "user {user}");
    }
    assert_eq!(sql.source().lag().await.expect("lag"), Some(0));
}

/// A per-user limit of 2: a user's two slots are two coupons, and either slot published
/// again is none; all in one group or apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_users_slots_are_one_coupon_each() {
    let store = support::sqlite_file().await;
    let campaign = store
        .create_campaign(NewCampaign::new("two each", 10).per_user_limit(2))
        .await
        .expect("campaign");
    let sql = issuing(&store);
    let slot = |slot: u32, rank: u64| IssueTicket::new(campaign.id, UserId(7), slot, rank);
    let mut tasks = JoinSet::new();
    for ticket in [slot(1, 1), slot(2, 2), slot(2, 2), slot(1, 1)] {
        let sql = sql.clone();
        tasks.spawn(async move { sql.publish(&ticket).await });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("publish");
    }
    sql.publish(&slot(2, 2)).await.expect("publish again");
    let coupons = store
        .coupons_of(campaign.id, UserId(7))
        .await
        .expect("coupons");
    let mut ranks: Vec<u64> = coupons.iter().map(|coupon| coupon.rank).collect();
    ranks.sort_unstable();
    assert_eq!(ranks, vec![1, 2]);
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 2);
    assert_eq!(sql.source().lag().await.expect("lag"), Some(0));
}

/// A ticket the store refuses with an error (here a trigger refusing user 13's coupon)
/// does not refuse the others of its group: issuing the group fails, so the group is
/// inserted as rows instead, every publish is answered yes, and the worker issues the
/// others and dead-letters that one alone, as with the table hand-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ticket_that_cannot_be_issued_leaves_its_group_to_the_worker() {
    use coupon_core::{FailureLedger, IssueWorker};
    use sea_orm::ConnectionTrait;
    let store_url = support::sqlite_file_url();
    let store = Arc::new(
        SeaOrmStore::connect(coupon_seaorm::SeaOrmStoreConfig::new(store_url.clone()))
            .await
            .expect("SQLite file"),
    );
    store
        .connection()
        .execute_unprepared(
            "CREATE TRIGGER refuse_13 BEFORE INSERT ON coupon WHEN NEW.user_id = 13 \
             BEGIN SELECT RAISE(ABORT, 'user 13 refused by the test'); END",
        )
        .await
        .expect("trigger");
    let campaign = store
        .create_campaign(NewCampaign::new("one refused", 10))
        .await
        .expect("campaign");
    let sql = issuing(&store);
    // Another connection holds SQLite's write lock, so that user 11's publish takes the
    // commit turn alone and waits, and the other four gather behind it as one group.
    let mut options = sea_orm::ConnectOptions::new(store_url.clone());
    options.max_connections(1);
    let locker = sea_orm::Database::connect(options)
        .await
        .expect("a second connection");
    locker
        .execute_unprepared("BEGIN IMMEDIATE")
        .await
        .expect("the write lock");
    let publish = |user: u64| {
        let sql = sql.clone();
        let ticket = IssueTicket::new(campaign.id, UserId(user), 1, user);
        tokio::spawn(async move { (user, sql.publish(&ticket).await) })
    };
    let first = publish(11);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let rest: Vec<_> = (12..=15).map(publish).collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    locker.execute_unprepared("COMMIT").await.expect("let go");
    for task in std::iter::once(first).chain(rest) {
        let (user, answer) = task.await.expect("task");
        answer.unwrap_or_else(|error| panic!("user {user}'s publish: {error}"));
    }
    assert_eq!(
        sql.commits(),
        2,
        "user 11 alone, then the other four together"
    );
    let source = Arc::new(sql.source());
    assert_eq!(
        source.lag().await.expect("lag"),
        Some(4),
        "user 13's whole group waits in the table; user 11 was issued at commit"
    );

    let worker = IssueWorker::new(source.clone(), store.clone()).spawn();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while source.lag().await.expect("lag") != Some(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker left rows"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let report = worker.stop().await.expect("worker");
    let mut issued = Vec::new();
    for user in 11..=15u64 {
        let coupons = store
            .coupons_of(campaign.id, UserId(user))
            .await
            .expect("coupons");
        issued.extend(coupons.iter().map(|coupon| coupon.user.get()));
    }
    assert_eq!(issued, [11, 12, 14, 15], "{report:?}");
    let failures = store.failures(Some(campaign.id)).await.expect("failures");
    let refused: Vec<(u64, &str)> = failures
        .iter()
        .map(|failure| (failure.ticket.user.get(), failure.error.as_str()))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, 13, "{refused:?}");
    assert!(refused[0].1.contains("refused by the test"), "{refused:?}");
}
