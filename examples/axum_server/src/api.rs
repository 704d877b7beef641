//! The HTTP API: routes, request bodies, answers.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use coupon_core::{
    ApplyOutcome, Campaign, CampaignId, CouponCounter, CouponIssuer, CouponStore, Error,
    IssueQueue, IssueSource, IssuerConfig, NewCampaign, Settler, SettlerConfig, TicketId, UserId,
    WindowState, replay_failures,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Request bodies above this are refused with 413 before they are parsed.
pub const BODY_LIMIT: usize = 4 * 1024;

/// What the handlers share.
pub struct AppState {
    /// Admission and hand-off.
    pub issuer: CouponIssuer,
    /// Admission counter, for status reads.
    pub counter: Arc<dyn CouponCounter>,
    /// The hand-off the issuer publishes to, for the readiness probe.
    pub queue: Arc<dyn IssueQueue>,
    /// The store, for campaigns and coupons.
    pub store: Arc<dyn CouponStore>,
    /// Bearer token of `POST /campaigns`.
    pub admin_token: String,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The worker's source in this process, if any: its lag goes into the metrics.
    pub source: Option<Arc<dyn IssueSource>>,
    /// The settler this process runs, for `POST /admin/settle` and its metrics.
    pub settler: Arc<Settler>,
}

impl AppState {
    /// The state of a service admitting through `counter`, handing off to `queue` and
    /// persisting in `store`, with fresh metrics, no worker in the process, and a
    /// settler with the default settings.
    pub fn new(
        counter: Arc<dyn CouponCounter>,
        queue: Arc<dyn IssueQueue>,
        store: Arc<dyn CouponStore>,
        admin_token: impl Into<String>,
    ) -> Self {
        let settler = Settler::new(
            counter.clone(),
            queue.clone(),
            store.clone(),
            SettlerConfig::default(),
        );
        Self {
            issuer: CouponIssuer::new(counter.clone(), queue.clone(), store.clone()),
            counter,
            queue,
            store,
            admin_token: admin_token.into(),
            metrics: Arc::new(Metrics::new()),
            source: None,
            settler: Arc::new(settler),
        }
    }

    /// Reports the lag of the worker's `source` in this process.
    pub fn with_source(mut self, source: Arc<dyn IssueSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// Records into `metrics` (shared with the worker's metered source).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Admits with an issuer built with `config`.
    pub fn with_issuer_config(mut self, config: IssuerConfig) -> Self {
        self.issuer = CouponIssuer::with_config(
            self.counter.clone(),
            self.queue.clone(),
            self.store.clone(),
            config,
        );
        self
    }

    /// Settles with `settler` (the one this process runs on a schedule).
    pub fn with_settler(mut self, settler: Arc<Settler>) -> Self {
        self.settler = settler;
        self
    }
}

type Shared = State<Arc<AppState>>;

/// The service's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/campaigns", post(create_campaign))
        .route("/campaigns/{id}", get(get_campaign))
        .route("/campaigns/{id}/apply", post(apply))
        .route("/campaigns/{id}/coupons/{user_id}", get(get_coupon))
        .route("/admin/settle", post(settle))
        .route("/admin/dead-letters", get(dead_letters))
        .route("/admin/dead-letters/replay", post(replay))
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// `Json` whose rejections are JSON errors too.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let code = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        _ => "invalid_request",
    };
    // Syntax and data errors (400 and 422 in axum) are both a body we cannot act on.
    let status = if status == StatusCode::BAD_REQUEST {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        status
    };
    ApiError::new(status, code, rejection.body_text())
}

fn campaign_id(text: &str) -> Result<CampaignId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_campaign",
            format!("no campaign {text:?}"),
        )
    })
}

