//! Who may apply and read a coupon: JWTs (HS256, RS256, ES256, JWKS), a gateway's header,
//! trusted clients; and the abuse limits (rate limits, timeouts, the shutdown deadline).
//! The token rules run through the router in memory; the limits that live in the
//! connection run against the service on a loopback port.

use crate::support;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
use coupon_core::{CouponService, NewCampaign};
use firstcome_server::api::{AppState, router};
use firstcome_server::auth::{Identity, JwtRules, JwtVerifier};
use firstcome_server::limits::{Rate, RateLimits};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;

mod public_keys;
mod rate_limits;
mod tokens;

const ADMIN: &str = "identity-tests-admin-token";
const SECRET: &[u8] = b"identity-tests-secret-of-32-bytes!!";

fn keys(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Claims valid for an hour for `sub`, plus `extra`.
fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({ "sub": sub, "exp": now() + 3_600 });
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    claims
}

fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn hs256(claims: &Value) -> String {
    sign(
        Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
}

/// A campaign of `cap` in a fresh in-memory service that knows users as `identity`.
async fn service(identity: Identity, limits: RateLimits) -> (Router, u64) {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(1_000));
    let service = CouponService::new(Arc::new(MemoryCounter::new()), queue, store);
    let state = AppState::new(Arc::new(service), ADMIN)
        .with_identity(identity)
        .with_rate_limits(limits);
    let campaign = state
        .service
        .create_campaign(NewCampaign::new("identity", 100))
        .await
        .expect("campaign");
    (router(Arc::new(state)), campaign.id.0)
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).expect("a request"))
        .await
        .expect("a response");
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&header::HeaderValue::from_static("Bearer")),
        );
    }
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).expect("every answer is JSON");
    (status, body)
}

async fn apply_with(app: &Router, campaign: u64, token: &str) -> (StatusCode, Value) {
    let bearer = format!("Bearer {token}");
    send(
        app,
        Method::POST,
        &format!("/campaigns/{campaign}/apply"),
        &[("authorization", &bearer)],
        None,
    )
    .await
}

async fn coupon_with(app: &Router, campaign: u64, user: &str, token: &str) -> (StatusCode, Value) {
    let bearer = format!("Bearer {token}");
    send(
        app,
        Method::GET,
        &format!("/campaigns/{campaign}/coupons/{user}"),
        &[("authorization", &bearer)],
        None,
    )
    .await
}

fn assert_unauthorized((status, body): (StatusCode, Value), why: &str) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {body}");
    assert_eq!(body["error"], "unauthorized", "{why}: {body}");
}

fn rules(issuer: Option<&str>, audience: Option<&str>) -> JwtRules {
    JwtRules {
        issuer: issuer.map(String::from),
        audience: audience.map(String::from),
        leeway_secs: 0,
        max_lifetime_secs: None,
    }
}

#[tokio::test]
async fn a_gateway_header_names_the_user_only_when_enabled_and_trusted_clients_name_it_in_the_body()
{
    let header_name = axum::http::HeaderName::from_static("x-user-id");
    let (app, campaign) = service(Identity::Header(header_name), RateLimits::default()).await;
    let uri = format!("/campaigns/{campaign}/apply");
    let (status, body) = send(&app, Method::POST, &uri, &[("x-user-id", "7")], None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_unauthorized(send(&app, Method::POST, &uri, &[], None).await, "no header");
    assert_unauthorized(
        send(&app, Method::POST, &uri, &[("x-user-id", "seven")], None).await,
        "not a user id",
    );
    // A client's own header beside the gateway's: refused, not the first one believed.
    assert_unauthorized(
        send(
            &app,
            Method::POST,
            &uri,
            &[("x-user-id", "9"), ("x-user-id", "7")],
            None,
        )
        .await,
        "the header twice",
    );
    let path = format!("/campaigns/{campaign}/coupons/7");
    let (status, _) = send(&app, Method::GET, &path, &[("x-user-id", "8")], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (app, campaign) = service(Identity::TrustedClients, RateLimits::default()).await;
    let uri = format!("/campaigns/{campaign}/apply");
    let (status, body) = send(&app, Method::POST, &uri, &[], None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = send(&app, Method::POST, &uri, &[], Some(json!({ "user_id": 7 }))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // A JWT mode that was never configured accepts nobody.
    let service = CouponService::new(
        Arc::new(MemoryCounter::new()),
        Arc::new(MemoryQueue::new(10)),
        Arc::new(MemoryStore::new()),
    );
    let state = AppState::new(Arc::new(service), ADMIN);
    let app = router(Arc::new(state));
    assert_unauthorized(
        apply_with(&app, 1, &hs256(&claims("1", json!({})))).await,
        "default",
    );
}
