//! The applicants' routes: every outcome of an apply and its status code, a hand-off
//! refused, and the campaign and coupon lookups.

use super::*;

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

/// An apply cut short by the request timeout (here: the in-process queue is full and no
/// worker drains it) is answered 503 `timeout` and counted as such in
/// `firstcome_requests_total`, which the 5xx alert reads.
#[tokio::test]
async fn an_apply_cut_short_by_the_request_timeout_is_counted() {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(1));
    let service = CouponService::new(Arc::new(MemoryCounter::new()), queue.clone(), store);
    let state = AppState::new(Arc::new(service), TOKEN)
        .with_identity(Identity::TrustedClients)
        .with_request_timeout(Duration::from_millis(200));
    let app = router(Arc::new(state));
    let campaign = create(&app, json!({ "name": "full queue", "cap": 5 })).await;
    assert_eq!(apply(&app, campaign, 1).await.0, StatusCode::ACCEPTED);
    let (status, body) = apply(&app, campaign, 2).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("timeout")),
        "{body}"
    );
    let (status, _, metrics) = send(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let text = metrics.as_str().expect("text");
    assert!(
        text.contains(r#"firstcome_requests_total{route="apply",outcome="timeout"} 1"#),
        "{text}"
    );
}
