//! Every status code of the API, and the bad-input list, through the router in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
use coupon_core::{Batch, CouponService, IssueQueue, IssueSource, IssueTicket, IssueWorker};
use firstcome_server::api::{AppState, BODY_LIMIT, router};
use firstcome_server::auth::Identity;
use firstcome_server::error::UNAVAILABLE_MESSAGE;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

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

/// A queue that counts how often the probes ask it.
struct Counting {
    inner: Arc<MemoryQueue>,
    ready: AtomicU64,
    lag: AtomicU64,
}

#[async_trait::async_trait]
impl IssueQueue for Counting {
    async fn publish(&self, ticket: &IssueTicket) -> coupon_core::Result<()> {
        IssueQueue::publish(self.inner.as_ref(), ticket).await
    }

    async fn ready(&self) -> coupon_core::Result<()> {
        self.ready.fetch_add(1, Ordering::Relaxed);
        IssueQueue::ready(self.inner.as_ref()).await
    }
}

#[async_trait::async_trait]
impl IssueSource for Counting {
    async fn next_batch(&self, max: usize) -> coupon_core::Result<Option<Batch>> {
        IssueSource::next_batch(self.inner.as_ref(), max).await
    }

    async fn ack(&self, batch: Batch) -> coupon_core::Result<()> {
        IssueSource::ack(self.inner.as_ref(), batch).await
    }

    async fn lag(&self) -> coupon_core::Result<Option<u64>> {
        self.lag.fetch_add(1, Ordering::Relaxed);
        IssueSource::lag(self.inner.as_ref()).await
    }
}

/// Readiness and the queue lag ask the backends; 200 concurrent calls of each ask
/// them once while the answer is fresh (here for an hour, 1 s by default).
#[tokio::test]
async fn a_flood_of_readiness_and_metrics_calls_asks_the_backends_once() {
    let queue = Arc::new(Counting {
        inner: Arc::new(MemoryQueue::new(10)),
        ready: AtomicU64::new(0),
        lag: AtomicU64::new(0),
    });
    let service = CouponService::new(
        Arc::new(MemoryCounter::new()),
        queue.clone(),
        Arc::new(MemoryStore::new()),
    )
    .with_source(queue.clone());
    let app = router(Arc::new(
        AppState::new(Arc::new(service), TOKEN).with_probe_cache(Duration::from_secs(3_600)),
    ));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..400 {
        let app = app.clone();
        let path = if i % 2 == 0 { "/readyz" } else { "/metrics" };
        calls.spawn(async move { send(&app, get(path)).await.0 });
    }
    while let Some(status) = calls.join_next().await {
        assert_eq!(status.expect("a call"), StatusCode::OK);
    }
    assert_eq!(queue.ready.load(Ordering::Relaxed), 1, "readiness asked");
    assert_eq!(queue.lag.load(Ordering::Relaxed), 1, "lag asked");
}

/// With a metrics token, `/metrics` answers only it and the admin token.
#[tokio::test]
async fn a_metrics_token_guards_the_metrics() {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(10));
    let service = CouponService::new(Arc::new(MemoryCounter::new()), queue, store);
    let app = router(Arc::new(
        AppState::new(Arc::new(service), TOKEN)
            .with_metrics_token(Some("metrics-token-of-16+".into())),
    ));
    let (status, _, body) = send(&app, get("/metrics")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    for token in ["metrics-token-of-16+", TOKEN] {
        let request = Request::builder()
            .uri("/metrics")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("a request");
        let (status, _, body) = send(&app, request).await;
        assert_eq!(status, StatusCode::OK, "{token}");
        assert!(
            body.as_str()
                .is_some_and(|text| text.contains("firstcome_requests_total")),
            "{body}"
        );
    }
}

