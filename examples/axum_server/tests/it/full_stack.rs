//! The service on Redis + Kafka + PostgreSQL from the harness.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use clap::Parser;
use coupon_core::{CampaignId, IssueWorker};
use coupon_testkit::service_url;
use firstcome_server::api::{AppState, router};
use firstcome_server::auth::Identity;
use firstcome_server::backends;
use firstcome_server::config::Config;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tower::ServiceExt;
use uuid::Uuid;

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer full-stack")
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .expect("a request");
    let response = app.clone().oneshot(request).await.expect("a response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// 2,000 concurrent applies from 1,500 distinct users on cap 500: exactly 500 accepted,
/// exactly 500 persisted coupons for 500 distinct users, and the API says issued 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_applies_on_cap_five_hundred() {
    let id = Uuid::new_v4().simple().to_string();
    let config = Config::parse_from([
        "firstcome-server",
        "--redis-url",
        &service_url("REDIS_URL"),
        "--redis-key-prefix",
        &format!("test-{id}"),
        "--kafka-brokers",
        &service_url("KAFKA_BROKERS"),
        "--kafka-topic",
        &format!("test-{id}"),
        "--kafka-dlq-topic",
        &format!("test-{id}-dlq"),
        "--kafka-group",
        &format!("group-{id}"),
        "--kafka-create-topics",
        "--database-url",
        &coupon_seaorm::testkit::fresh_postgres().await,
    ]);
    let parts = backends::build(&config).await.expect("backends");
    let worker = IssueWorker::new(parts.source.clone().expect("a source"), parts.store.clone());
    let running = tokio::spawn(async move { worker.run(std::future::pending()).await });
    let state = Arc::new(
        AppState::new(Arc::new(parts.service.expect("a service")), "full-stack")
            .with_identity(Identity::TrustedClients),
    );
    let app = router(state);
    let (status, _) = call(&app, "GET", "/readyz", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "Redis, Kafka and PostgreSQL all answer"
    );

    let (status, campaign) = call(
        &app,
        "POST",
        "/campaigns",
        Some(json!({ "name": "stampede", "cap": 500 })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let campaign = campaign["id"].as_u64().expect("an id");

    let mut tasks = JoinSet::new();
    for attempt in 0..2_000u64 {
        let app = app.clone();
        let user = 1 + attempt % 1_500;
        tasks.spawn(async move {
            let uri = format!("/campaigns/{campaign}/apply");
            // An applicant told 503 (a backend slow under the test machine's load) tries
            // again, as the Retry-After asks.
            loop {
                let answer = call(&app, "POST", &uri, Some(json!({ "user_id": user }))).await;
                if answer.0 != StatusCode::SERVICE_UNAVAILABLE {
                    return answer;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    let mut accepted = 0;
    let mut repeated = 0;
    while let Some(joined) = tasks.join_next().await {
        let (status, body) = joined.expect("apply task");
        match status {
            StatusCode::ACCEPTED if body["rank"].is_u64() => accepted += 1,
            // A winner applying again before the worker stored the coupon.
            StatusCode::ACCEPTED if body["status"] == "pending" => repeated += 1,
            StatusCode::CONFLICT => repeated += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((accepted, repeated), (500, 1_500));

    let issued = coupon_testkit::wait_for_issued(
        parts.store.as_ref(),
        CampaignId(campaign),
        500,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(issued, 500, "issued after 120 s");
    let (_, body) = call(&app, "GET", &format!("/campaigns/{campaign}"), None).await;
    assert_eq!(
        (
            body["issued"].as_u64(),
            body["admitted"].as_u64(),
            body["remaining"].as_u64()
        ),
        (Some(500), Some(500), Some(0)),
        "{body}"
    );
    running.abort();

    let holders = parts
        .store
        .holders(CampaignId(campaign))
        .await
        .expect("holders");
    let distinct: std::collections::HashSet<_> = holders.iter().collect();
    assert_eq!((holders.len(), distinct.len()), (500, 500));
}
