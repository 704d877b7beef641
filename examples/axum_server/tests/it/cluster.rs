//! The service on Redis Cluster (three primaries with a replica each), Kafka and
//! PostgreSQL over real HTTP: every primary failing over during a sale.

use crate::support;

use support::{Rush, Service};

/// 3,000 applicants on cap 1,000, each retrying on 503 until answered: the first 300,
/// then every replica takes over from its primary, one after the other, then the rest.
/// The counter is fenced on each promoted node (its replication id is new) and rebuilt
/// from the store and the queue before it admits again: exactly 1,000 applicants hear
/// 202, each holds a coupon, the campaign ends at its cap, and the counter ends in a
/// later epoch than the one it was built in (rebuilt, not trusted).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_primary_failing_over_between_two_rushes_keeps_every_promise() {
    let cluster = coupon_testkit::redis_servers::PrivateCluster::start_with_replicas();
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let mut args = support::shared_backend_args_on(&cluster.url());
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
    let campaign = service.api.create_campaign(1_000).await;

    let mut heard = Rush::start(&service.api, campaign, 1..=300, 32)
        .finish()
        .await;
    assert_eq!(heard.accepted.len(), 300, "{heard:?}");
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.fail_over_every_primary();
        cluster
    })
    .await
    .expect("the failovers");
    heard.merge(
        Rush::start(&service.api, campaign, 301..=3_000, 32)
            .finish()
            .await,
    );

    heard
        .assert_promises_kept(&service.api, campaign, 1_000, 3_000, true)
        .await;
    let counter = coupon_redis::RedisCounter::connect(
        coupon_redis::RedisCounterConfig::new(cluster.url()).with_key_prefix(prefix),
    )
    .await
    .expect("connect to the cluster");
    let defined = coupon_core::Campaign::from_new(
        coupon_core::CampaignId(campaign),
        coupon_core::NewCampaign::new("failover", 1_000),
    );
    let status = coupon_core::CouponCounter::status(&counter, &defined)
        .await
        .expect("status");
    assert!(
        status.epoch.is_some_and(|epoch| epoch >= 2),
        "not rebuilt after the failovers: {status:?}"
    );
    service.stop().await;
}
