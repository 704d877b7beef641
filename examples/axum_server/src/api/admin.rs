//! The admin token's routes: campaigns, close and reopen, settlement, dead letters.

use std::sync::Arc;

use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use coupon_core::{CampaignId, NewCampaign};
use serde::Deserialize;
use serde_json::json;

use super::{ApiJson, AppState, OptionalJson, Shared, campaign_id};
use crate::auth::is_admin;
use crate::error::ApiError;
use crate::wire::{
    AdminCampaign, CampaignList, CampaignView, CreateCampaign, ErrorBody, ReopenRequest,
    ReplayRequest,
};

/// The admin routes. The token is checked before anything else of the request is
/// read: a client without it cannot hold a connection open by sending a body slowly.
pub(super) fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/campaigns", post(create_campaign))
        .route("/admin/campaigns", get(list_campaigns))
        .route("/admin/campaigns/{id}/close", post(close_campaign))
        .route("/admin/campaigns/{id}/reopen", post(reopen_campaign))
        .route("/admin/settle", post(settle))
        .route("/admin/dead-letters", get(dead_letters))
        .route("/admin/dead-letters/replay", post(replay))
        .route_layer(from_fn_with_state(state, require_admin))
}

/// Refuses a request without the admin token with 401, counting it against its route.
async fn require_admin(State(state): Shared, request: Request, next: Next) -> Response {
    if is_admin(request.headers(), &state.admin_token) {
        return next.run(request).await;
    }
    let path = request.extensions().get::<MatchedPath>();
    state
        .metrics
        .request(route_name(path.map(MatchedPath::as_str)), "unauthorized");
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this route needs Authorization: Bearer <admin token>",
    )
    .into_response()
}

/// The `route` label of an admin route's metrics.
fn route_name(path: Option<&str>) -> &'static str {
    match path {
        Some("/campaigns") => "create_campaign",
        Some("/admin/campaigns") => "list_campaigns",
        Some("/admin/campaigns/{id}/close") => "close_campaign",
        Some("/admin/campaigns/{id}/reopen") => "reopen_campaign",
        Some("/admin/settle") => "settle",
        Some("/admin/dead-letters") => "dead_letters",
        Some("/admin/dead-letters/replay") => "replay",
        _ => "admin",
    }
}

#[utoipa::path(post, path = "/campaigns", tag = "admin",
    request_body = CreateCampaign, security(("admin" = [])),
    responses(
        (status = 201, description = "created", body = CampaignView),
        (status = 401, description = "no admin token (`unauthorized`)", body = ErrorBody),
        (status = 422, description = "an invalid definition (`invalid_campaign`) or body", body = ErrorBody),
        (status = 408, description = "the body did not arrive within the request timeout (`timeout`)", body = ErrorBody),
        (status = 413, description = "body over 4 KiB", body = ErrorBody),
        (status = 415, description = "not a JSON body", body = ErrorBody),
        (status = 429, description = "over a rate limit (`rate_limited`); `Retry-After`", body = ErrorBody),
        (status = 503, description = "a backend is unavailable (nothing was done, or the outcome is unknown: retrying tells); `Retry-After`", body = ErrorBody)
    ))]
pub(crate) async fn create_campaign(
    State(state): Shared,
    body: Result<ApiJson<CreateCampaign>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(body) = body?;
    let mut new = NewCampaign::new(body.name, body.cap)
        .per_user_limit(body.per_user_limit.unwrap_or(1))
        .shards(body.shards.unwrap_or(1));
    new.opens_at = body.opens_at;
    new.closes_at = body.closes_at;
    let campaign = state.service.create_campaign(new).await?;
    state.metrics.request("create_campaign", "created");
    Ok((StatusCode::CREATED, Json(CampaignView::from(&campaign))).into_response())
}

/// `GET /admin/campaigns`: every campaign with its window, counts and state.
#[utoipa::path(get, path = "/admin/campaigns", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, description = "every campaign", body = CampaignList),
        (status = 401, description = "no admin token (`unauthorized`)", body = ErrorBody),
        (status = 429, description = "over a rate limit (`rate_limited`); `Retry-After`", body = ErrorBody),
        (status = 503, description = "a backend is unavailable (nothing was done, or the outcome is unknown: retrying tells); `Retry-After`", body = ErrorBody)
    ))]
pub(crate) async fn list_campaigns(State(state): Shared) -> Result<Response, ApiError> {
    let campaigns = state.service.campaigns().await?;
    let campaigns = campaigns.iter().map(AdminCampaign::from).collect();
    Ok(Json(CampaignList { campaigns }).into_response())
}

/// `POST /admin/campaigns/{id}/close`: no application is admitted from now on (by
/// every process within a second); those admitted before are still issued.
#[utoipa::path(post, path = "/admin/campaigns/{id}/close", tag = "admin", params(("id" = u64, Path, description = "campaign id")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "closed from now", body = CampaignView),
        (status = 401, description = "no admin token (`unauthorized`)", body = ErrorBody),
        (status = 404, description = "no such campaign (`unknown_campaign`)", body = ErrorBody),
        (status = 422, description = "a body or parameter we cannot act on", body = ErrorBody),
        (status = 429, description = "over a rate limit (`rate_limited`); `Retry-After`", body = ErrorBody),
        (status = 503, description = "a backend is unavailable (nothing was done, or the outcome is unknown: retrying tells); `Retry-After`", body = ErrorBody)
    ))]
