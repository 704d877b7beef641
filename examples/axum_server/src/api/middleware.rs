//! Middleware of every route: the allowed `Host` names, `nosniff` on every answer, the
//! request time limit and the per-address rate limit.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};

use super::Shared;
use crate::error::ApiError;
use crate::listen::peer_address;

/// Refuses with 421 a request whose `Host` is not one of [`AppState::allowed_hosts`],
/// when that list is set: a page on another site cannot reach the service through a
/// name of its own pointed at this address (DNS rebinding). The probes answer any host
/// ([`answers_any_host`]).
///
/// [`AppState::allowed_hosts`]: super::AppState::allowed_hosts
pub(super) async fn check_host(State(state): Shared, request: Request, next: Next) -> Response {
    if let Some(allowed) = &state.allowed_hosts
        && !answers_any_host(request.uri().path(), state.metrics_token.is_some())
    {
        let host = request
            .uri()
            .host()
            .map(str::to_owned)
            .or_else(|| {
                let value = request.headers().get(header::HOST)?.to_str().ok()?;
                Some(host_name(value).to_owned())
            })
            .map(|host| normalise_host(&host));
        if !host.is_some_and(|host| allowed.contains(&host)) {
            return ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "unknown_host",
                "this service does not answer to that host name",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Whether `path` answers whatever the request's host: the health probes, which an
/// orchestrator sends to a pod's own address (Kubernetes: `Host: <pod IP>:<port>`,
/// new with every pod, so it cannot be listed) and which tell a rebinding page
/// nothing; and `/metrics` when a metrics token guards it, since such a page cannot
/// send the token, while a scraper, which also targets pod addresses, does.
fn answers_any_host(path: &str, metrics_token: bool) -> bool {
    match path {
        "/healthz" | "/readyz" => true,
        "/metrics" => metrics_token,
        _ => false,
    }
}

/// The name of a `Host` value without its port: `example.com:8080` is `example.com`,
/// `[::1]:8080` is `[::1]`.
fn host_name(value: &str) -> &str {
    match value.rfind(':') {
        Some(colon) if !value[colon..].contains(']') => &value[..colon],
        _ => value,
    }
}

/// A host name as the allowed list holds it: lower case, no final dot, an IPv6
/// address in brackets.
pub(super) fn normalise_host(name: &str) -> String {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.contains(':') && !name.starts_with('[') {
        format!("[{name}]")
    } else {
        name
    }
}

/// Adds `X-Content-Type-Options: nosniff` to every answer: several echo what the client
/// sent, which a browser must never take for a script or a page.
pub(super) async fn nosniff(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    response
}

/// Answers a request that outlasts [`AppState::request_timeout`]: 408 when its body had
/// not all arrived (the client is slow), else 503 (we are). An apply cut short this way
/// is finished by the issuer (or rolled forward by the settler): the client hears an
/// error, and the coupon route tells the truth.
pub(super) async fn time_limit(State(state): Shared, request: Request, next: Next) -> Response {
    // An apply cut short here never reaches the line of its handler that counts its
    // answer: it is counted here, so that the 5xx share (and its alert) sees it.
    let is_apply = request.method() == axum::http::Method::POST
        && request.uri().path().starts_with("/campaigns/")
        && request.uri().path().ends_with("/apply");
    let (request, body_read) = watch_body(request);
    let answer = tokio::time::timeout(state.request_timeout, next.run(request)).await;
    if answer.is_err() && is_apply {
        let outcome = match body_read.load(Ordering::Relaxed) {
            true => "timeout",
            false => "body_timeout",
        };
        state.metrics.request("apply", outcome);
    }
    match answer {
        Ok(response) => response,
        Err(_) if !body_read.load(Ordering::Relaxed) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request's body did not arrive within {:?}",
                state.request_timeout
            ),
        )
        .into_response(),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {:?}; try again",
                state.request_timeout
            ),
        )
        .into_response(),
    }
}

/// `request` with a body that records when it has been read to its end.
fn watch_body(request: Request) -> (Request, Arc<AtomicBool>) {
    let read = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        read.store(body.is_end_stream(), Ordering::Relaxed);
        Body::new(WatchedBody {
            inner: body,
            read: read.clone(),
        })
    });
    (request, read)
}

/// A body that sets `read` once its last frame has been taken.
struct WatchedBody {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl HttpBody for WatchedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Refuses a request over its client address's rate with 429.
pub(super) async fn limit_address(State(state): Shared, request: Request, next: Next) -> Response {
    if let Some(peer) = peer_address(&request)
        && let Err(refusal) = state.limiter.check_address(peer.ip())
    {
        state.metrics.request("any", "rate_limited");
        return refusal.into_response();
    }
    next.run(request).await
}
