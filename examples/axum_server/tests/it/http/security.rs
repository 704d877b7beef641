//! What a hostile client must not get: backend calls per probe, metrics without the
//! token, an upcoming campaign, a sniffable answer, a host name of its own.

use std::sync::atomic::{AtomicU64, Ordering};

use coupon_core::{Batch, IssueQueue, IssueSource, IssueTicket};

use super::*;

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
/// pointed at this address) is 421 on every route but the probes; the listed ones pass
/// on any port, in any case.
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
        let mut request = Request::builder().uri("/openapi.json");
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

/// Orchestrators probe a pod at its own address (Kubernetes sends `Host: <pod IP>:<port>`,
/// which changes with every pod and cannot be listed): `/healthz` and `/readyz` answer
/// whatever the host, as `/metrics` does once a metrics token guards it (a rebinding
/// page cannot send the token); without one, `/metrics` answers the listed hosts only.
#[tokio::test]
async fn probes_answer_an_unlisted_host_so_orchestrators_reach_them() {
    let app = |metrics_token: Option<&str>| {
        let queue = Arc::new(MemoryQueue::new(10));
        let service = CouponService::new(
            Arc::new(MemoryCounter::new()),
            queue,
            Arc::new(MemoryStore::new()),
        );
        router(Arc::new(
            AppState::new(Arc::new(service), TOKEN)
                .with_allowed_hosts(&["coupons.example.com".into()])
                .with_metrics_token(metrics_token.map(str::to_owned)),
        ))
    };
    let probe = |path: &str, token: Option<&str>| {
        let mut request = Request::builder()
            .uri(path)
            .header(header::HOST, "10.1.2.3:8080");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request.body(Body::empty()).expect("a request")
    };
    let guarded = app(Some("metrics-token-of-16+"));
    for (path, token) in [
        ("/healthz", None),
        ("/readyz", None),
        ("/metrics", Some("metrics-token-of-16+")),
    ] {
        let (status, _, body) = send(&guarded, probe(path, token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, _, _) = send(&guarded, probe("/metrics", None)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "/metrics without its token"
    );
    let (status, _, _) = send(&guarded, probe("/openapi.json", None)).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "not a probe");
    let public = app(None);
    let (status, _, _) = send(&public, probe("/metrics", None)).await;
    assert_eq!(
        status,
        StatusCode::MISDIRECTED_REQUEST,
        "public metrics, unlisted host"
    );
}
