//! The routes of a worker-only process (`--role worker`): health, readiness and metrics,
//! and nothing else, so that an orchestrator can probe it and Prometheus can scrape its
//! queue lag, batch sizes and errors. It admits nobody, so there is no API to serve.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use coupon_core::{CouponStore, IssueSource};

use super::probes::{bounded, healthz};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::wire::Health;

/// What the worker-only routes read.
pub struct WorkerProbes {
    metrics: Arc<Metrics>,
    store: Arc<dyn CouponStore>,
    source: Arc<dyn IssueSource>,
    /// Who may read `/metrics` (anyone when `None`): the metrics token or the admin
    /// token, as on an API process.
    readers: Option<Vec<String>>,
}

impl WorkerProbes {
    /// Probes of the worker reading `source` into `store`, recording into `metrics`;
    /// `/metrics` for anyone unless `metrics_token` is set (then for it or `admin_token`).
    pub fn new(
        metrics: Arc<Metrics>,
        store: Arc<dyn CouponStore>,
        source: Arc<dyn IssueSource>,
        metrics_token: Option<String>,
        admin_token: Option<String>,
    ) -> Self {
        let readers =
            metrics_token.map(|token| std::iter::once(token).chain(admin_token).collect());
        Self {
            metrics,
            store,
            source,
            readers,
        }
    }
}

/// `/healthz`, `/readyz` and `/metrics` of a worker-only process; 404 elsewhere.
pub fn worker_router(probes: Arc<WorkerProbes>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "a worker-only process serves /healthz, /readyz and /metrics",
            )
        })
        .layer(axum::middleware::from_fn(super::middleware::nosniff))
        .with_state(probes)
}

/// Ready when the store answers and the source can tell its lag (a round trip to the
/// queue: the table, or the broker's watermarks), each within the probes' time limit.
async fn ready(State(probes): State<Arc<WorkerProbes>>) -> Response {
    let (store, source) = tokio::join!(
        bounded(probes.store.ready(), Err(late())),
        bounded(probes.source.lag(), Err(late())),
    );
    let mut not_ready = Vec::new();
    if let Err(error) = store {
        tracing::warn!(%error, "store not ready");
        not_ready.push("store");
    }
    if let Err(error) = source {
        tracing::warn!(%error, "queue not ready");
        not_ready.push("queue");
    }
    if not_ready.is_empty() {
        axum::Json(Health {
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

async fn metrics(State(probes): State<Arc<WorkerProbes>>, headers: HeaderMap) -> Response {
    if let Some(readers) = &probes.readers
        && !readers
            .iter()
            .any(|token| crate::auth::bears(&headers, token))
    {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs Authorization: Bearer <metrics token>",
        )
        .into_response();
    }
    let lag = bounded(probes.source.lag(), Ok(None)).await.ok().flatten();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        probes.metrics.render(lag, None),
    )
        .into_response()
}

/// What a probe that took too long answers.
fn late() -> coupon_core::Error {
    coupon_core::Error::unavailable("probe", "no answer within the probe's time limit", None)
}