fn campaign_json(campaign: &Campaign) -> Value {
    json!({
        "id": campaign.id,
        "name": campaign.name,
        "cap": campaign.cap,
        "per_user_limit": campaign.per_user_limit,
        "opens_at": campaign.opens_at,
        "closes_at": campaign.closes_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCampaign {
    name: String,
    cap: u64,
    per_user_limit: Option<u32>,
    opens_at: Option<DateTime<Utc>>,
    closes_at: Option<DateTime<Utc>>,
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Compare every byte whatever the first mismatch, so timing reveals nothing.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Refuses a request without the admin token, counting it against `route`.
fn require_admin(
    state: &AppState,
    headers: &HeaderMap,
    route: &'static str,
) -> Result<(), ApiError> {
    if authorized(headers, &state.admin_token) {
        return Ok(());
    }
    state.metrics.request(route, "unauthorized");
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this route needs Authorization: Bearer <admin token>",
    ))
}

async fn create_campaign(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<ApiJson<CreateCampaign>, ApiError>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers, "create_campaign")?;
    let ApiJson(body) = body?;
    let mut new =
        NewCampaign::new(body.name, body.cap).per_user_limit(body.per_user_limit.unwrap_or(1));
    new.opens_at = body.opens_at;
    new.closes_at = body.closes_at;
    let campaign = state.issuer.create_campaign(new).await?;
    state.metrics.request("create_campaign", "created");
    Ok((StatusCode::CREATED, Json(campaign_json(&campaign))).into_response())
}

async fn get_campaign(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let campaign = state.issuer.campaign(campaign_id(&id)?).await?;
    let admitted = state.counter.status(campaign.id).await?.admitted;
    let issued = state.store.issued_count(campaign.id).await?;
    let state_name = match campaign.window_state(Utc::now()) {
        WindowState::NotOpen => "not_open",
        WindowState::Closed => "closed",
        WindowState::Open if admitted >= campaign.cap => "sold_out",
        WindowState::Open => "open",
    };
    Ok(Json(json!({
        "id": campaign.id,
        "name": campaign.name,
        "cap": campaign.cap,
        "admitted": admitted,
        "issued": issued,
        "remaining": campaign.cap.saturating_sub(admitted),
        "state": state_name,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyRequest {
    user_id: u64,
}

async fn apply(
    State(state): Shared,
    Path(id): Path<String>,
    body: Result<ApiJson<ApplyRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let answer = apply_inner(&state, &id, body).await;
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
    body: Result<ApiJson<ApplyRequest>, ApiError>,
) -> Result<(Response, &'static str), ApiError> {
    let campaign = campaign_id(id)?;
    let ApiJson(request) = body?;
    let refusal = |status, code: &'static str, message: &str| {
        Ok((ApiError::new(status, code, message).into_response(), code))
    };
    match state.issuer.apply(campaign, UserId(request.user_id)).await {
        Ok(ApplyOutcome::Accepted { rank, ticket_id }) => Ok((
            (
                StatusCode::ACCEPTED,
                Json(json!({ "rank": rank, "ticket_id": ticket_id })),
            )
                .into_response(),
            "accepted",
        )),
        Ok(ApplyOutcome::Pending) => Ok((
            (StatusCode::ACCEPTED, Json(json!({ "status": "pending" }))).into_response(),
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

async fn get_coupon(
    State(state): Shared,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let campaign = campaign_id(&id)?;
    let user: u64 = user
        .parse()
        .map_err(|_| ApiError::invalid(format!("user id {user:?} is not a whole number")))?;
    let coupons = state.store.coupons_of(campaign, UserId(user)).await?;
    if let Some(coupon) = coupons.first() {
        return Ok(Json(json!({
            "campaign_id": coupon.campaign,
            "user_id": coupon.user,
            "rank": coupon.rank,
            "code": coupon.code.as_str(),
            "issued_at": coupon.issued_at,
            "coupons": coupons.len(),
        }))
        .into_response());
    }
    if state.counter.is_admitted(campaign, UserId(user)).await? {
        return Ok((StatusCode::ACCEPTED, Json(json!({ "status": "pending" }))).into_response());
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "no_coupon",
        "this user holds no coupon of this campaign",
    ))
}

async fn ready(State(state): Shared) -> Response {
    let mut failures = Vec::new();
    if let Err(error) = state.counter.status(CampaignId(0)).await {
        failures.push(format!("counter: {error}"));
    }
    if let Err(error) = state.queue.ready().await {
        failures.push(format!("queue: {error}"));
    }
    match state.store.campaign(CampaignId(0)).await {
        Ok(_) | Err(Error::UnknownCampaign { .. }) => {}
        Err(error) => failures.push(format!("store: {error}")),
    }
    if failures.is_empty() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            failures.join("; "),
        )
        .into_response()
    }
}

async fn metrics(State(state): Shared) -> Response {
    let lag = match &state.source {
        Some(source) => source.lag().await.ok().flatten(),
        None => None,
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(lag, &state.settler),
    )
        .into_response()
}

/// `?campaign=<id>`, optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignFilter {
    campaign: Option<u64>,
}

fn campaign_filter(
    query: Result<Query<CampaignFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Option<CampaignId>, ApiError> {
    let Query(filter) = query.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    Ok(filter.campaign.map(CampaignId))
}

async fn settle(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<CampaignFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers, "settle")?;
    let report = match campaign_filter(query)? {
        Some(campaign) => state.settler.settle(campaign).await?,
        None => state.settler.settle_all().await?,
    };
    state.metrics.request("settle", "settled");
    Ok(Json(report).into_response())
}

async fn dead_letters(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<CampaignFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers, "dead_letters")?;
    let failures = state.store.failures(campaign_filter(query)?).await?;
    Ok(Json(json!({ "dead_letters": failures })).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    campaign: Option<u64>,
    #[serde(default)]
    ticket_ids: Vec<TicketId>,
}

async fn replay(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<ApiJson<ReplayRequest>, ApiError>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers, "replay")?;
    let ApiJson(request) = body?;
    let report = replay_failures(
        state.store.as_ref(),
        state.queue.as_ref(),
        request.campaign.map(CampaignId),
        &request.ticket_ids,
    )
    .await?;
    state.metrics.request("replay", "replayed");
    Ok(Json(report).into_response())
}
