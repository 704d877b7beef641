//! Every status code of the API, and the bad-input list, through the router in memory.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
use coupon_core::{CouponService, IssueWorker};
use firstcome_server::api::{AppState, BODY_LIMIT, router};
use firstcome_server::auth::Identity;
use firstcome_server::error::UNAVAILABLE_MESSAGE;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

#[path = "http/security.rs"]
mod security;

const TOKEN: &str = "test-admin-token";

struct Service {
    app: Router,
    queue: Arc<MemoryQueue>,
    store: Arc<MemoryStore>,
}

fn service() -> Service {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(1_000));
    let counter = Arc::new(MemoryCounter::new());
    let state = Arc::new(
        AppState::new(
            Arc::new(
                CouponService::new(counter, queue.clone(), store.clone())
                    .with_source(queue.clone()),
            ),
            TOKEN,
        )
        .with_identity(Identity::TrustedClients)
        // These tests change what the backends answer between two calls.
        .with_probe_cache(Duration::ZERO),
    );
    Service {
        app: router(state),
        queue,
        store,
    }
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let response = app.clone().oneshot(request).await.expect("a response");
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, retry_after, body)
}

fn json_request(method: &str, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from(body.to_owned()))
        .expect("a request")
}

fn get(uri: &str) -> Request<Body> {
    Request::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("a request")
}

