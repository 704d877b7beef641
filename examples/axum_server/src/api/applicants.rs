//! The applicants' routes: a campaign's counts, applying, and reading one's coupon.

use std::time::Instant;

use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coupon_core::{ApplyOutcome, CampaignState, CouponStatus, UserId};

use super::acting::Acting;
use super::extract::{OptionalJson, campaign_id};
use super::{AppState, Shared};
use crate::auth::is_admin;
use crate::error::ApiError;
use crate::wire::{
    Admitted, ApplyAnswer, ApplyRequest, CampaignStatus, CouponView, ErrorBody, Pending,
};

#[utoipa::path(get, path = "/campaigns/{id}", tag = "applicants", params(("id" = u64, Path, description = "campaign id")),
    security((), ("admin" = [])),
    responses(
        (status = 200, description = "the campaign's counts", body = CampaignStatus),
        (status = 404, description = "no such campaign, or one not open yet asked for without the admin token (`unknown_campaign`)", body = ErrorBody),
        (status = 429, description = "over a rate limit (`rate_limited`); `Retry-After`", body = ErrorBody),
        (status = 503, description = "a backend is unavailable (nothing was done, or the outcome is unknown: retrying tells); `Retry-After`", body = ErrorBody)
    ))]
pub(crate) async fn get_campaign(
    State(state): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<CampaignStatus>, ApiError> {
    let campaign = campaign_id(&id)?;
    let status = state.service.status(campaign).await?;
    // An upcoming campaign's name and definition are the admin's until it opens: ids
    // are sequential, so anyone could otherwise list a secret drop before its time.
    // The answer is the one an id that does not exist gets.
    if status.state == CampaignState::NotOpen && !is_admin(&headers, &state.admin_token) {
        return Err(coupon_core::Error::UnknownCampaign { campaign }.into());
    }
    Ok(Json(CampaignStatus::from(&status)))
}

#[utoipa::path(post, path = "/campaigns/{id}/apply", tag = "applicants", params(("id" = u64, Path, description = "campaign id")),
    request_body(content = Option<ApplyRequest>, description = "none with credentials; `user_id` from trusted clients"),
    security(("user" = []), ("user_header" = []), ()),
    responses(
        (status = 202, description = "admitted: a rank, or `pending` (the coupon will come; the coupon route tells when)", body = ApplyAnswer),
        (status = 401, description = "missing or invalid credentials (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "`not_open`, `closed`, or `forbidden` (the body names another user)", body = ErrorBody),
        (status = 404, description = "no such campaign (`unknown_campaign`)", body = ErrorBody),
        (status = 409, description = "`sold_out`, `already_applied`, or `admission_refused` (the store refused this admission's ticket for good)", body = ErrorBody),
        (status = 422, description = "a body or parameter we cannot act on", body = ErrorBody),
        (status = 408, description = "the body did not arrive within the request timeout (`timeout`)", body = ErrorBody),
        (status = 413, description = "body over 4 KiB", body = ErrorBody),
        (status = 415, description = "not a JSON body", body = ErrorBody),
        (status = 429, description = "over a rate limit (`rate_limited`); `Retry-After`", body = ErrorBody),
        (status = 503, description = "a backend is unavailable (nothing was done, or the outcome is unknown: retrying tells); `Retry-After`", body = ErrorBody)
    ))]
pub(crate) async fn apply(
    State(state): Shared,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let answer = apply_inner(&state, &id, request).await;
    state.metrics.apply_latency(started.elapsed());
    let outcome = match &answer {
        Ok((_, outcome)) => *outcome,
        Err(error) => error.code(),
    };
    state.metrics.request("apply", outcome);
    answer.map(|(response, _)| response)
}

