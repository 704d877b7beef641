//! The admin routes: the token they need, creating a campaign, settling, and listing
//! and replaying dead letters.

use super::*;
use coupon_core::FailureLedger;

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
        (
            body["cap"].as_u64(),
            body["per_user_limit"].as_u64(),
            body["shards"].as_u64()
        ),
        (Some(3), Some(1), Some(1))
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
