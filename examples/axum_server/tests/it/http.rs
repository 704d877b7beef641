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

mod admin;
mod applicants;
mod bad_input;
mod probes;

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
