//! The service when Redis forgets mid-rush, on the full stack (Redis + Kafka +
//! PostgreSQL) over real HTTP: Redis killed with kill -9 and started again empty, and a
//! live campaign's keys deleted by hand. Before the counter was fenced, a restart gave
//! 2,729 applicants 202 on a cap of 2,000, and 729 of them held no coupon. And Redis
//! restarted empty while admissions answered `202 pending` were known to nobody else.

use crate::support;

use std::process::Command;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use clap::Parser;
use coupon_testkit::proxy::{FaultProxy, ProxyMode};
use coupon_testkit::services::PrivateService;
use serde_json::json;
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
    let mut args = support::shared_backend_args_on(&format!("redis://127.0.0.1:{}/", redis.port()));
    let prefix = support::arg_value(&args, "--redis-key-prefix").to_owned();
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

/// Ten applicants hear `202 pending` while the network to the broker swallows everything
/// (their tickets reach no broker), then Redis is killed and started again empty before
/// anything could publish them, and only then does the broker come back. Their
/// admissions live on in the database: the rebuilt counter counts them, the settler
/// publishes their tickets, and each of them holds a coupon, the campaign ending at
/// exactly its cap. Before a pending ticket was recorded, the rebuilt counter gave
/// their ten slots to others and they held nothing (the chaos tool's seed 4 found it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn applicants_told_pending_keep_their_slot_when_redis_restarts_empty() {
    let redis = PrivateService::start("redis");
    let proxy = FaultProxy::start("127.0.0.1:1").await;
    let broker = PrivateService::start_kafka_advertising(proxy.port());
    proxy.set_upstream(format!("127.0.0.1:{}", broker.port()));
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let mut args = support::shared_backend_args();
    for pair in args.chunks_mut(2) {
        match pair[0].as_str() {
            "--redis-url" => pair[1] = format!("redis://127.0.0.1:{}/", redis.port()),
            "--kafka-brokers" => pair[1] = proxy.address(),
            _ => {}
        }
    }
    args.extend([
        "--database-url".into(),
        database,
        "--settle-grace-ms".into(),
        "2000".into(),
        "--settle-interval-ms".into(),
        "500".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let service = Service::start(&args).await;
    let campaign = service.api.create_campaign(40).await;

    let mut heard = Rush::start(&service.api, campaign, 1..=20, 8)
        .finish()
        .await;
    assert_eq!(heard.accepted.len(), 20, "{heard:?}");

    proxy.set(ProxyMode::Blackhole);
    let stalled = Rush::start(&service.api, campaign, 21..=30, 10)
        .finish()
        .await;
    assert_eq!(
        stalled.pending.len(),
        10,
        "each waits out the publish timeout: {stalled:?}"
    );
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    proxy.set(ProxyMode::Pass);

    let rest = Rush::start(&service.api, campaign, 31..=100, 16)
        .finish()
        .await;
    heard.merge(stalled);
    heard.merge(rest);
    heard
        .assert_promises_kept(&service.api, campaign, 40, 100, true)
        .await;
    let held = service.api.holders(campaign, &(21..=30).collect()).await;
    assert_eq!(
        held.len(),
        10,
        "every applicant told pending holds a coupon"
    );
    service.stop().await;
}

/// The full stack on a Redis of the test's own (and the harness broker and PostgreSQL):
/// the service, its Redis, and its topic.
async fn full_stack_on_private_redis() -> (Service, PrivateService, String) {
    let redis = PrivateService::start("redis");
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let mut args = support::shared_backend_args_on(&format!("redis://127.0.0.1:{}/", redis.port()));
    let topic = support::arg_value(&args, "--kafka-topic").to_owned();
    args.extend(["--database-url".into(), database]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Service::start(&args).await, redis, topic)
}

/// What the campaign route says now.
async fn campaign_route(api: &support::Api, campaign: u64) -> serde_json::Value {
    let (status, body) = api
        .call(Method::GET, &format!("/campaigns/{campaign}"), None)
        .await
        .expect("campaign route");
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Redis lost at a quiet moment after the campaign sold out (split deployments saw it
/// as "open, 2,000 remaining" with 2,000 issued, and the first newcomer heard 503 for
/// 22 s): the store holds the cap, so the route says sold out with nothing remaining
/// and not rebuilding, a newcomer hears sold_out at once and a winner already_applied;
/// a winner reads their coupon and a newcomer hears no_coupon (the store answers where
/// the counter cannot: it fails without that fallback).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quiet_loss_after_the_sell_out_still_answers_sold_out() {
    let (service, redis, _) = full_stack_on_private_redis().await;
    let campaign = service.api.create_campaign(200).await;
    let heard = Rush::start(&service.api, campaign, 1..=300, 16)
        .finish()
        .await;
    assert_eq!(heard.accepted.len(), 200, "{heard:?}");
    let issued = service
        .api
        .wait_for_issued(campaign, 200, Duration::from_secs(60))
        .await;
    assert_eq!(issued, 200);

    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    let route = campaign_route(&service.api, campaign).await;
    assert_eq!(
        (
            &route["state"],
            &route["remaining"],
            &route["issued"],
            &route["rebuilding"]
        ),
        (&json!("sold_out"), &json!(0), &json!(200), &json!(false)),
        "{route}"
    );
    let (newcomer, body) = service.api.apply(campaign, 5_000).await.expect("apply");
    assert_eq!(
        (newcomer, &body["error"]),
        (StatusCode::CONFLICT, &json!("sold_out")),
        "{body}"
    );
    let winner = *heard.accepted.iter().next().expect("a winner");
    let (again, body) = service.api.apply(campaign, winner).await.expect("apply");
    assert_eq!(
        (again, &body["error"]),
        (StatusCode::CONFLICT, &json!("already_applied")),
        "{body}"
    );
    // The counter left unbuilt cannot say who was admitted; the store can, since every
    // admission is a coupon: a winner reads theirs, anyone else hears no_coupon, not a
    // 503 for as long as the counter stays unbuilt.
    let coupon = |user: u64| {
        let api = &service.api;
        async move {
            api.call(
                Method::GET,
                &format!("/campaigns/{campaign}/coupons/{user}"),
                None,
            )
            .await
            .expect("an answer")
        }
    };
    let (status, body) = coupon(winner).await;
    assert_eq!(status, StatusCode::OK, "a winner: {body}");
    let (status, body) = coupon(5_000).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_coupon")),
        "{body}"
    );
    service.stop().await;
}

/// Redis lost at a quiet moment mid-campaign, with a record that is not a ticket at the
/// end of every partition of the topic: nobody applies, yet the counter is rebuilt (the
/// watcher acts on the loss, the drain gets past the records, whose offsets the worker
/// commits), the route stops saying "rebuilding", and the next applicant is admitted.
/// Before, the rebuild waited for an apply, and the junk records kept the drain from
/// ever ending: 503 "being rebuilt" for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quiet_loss_mid_campaign_is_rebuilt_without_an_apply_past_junk_records() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let (service, redis, topic) = full_stack_on_private_redis().await;
    let campaign = service.api.create_campaign(1_000).await;
    let heard = Rush::start(&service.api, campaign, 1..=500, 16)
        .finish()
        .await;
    assert_eq!(heard.accepted.len(), 500, "{heard:?}");
    service
        .api
        .wait_for_issued(campaign, 500, Duration::from_secs(60))
        .await;
    let producer: FutureProducer = ClientConfig::new()
        .set(
            "bootstrap.servers",
            coupon_testkit::service_url("KAFKA_BROKERS"),
        )
        .create()
        .expect("raw producer");
    let partitions = firstcome_server::config::Config::parse_from(["firstcome-server"])
        .kafka
        .kafka_partitions;
    for partition in 0..partitions {
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(&topic)
                    .partition(partition)
                    .payload(b"not a ticket"),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("raw send");
    }

    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let route = campaign_route(&service.api, campaign).await;
        if route["rebuilding"] == json!(false) && route["admitted"] == json!(500) {
            assert_eq!(route["state"], json!("open"), "{route}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not rebuilt 30 s after Redis came back: {route}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (admitted, body) = service.api.apply(campaign, 5_000).await.expect("apply");
    assert_eq!(admitted, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["rank"], json!(501), "{body}");
    service.stop().await;
}

/// Two API processes (each with its worker, settler and watcher) on one Redis, broker
/// and database, 6,000 applicants split over them on cap 2,000, and Redis lost twice in
/// a row mid-rush: killed, back empty, and killed again half a second later, while the
/// rebuilds of the first loss are under way in both processes. Every rebuild that began
/// before the second loss fails and starts over; exactly 2,000 hear 202, each holds a
/// coupon, and the campaign ends at its cap. (Before epochs, a rebuild started for the
/// first loss could build the second server from a store read that missed slots granted
/// on the first rebuilt one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_through_two_redis_losses_in_a_row() {
    let redis = PrivateService::start("redis");
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let mut args = support::shared_backend_args_on(&format!("redis://127.0.0.1:{}/", redis.port()));
    args.extend([
        "--database-url".into(),
        database,
        "--settle-grace-ms".into(),
        "3000".into(),
        "--settle-interval-ms".into(),
        "1000".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = Service::start(&args).await;
    let second = Service::start(&args).await;
    let campaign = first.api.create_campaign(2_000).await;

    let one = Rush::start(&first.api, campaign, 1..=3_000, 32);
    let two = Rush::start(&second.api, campaign, 3_001..=6_000, 32);
    while one.done.load(std::sync::atomic::Ordering::Relaxed)
        + two.done.load(std::sync::atomic::Ordering::Relaxed)
        < 1_000
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    let mut heard = one.finish().await;
    heard.merge(two.finish().await);
    heard
        .assert_promises_kept(&first.api, campaign, 2_000, 6_000, true)
        .await;
    second.stop().await;
    first.stop().await;
}