/// An upcoming campaign (its name, its definition) is the admin's until it opens: to
/// anyone else it is 404 with the very answer of an id that does not exist.
#[tokio::test]
async fn a_campaign_not_open_yet_is_unknown_to_all_but_the_admin() {
    let service = service();
    let app = &service.app;
    let opens_at = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let upcoming = create(
        app,
        json!({ "name": "secret drop", "cap": 5, "opens_at": opens_at }),
    )
    .await;
    let (status, _, body) = send(app, get(&format!("/campaigns/{upcoming}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, _, missing) = send(app, get(&format!("/campaigns/{}", upcoming + 1))).await;
    assert_eq!(
        body,
        json!({ "error": "unknown_campaign", "message": format!("unknown campaign {upcoming}") })
    );
    assert_eq!(
        missing["message"],
        format!("unknown campaign {}", upcoming + 1)
    );
    let (status, _, body) = send(
        app,
        json_request("GET", &format!("/campaigns/{upcoming}"), ""),
    )
    .await;
    assert_eq!(
        (status, body["name"].as_str(), body["state"].as_str()),
        (StatusCode::OK, Some("secret drop"), Some("not_open"))
    );
    // Once open, anyone reads it.
    let open = create(app, json!({ "name": "public", "cap": 5 })).await;
    let (status, _, body) = send(app, get(&format!("/campaigns/{open}"))).await;
    assert_eq!(
        (status, body["name"].as_str()),
        (StatusCode::OK, Some("public"))
    );
}

/// The status and `X-Content-Type-Options` of an answer.
async fn nosniff_of(app: &Router, request: Request<Body>) -> (StatusCode, Option<String>) {
    let response = app.clone().oneshot(request).await.expect("a response");
    let value = response
        .headers()
        .get(header::X_CONTENT_TYPE_OPTIONS)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    (response.status(), value)
}

/// Every answer, success or error, JSON or not, tells browsers not to sniff it.
#[tokio::test]
async fn every_answer_says_nosniff() {
    let service = service();
    let app = &service.app;
    let campaign = create(app, json!({ "name": "x", "cap": 5 })).await;
    let apply = format!("/campaigns/{campaign}/apply");
    let cases = [
        (
            json_request("POST", "/campaigns", r#"{"name":"y","cap":1}"#),
            StatusCode::CREATED,
        ),
        (
            json_request("POST", &apply, r#"{"user_id": 1}"#),
            StatusCode::ACCEPTED,
        ),
        (
            json_request("POST", &apply, r#"{"user_id": "<script>"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (get("/campaigns/1"), StatusCode::OK),
        (get("/admin/campaigns"), StatusCode::UNAUTHORIZED),
        (get("/nowhere%3Cscript%3E"), StatusCode::NOT_FOUND),
        (
            json_request("DELETE", &apply, ""),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (get("/healthz"), StatusCode::OK),
        (get("/readyz"), StatusCode::OK),
        (get("/metrics"), StatusCode::OK),
        (get("/openapi.json"), StatusCode::OK),
        (get("/ui"), StatusCode::OK),
    ];
    for (request, expected) in cases {
        let label = format!("{} {}", request.method(), request.uri());
        let answer = nosniff_of(app, request).await;
        assert_eq!(answer, (expected, Some("nosniff".to_owned())), "{label}");
    }
}

/// With an allowed-hosts list, a request for another host (a DNS rebinding page's name
/// pointed at this address) is 421, whatever the route; the listed ones pass on any
/// port, in any case.
#[tokio::test]
async fn only_the_allowed_hosts_are_answered_when_listed() {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(10));
    let service = CouponService::new(Arc::new(MemoryCounter::new()), queue, store);
    let app = router(Arc::new(
        AppState::new(Arc::new(service), TOKEN)
            .with_allowed_hosts(&["coupons.example.com".into(), "::1".into()]),
    ));
    let with_host = |host: Option<&str>| {
        let mut request = Request::builder().uri("/healthz");
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        request.body(Body::empty()).expect("a request")
    };
    for host in [
        "coupons.example.com",
        "COUPONS.example.com:8443",
        "[::1]:8080",
    ] {
        let (status, _, _) = send(&app, with_host(Some(host))).await;
        assert_eq!(status, StatusCode::OK, "{host}");
    }
    for host in [
        Some("evil.example"),
        Some("coupons.example.com.evil.example"),
        None,
    ] {
        let (status, _, body) = send(&app, with_host(host)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::MISDIRECTED_REQUEST, Some("unknown_host")),
            "{host:?}"
        );
    }
}
