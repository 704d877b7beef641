//! Who may apply and read a coupon: JWTs (HS256, RS256, ES256, JWKS), a gateway's header,
//! trusted clients; and the abuse limits (rate limits, timeouts, the shutdown deadline).
//! The token rules run through the router in memory; the limits that live in the
//! connection run against the service on a loopback port.

mod support;

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
async fn an_hs256_user_applies_as_themselves_and_reads_only_their_own_coupon() {
    let verifier = JwtVerifier::hs256(SECRET, &rules(None, None)).expect("verifier");
    let (app, campaign) = service(Identity::Jwt(verifier), RateLimits::default()).await;
    let alice = hs256(&claims("1", json!({})));
    let bob = hs256(&claims("2", json!({})));

    let (status, body) = apply_with(&app, campaign, &alice).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["rank"], 1);
    // The body may name the caller, never someone else.
    let bearer = format!("Bearer {bob}");
    let uri = format!("/campaigns/{campaign}/apply");
    let auth = [("authorization", bearer.as_str())];
    let (status, body) = send(
        &app,
        Method::POST,
        &uri,
        &auth,
        Some(json!({ "user_id": 1 })),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("forbidden")),
        "{body}"
    );
    let (status, body) = send(
        &app,
        Method::POST,
        &uri,
        &auth,
        Some(json!({ "user_id": 2 })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["rank"], 2, "the refused apply took no slot");

    // Alice reads her own (no worker runs here: pending), by id and as `me`.
    for path in ["1", "me"] {
        let (status, body) = coupon_with(&app, campaign, path, &alice).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {body}");
    }
    let (status, body) = coupon_with(&app, campaign, "1", &bob).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("forbidden")),
        "{body}"
    );
    // The admin reads anyone's; nobody reads without credentials.
    let (status, body) = coupon_with(&app, campaign, "1", ADMIN).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = coupon_with(&app, campaign, "me", ADMIN).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_unauthorized(
        send(
            &app,
            Method::GET,
            &format!("/campaigns/{campaign}/coupons/1"),
            &[],
            None,
        )
        .await,
        "no credentials",
    );
    assert_unauthorized(
        send(&app, Method::POST, &uri, &[], None).await,
        "apply without credentials",
    );
}

