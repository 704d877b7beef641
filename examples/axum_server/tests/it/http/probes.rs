//! Health, readiness and metrics.

use super::*;

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
    // What the alerting rules watch: ready, and no campaign fenced.
    assert!(text.contains("\nfirstcome_ready 1\n"), "{text}");
    assert!(
        text.contains("\nfirstcome_campaigns_rebuilding 0\n"),
        "{text}"
    );

    // A queue that takes nothing makes the service not ready, naming the part.
    service.queue.close();
    let (status, _, body) = send(app, get("/readyz")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready"))
    );
    // The part, not its error (the log has that).
    assert_eq!(body["message"], "not ready: queue", "{body}");
    let (_, _, text) = send(app, get("/metrics")).await;
    let text = text.as_str().expect("text");
    assert!(text.contains("\nfirstcome_ready 0\n"), "{text}");
}
