//! Redis failures: data loss and the fencing rebuild, SCRIPT FLUSH, eviction settings, error
//! classification. Each test
//! runs its own redis-server so that killing it disturbs no other test.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use coupon_core::memory::MemoryStore;
use coupon_core::{
    Admission, Campaign, CouponCounter, CouponStore, Error, IssueOutcome, IssueTicket, NewCampaign,
    Rebuild, SealedEpoch, UserId,
};
use coupon_redis::{RedisCounter, RedisCounterConfig};
use coupon_testkit::redis_servers::PrivateRedis;
use coupon_testkit::{fresh_campaign, ready_campaign};
use tokio::task::JoinSet;

/// Applies `users` concurrently; returns the granted tickets and how many applies were
/// refused as not ready. Any other error fails the test.
async fn apply_all(
    counter: &Arc<RedisCounter>,
    campaign: &Arc<Campaign>,
    users: impl Iterator<Item = u64>,
) -> (Vec<IssueTicket>, usize) {
    let mut tasks = JoinSet::new();
    for user in users {
        let (counter, campaign) = (counter.clone(), campaign.clone());
        tasks.spawn(async move {
            let admission = counter.try_acquire(&campaign, UserId(user)).await;
            (user, admission)
        });
    }
    let (mut granted, mut not_ready) = (Vec::new(), 0);
    while let Some(joined) = tasks.join_next().await {
        let (user, admission) = joined.expect("task");
        match admission {
            Ok(Admission::Granted { rank, slot, .. }) => {
                granted.push(IssueTicket::new(campaign.id, UserId(user), slot, rank));
            }
            Ok(_) => {}
            Err(Error::NotReady { .. }) => not_ready += 1,
            Err(error) => panic!("try_acquire: {error:?}"),
        }
    }
    (granted, not_ready)
}

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

/// A server that may evict the counter's keys (an `allkeys-*` policy) is refused at
/// connect, saying why; one that evicts only keys with an expiry is not.
#[tokio::test]
async fn a_server_that_may_evict_is_refused() {
    let redis = PrivateRedis::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let refused = RedisCounter::connect(RedisCounterConfig::new(redis.url())).await;
    match refused {
        Err(error @ Error::Backend { .. }) => {
            assert!(
                error
                    .to_string()
                    .contains("maxmemory-policy is allkeys-lru"),
                "{error}"
            );
            assert!(error.to_string().contains("noeviction"), "{error}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The counter's keys carry no expiry: a volatile-* policy never evicts them.
    let volatile = PrivateRedis::start_with(&["--maxmemory-policy", "volatile-lru"]);
    RedisCounter::connect(RedisCounterConfig::new(volatile.url()))
        .await
        .expect("volatile-lru evicts only keys with an expiry");
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
    let campaign = Arc::new(ready_campaign(counter.as_ref(), 500).await);
    let mut granted = 0;
    for round in 0..5u64 {
        assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]), "OK");
        let users = round * 1_000..round * 1_000 + 200;
        granted += apply_all(&counter, &campaign, users).await.0.len();
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

/// The hash reads the scripts made since the last `CONFIG RESETSTAT`.
fn hash_reads(redis: &PrivateRedis) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    ["hget", "hexists", "hmget"]
        .iter()
        .map(|command| {
            stats
                .lines()
                .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
                .and_then(|rest| rest.split(',').next())
                .and_then(|calls| calls.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// A user applying `limit + 5` times to a campaign at the largest per-user limit: each
/// apply costs the server a few hash reads whatever the slots held, nothing reaches the
/// slow log, and another campaign's applies go on meanwhile. Before, a returning user
/// cost one read per possible slot, so the limit bounded nothing: with 1,000,000 each
/// apply took 0.75 s inside Redis, and 2^31-1 made Redis answer BUSY to everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_returning_user_costs_a_few_reads_at_the_largest_limit() {
    let redis = PrivateRedis::start();
    let counter = Arc::new(
        RedisCounter::connect(RedisCounterConfig::new(redis.url()))
            .await
            .expect("connect"),
    );
    let limit = NewCampaign::MAX_PER_USER_LIMIT;
    let big = coupon_testkit::ready_campaign_from(
        counter.as_ref(),
        NewCampaign::new("largest limit", 10_000).per_user_limit(limit),
    )
    .await;
    let other = Arc::new(ready_campaign(counter.as_ref(), 1_000).await);
    assert_eq!(
        redis.cli(&["CONFIG", "SET", "slowlog-log-slower-than", "10000"]),
        "OK"
    );
    assert_eq!(redis.cli(&["SLOWLOG", "RESET"]), "OK");
    assert_eq!(redis.cli(&["CONFIG", "RESETSTAT"]), "OK");

    let (mut granted, mut already, mut others) = (Vec::new(), 0, 0);
    for apply in 0..limit + 5 {
        match counter.try_acquire(&big, UserId(7)).await.expect("apply") {
            Admission::Granted { slot, .. } => granted.push(slot),
            Admission::AlreadyApplied => already += 1,
            Admission::SoldOut => panic!("sold out at apply {apply}"),
        }
        if apply % 100 == 0 {
            let (admitted, _) = apply_all(&counter, &other, [u64::from(apply)].into_iter()).await;
            others += admitted.len();
        }
    }
    let reads = hash_reads(&redis);
    granted.sort_unstable();
    assert_eq!(
        granted,
        (1..=limit).collect::<Vec<u32>>(),
        "every slot once"
    );
    assert_eq!(already, 5);
    assert_eq!(others, 11, "the other campaign admitted meanwhile");
    // At most three reads an apply made alone (the counter's marker, the user's slot
    // record, the grant of the slot taken last), whatever the slots held.
    assert!(
        reads <= 3 * u64::from(limit + 5 + 11),
        "{reads} hash reads for {} applies",
        limit + 5 + 11
    );
    assert_eq!(
        redis.cli(&["SLOWLOG", "LEN"]),
        "0",
        "a script in the slow log"
    );
}
