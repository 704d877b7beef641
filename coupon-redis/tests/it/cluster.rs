//! The core conformance suite on a three-node Redis Cluster of the test's own.
#![cfg(feature = "cluster")]

use std::sync::Arc;

use coupon_core::{Admission, CouponCounter, UserId};
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
        let held = counter.held_slots(campaign.id).await;
        let users: Vec<UserId> = held
            .expect("HSCAN on the campaign's node")
            .iter()
            .map(|slot| slot.user)
            .collect();
        assert_eq!(users, vec![UserId(1)]);
    }
}
