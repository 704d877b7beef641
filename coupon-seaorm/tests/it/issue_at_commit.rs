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
    let again = IssueTicket::new(campaign.id, UserId(1), 1, 1);
    sql.publish(&again).await.expect("publish again");
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 100);
    assert_eq!(
        source.lag().await.expect("lag"),
        Some(50),
        "a duplicate is done"
    );
    let coupons = store
        .coupons_of(campaign.id, UserId(1))
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
