//! The service binary killed with kill -9 mid-rush (and started again, or not), on the
//! database's queue and on Kafka: every applicant who heard 202 ends with a coupon, never
//! more than the cap.

use crate::support;

use coupon_testkit::service_url;
use support::{Process, Rush, free_port};

/// The embedded default (memory counter, database queue, SQLite file): 20,000
/// applicants on cap 8,000, the process killed with kill -9 a third of the way in and
/// started again on the same file. The rush goes on against the new process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_default_killed_mid_rush_keeps_every_promise() {
    embedded_default_killed_mid_rush(8_000, 1, 20_000, 6_000).await;
}

/// The same on a campaign split over 4 shards: 6,000 applicants on cap 2,000, the
/// process killed a third of the way in. The new process rebuilds every shard from the
/// store and shares out what the cap leaves: exactly the cap, everyone told yes holds
/// a coupon.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sharded_campaign_on_the_embedded_default_killed_mid_rush_keeps_every_promise() {
    embedded_default_killed_mid_rush(2_000, 4, 6_000, 700).await;
}

/// A rush of `applicants` on a campaign of `cap` over `shards` on the embedded default,
/// the process killed with kill -9 once `kill_after` answers came and started again on
/// the same file; the rush goes on against the new process.
async fn embedded_default_killed_mid_rush(cap: u64, shards: u16, applicants: u64, kill_after: u64) {
    let file = std::env::temp_dir().join(format!(
        "firstcome-crash-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let database = format!("sqlite://{}?mode=rwc", file.display());
    let env = [
        ("DATABASE_URL", database.as_str()),
        ("SETTLE_GRACE_MS", "3000"),
        ("SETTLE_INTERVAL_MS", "1000"),
    ];
    let port = free_port();
    let mut first = Process::start(port, &[], &env).await;
    let campaign = first.api.create_sharded_campaign(cap, shards).await;

    let rush = Rush::start(&first.api, campaign, 1..=applicants, 64);
    rush.wait_for(kill_after).await;
    first.kill();
    let second = Process::start(port, &[], &env).await;
    let heard = rush.finish().await;
    heard
        .assert_promises_kept(&second.api, campaign, cap, applicants, false)
        .await;
}

/// PostgreSQL, one API process (memory counter) and two worker processes on the
/// database's queue; one worker is killed with kill -9 mid-rush. Its batch comes back
/// to the other when its lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_rush_leaves_its_batch_to_the_other() {
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let env = [
        ("DATABASE_URL", database.as_str()),
        ("SQL_QUEUE_LEASE_MS", "3000"),
        ("SETTLE_GRACE_MS", "5000"),
        ("SETTLE_INTERVAL_MS", "1000"),
    ];
    let api = Process::start(free_port(), &["--role", "api"], &env).await;
    let mut doomed = Process::start(free_port(), &["--role", "worker"], &env).await;
    let _survivor = Process::start(free_port(), &["--role", "worker"], &env).await;
    let campaign = api.api.create_campaign(3_000).await;

    let rush = Rush::start(&api.api, campaign, 1..=8_000, 64);
    rush.wait_for(1_500).await;
    doomed.kill();
    let heard = rush.finish().await;
    heard
        .assert_promises_kept(&api.api, campaign, 3_000, 8_000, false)
        .await;
}

/// Redis, Kafka and PostgreSQL, one API process and two workers in one consumer group;
/// one worker is killed with kill -9 mid-rush and never comes back. The group's
/// coordinator must drop it when its session ends and give its partitions to the
/// survivor: tickets on them are issued, not left with a member that is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_for_good_leaves_its_partitions_to_the_other() {
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let env = [
        ("DATABASE_URL", database.as_str()),
        ("SETTLE_GRACE_MS", "5000"),
        ("SETTLE_INTERVAL_MS", "1000"),
    ];
    let backends = support::shared_backend_args();
    let args = |role: &'static str| -> Vec<&str> {
        let mut args = vec!["--role", role];
        args.extend(backends.iter().map(String::as_str));
        args
    };
    let api = Process::start(free_port(), &args("api"), &env).await;
    let campaign = api.api.create_campaign(3_000).await;
    // The doomed worker first, alone: it takes every partition and issues a coupon.
    let logs =
        std::env::temp_dir().join(format!("firstcome-crash-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).expect("a folder for the workers' logs");
    let (doomed_log, survivor_log) = (logs.join("doomed.log"), logs.join("survivor.log"));
    let mut doomed = Process::start_logged(free_port(), &args("worker"), &env, &doomed_log).await;
    let (status, _) = api.api.apply(campaign, 1).await.expect("first apply");
    assert_eq!(status, axum::http::StatusCode::ACCEPTED);
    assert_eq!(
        api.api
            .wait_for_issued(campaign, 1, std::time::Duration::from_secs(60))
            .await,
        1
    );
    // Then the survivor, and a formed group of both: each owns partitions (three over
    // two) when the rush starts, so the kill leaves some with the dead worker.
    let _survivor = Process::start_logged(free_port(), &args("worker"), &env, &survivor_log).await;
    wait_until_each_owns_partitions(&[&doomed_log, &survivor_log]).await;

    let rush = Rush::start(&api.api, campaign, 2..=8_000, 64);
    rush.wait_for(1_500).await;
    doomed.kill();
    let mut heard = rush.finish().await;
    heard.accepted.insert(1);
    heard
        .assert_promises_kept(&api.api, campaign, 3_000, 8_000, false)
        .await;
    let _ = std::fs::remove_dir_all(&logs);
}

/// Waits up to 60 s until the workers logging to `logs` each own partitions and
/// together all three, as their latest "partitions assigned" lines say.
async fn wait_until_each_owns_partitions(logs: &[&std::path::Path]) {
    use std::time::{Duration, Instant};

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owned: Vec<Vec<i32>> = logs.iter().map(|log| latest_assignment(log)).collect();
        let mut all: Vec<i32> = owned.concat();
        all.sort_unstable();
        if owned.iter().all(|partitions| !partitions.is_empty()) && all == [0, 1, 2] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the workers did not share the partitions within 60 s: {owned:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The partitions of the last "partitions assigned to this worker" line in a worker's
/// log (none before the first).
fn latest_assignment(log: &std::path::Path) -> Vec<i32> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let Some(line) = text
        .lines()
        .rev()
        .find(|line| line.contains("partitions assigned to this worker"))
    else {
        return Vec::new();
    };
    // The list after "partitions=", between the colour codes of the log's field.
    let list = line.rsplit('[').next().unwrap_or_default();
    list.split(']')
        .next()
        .unwrap_or_default()
        .split(',')
        .filter_map(|partition| partition.trim().parse().ok())
        .collect()
}

/// Two API processes sharing a Redis counter, two workers, one PostgreSQL queue and
/// store: the applicants split over both APIs; exactly the cap, nobody twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_apis_and_two_workers_on_one_database_queue() {
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let redis = service_url("REDIS_URL");
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let env = [
        ("DATABASE_URL", database.as_str()),
        ("REDIS_URL", redis.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    let first = Process::start(free_port(), &["--role", "api"], &env).await;
    let second = Process::start(free_port(), &["--role", "api"], &env).await;
    let _workers = [
        Process::start(free_port(), &["--role", "worker"], &env).await,
        Process::start(free_port(), &["--role", "worker"], &env).await,
    ];
    let campaign = first.api.create_campaign(2_000).await;

    let left = Rush::start(&first.api, campaign, 1..=3_000, 32);
    let right = Rush::start(&second.api, campaign, 3_001..=6_000, 32);
    let mut heard = left.finish().await;
    heard.merge(right.finish().await);
    heard
        .assert_promises_kept(&second.api, campaign, 2_000, 6_000, false)
        .await;
}

/// A process started while its database is down (a restart, an outage) waits for it
/// instead of exiting, and serves once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_started_while_the_database_is_down_waits_for_it() {
    let pg = coupon_testkit::services::PrivateService::start("postgres");
    let database = support::fresh_postgres_on(pg.port()).await;
    pg.kill();
    let restart = std::thread::spawn(move || {
        // Longer than the pool's own connection retries (its acquire timeout, 5 s).
        std::thread::sleep(std::time::Duration::from_secs(12));
        pg.restart();
        pg
    });
    let env = [("DATABASE_URL", database.as_str())];
    // Waits for /healthz up to 60 s; a process that gave up at start never answers.
    let service = Process::start(free_port(), &[], &env).await;
    let _pg = restart.join().expect("restarting PostgreSQL");
    let campaign = service.api.create_campaign(10).await;
    let (status, _) = service.api.apply(campaign, 1).await.expect("apply");
    assert_eq!(status, axum::http::StatusCode::ACCEPTED);
}
