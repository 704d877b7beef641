//! Health, readiness, metrics and the OpenAPI document. Readiness and the queue lag ask
//! the backends (a ping of each, a `COUNT(*)` of the queue table, Kafka's watermarks),
//! so their answers are cached ([`ProbeCache`]): a flood of `/readyz` or `/metrics`
//! costs the backends one call per second at most.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coupon_core::CouponService;

use super::{AppState, Shared};
use crate::error::ApiError;
use crate::wire::{ErrorBody, Health};

/// How long a readiness or lag answer is reused by default.
pub(crate) const DEFAULT_PROBE_CACHE: Duration = Duration::from_secs(1);

/// A value computed at most once per `ttl`: callers within it share the last answer,
/// and callers arriving while it is computed wait for that one computation.
struct Cached<T> {
    ttl: Duration,
    slot: tokio::sync::Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> Cached<T> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    async fn get(&self, compute: impl Future<Output = T>) -> T {
        // Held across the computation on purpose: concurrent callers queue here
        // instead of each asking the backends.
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = slot.as_ref()
            && at.elapsed() < self.ttl
        {
            return value.clone();
        }
        let value = compute.await;
        *slot = Some((Instant::now(), value.clone()));
        value
    }
}

/// The longest a probe's computation may take: a backend that does not answer (a
/// blackholed host) must not hold `/readyz` or `/metrics` past a scrape's timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `compute`'s value, or `late` when it takes longer than [`PROBE_TIMEOUT`].
pub(super) async fn bounded<T>(compute: impl Future<Output = T>, late: T) -> T {
    tokio::time::timeout(PROBE_TIMEOUT, compute)
        .await
        .unwrap_or(late)
}

/// The cached answers of the probes.
pub(crate) struct ProbeCache {
    /// The ports that did not answer (empty: ready).
    not_ready: Cached<Vec<&'static str>>,
    /// The queue lag.
    lag: Cached<Option<u64>>,
    /// Campaigns that may admit whose counter is being rebuilt (`None`: unknown).
    rebuilding: Cached<Option<usize>>,
}

impl ProbeCache {
    /// Answers reused for `ttl` (zero: asked every time).
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            not_ready: Cached::new(ttl),
            lag: Cached::new(ttl),
            rebuilding: Cached::new(ttl),
        }
    }

    /// The ports of `service` that do not answer; the errors go to the log, not to the
    /// client (they name keys, hosts, raw backend messages).
    async fn not_ready(&self, service: &CouponService) -> Vec<&'static str> {
        self.not_ready
            .get(async {
                let readiness = async {
                    let readiness = service.readiness().await;
                    if !readiness.is_ready() {
                        tracing::warn!(%readiness, "not ready");
                    }
                    readiness.failures.iter().map(|(port, _)| *port).collect()
                };
                bounded(readiness, vec!["timeout"]).await
            })
            .await
    }

    async fn lag(&self, service: &CouponService) -> Option<u64> {
        self.lag.get(bounded(service.lag(), None)).await
    }

    /// Campaigns that may admit whose counter is being rebuilt; `None` when the counter
    /// does not answer (Redis away, or this process's counter suspended: a standby
    /// without the lease), since every campaign would then read as rebuilding.
    async fn rebuilding(&self, service: &CouponService) -> Option<usize> {
        self.rebuilding
            .get(bounded(
                async {
                    let campaigns = service.campaigns().await.ok()?;
                    Some(campaigns.iter().filter(|status| status.rebuilding).count())
                },
                None,
            ))
            .await
    }
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "alive", body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "every backend answers", body = Health),
        (status = 503, description = "a backend does not answer (`not_ready`)", body = ErrorBody)
    ))]
pub(crate) async fn ready(State(state): Shared) -> Response {
    let not_ready = state.probes.not_ready(&state.service).await;
    if not_ready.is_empty() {
        Json(Health {
            status: "ready".into(),
        })
        .into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("not ready: {}", not_ready.join(", ")),
        )
        .into_response()
    }
}

/// `GET /metrics`: Prometheus text; with `--metrics-token`, for that token or the
/// admin's only.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    security((), ("metrics" = []), ("admin" = [])),
    responses(
        (status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
        (status = 401, description = "`--metrics-token` is set and neither it nor the admin token came (`unauthorized`)", body = ErrorBody)
    ))]
pub(crate) async fn metrics(State(state): Shared, headers: HeaderMap) -> Response {
    if !may_read_metrics(&state, &headers) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs Authorization: Bearer <metrics token>",
        )
        .into_response();
    }
    let (lag, not_ready) = tokio::join!(
        state.probes.lag(&state.service),
        state.probes.not_ready(&state.service),
    );
    let rebuilding = match not_ready.contains(&"counter") {
        true => None,
        false => state.probes.rebuilding(&state.service).await,
    };
    let mut text = state.metrics.render(lag, Some(state.service.settler()));
    crate::metrics::render_health(&mut text, not_ready.is_empty(), rebuilding);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Whether `headers` may read the metrics: anyone without a metrics token, else the
/// holders of it or of the admin token (the live page reads them with the latter).
fn may_read_metrics(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.metrics_token else {
        return true;
    };
    crate::auth::bears(headers, token) || crate::auth::is_admin(headers, &state.admin_token)
}

/// `GET /openapi.json`: the OpenAPI 3.1 document of these routes.
pub(crate) async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::document_json(),
    )
        .into_response()
}
