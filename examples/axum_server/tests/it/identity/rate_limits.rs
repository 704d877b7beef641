//! The rate limits: per user through the router in memory, per client address against
//! the service on a loopback port.

use super::*;

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
