//! Redis losing data (killed, restarted from a snapshot, a key deleted): the counter
//! admits no one until the fencing rebuild.

use coupon_core::AdmissionLedger;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use coupon_core::memory::MemoryStore;
use coupon_core::{
    Campaign, CouponCounter, CouponStore, Error, IssueOutcome, NewCampaign, Rebuild, SealedEpoch,
    UserId,
};
use coupon_redis::{RedisCounter, RedisCounterConfig};
use coupon_testkit::redis_servers::PrivateRedis;

use super::apply_all;

fn issued(outcomes: &[IssueOutcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, IssueOutcome::Issued(_)))
        .count()
}

/// A campaign in `store` whose counter is built on `counter`'s server.
async fn ready(store: &MemoryStore, counter: &RedisCounter, cap: u64) -> Arc<Campaign> {
    let campaign = store
        .create_campaign(NewCampaign::new("fault", cap))
        .await
        .expect("campaign");
    let built = counter
        .rebuild(&campaign, Arc::new(SealedEpoch::new(1, Vec::new())))
        .await
        .expect("build");
    assert!(matches!(built, Rebuild::Built(_)), "{built:?}");
    Arc::new(campaign)
}

/// Rebuilds from the store's coupons, retrying while Redis is still coming back.
async fn rebuild_from(store: &MemoryStore, counter: &RedisCounter, campaign: &Campaign) -> u64 {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let sealed = {
                let after = store.sealed_epoch(campaign.id).await.expect("epoch");
                store
                    .seal_epoch(campaign.id, after, &[])
                    .await
                    .expect("seal")
            };
            match counter.rebuild(campaign, Arc::new(sealed)).await {
                Ok(Rebuild::Built(report)) => return report.admitted,
                Ok(other) => panic!("rebuild answered {other:?}"),
                Err(error) if error.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(error) => panic!("rebuild failed: {error:?}"),
            }
        }
    })
    .await
    .expect("Redis back within 10 s")
}

/// Redis is killed and comes back empty mid-campaign. Before, the counter started
/// again from zero and granted another `cap`; now it refuses every apply as not ready
/// until it is rebuilt from the store, and in total exactly `cap` users are granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_empty_the_counter_admits_no_one_until_rebuilt() {
    let mut redis = PrivateRedis::start();
    let store = MemoryStore::new();
    let counter = Arc::new(
        RedisCounter::connect(RedisCounterConfig::new(redis.url()))
            .await
            .expect("connect"),
    );
    let campaign = ready(&store, &counter, 200).await;

    // Phase 1: 150 winners, all persisted by the worker.
    let (first, _) = apply_all(&counter, &campaign, 1..=150).await;
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

    // It comes back empty: nobody is admitted, old winners and newcomers alike.
    redis.restart();
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match counter.try_acquire(&campaign, UserId(1)).await {
                Err(Error::NotReady { .. }) => return,
                Err(error) if error.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                other => panic!("a counter that forgot answered {other:?}"),
            }
        }
    })
    .await;
    assert!(refused.is_ok(), "Redis back within 10 s");
    // Nor can it say who holds a slot: a winner asking would read "none".
    match counter.is_admitted(&campaign, UserId(1)).await {
        Err(Error::NotReady { .. }) => {}
        other => panic!("a counter that forgot answered is_admitted {other:?}"),
    }
    let (granted, not_ready) = apply_all(&counter, &campaign, 1..=650).await;
    assert!(
        granted.is_empty(),
        "granted {} while not ready",
        granted.len()
    );
    assert_eq!(not_ready, 650);

    assert_eq!(rebuild_from(&store, &counter, &campaign).await, 150);

    // Phase 2: the old winners again plus 500 newcomers.
    let (second, _) = apply_all(&counter, &campaign, 1..=650).await;
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
    let ranks: HashSet<u64> = first.iter().chain(&second).map(|t| t.rank).collect();
    assert_eq!(ranks, (1..=200).collect(), "ranks 1..=200 once each");
}

/// Restarted with its data (an RDB snapshot, as AOF or a promoted replica would bring
/// back): the keys are there but the server is another process, which may have missed
/// the last admissions, so the counter is not trusted until rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_server_with_the_data_is_not_trusted_until_rebuilt() {
    let mut redis = PrivateRedis::start();
    let store = MemoryStore::new();
    let counter = Arc::new(
        RedisCounter::connect(RedisCounterConfig::new(redis.url()))
            .await
            .expect("connect"),
    );
    let campaign = ready(&store, &counter, 100).await;
    let (first, _) = apply_all(&counter, &campaign, 1..=40).await;
    assert_eq!(first.len(), 40);
    assert_eq!(redis.cli(&["SAVE"]), "OK");
    // Admitted after the snapshot, persisted through the queue, then lost with the server.
    let (late, _) = apply_all(&counter, &campaign, 41..=60).await;
    store
        .issue_batch(&[first.clone(), late.clone()].concat())
        .await
        .expect("persist");

    redis.restart();
    let (granted, not_ready) = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match counter.try_acquire(&campaign, UserId(1_000)).await {
                Err(Error::NotReady { .. }) => break,
                Err(error) if error.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                other => panic!("a server that may have missed writes answered {other:?}"),
            }
        }
        apply_all(&counter, &campaign, 1_000..1_100).await
    })
    .await
    .expect("Redis back within 10 s");
    assert!(granted.is_empty());
    assert_eq!(not_ready, 100);
    assert_eq!(
        redis.cli(&["HLEN", &counter.keys(campaign.id).users]),
        "42",
        "the snapshot's 40 holders and the stale marker and epoch"
    );

    assert_eq!(rebuild_from(&store, &counter, &campaign).await, 60);
    let (rest, _) = apply_all(&counter, &campaign, 1_000..1_100).await;
    assert_eq!(rest.len(), 40);
    let ranks: HashSet<u64> = first
        .iter()
        .chain(&late)
        .chain(&rest)
        .map(|t| t.rank)
        .collect();
    assert_eq!(
        ranks,
        (1..=100).collect(),
        "no rank of the lost admissions granted again"
    );
}

/// A key of a live campaign deleted by hand (as eviction or an operator would): the
/// count alone, then the holders alone. Each time the counter stops admitting until
/// rebuilt, and the campaign still ends at exactly its cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_key_stops_admissions_until_rebuilt() {
    let redis = PrivateRedis::start();
    let store = MemoryStore::new();
    let counter = Arc::new(
        RedisCounter::connect(RedisCounterConfig::new(redis.url()))
            .await
            .expect("connect"),
    );
    let campaign = ready(&store, &counter, 300).await;
    let keys = counter.keys(campaign.id);
    let mut winners = Vec::new();
    for (round, key) in [&keys.count, &keys.users].into_iter().enumerate() {
        let base = round as u64 * 10_000;
        let (granted, _) = apply_all(&counter, &campaign, base + 1..=base + 100).await;
        assert_eq!(granted.len(), 100);
        store.issue_batch(&granted).await.expect("persist");
        winners.extend(granted);

        assert_eq!(redis.cli(&["DEL", key]), "1");
        let (granted, not_ready) = apply_all(&counter, &campaign, base + 1..=base + 500).await;
        assert!(
            granted.is_empty(),
            "granted {} after {key} was lost",
            granted.len()
        );
        assert_eq!(not_ready, 500);
        assert_eq!(
            rebuild_from(&store, &counter, &campaign).await,
            winners.len() as u64
        );
    }
    let (last, _) = apply_all(&counter, &campaign, 50_000..51_000).await;
    assert_eq!(last.len(), 100);
    store.issue_batch(&last).await.expect("persist");
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 300);
}
