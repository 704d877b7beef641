//! The core conformance suite on a three-node Redis Cluster of the test's own.
#![cfg(feature = "cluster")]

use std::sync::Arc;

use coupon_core::{
    Admission, Campaign, CouponCounter, Error, HeldSlot, Rebuild, SealedEpoch, UserId,
};
use coupon_redis::{RedisCounter, RedisCounterConfig};
use coupon_testkit::counter;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_counter_conformance() {
    let cluster = coupon_testkit::redis_servers::PrivateCluster::start();
    let counter = Arc::new(
        RedisCounter::connect(RedisCounterConfig::new(cluster.url()))
            .await
            .expect("connect to the cluster"),
    );
    counter::all(counter.clone()).await;

    // Campaigns land on different slots (and so nodes); each stays exact on its own.
    for _ in 0..20 {
        let campaign = coupon_testkit::ready_campaign(counter.as_ref(), 1).await;
        let first = counter
            .try_acquire(&campaign, UserId(1))
            .await
            .expect("acquire");
        let second = counter
            .try_acquire(&campaign, UserId(2))
            .await
            .expect("acquire");
        assert!(
            matches!(
                (first, second),
                (
                    Admission::Granted {
                        rank: 1,
                        slot: 1,
                        ..
                    },
                    Admission::SoldOut
                )
            ),
            "{first:?} {second:?}"
        );
        let held = counter.held_slots(&campaign).await;
        let users: Vec<UserId> = held
            .expect("HSCAN on the campaign's node")
            .iter()
            .map(|slot| slot.user)
            .collect();
        assert_eq!(users, vec![UserId(1)]);
    }
}

/// A node started again from its own files (an RDB saved before the last three
/// admissions, as a replica promoted by a failover lags its primary) holds the
/// campaign's marker but not every admission. The counter is fenced there (the marker
/// names the replication id of the node that built it, and a node takes a new one when
/// it starts) until a rebuild restores what the store holds, so the lost ranks are not
/// granted twice. Before, Cluster checked the marker's presence alone (this test fails
/// there: the node answered built, with a count of 3, and would have admitted users 7
/// to 13 at ranks 4 to 10, three past the cap).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_started_again_from_stale_files_is_fenced_until_rebuilt() {
    let mut cluster = coupon_testkit::redis_servers::PrivateCluster::start();
    let counter = RedisCounter::connect(RedisCounterConfig::new(cluster.url()))
        .await
        .expect("connect to the cluster");
    let campaign = coupon_testkit::ready_campaign(&counter, 10).await;
    let mut held = admitted(&counter, &campaign, 1..=3).await;
    cluster.save();
    held.extend(admitted(&counter, &campaign, 4..=6).await);
    cluster.restart_from_files();

    let status = answered(|| counter.status(&campaign)).await;
    assert_eq!(
        status.admitted, 3,
        "the node came back with the saved count"
    );
    assert_eq!(status.epoch, None, "a node started again is not built");
    match answered_or_not_ready(&counter, &campaign).await {
        Err(Error::NotReady { .. }) => {}
        other => panic!("admitted on a stale copy: {other:?}"),
    }
    // The rebuild restores the six admissions the store and the queue hold.
    let ranks = rebuilt_then_admitted(&counter, &campaign, held, 7..=20).await;
    assert_eq!(ranks, [7, 8, 9, 10], "exactly the four slots left");
}

/// Planned failovers on a Cluster with a replica per primary: after every replica took
/// over, the counter is fenced (a promoted node has a new replication id), and it stays
/// fenced when the first primaries take over again without a rebuild in between (a
/// failback: they kept their run ids, and with a run id as the identity the counter
/// was trusted there again, whatever the full resync had cost them). A rebuild with
/// the four held slots then admits exactly the six left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_and_a_failback_are_fenced_until_rebuilt() {
    let cluster = coupon_testkit::redis_servers::PrivateCluster::start_with_replicas();
    let counter = RedisCounter::connect(RedisCounterConfig::new(cluster.url()))
        .await
        .expect("connect to the cluster");
    let campaign = coupon_testkit::ready_campaign(&counter, 10).await;
    let held = admitted(&counter, &campaign, 1..=4).await;
    for (turn, what) in [
        "the replicas took over",
        "the first primaries took over again",
    ]
    .into_iter()
    .enumerate()
    {
        cluster.fail_over_every_primary();
        let status = answered(|| counter.status(&campaign)).await;
        assert_eq!(status.admitted, 4, "{what}: every admission was replicated");
        assert_eq!(status.epoch, None, "{what}: turn {turn}, not fenced");
        match answered_or_not_ready(&counter, &campaign).await {
            Err(Error::NotReady { .. }) => {}
            other => panic!("{what}: admitted without a rebuild: {other:?}"),
        }
    }
    let ranks = rebuilt_then_admitted(&counter, &campaign, held, 5..=20).await;
    assert_eq!(ranks, [5, 6, 7, 8, 9, 10], "exactly the six slots left");
}

/// Admits each of `users`, who must all be granted: the slots they hold.
async fn admitted(
    counter: &RedisCounter,
    campaign: &Campaign,
    users: std::ops::RangeInclusive<u64>,
) -> Vec<HeldSlot> {
    let mut held = Vec::new();
    for user in users {
        match counter.try_acquire(campaign, UserId(user)).await {
            Ok(Admission::Granted {
                rank, slot, epoch, ..
            }) => held.push(HeldSlot {
                user: UserId(user),
                slot,
                rank,
                admitted_at: None,
                epoch,
            }),
            other => panic!("user {user}: {other:?}"),
        }
    }
    held
}

/// Rebuilds `campaign` in epoch 2 holding `held` (what the store and the queue would
/// answer), then admits `users` in turn: the ranks granted, until sold out.
async fn rebuilt_then_admitted(
    counter: &RedisCounter,
    campaign: &Campaign,
    held: Vec<HeldSlot>,
    users: std::ops::RangeInclusive<u64>,
) -> Vec<u64> {
    let rebuilt = counter
        .rebuild(campaign, Arc::new(SealedEpoch::new(2, held)))
        .await
        .expect("rebuild");
    assert!(matches!(rebuilt, Rebuild::Built(_)), "{rebuilt:?}");
    let mut ranks = Vec::new();
    for user in users {
        match counter.try_acquire(campaign, UserId(user)).await {
            Ok(Admission::Granted { rank, .. }) => ranks.push(rank),
            Ok(Admission::SoldOut) => {}
            other => panic!("user {user}: {other:?}"),
        }
    }
    ranks
}

/// The answer of `ask` once the cluster answers at all (its client learns the new
/// primaries from the redirections of its first calls).
async fn answered<T, F, Fut>(ask: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = coupon_core::Result<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match ask().await {
            Ok(answer) => return answer,
            Err(error) if std::time::Instant::now() < deadline => {
                tracing::debug!(%error, "the cluster is not answering yet");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the cluster did not answer again: {error}"),
        }
    }
}

/// An admission's answer, retried while the cluster answers with anything but a grant,
/// a refusal or `NotReady`.
async fn answered_or_not_ready(
    counter: &RedisCounter,
    campaign: &Campaign,
) -> coupon_core::Result<Admission> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match counter.try_acquire(campaign, UserId(99)).await {
            Err(error)
                if !matches!(error, Error::NotReady { .. })
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            answer => return answer,
        }
    }
}
