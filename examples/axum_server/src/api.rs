//! The HTTP API: routes, request bodies, answers.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use coupon_core::{ApplyOutcome, CampaignId, CouponService, CouponStatus, NewCampaign, UserId};
use http_body::{Frame, SizeHint};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::auth::{Caller, Identity, JwtVerifier, is_admin};
use crate::error::ApiError;
use crate::limits::{Limiter, RateLimits};
use crate::listen::peer_address;
use crate::metrics::Metrics;
use crate::wire::{
    AdminCampaign, Admitted, ApplyAnswer, ApplyRequest, CampaignList, CampaignStatus, CampaignView,
    CouponView, CreateCampaign, ErrorBody, Health, Pending, ReopenRequest, ReplayRequest,
};

/// Request bodies above this are refused with 413 before they are parsed.
pub const BODY_LIMIT: usize = 4 * 1024;

/// What the handlers share: the use cases, and what only HTTP needs (the admin
/// credential, how users are known, limits, metrics).
pub struct AppState {
    /// Every use case, over the deployment's ports.
    pub service: Arc<CouponService>,
    /// Bearer token of the admin routes.
    pub admin_token: String,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// How a request's user is known.
    pub identity: Identity,
    /// Per-user and per-address rate limits.
    pub limiter: Limiter,
    /// How long a request may take before it is answered 503.
    pub request_timeout: Duration,
}

/// The default of [`AppState::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl AppState {
    /// The state of a service running `service`, with fresh metrics, no rate limit, and
    /// JWTs without a key to verify them: no user is accepted until
    /// [`AppState::with_identity`] says how users are known.
    pub fn new(service: Arc<CouponService>, admin_token: impl Into<String>) -> Self {
        Self {
            service,
            admin_token: admin_token.into(),
            metrics: Arc::new(Metrics::new()),
            // No key verifies a token: nobody gets in until told how users are known.
            identity: Identity::Jwt(JwtVerifier::refusing_everyone()),
            limiter: Limiter::new(RateLimits::default()),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Learns the user of a request as `identity` says.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    /// Enforces `limits`.
    pub fn with_rate_limits(mut self, limits: RateLimits) -> Self {
        self.limiter = Limiter::new(limits);
        self
    }

    /// Answers 503 to a request that takes longer than `timeout`.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Records into `metrics` (shared with the worker's metered source).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }
}

type Shared = State<Arc<AppState>>;

/// The service's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let limited = Router::new()
        .route("/campaigns", post(create_campaign))
        .route("/campaigns/{id}", get(get_campaign))
        .route("/campaigns/{id}/apply", post(apply))
        .route("/campaigns/{id}/coupons/{user_id}", get(get_coupon))
        .route("/admin/campaigns", get(list_campaigns))
        .route("/admin/campaigns/{id}/close", post(close_campaign))
        .route("/admin/campaigns/{id}/reopen", post(reopen_campaign))
        .route("/admin/settle", post(settle))
        .route("/admin/dead-letters", get(dead_letters))
        .route("/admin/dead-letters/replay", post(replay))
        .route("/ui", get(crate::live::page))
        .route_layer(from_fn_with_state(state.clone(), limit_address));
    // Probes and metrics stay outside the address limit: a monitor must always get in.
    Router::new()
        .merge(limited)
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(from_fn_with_state(state.clone(), time_limit))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Answers a request that outlasts [`AppState::request_timeout`]: 408 when its body had
/// not all arrived (the client is slow), else 503 (we are). An apply cut short this way
/// is finished by the issuer (or rolled forward by the settler): the client hears an
/// error, and the coupon route tells the truth.
async fn time_limit(State(state): Shared, request: Request, next: Next) -> Response {
    let (request, body_read) = watch_body(request);
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
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
async fn limit_address(State(state): Shared, request: Request, next: Next) -> Response {
    if let Some(peer) = peer_address(&request)
        && let Err(refusal) = state.limiter.check_address(peer.ip())
    {
        state.metrics.request("any", "rate_limited");
        return refusal.into_response();
    }
    next.run(request).await
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

/// An optional JSON body: an empty one or `null` is `None`; anything else must be the
/// JSON of `T`.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over {BODY_LIMIT} bytes"),
            )
        })?;
        if bytes.trim_ascii().is_empty() {
            return Ok(Self(None));
        }
        let request = Request::from_parts(parts, Body::from(bytes));
        let ApiJson(value) = ApiJson::<Option<T>>::from_request(request, state).await?;
        Ok(Self(value))
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

/// Refuses a request without the admin token, counting it against `route`.
fn require_admin(
    state: &AppState,
    headers: &HeaderMap,
    route: &'static str,
) -> Result<(), ApiError> {
    if is_admin(headers, &state.admin_token) {
        return Ok(());
    }
    state.metrics.request(route, "unauthorized");
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this route needs Authorization: Bearer <admin token>",
    ))
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
    let campaign = state.service.create_campaign(new).await?;
    state.metrics.request("create_campaign", "created");
    Ok((StatusCode::CREATED, Json(CampaignView::from(&campaign))).into_response())
}

#[utoipa::path(get, path = "/campaigns/{id}", tag = "applicants", params(("id" = u64, Path, description = "campaign id")),
    responses(
        (status = 200, description = "the campaign's counts", body = CampaignStatus),
        (status = 404, description = "no such campaign (`unknown_campaign`)", body = ErrorBody),
        (status = 429, description = "over a rate limit (`rate_limited`); `Retry-After`", body = ErrorBody),
        (status = 503, description = "a backend is unavailable (nothing was done, or the outcome is unknown: retrying tells); `Retry-After`", body = ErrorBody)
    ))]