async fn create(app: &Router, body: Value) -> u64 {
    let (status, _, created) =
        send(app, json_request("POST", "/campaigns", &body.to_string())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_u64().expect("an id")
}

async fn apply(app: &Router, campaign: u64, user: u64) -> (StatusCode, Value) {
    let body = json!({ "user_id": user }).to_string();
    let (status, _, body) = send(
        app,
        json_request("POST", &format!("/campaigns/{campaign}/apply"), &body),
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn creating_a_campaign_needs_the_admin_token() {
    let service = service();
    let mut request = json_request("POST", "/campaigns", r#"{"name":"x","cap":1}"#);
    request.headers_mut().remove(header::AUTHORIZATION);
    let (status, _, body) = send(&service.app, request).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );

    let mut request = json_request("POST", "/campaigns", r#"{"name":"x","cap":1}"#);
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
    assert_eq!(
        send(&service.app, request).await.0,
        StatusCode::UNAUTHORIZED
    );

    let (status, _, body) = send(
        &service.app,
        json_request("POST", "/campaigns", r#"{"name":"launch","cap":3}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        (body["cap"].as_u64(), body["per_user_limit"].as_u64()),
        (Some(3), Some(1))
    );

    let (status, _, body) = send(
        &service.app,
        json_request("POST", "/campaigns", r#"{"name":"zero","cap":0}"#),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_campaign"))
    );
}

#[tokio::test]
async fn apply_answers_every_outcome_with_its_status() {
    let service = service();
    let app = &service.app;
    let campaign = create(app, json!({ "name": "two", "cap": 2 })).await;

    let (status, body) = apply(app, campaign, 1).await;
    assert_eq!(
        (status, body["rank"].as_u64()),
        (StatusCode::ACCEPTED, Some(1))
    );
    assert!(body["ticket_id"].is_string());
    // Admitted, and no worker has persisted the coupon yet: pending, not a second slot.
    let (status, body) = apply(app, campaign, 1).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("pending"))
    );
    assert_eq!(apply(app, campaign, 2).await.0, StatusCode::ACCEPTED);
    let (status, body) = apply(app, campaign, 3).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("sold_out"))
    );

    let later = create(
        app,
        json!({ "name": "later", "cap": 5, "opens_at": Utc::now() + chrono::Duration::hours(1) }),
    )
    .await;
    let (status, body) = apply(app, later, 1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_open"))
    );
    let over = create(
        app,
        json!({ "name": "over", "cap": 5, "closes_at": Utc::now() - chrono::Duration::hours(1) }),
    )
    .await;
    let (status, body) = apply(app, over, 1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("closed"))
    );

    let (status, body) = apply(app, 999_999, 1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_campaign"))
    );
}

#[tokio::test]
async fn applying_again_once_the_coupon_is_stored_is_already_applied() {
    let service = service();
    let app = &service.app;
    let campaign = create(app, json!({ "name": "again", "cap": 5 })).await;
    assert_eq!(apply(app, campaign, 1).await.0, StatusCode::ACCEPTED);
    let worker = IssueWorker::new(service.queue.clone(), service.store.clone());
    let running = tokio::spawn(async move { worker.run(std::future::pending()).await });
    let mut answer = apply(app, campaign, 1).await;
    for _ in 0..100 {
        if answer.0 != StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(answer.1["status"].as_str(), Some("pending"), "{}", answer.1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        answer = apply(app, campaign, 1).await;
    }
    running.abort();
    assert_eq!(
        (answer.0, answer.1["error"].as_str()),
        (StatusCode::CONFLICT, Some("already_applied"))
    );
    let (_, _, body) = send(app, get(&format!("/campaigns/{campaign}"))).await;
    assert_eq!(
        (body["admitted"].as_u64(), body["issued"].as_u64()),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn admin_routes_need_the_token_and_settle_list_and_replay() {
    use coupon_core::{CampaignId, CouponCounter, CouponStore, IssueFailure, IssueTicket, UserId};
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(100));
    let counter = Arc::new(MemoryCounter::new());
    let service = CouponService::with_config(
        counter.clone(),
        queue.clone(),
        store.clone(),
        coupon_core::ServiceConfig::default()
            .with_settler(coupon_core::SettlerConfig::default().with_grace(Duration::ZERO)),
    );
    let app = router(Arc::new(
        AppState::new(Arc::new(service), TOKEN).with_identity(Identity::TrustedClients),
    ));
    for (method, uri) in [
        ("POST", "/admin/settle"),
        ("GET", "/admin/dead-letters"),
        ("POST", "/admin/dead-letters/replay"),
    ] {
        let mut request = json_request(method, uri, "{}");
        request.headers_mut().remove(header::AUTHORIZATION);
        let (status, _, body) = send(&app, request).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "{method} {uri}"
        );
    }

    // An admission whose process died before publishing: settling publishes its ticket.
    let campaign = create(&app, json!({ "name": "admin", "cap": 5 })).await;
    let definition = store.campaign(CampaignId(campaign)).await.unwrap();
    counter.try_acquire(&definition, UserId(7)).await.unwrap();
    let (status, _, report) = send(&app, json_request("POST", "/admin/settle", "")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (report["unsettled"].as_u64(), report["republished"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(queue.lag(), 1);
    let (status, _, body) = send(&app, json_request("POST", "/admin/settle?campaign=x", "")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // A dead letter is listed, replayed once, then listed as replayed.
    let ticket = IssueTicket::new(CampaignId(campaign), UserId(8), 1, 2);
    store
        .record_failure(&IssueFailure::new(ticket.clone(), "constraint broken", 1))
        .await
        .unwrap();
    let uri = format!("/admin/dead-letters?campaign={campaign}");
    let (status, _, body) = send(&app, json_request("GET", &uri, "")).await;
    assert_eq!(status, StatusCode::OK);
    let listed = body["dead_letters"].as_array().expect("a list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["error"].as_str(), Some("constraint broken"));
    assert!(listed[0]["replayed_at"].is_null());
    let replay = json!({ "campaign": campaign }).to_string();
    let (status, _, body) = send(
        &app,
        json_request("POST", "/admin/dead-letters/replay", &replay),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["replayed"],
        json!([ticket.ticket_id.to_string()]),
        "{body}"
    );
    assert_eq!(queue.lag(), 2);
    let (_, _, body) = send(
        &app,
        json_request("POST", "/admin/dead-letters/replay", &replay),
    )
    .await;
    assert_eq!(body["replayed"], json!([]), "replayed once: {body}");
    let (_, _, body) = send(&app, json_request("GET", &uri, "")).await;
    assert!(body["dead_letters"][0]["replayed_at"].is_string(), "{body}");

    let (_, _, text) = send(&app, get("/metrics")).await;
    let text = text.as_str().expect("text");
    assert!(
        text.contains("firstcome_republished_tickets_total 1"),
        "{text}"
    );
}

#[tokio::test]
async fn unavailable_hand_off_is_503_with_retry_after() {
    let service = service();
    let campaign = create(&service.app, json!({ "name": "x", "cap": 5 })).await;
    service.queue.close(); // every publish is now refused
    let body = json!({ "user_id": 1 }).to_string();
    let (status, retry_after, body) = send(
        &service.app,
        json_request("POST", &format!("/campaigns/{campaign}/apply"), &body),
    )
    .await;
    assert_eq!(
        (status, retry_after.as_deref()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("1"))
    );
    assert_eq!(body["error"].as_str(), Some("unavailable"));
    // A fixed message: the backend's own words (key names, hosts) stay in the log.
    assert_eq!(body["message"].as_str(), Some(UNAVAILABLE_MESSAGE));
    // The refused hand-off released the slot: the campaign still has all five.
    let (_, _, campaign) = send(&service.app, get(&format!("/campaigns/{campaign}"))).await;
    assert_eq!(campaign["remaining"].as_u64(), Some(5));
}

#[tokio::test]
async fn campaign_status_and_coupon_lookups() {
    let service = service();
    let app = &service.app;
    let campaign = create(app, json!({ "name": "one", "cap": 1 })).await;
    assert_eq!(apply(app, campaign, 42).await.0, StatusCode::ACCEPTED);

    // Admitted, not yet persisted: 202.
    let (status, _, body) = send(app, get(&format!("/campaigns/{campaign}/coupons/42"))).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("pending"))
    );
    let (_, _, body) = send(app, get(&format!("/campaigns/{campaign}"))).await;
    assert_eq!(
        (
            body["admitted"].as_u64(),
            body["issued"].as_u64(),
            body["remaining"].as_u64(),
            body["state"].as_str()
        ),
        (Some(1), Some(0), Some(0), Some("sold_out"))
    );

    service.queue.close();
    IssueWorker::new(service.queue.clone(), service.store.clone())
        .run(std::future::pending())
        .await
        .expect("worker");
    let (status, _, body) = send(app, get(&format!("/campaigns/{campaign}/coupons/42"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["rank"].as_u64(), body["code"].as_str().map(str::len)),
        (Some(1), Some(26))
    );
    let (_, _, body) = send(app, get(&format!("/campaigns/{campaign}"))).await;
    assert_eq!(body["issued"].as_u64(), Some(1));

    let (status, _, body) = send(app, get(&format!("/campaigns/{campaign}/coupons/43"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_coupon"))
    );
    let (status, _, body) = send(app, get(&format!("/campaigns/{campaign}/coupons/-1"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request"))
    );
    let (status, _, body) = send(app, get("/campaigns/abc")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_campaign"))
    );
}

#[tokio::test]
async fn bad_input_is_a_4xx_json_error_never_a_5xx() {
    let service = service();
    let app = &service.app;
    let campaign = create(app, json!({ "name": "x", "cap": 5 })).await;
    let uri = format!("/campaigns/{campaign}/apply");
    let huge = format!(r#"{{"user_id": 1, "pad": "{}"}}"#, "x".repeat(BODY_LIMIT));
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (
            json_request("POST", &uri, &huge),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            json_request("POST", &uri, r#"{"user_id": 1, "extra": true}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, r#"{"user_id": -5}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, r#"{"user_id": 18446744073709551616}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, r#"{"user_id": "7"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, r#"{"user_id": 1.5}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, r#"{}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, r#"{"user_id": 1"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, ""),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, "\u{0}\u{1}binary"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Request::builder()
                .method("POST")
                .uri(&uri)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(r#"{"user_id":1}"#))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            json_request("POST", "/campaigns", r#"{"name":"x","cap":-1}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request(
                "POST",
                "/campaigns",
                r#"{"name":"x","cap":1,"per_user_limit":0}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request(
                "POST",
                "/campaigns",
                r#"{"name":"x","cap":1,"opens_at":"yesterday"}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("DELETE", &uri, ""),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (get("/nowhere"), StatusCode::NOT_FOUND),
    ];
    for (request, expected) in cases {
        let label = format!("{} {}", request.method(), request.uri());
        let (status, _, body) = send(app, request).await;
        assert_eq!(status, expected, "{label}: {body}");
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{label}: {body}"
        );
    }
    // Nothing was admitted by any of it.
    let (_, _, body) = send(app, get(&format!("/campaigns/{campaign}"))).await;
    assert_eq!(body["admitted"].as_u64(), Some(0));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let service = service();
    let app = &service.app;
    assert_eq!(send(app, get("/healthz")).await.0, StatusCode::OK);
    let (status, _, body) = send(app, get("/readyz")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );

    let campaign = create(app, json!({ "name": "m", "cap": 1 })).await;
    apply(app, campaign, 1).await;
    apply(app, campaign, 2).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    let (status, _, text) = send(app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().expect("text");
    assert!(
        text.contains(r#"firstcome_requests_total{route="apply",outcome="accepted"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"firstcome_requests_total{route="apply",outcome="sold_out"} 1"#),
        "{text}"
    );
    assert!(text.contains("firstcome_apply_seconds_count 2"), "{text}");
    // No worker runs here: the accepted ticket waits in the queue.
    assert!(text.contains("firstcome_queue_lag 1"), "{text}");

    // A queue that takes nothing makes the service not ready, naming the part.
    service.queue.close();
    let (status, _, body) = send(app, get("/readyz")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready"))
    );
    // The part, not its error (the log has that).
    assert_eq!(body["message"], "not ready: queue", "{body}");
}
