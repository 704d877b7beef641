//! The service binary killed with kill -9 mid-rush (and started again, or not), on the
//! database's queue and on Kafka: every applicant who heard 202 ends with a coupon, never
//! more than the cap.

mod support;

use coupon_core::testkit::service_url;
use support::{Process, Rush, free_port};

/// The embedded default (memory counter, database queue, SQLite file): 20,000
/// applicants on cap 8,000, the process killed with kill -9 a third of the way in and
/// started again on the same file. The rush goes on against the new process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_default_killed_mid_rush_keeps_every_promise() {
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
    let campaign = first.api.create_campaign(8_000).await;

    let rush = Rush::start(&first.api, campaign, 1..=20_000, 64);
    rush.wait_for(6_000).await;
    first.kill();
    let second = Process::start(port, &[], &env).await;
    let heard = rush.finish().await;
    heard
        .assert_promises_kept(&second.api, campaign, 8_000, 20_000, false)
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
    let mut doomed = Process::start(free_port(), &args("worker"), &env).await;
    let _survivor = Process::start(free_port(), &args("worker"), &env).await;
    let campaign = api.api.create_campaign(3_000).await;
    // Both workers in the group, each owning partitions, before the rush.
    let (status, _) = api.api.apply(campaign, 1).await.expect("first apply");
    assert_eq!(status, axum::http::StatusCode::ACCEPTED);
    api.api
        .wait_for_issued(campaign, 1, std::time::Duration::from_secs(60))
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;

    let rush = Rush::start(&api.api, campaign, 2..=8_000, 64);
    rush.wait_for(1_500).await;
    doomed.kill();
    let mut heard = rush.finish().await;
    heard.accepted.insert(1);
    heard
        .assert_promises_kept(&api.api, campaign, 3_000, 8_000, false)
        .await;
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
    let pg = coupon_core::testkit::services::PrivateService::start("postgres");
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
