//! A coupon's status when Redis forgot a campaign the store already holds in full.

use crate::support;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use coupon_testkit::services::PrivateService;
use support::Service;

/// Cap 5, five applicants issued, then Redis killed and started empty. The watcher
/// leaves a campaign full in the store alone (nothing left to admit), so its counter
/// stays unbuilt and cannot say who was admitted; the store can: every admission is a
/// coupon. So a holder reads their coupon (200) and anyone else hears `no_coupon`
/// (404), not a 503 for as long as the counter stays unbuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coupon_status_of_a_full_campaign_needs_no_counter() {
    let redis = PrivateService::start("redis");
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let mut args = support::shared_backend_args();
    for pair in args.chunks_mut(2) {
        if pair[0] == "--redis-url" {
            pair[1] = format!("redis://127.0.0.1:{}/", redis.port());
        }
    }
    args.extend(["--database-url".into(), database]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let service = Service::start(&args).await;
    let campaign = service.api.create_campaign(5).await;
    for user in 1..=5 {
        let (status, body) = service.api.apply(campaign, user).await.expect("apply");
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let issued = service
        .api
        .wait_for_issued(campaign, 5, Duration::from_secs(60))
        .await;
    assert_eq!(issued, 5);

    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    // Long enough for the watcher (every second) to have looked at the campaign.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let read = |user: u64| {
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
    let (status, body) = read(3).await;
    assert_eq!(status, StatusCode::OK, "a holder: {body}");
    let (status, body) = read(99).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_coupon")),
        "{body}"
    );
    service.stop().await;
}
