//! The API's rules on real backends, with exact status codes: identity (forged,
//! expired, wrong-audience and wrong-algorithm tokens refused) and the rate limit on
//! Redis + Kafka + PostgreSQL, and campaign definitions no store can hold answered 422
//! (never a 5xx) on the embedded default (SQLite), PostgreSQL, MariaDB and the full
//! stack.

use crate::support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use coupon_testkit::service_url;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const SECRET: &str = "rules-tests-jwt-secret-of-32-bytes!";
const AUDIENCE: &str = "firstcome-rules";

fn token(user: u64, expires_in: i64) -> String {
    signed(Algorithm::HS256, SECRET, user, expires_in, AUDIENCE)
}

fn signed(algorithm: Algorithm, secret: &str, user: u64, expires_in: i64, aud: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    jsonwebtoken::encode(
        &Header::new(algorithm),
        &json!({ "sub": user.to_string(), "exp": now + expires_in, "aud": aud }),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

async fn as_user(
    api: &support::Api,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("authorization", b)])
        .unwrap_or_default();
    let (status, _, body) = api
        .request(method, path, None, &headers)
        .await
        .expect("an answer");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_the_user_rate_limit_hold_on_redis_kafka_and_postgres() {
    let mut args = support::shared_backend_args();
    args.extend([
        "--database-url".into(),
        coupon_seaorm::testkit::fresh_postgres().await,
        "--identity".into(),
        "jwt".into(),
        "--jwt-secret".into(),
        SECRET.into(),
        "--jwt-audience".into(),
        AUDIENCE.into(),
        "--rate-limit-user-per-sec".into(),
        "1".into(),
        "--rate-limit-user-burst".into(),
        "3".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let service = support::Service::start(&args).await;
    let api = &service.api;
    let campaign = api.create_campaign(5).await;
    let apply = format!("/campaigns/{campaign}/apply");
    let (alice, bob) = (token(1, 3_600), token(2, 3_600));

    assert_eq!(
        as_user(api, Method::POST, &apply, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let refused = [
        ("expired", token(3, -3_600)),
        (
            "forged",
            signed(
                Algorithm::HS256,
                "another-secret-of-at-least-32-bytes",
                3,
                3_600,
                AUDIENCE,
            ),
        ),
        (
            "wrong audience",
            signed(Algorithm::HS256, SECRET, 3, 3_600, "another-service"),
        ),
        (
            "wrong algorithm",
            signed(Algorithm::HS384, SECRET, 3, 3_600, AUDIENCE),
        ),
    ];
    for (what, refused) in &refused {
        let (status, body) = as_user(api, Method::POST, &apply, Some(refused)).await;
        assert_eq!(
            (status, &body["error"]),
            (StatusCode::UNAUTHORIZED, &json!("unauthorized")),
            "{what}: {body}"
        );
    }
    let (status, body) = as_user(api, Method::POST, &apply, Some(&alice)).await;
    assert_eq!(
        (status, &body["rank"]),
        (StatusCode::ACCEPTED, &json!(1)),
        "{body}"
    );
    assert_eq!(
        api.wait_for_issued(campaign, 1, Duration::from_secs(60))
            .await,
        1
    );

    let alices = format!("/campaigns/{campaign}/coupons/1");
    let (status, coupon) = as_user(api, Method::GET, &alices, Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{coupon}");
    assert_eq!(coupon["user_id"], 1);
    let (status, body) = as_user(api, Method::GET, &alices, Some(&bob)).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
    let (status, body) = as_user(api, Method::POST, &apply, Some(&alice)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // A full budget (a burst of 3 at 1 a second), then four reads at once: the fourth
    // is over it, and a second later there is room again.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    for _ in 0..3 {
        assert_eq!(
            as_user(api, Method::GET, &alices, Some(&alice)).await.0,
            StatusCode::OK
        );
    }
    let (status, body) = as_user(api, Method::GET, &alices, Some(&alice)).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::TOO_MANY_REQUESTS, &json!("rate_limited"))
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        as_user(api, Method::GET, &alices, Some(&alice)).await.0,
        StatusCode::OK
    );
    let (_, status_body) = api
        .call(Method::GET, &format!("/campaigns/{campaign}"), None)
        .await
        .expect("status");
    assert_eq!(
        (
            status_body["admitted"].as_u64(),
            status_body["issued"].as_u64()
        ),
        (Some(1), Some(1))
    );
    service.stop().await;
}

/// A gateway's header names the user, only when enabled, and a client address over its
/// rate is answered 429 with `Retry-After` and recovers, on Redis + Kafka + PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_header_and_the_address_limit_hold_on_redis_kafka_and_postgres() {
    let mut args = support::shared_backend_args();
    args.extend([
        "--database-url".into(),
        coupon_seaorm::testkit::fresh_postgres().await,
        "--identity".into(),
        "header".into(),
        "--rate-limit-address-per-sec".into(),
        "1".into(),
        "--rate-limit-address-burst".into(),
        "4".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let service = support::Service::start(&args).await;
    let api = &service.api;
    let campaign = api.create_campaign(5).await;
    let apply = format!("/campaigns/{campaign}/apply");
    let (status, _, body) = api
        .request(Method::POST, &apply, None, &[("x-user-id", "7")])
        .await
        .expect("an answer");
    assert_eq!(
        (status, &body["rank"]),
        (StatusCode::ACCEPTED, &json!(1)),
        "{body}"
    );
    let (status, _, body) = api
        .request(Method::POST, &apply, None, &[])
        .await
        .expect("an answer");
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthorized")),
        "no header, no user: {body}"
    );
    // The creation and the two applies came from this address too: the burst of 4 is
    // spent by the first read or two (one more may have refilled meanwhile).
    let mut refused = None;
    for _ in 0..4 {
        let (status, headers, body) = api
            .request(Method::GET, &format!("/campaigns/{campaign}"), None, &[])
            .await
            .expect("an answer");
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"], "rate_limited", "{body}");
            refused = Some(headers.get("retry-after").cloned());
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let retry_after = refused.expect("the address limit answered 429");
    assert_eq!(
        retry_after.as_ref().and_then(|v| v.to_str().ok()),
        Some("1")
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, _, body) = api
        .request(Method::GET, &format!("/campaigns/{campaign}"), None, &[])
        .await
        .expect("an answer");
    assert_eq!(status, StatusCode::OK, "recovered: {body}");
    service.stop().await;
}

async fn bad_definitions_are_422(database: String, backends: Vec<String>) {
    let on_redis = !backends.is_empty();
    let mut args = vec!["--database-url".to_owned(), database];
    args.extend(backends);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let service = support::Service::start(&args).await;
    let mut cases = vec![
        json!({ "name": "x".repeat(256), "cap": 10 }),
        json!({ "name": "nul\u{0}inside", "cap": 10 }),
        json!({ "name": "far", "cap": 10, "closes_at": "2038-01-19T03:14:08Z" }),
        json!({ "name": "ancient", "cap": 10, "opens_at": "1970-01-01T00:00:00Z" }),
        json!({ "name": "huge", "cap": 9_223_372_036_854_775_808_u64 }),
        json!({ "name": "limit", "cap": 10, "per_user_limit": 0 }),
        json!({ "name": "split", "cap": 10, "shards": 0 }),
        json!({ "name": "split", "cap": 10, "shards": 65 }),
        json!({ "name": "split", "cap": 9_223_372_036_854_775_807_u64, "shards": 2 }),
    ];
    if on_redis {
        // Within the schema, but more than the Redis counter splits a campaign over
        // (one, until its shards are built).
        cases.push(json!({ "name": "split", "cap": 10, "shards": 2 }));
    }
    for case in cases {
        let (status, body) = service
            .api
            .call(Method::POST, "/campaigns", Some(case.clone()))
            .await
            .expect("an answer");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {body}");
        assert_eq!(body["error"], "invalid_campaign", "{case}: {body}");
    }
    let (status, listed) = service
        .api
        .call(Method::GET, "/admin/campaigns", None)
        .await
        .expect("an answer");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["campaigns"], json!([]), "nothing was stored");
    service.stop().await;
}

#[tokio::test]
async fn definitions_the_embedded_default_cannot_hold_are_422() {
    let path = std::env::temp_dir().join(format!(
        "firstcome-rules-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    bad_definitions_are_422(format!("sqlite://{}?mode=rwc", path.display()), Vec::new()).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test]
async fn definitions_postgres_cannot_hold_are_422() {
    bad_definitions_are_422(coupon_seaorm::testkit::fresh_postgres().await, Vec::new()).await;
}

#[tokio::test]
async fn definitions_mariadb_cannot_hold_are_422() {
    bad_definitions_are_422(
        coupon_seaorm::testkit::fresh_database(&service_url("MYSQL_URL")).await,
        Vec::new(),
    )
    .await;
}

#[tokio::test]
async fn definitions_are_422_on_redis_kafka_and_postgres() {
    bad_definitions_are_422(
        coupon_seaorm::testkit::fresh_postgres().await,
        support::shared_backend_args(),
    )
    .await;
}
