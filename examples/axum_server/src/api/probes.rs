//! Health, readiness, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::error::ApiError;
use crate::wire::{ErrorBody, Health};

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
    let readiness = state.service.readiness().await;
    if readiness.is_ready() {
        Json(Health {
            status: "ready".into(),
        })
        .into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            readiness.to_string(),
        )
        .into_response()
    }
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): Shared) -> Response {
    let lag = state.service.lag().await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(lag, state.service.settler()),
    )
        .into_response()
}

/// `GET /openapi.json`: the OpenAPI 3.1 document of these routes.
pub(crate) async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document_json(),
    )
        .into_response()
}