#[tokio::test]
async fn forged_expired_early_wrong_audience_issuer_and_algorithm_tokens_are_refused() {
    let verifier =
        JwtVerifier::hs256(SECRET, &rules(Some("shop"), Some("coupons"))).expect("verifier");
    let (app, campaign) = service(Identity::Jwt(verifier), RateLimits::default()).await;
    let good = json!({ "iss": "shop", "aud": "coupons" });
    let (status, body) = apply_with(&app, campaign, &hs256(&claims("7", good.clone()))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the control token: {body}");

    let forged = sign(
        Header::new(Algorithm::HS256),
        &claims("8", good.clone()),
        &EncodingKey::from_secret(b"another-secret-of-thirty-two-bytes!!"),
    );
    let expired = hs256(&json!({ "sub": "8", "exp": now() - 60, "iss": "shop", "aud": "coupons" }));
    let early = hs256(&claims(
        "8",
        json!({ "iss": "shop", "aud": "coupons", "nbf": now() + 600 }),
    ));
    let wrong_audience = hs256(&claims("8", json!({ "iss": "shop", "aud": "ads" })));
    let no_audience = hs256(&claims("8", json!({ "iss": "shop" })));
    let wrong_issuer = hs256(&claims("8", json!({ "iss": "evil", "aud": "coupons" })));
    let wrong_algorithm = sign(
        Header::new(Algorithm::HS512),
        &claims("8", good.clone()),
        &EncodingKey::from_secret(SECRET),
    );
    let no_expiry = hs256(&json!({ "sub": "8", "iss": "shop", "aud": "coupons" }));
    let not_a_user = hs256(&claims("alice", good.clone()));
    // `alg: none`, unsigned.
    let unsigned = format!(
        "{}.{}.",
        base64_url(
            json!({ "alg": "none", "typ": "JWT" })
                .to_string()
                .as_bytes()
        ),
        base64_url(claims("8", good.clone()).to_string().as_bytes())
    );
    for (why, token) in [
        ("forged", forged),
        ("expired", expired),
        ("not yet valid", early),
        ("wrong audience", wrong_audience),
        ("no audience", no_audience),
        ("wrong issuer", wrong_issuer),
        ("wrong algorithm", wrong_algorithm),
        ("no expiry", no_expiry),
        ("sub not a user id", not_a_user),
        ("unsigned", unsigned),
        ("garbage", "not.a.token".into()),
    ] {
        assert_unauthorized(apply_with(&app, campaign, &token).await, why);
    }
    // None of them took a slot.
    let (status, body) = apply_with(&app, campaign, &hs256(&claims("9", good))).await;
    assert_eq!(
        (status, &body["rank"]),
        (StatusCode::ACCEPTED, &json!(2)),
        "{body}"
    );
}

/// A token may live at most `--jwt-max-lifetime-secs` (here a day, the default) from
/// now: one whose `exp` is 31 years ahead is refused, as minting one is.
#[tokio::test]
async fn a_token_living_longer_than_the_maximum_lifetime_is_refused() {
    let limited = JwtRules {
        max_lifetime_secs: Some(86_400),
        leeway_secs: 30,
        ..rules(None, None)
    };
    let verifier = JwtVerifier::hs256(SECRET, &limited).expect("verifier");
    let (app, campaign) = service(Identity::Jwt(verifier), RateLimits::default()).await;
    let for_ever = hs256(&json!({ "sub": "1", "exp": now() + 31 * 365 * 86_400 }));
    let a_day_and_a_minute = hs256(&json!({ "sub": "1", "exp": now() + 86_400 + 60 }));
    for (why, token) in [
        ("31 years", for_ever),
        ("a day and a minute", a_day_and_a_minute),
    ] {
        let (status, body) = apply_with(&app, campaign, &token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "{why}: {body}"
        );
    }
    let a_day = hs256(&json!({ "sub": "1", "exp": now() + 86_400 }));
    let (status, body) = apply_with(&app, campaign, &a_day).await;
    assert_eq!(status, StatusCode::ACCEPTED, "a day: {body}");
    let minted =
        firstcome_server::auth::mint_hs256(SECRET, coupon_core::UserId(2), 86_401, &limited)
            .expect_err("a ttl above the maximum");
    assert!(minted.contains("--jwt-max-lifetime-secs"), "{minted}");
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[tokio::test]
async fn rs256_and_es256_public_keys_verify_and_a_key_confused_hs256_token_is_refused() {
    let rsa = JwtVerifier::public_key(
        &keys("rsa_public.pem"),
        Algorithm::RS256,
        &rules(None, None),
    )
    .expect("RSA verifier");
    let (app, campaign) = service(Identity::Jwt(rsa), RateLimits::default()).await;
    let rsa_key = EncodingKey::from_rsa_pem(&keys("rsa_private.pem")).expect("RSA key");
    let token = sign(
        Header::new(Algorithm::RS256),
        &claims("1", json!({})),
        &rsa_key,
    );
    let (status, body) = apply_with(&app, campaign, &token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // The classic confusion: an HS256 token keyed with the public key's PEM.
    let confused = sign(
        Header::new(Algorithm::HS256),
        &claims("2", json!({})),
        &EncodingKey::from_secret(&keys("rsa_public.pem")),
    );
    assert_unauthorized(
        apply_with(&app, campaign, &confused).await,
        "HS256 on an RS256 key",
    );
    // A token of the EC key is not one of this service's.
    let ec_key = EncodingKey::from_ec_pem(&keys("ec_private.pem")).expect("EC key");
    let ec_token = sign(
        Header::new(Algorithm::ES256),
        &claims("3", json!({})),
        &ec_key,
    );
    assert_unauthorized(
        apply_with(&app, campaign, &ec_token).await,
        "ES256 on an RS256 key",
    );

    let ec = JwtVerifier::public_key(&keys("ec_public.pem"), Algorithm::ES256, &rules(None, None))
        .expect("EC verifier");
    let (app, campaign) = service(Identity::Jwt(ec), RateLimits::default()).await;
    let (status, body) = apply_with(&app, campaign, &ec_token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_unauthorized(
        apply_with(&app, campaign, &token).await,
        "RS256 on an ES256 key",
    );
}

#[tokio::test]
async fn a_jwks_verifies_each_key_by_its_kid() {
    let jwks = String::from_utf8(keys("jwks.json")).expect("UTF-8");
    let verifier = JwtVerifier::jwks(&jwks, &rules(None, None)).expect("JWKS verifier");
    let (app, campaign) = service(Identity::Jwt(verifier), RateLimits::default()).await;
    let rsa_key = EncodingKey::from_rsa_pem(&keys("rsa_private.pem")).expect("RSA key");
    let ec_key = EncodingKey::from_ec_pem(&keys("ec_private.pem")).expect("EC key");
    let with_kid = |algorithm, kid: &str| {
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.into());
        header
    };
    let rsa = sign(
        with_kid(Algorithm::RS256, "rsa-1"),
        &claims("1", json!({})),
        &rsa_key,
    );
    let ec = sign(
        with_kid(Algorithm::ES256, "ec-1"),
        &claims("2", json!({})),
        &ec_key,
    );
    let no_kid = sign(
        Header::new(Algorithm::ES256),
        &claims("3", json!({})),
        &ec_key,
    );
    for (user, token) in [(1, rsa), (2, ec), (3, no_kid)] {
        let (status, body) = apply_with(&app, campaign, &token).await;
        assert_eq!(status, StatusCode::ACCEPTED, "user {user}: {body}");
    }
    let unknown = sign(
        with_kid(Algorithm::RS256, "rsa-2"),
        &claims("4", json!({})),
        &rsa_key,
    );
    assert_unauthorized(apply_with(&app, campaign, &unknown).await, "unknown kid");
    let swapped = sign(
        with_kid(Algorithm::RS256, "ec-1"),
        &claims("5", json!({})),
        &rsa_key,
    );
    assert_unauthorized(
        apply_with(&app, campaign, &swapped).await,
        "kid of another key",
    );
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

#[tokio::test]
async fn a_user_over_their_rate_is_told_when_to_retry_and_recovers() {
    let verifier = JwtVerifier::hs256(SECRET, &rules(None, None)).expect("verifier");
    let limits = RateLimits {
        per_user: Rate::new(2, 2),
        per_address: None,
    };
    let (app, campaign) = service(Identity::Jwt(verifier), limits).await;
    let alice = hs256(&claims("1", json!({})));
    let bob = hs256(&claims("2", json!({})));
    assert_eq!(
        apply_with(&app, campaign, &alice).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        coupon_with(&app, campaign, "me", &alice).await.0,
        StatusCode::ACCEPTED
    );
    let bearer = format!("Bearer {alice}");
    let request = Request::post(format!("/campaigns/{campaign}/apply"))
        .header("authorization", &bearer)
        .body(Body::empty())
        .expect("request");
    let refused = app.clone().oneshot(request).await.expect("response");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap_or_default()),
        Some("1")
    );
    // Another user is not held up by Alice.
    assert_eq!(
        apply_with(&app, campaign, &bob).await.0,
        StatusCode::ACCEPTED
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, body) = apply_with(&app, campaign, &alice).await;
    assert_eq!(status, StatusCode::ACCEPTED, "after waiting: {body}");
    assert_eq!(
        body["status"], "pending",
        "Alice's first apply holds her slot"
    );
}

#[tokio::test]
async fn a_client_address_over_its_rate_gets_429_and_probes_still_answer() {
    let service = support::Service::start(&[
        "--identity",
        "header",
        "--rate-limit-address-per-sec",
        "2",
        "--rate-limit-address-burst",
        "3",
        "--database-url",
        "sqlite::memory:",
    ])
    .await;
    let mut refused = None;
    for attempt in 0..5 {
        let (status, headers, body) = service
            .api
            .request(Method::GET, "/campaigns/1", None, &[])
            .await
            .expect("answer");
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"], "rate_limited", "{body}");
            refused = Some((attempt, headers.get(header::RETRY_AFTER).cloned()));
            break;
        }
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    let (attempt, retry_after) = refused.expect("the address limit");
    assert_eq!(attempt, 3, "the burst of 3 passes, the 4th is refused");
    assert_eq!(
        retry_after.as_ref().and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let (status, _, _) = service
        .api
        .request(Method::GET, "/healthz", None, &[])
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::OK, "a probe is never limited");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, _, _) = service
        .api
        .request(Method::GET, "/campaigns/1", None, &[])
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::NOT_FOUND, "recovered");
    service.stop().await;
}
