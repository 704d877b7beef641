//! The service when Redis forgets mid-rush, on the full stack (Redis + Kafka +
//! PostgreSQL) over real HTTP: Redis killed with kill -9 and started again empty, and a
//! live campaign's keys deleted by hand. Before the counter was fenced, a restart gave
//! 2,729 applicants 202 on a cap of 2,000, and 729 of them held no coupon.

mod support;

use std::process::Command;
use std::time::Duration;

use coupon_core::testkit::services::PrivateService;
use support::{Rush, Service};

/// What happens to Redis a third of the way into the rush.
enum Fault {
    /// kill -9, then started again on the same port with nothing (no persistence).
    RestartEmpty,
    /// `DEL` of one key of the campaign (`count` or `users`), as eviction would.
    DeleteKey(&'static str),
}

/// 6,000 applicants on cap 2,000, each retrying on 503 until answered. Whatever Redis
/// forgets, exactly 2,000 hear 202, every one of them holds a coupon, and the campaign
/// ends at exactly its cap.
async fn redis_forgets_mid_rush(fault: Fault) {
    let redis = PrivateService::start("redis");
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let mut args = support::shared_backend_args();
    let redis_url = format!("redis://127.0.0.1:{}/", redis.port());
    for pair in args.chunks_mut(2) {
        match pair[0].as_str() {
            "--redis-url" => pair[1] = redis_url.clone(),
            "--redis-key-prefix" => pair[1] = prefix.clone(),
            _ => {}
        }
    }
    args.extend([
        "--database-url".into(),
        database,
        "--settle-grace-ms".into(),
        "3000".into(),
        "--settle-interval-ms".into(),
        "1000".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let service = Service::start(&args).await;
    let campaign = service.api.create_campaign(2_000).await;

    let rush = Rush::start(&service.api, campaign, 1..=6_000, 64);
    rush.wait_for(2_000).await;
    match fault {
        Fault::RestartEmpty => {
            redis.kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
            redis.restart();
        }
        Fault::DeleteKey(key) => {
            let key = format!("{{{prefix}:{campaign}}}:{key}");
            let deleted = Command::new("redis-cli")
                .args(["-p", &redis.port().to_string(), "DEL", &key])
                .output()
                .expect("redis-cli");
            assert_eq!(
                String::from_utf8_lossy(&deleted.stdout).trim(),
                "1",
                "{key}"
            );
        }
    }
    let heard = rush.finish().await;

    heard
        .assert_promises_kept(&service.api, campaign, 2_000, 6_000, true)
        .await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarted_empty_mid_rush() {
    redis_forgets_mid_rush(Fault::RestartEmpty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_count_key_deleted_mid_rush() {
    redis_forgets_mid_rush(Fault::DeleteKey("count")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_holders_key_deleted_mid_rush() {
    redis_forgets_mid_rush(Fault::DeleteKey("users")).await;
}