pub(crate) async fn close_campaign(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let campaign = state.service.close(campaign_id(&id)?).await?;
    state.metrics.request("close_campaign", "closed");
    Ok(Json(CampaignView::from(&campaign)).into_response())
}

/// `POST /admin/campaigns/{id}/reopen`: open again, until `closes_at` if given.
#[utoipa::path(post, path = "/admin/campaigns/{id}/reopen", tag = "admin", params(("id" = u64, Path, description = "campaign id")),
    request_body(content = Option<ReopenRequest>, description = "optional"),
    security(("admin" = [])),
    responses(
        (status = 200, description = "open again", body = CampaignView),
        (status = 401, description = "no admin token (`unauthorized`)", body = ErrorBody),
        (status = 404, description = "no such campaign (`unknown_campaign`)", body = ErrorBody),
        (status = 422, description = "a body or parameter we cannot act on", body = ErrorBody),
        (status = 408, description = "the body did not arrive within the request timeout (`timeout`)", body = ErrorBody),
        (status = 413, description = "body over 4 KiB", body = ErrorBody),
        (status = 415, description = "not a JSON body", body = ErrorBody),
        (status = 429, description = "over a rate limit (`rate_limited`); `Retry-After`", body = ErrorBody),
        (status = 503, description = "a backend is unavailable (nothing was done, or the outcome is unknown: retrying tells); `Retry-After`", body = ErrorBody)
    ))]
pub(crate) async fn reopen_campaign(
    State(state): Shared,
    Path(id): Path<String>,
    body: Result<OptionalJson<ReopenRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let campaign = campaign_id(&id)?;
    let OptionalJson(request) = body?;
    let closes_at = request.and_then(|request| request.closes_at);
    let campaign = state.service.reopen(campaign, closes_at).await?;
    state.metrics.request("reopen_campaign", "reopened");
    Ok(Json(CampaignView::from(&campaign)).into_response())
}

/// `?campaign=<id>`, optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CampaignFilter {
    campaign: Option<u64>,
}

fn campaign_filter(
    query: Result<Query<CampaignFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Option<CampaignId>, ApiError> {
    let Query(filter) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    Ok(filter.campaign.map(CampaignId))
}

#[utoipa::path(post, path = "/admin/settle", tag = "admin",
    params(("campaign" = Option<u64>, Query, maximum = 9_223_372_036_854_775_807_u64, description = "only this campaign")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "the settlement report", body = Object),
        (status = 401, description = "no admin token (`unauthorized`)", body = ErrorBody),
        (status = 404, description = "no such campaign (`unknown_campaign`)", body = ErrorBody),
        (status = 422, description = "a body or parameter we cannot act on", body = ErrorBody),
        (status = 429, description = "over a rate limit (`rate_limited`); `Retry-After`", body = ErrorBody),
        (status = 503, description = "a backend is unavailable (nothing was done, or the outcome is unknown: retrying tells); `Retry-After`", body = ErrorBody)
    ))]
pub(crate) async fn settle(
    State(state): Shared,
    query: Result<Query<CampaignFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let report = state.service.settle(campaign_filter(query)?).await?;
    state.metrics.request("settle", "settled");
    Ok(Json(report).into_response())
}

#[utoipa::path(get, path = "/admin/dead-letters", tag = "admin",
    params(("campaign" = Option<u64>, Query, maximum = 9_223_372_036_854_775_807_u64, description = "only this campaign")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "`{\"dead_letters\": [...]}`", body = Object),
        (status = 401, description = "no admin token (`unauthorized`)", body = ErrorBody),
        (status = 422, description = "a body or parameter we cannot act on", body = ErrorBody),
        (status = 429, description = "over a rate limit (`rate_limited`); `Retry-After`", body = ErrorBody),
        (status = 503, description = "a backend is unavailable (nothing was done, or the outcome is unknown: retrying tells); `Retry-After`", body = ErrorBody)
    ))]
pub(crate) async fn dead_letters(
    State(state): Shared,
    query: Result<Query<CampaignFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let failures = state.service.dead_letters(campaign_filter(query)?).await?;
    Ok(Json(json!({ "dead_letters": failures })).into_response())
}

#[utoipa::path(post, path = "/admin/dead-letters/replay", tag = "admin",
    request_body = ReplayRequest, security(("admin" = [])),
    responses(
        (status = 200, description = "`{replayed, failed}`", body = Object),
        (status = 401, description = "no admin token (`unauthorized`)", body = ErrorBody),
        (status = 404, description = "no such campaign (`unknown_campaign`)", body = ErrorBody),
        (status = 422, description = "a body or parameter we cannot act on", body = ErrorBody),
        (status = 408, description = "the body did not arrive within the request timeout (`timeout`)", body = ErrorBody),
        (status = 413, description = "body over 4 KiB", body = ErrorBody),
        (status = 415, description = "not a JSON body", body = ErrorBody),
        (status = 429, description = "over a rate limit (`rate_limited`); `Retry-After`", body = ErrorBody),
        (status = 503, description = "a backend is unavailable (nothing was done, or the outcome is unknown: retrying tells); `Retry-After`", body = ErrorBody)
    ))]
pub(crate) async fn replay(
    State(state): Shared,
    body: Result<ApiJson<ReplayRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(request) = body?;
    let report = state
        .service
        .replay(request.campaign.map(CampaignId), &request.ticket_ids)
        .await?;
    state.metrics.request("replay", "replayed");
    Ok(Json(report).into_response())
}
