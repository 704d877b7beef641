//! Exactness under contention across independent connections, on the harness Redis.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use coupon_core::{Admission, CouponCounter, UserId};
use coupon_redis::RedisCounter;
use coupon_testkit::{ready_campaign, service_url};
use redis::AsyncCommands;
use tokio::task::JoinSet;

/// 10,000 concurrent applicants spread over 8 independent connections (as 8 app
/// instances would be) on cap 1,000: exactly 1,000 grants, ranks 1..=1,000 once each,
/// and the admitted-user hash holds exactly 1,000 members.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_applicants_on_cap_one_thousand() {
    let url = service_url("REDIS_URL");
    // 10,000 scripts at once on a 2-core machine shared with other tests can queue past
    // the default 1 s response timeout; this test is about the cap, not latency.
    let config =
        support::config(&url).with_timeouts(Duration::from_secs(10), Duration::from_secs(1));
    let mut instances = Vec::new();
    for _ in 0..8 {
        let counter = RedisCounter::connect(config.clone())
            .await
            .expect("connect");
        instances.push(Arc::new(counter));
    }
    let campaign = Arc::new(ready_campaign(instances[0].as_ref(), 1_000).await);

    let mut tasks = JoinSet::new();
    for user in 0..10_000u64 {
        let counter = instances[(user % 8) as usize].clone();
        let campaign = campaign.clone();
        tasks.spawn(async move { counter.try_acquire(&campaign, UserId(user)).await });
    }
    let mut ranks: BTreeMap<u64, u32> = BTreeMap::new();
    let mut sold_out = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task").expect("try_acquire") {
            Admission::Granted { rank, .. } => *ranks.entry(rank).or_default() += 1,
            Admission::SoldOut => sold_out += 1,
            Admission::AlreadyApplied => panic!("distinct users answered AlreadyApplied"),
        }
    }
    assert_eq!(ranks.len(), 1_000);
    assert_eq!(
        ranks.keys().copied().collect::<Vec<_>>(),
        (1..=1_000).collect::<Vec<_>>()
    );
    assert!(ranks.values().all(|&n| n == 1), "a rank was granted twice");
    assert_eq!(sold_out, 9_000);

    let keys = instances[0].keys(campaign.id);
    let client = redis::Client::open(url).expect("client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let members: u64 = connection.hlen(&keys.users).await.expect("HLEN");
    let count: u64 = connection.get(&keys.count).await.expect("GET");
    // 1,000 holders and the two fields marking the counter built, and in which epoch.
    assert_eq!((members, count), (1_002, 1_000));
    instances[0].forget(campaign.id).await.expect("forget");
}
