//! Redis failures: data loss and restore, SCRIPT FLUSH, error classification. Each test
//! runs its own redis-server so that killing it disturbs no other test.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use coupon_core::memory::MemoryStore;
use coupon_core::testkit::fresh_campaign;
use coupon_core::{
    Admission, Campaign, CouponCounter, CouponStore, Error, IssueOutcome, IssueTicket, NewCampaign,
    UserId,
};
use coupon_redis::{RedisCounter, RedisCounterConfig};
use support::PrivateRedis;
use tokio::task::JoinSet;

/// Applies `users` concurrently; returns the granted tickets.
async fn apply_all(
    counter: &Arc<RedisCounter>,
    campaign: &Arc<Campaign>,
    users: impl Iterator<Item = u64>,
) -> Vec<IssueTicket> {
    let mut tasks = JoinSet::new();
    for user in users {
        let (counter, campaign) = (counter.clone(), campaign.clone());
        tasks.spawn(async move {
            let admission = counter.try_acquire(&campaign, UserId(user)).await;
            (user, admission)
        });
    }
    let mut granted = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (user, admission) = joined.expect("task");
        if let Admission::Granted { rank, slot, .. } = admission.expect("try_acquire") {
            granted.push(IssueTicket::new(campaign.id, UserId(user), slot, rank));
        }
    }
    granted
}

fn issued(outcomes: &[IssueOutcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, IssueOutcome::Issued(_)))
        .count()
}

/// Redis is killed and comes back empty mid-campaign; the counter is restored from the
/// store before admissions resume: in total exactly `cap` users are ever granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_then_restore_never_grants_past_the_cap() {
    let mut redis = PrivateRedis::start();
    let store = MemoryStore::new();
    let campaign = Arc::new(
        store
            .create_campaign(NewCampaign::new("restart", 200))
            .await
            .expect("campaign"),
    );
    let counter = Arc::new(
        RedisCounter::connect(RedisCounterConfig::new(redis.url()))
            .await
            .expect("connect"),
    );

    // Phase 1: 150 winners, all persisted by the worker.
    let first = apply_all(&counter, &campaign, 1..=150).await;
    assert_eq!(first.len(), 150);
    assert_eq!(
        issued(&store.issue_batch(&first).await.expect("persist")),
        150
    );

    // Redis dies: applies fail as retryable, never as a grant.
    redis.kill();
    let during = counter.try_acquire(&campaign, UserId(9_999)).await;
    match during {
        Err(error) => assert!(error.is_retryable(), "{error:?}"),
        Ok(other) => panic!("answered {other:?} with Redis down"),
    }

    // It comes back empty; restore from the store's truth before admitting again.
    redis.restart();
    let holders = store.coupon_slots(campaign.id).await.expect("coupon slots");
    let report = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            // The connection manager reconnects on its own; retry until it has.
            match counter.restore(&campaign, &holders).await {
                Ok(report) => return report,
                Err(error) if error.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(error) => panic!("restore failed: {error:?}"),
            }
        }
    })
    .await
    .expect("Redis back within 10 s");
    assert_eq!((report.added, report.admitted), (150, 150));

    // Phase 2: the old winners again plus 500 newcomers.
    let second = apply_all(&counter, &campaign, 1..=650).await;
    assert_eq!(second.len(), 50, "only the 50 slots left are granted");
    assert!(
        second.iter().all(|t| t.user.get() > 150),
        "no old winner wins twice"
    );
    assert_eq!(
        issued(&store.issue_batch(&second).await.expect("persist")),
        50
    );

    let everyone: HashSet<UserId> = first.iter().chain(&second).map(|t| t.user).collect();
    assert_eq!(everyone.len(), 200);
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 200);
    assert_eq!(
        counter.status(campaign.id).await.expect("status").admitted,
        200
    );
}