async fn get_campaign(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<CampaignStatus>, ApiError> {
    let status = state.service.status(campaign_id(&id)?).await?;
    Ok(Json(CampaignStatus::from(&status)))
}

/// `GET /admin/campaigns`: every campaign with its window, counts and state.
#[utoipa::path(get, path = "/admin/campaigns", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, description = "every campaign", body = CampaignList),
        (status = 401, description = "no admin token (`unauthorized`)", body = ErrorBody),
        (status = 429, description = "over a rate limit (`rate_limited`); `Retry-After`", body = ErrorBody),
        (status = 503, description = "a backend is unavailable (nothing was done, or the outcome is unknown: retrying tells); `Retry-After`", body = ErrorBody)
    ))]
async fn list_campaigns(State(state): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    require_admin(&state, &headers, "list_campaigns")?;
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
async fn close_campaign(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers, "close_campaign")?;
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
async fn reopen_campaign(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<OptionalJson<ReopenRequest>, ApiError>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers, "reopen_campaign")?;
    let campaign = campaign_id(&id)?;
    let OptionalJson(request) = body?;
    let closes_at = request.and_then(|request| request.closes_at);
    let campaign = state.service.reopen(campaign, closes_at).await?;
    state.metrics.request("reopen_campaign", "reopened");
    Ok(Json(CampaignView::from(&campaign)).into_response())
}

#[utoipa::path(post, path = "/campaigns/{id}/apply", tag = "applicants", params(("id" = u64, Path, description = "campaign id")),
    request_body(content = Option<ApplyRequest>, description = "none with credentials; `user_id` from trusted clients"),
    security(("user" = []), ("user_header" = []), ()),
    responses(
        (status = 202, description = "admitted: a rank, or `pending` (the coupon will come; the coupon route tells when)", body = ApplyAnswer),
        (status = 401, description = "missing or invalid credentials (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "`not_open`, `closed`, or `forbidden` (the body names another user)", body = ErrorBody),
        (status = 404, description = "no such campaign (`unknown_campaign`)", body = ErrorBody),
        (status = 409, description = "`sold_out` or `already_applied`", body = ErrorBody),
        (status = 422, description = "a body or parameter we cannot act on", body = ErrorBody),
        (status = 408, description = "the body did not arrive within the request timeout (`timeout`)", body = ErrorBody),
        (status = 413, description = "body over 4 KiB", body = ErrorBody),
        (status = 415, description = "not a JSON body", body = ErrorBody),
        (status = 429, description = "over a rate limit (`rate_limited`); `Retry-After`", body = ErrorBody),
        (status = 503, description = "a backend is unavailable (nothing was done, or the outcome is unknown: retrying tells); `Retry-After`", body = ErrorBody)
    ))]
async fn apply(
    State(state): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<OptionalJson<ApplyRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let answer = apply_inner(&state, &id, &headers, body).await;
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
    headers: &HeaderMap,
    body: Result<OptionalJson<ApplyRequest>, ApiError>,
) -> Result<(Response, &'static str), ApiError> {
    let caller = state.identity.caller(headers)?;
    let campaign = campaign_id(id)?;
    let OptionalJson(request) = body?;
    let named = request.and_then(|request| request.user_id);
    let user = match (caller, named) {
        (Caller::Trusted, Some(user)) => UserId(user),
        (Caller::Trusted, None) => {
            return Err(ApiError::invalid(
                "user_id is required: this service takes the user from the body (trusted clients)",
            ));
        }
        (Caller::User(user), None) => user,
        (Caller::User(user), Some(named)) if named == user.0 => user,
        (Caller::User(_), Some(_)) => {
            return Err(forbidden("a user may apply only as themselves"));
        }
    };
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

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
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
async fn get_coupon(
    State(state): Shared,
    Path((id, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = if is_admin(&headers, &state.admin_token) {
        None
    } else {
        Some(state.identity.caller(&headers)?)
    };
    let campaign = campaign_id(&id)?;
    let named = || {
        user.parse::<u64>()
            .map(UserId)
            .map_err(|_| ApiError::invalid(format!("user id {user:?} is not a whole number")))
    };
    let user = match caller {
        Some(Caller::User(me)) => {
            state.limiter.check_user(me)?;
            if user != "me" && named()? != me {
                return Err(forbidden("a coupon is readable only by its owner"));
            }
            me
        }
        _ if user == "me" => {
            return Err(ApiError::invalid(
                "`me` needs a user's credentials; name the user id",
            ));
        }
        _ => named()?,
    };
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

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "alive", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "every backend answers", body = Health),
        (status = 503, description = "a backend does not answer (`not_ready`)", body = ErrorBody)
    ))]
async fn ready(State(state): Shared) -> Response {
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
async fn metrics(State(state): Shared) -> Response {
    let lag = state.service.lag().await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(lag, state.service.settler()),
    )
        .into_response()
}

/// `GET /openapi.json`: the OpenAPI 3.1 document of these routes.
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document_json(),
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
async fn settle(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<CampaignFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers, "settle")?;
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
async fn dead_letters(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<CampaignFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers, "dead_letters")?;
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
async fn replay(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<ApiJson<ReplayRequest>, ApiError>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers, "replay")?;
    let ApiJson(request) = body?;
    let report = state
        .service
        .replay(request.campaign.map(CampaignId), &request.ticket_ids)
        .await?;
    state.metrics.request("replay", "replayed");
    Ok(Json(report).into_response())
}