async fn apply_inner(
    state: &AppState,
    id: &str,
    request: Request,
) -> Result<(Response, &'static str), ApiError> {
    // The credentials before the body (see `acting`).
    let acting = Acting::of(state, request.headers(), false)?;
    let campaign = campaign_id(id)?;
    let OptionalJson(body) = OptionalJson::<ApplyRequest>::from_request(request, state).await?;
    let named = body.and_then(|body| body.user_id).map(UserId);
    if acting == Acting::Trusted && named.is_none() {
        return Err(ApiError::invalid(
            "user_id is required: this service takes the user from the body (trusted clients)",
        ));
    }
    let user = acting.user(named, "a user may apply only as themselves")?;
    state.limiter.check_user(user)?;
    let refusal = |status, code: &'static str, message: &str| {
        Ok((ApiError::new(status, code, message).into_response(), code))
    };
    match state.service.apply(campaign, user).await {
        Ok(ApplyOutcome::Accepted { rank, ticket_id }) => Ok((
            (
                StatusCode::ACCEPTED,
                Json(ApplyAnswer::Admitted(Admitted { rank, ticket_id })),
            )
                .into_response(),
            "accepted",
        )),
        Ok(ApplyOutcome::Pending) => Ok((
            (
                StatusCode::ACCEPTED,
                Json(ApplyAnswer::Pending(Pending::ANSWER)),
            )
                .into_response(),
            "pending",
        )),
        Ok(ApplyOutcome::SoldOut) => {
            refusal(StatusCode::CONFLICT, "sold_out", "every coupon is taken")
        }
        Ok(ApplyOutcome::AlreadyApplied) => refusal(
            StatusCode::CONFLICT,
            "already_applied",
            "this user already holds this campaign's coupon",
        ),
        Ok(ApplyOutcome::NotOpen) => refusal(
            StatusCode::FORBIDDEN,
            "not_open",
            "the campaign has not opened yet",
        ),
        Ok(ApplyOutcome::Closed) => {
            refusal(StatusCode::FORBIDDEN, "closed", "the campaign has closed")
        }
        Err(error) => Err(error.into()),
    }
}

/// `GET /campaigns/{id}/coupons/{user_id}`: the owner (`me` or their own id) or the
/// admin may read a coupon; trusted clients may read any.
#[utoipa::path(get, path = "/campaigns/{id}/coupons/{user_id}", tag = "applicants",
    params(("id" = u64, Path, description = "campaign id"), ("user_id" = String, Path, pattern = "^(me|[0-9]{1,20})$", description = "a user id, or `me`")),
    security(("user" = []), ("user_header" = []), ("admin" = []), ()),
    responses(
        (status = 200, description = "the user's coupon", body = CouponView),
        (status = 202, description = "admitted, the coupon not persisted yet", body = Pending),
        (status = 401, description = "missing or invalid credentials (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "another user's coupon (`forbidden`)", body = ErrorBody),
        (status = 404, description = "`unknown_campaign` or `no_coupon`", body = ErrorBody),
        (status = 422, description = "a body or parameter we cannot act on", body = ErrorBody),
        (status = 429, description = "over a rate limit (`rate_limited`); `Retry-After`", body = ErrorBody),
        (status = 503, description = "a backend is unavailable (nothing was done, or the outcome is unknown: retrying tells); `Retry-After`", body = ErrorBody)
    ))]
pub(crate) async fn get_coupon(
    State(state): Shared,
    Path((id, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let acting = Acting::of(&state, &headers, true)?;
    let campaign = campaign_id(&id)?;
    if let Acting::User(me) = acting {
        state.limiter.check_user(me)?;
    }
    let named = match (user.as_str(), acting) {
        ("me", Acting::User(me)) => me,
        ("me", _) => {
            return Err(ApiError::invalid(
                "`me` needs a user's credentials; name the user id",
            ));
        }
        (number, _) => number
            .parse::<u64>()
            .map(UserId)
            .map_err(|_| ApiError::invalid(format!("user id {user:?} is not a whole number")))?,
    };
    let user = acting.user(Some(named), "a coupon is readable only by its owner")?;
    match state.service.coupon_status(campaign, user).await? {
        CouponStatus::Issued(coupons) => {
            Ok(Json(CouponView::of(&coupons[0], coupons.len())).into_response())
        }
        CouponStatus::Pending => Ok((StatusCode::ACCEPTED, Json(Pending::ANSWER)).into_response()),
        CouponStatus::None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_coupon",
            "this user holds no coupon of this campaign",
        )),
    }
}