/// Restoring while applications keep arriving never lowers the count, and the store
/// still holds the cap whatever the counter admitted in the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_during_applies_keeps_the_store_at_the_cap() {
    let redis = PrivateRedis::start();
    let store = Arc::new(MemoryStore::new());
    let campaign = Arc::new(
        store
            .create_campaign(NewCampaign::new("gap", 100))
            .await
            .expect("campaign"),
    );
    // The store already holds 80 coupons; the counter lost them.
    let persisted: Vec<IssueTicket> = (1..=80)
        .map(|user| IssueTicket::new(campaign.id, UserId(user), 1, user))
        .collect();
    store.issue_batch(&persisted).await.expect("persist");
    let counter = Arc::new(
        RedisCounter::connect(RedisCounterConfig::new(redis.url()))
            .await
            .expect("connect"),
    );

    let holders = store.coupon_slots(campaign.id).await.expect("coupon slots");
    let restore = {
        let (counter, campaign) = (counter.clone(), campaign.clone());
        tokio::spawn(async move { counter.restore(&campaign, &holders).await })
    };
    let granted = apply_all(&counter, &campaign, 1_000..1_300).await;
    let report = restore.await.expect("task").expect("restore");
    assert_eq!(report.added, 80);

    let status = counter.status(campaign.id).await.expect("status").admitted;
    assert_eq!(
        status,
        80 + granted.len() as u64,
        "restore never lowers the count"
    );
    store.issue_batch(&granted).await.expect("persist");
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 100);
}

/// SCRIPT FLUSH while applies are in flight: EVALSHA fails with NOSCRIPT, the script is
/// reloaded, and every apply still gets an exact answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn script_flush_mid_run_keeps_applies_working() {
    let redis = PrivateRedis::start();
    let counter = Arc::new(
        RedisCounter::connect(RedisCounterConfig::new(redis.url()))
            .await
            .expect("connect"),
    );
    let campaign = Arc::new(fresh_campaign(500));
    let mut granted = 0;
    for round in 0..5u64 {
        assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]), "OK");
        let users = round * 1_000..round * 1_000 + 200;
        granted += apply_all(&counter, &campaign, users).await.len();
    }
    assert_eq!(granted, 500);
    assert_eq!(
        counter.status(campaign.id).await.expect("status").admitted,
        500
    );
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let config = RedisCounterConfig::new(format!("redis://127.0.0.1:{port}/"))
        .with_timeouts(Duration::from_millis(200), Duration::from_millis(200));
    match RedisCounter::connect(config).await {
        Err(error @ Error::Unavailable { .. }) => assert!(error.is_retryable()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_type_at_a_key_is_permanent_and_names_the_key() {
    let redis = PrivateRedis::start();
    let counter = RedisCounter::connect(RedisCounterConfig::new(redis.url()))
        .await
        .expect("connect");
    let campaign = fresh_campaign(10);
    let keys = counter.keys(campaign.id);
    assert_eq!(redis.cli(&["SET", &keys.users, "not a hash"]), "OK");

    let error = counter
        .try_acquire(&campaign, UserId(1))
        .await
        .expect_err("a string where a hash belongs");
    assert!(!error.is_retryable(), "{error:?}");
    assert!(matches!(error, Error::Backend { .. }), "{error:?}");
    assert!(error.to_string().contains(&keys.users), "{error}");
}

#[tokio::test]
async fn busy_loading_server_is_retryable() {
    // A replica that is loading its dataset answers LOADING; a script stuck past
    // lua-time-limit makes the server answer BUSY. Provoke BUSY with a long script.
    let redis = PrivateRedis::start_with(&["--busy-reply-threshold", "50"]);
    let counter = RedisCounter::connect(
        RedisCounterConfig::new(redis.url())
            .with_timeouts(Duration::from_secs(2), Duration::from_secs(1)),
    )
    .await
    .expect("connect");
    let port = redis.port.to_string();
    let spinner = std::thread::spawn(move || {
        std::process::Command::new("redis-cli")
            .args([
                "-p",
                &port,
                "EVAL",
                "local i = 0 while i < 200000000 do i = i + 1 end return i",
                "0",
            ])
            .output()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let error = counter
        .try_acquire(&fresh_campaign(10), UserId(1))
        .await
        .expect_err("the server is busy");
    assert!(error.is_retryable(), "{error:?}");
    assert!(error.to_string().contains("BUSY"), "{error}");
    spinner.join().expect("spinner").expect("redis-cli");
}
