//! The HTTP API: routes, request bodies, answers.

pub(crate) mod admin;
mod middleware;
pub(crate) mod probes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use coupon_core::{ApplyOutcome, CampaignId, CampaignState, CouponService, CouponStatus, UserId};
use serde::de::DeserializeOwned;

use crate::auth::{Caller, Identity, JwtVerifier, is_admin};
use crate::error::ApiError;
use crate::limits::{Limiter, RateLimits};
use crate::metrics::Metrics;
use crate::wire::{
    Admitted, ApplyAnswer, ApplyRequest, CampaignStatus, CouponView, ErrorBody, Pending,
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
    /// The bearer token `/metrics` requires besides the admin's, if any.
    pub metrics_token: Option<String>,
    /// Readiness and lag, cached.
    probes: probes::ProbeCache,
    /// The `Host` names requests may carry (normalised), when limited.
    pub allowed_hosts: Option<Vec<String>>,
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
            metrics_token: None,
            probes: probes::ProbeCache::new(probes::DEFAULT_PROBE_CACHE),
            allowed_hosts: None,
        }
    }

    /// Answers only requests whose `Host` is one of `hosts` (any port); an empty list
    /// leaves every host allowed.
    pub fn with_allowed_hosts(mut self, hosts: &[String]) -> Self {
        let hosts: Vec<String> = hosts
            .iter()
            .filter(|host| !host.trim().is_empty())
            .map(|host| middleware::normalise_host(host))
            .collect();
        self.allowed_hosts = (!hosts.is_empty()).then_some(hosts);
        self
    }

    /// Serves `/metrics` only to callers with `token` (or the admin token).
    pub fn with_metrics_token(mut self, token: Option<String>) -> Self {
        self.metrics_token = token;
        self
    }

    /// Reuses readiness and lag answers for `ttl` (1 s by default; zero asks the
    /// backends at every call).
    pub fn with_probe_cache(mut self, ttl: Duration) -> Self {
        self.probes = probes::ProbeCache::new(ttl);
        self
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

pub(crate) type Shared = State<Arc<AppState>>;

/// The service's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let limited = Router::new()
        .merge(admin::routes(state.clone()))
        .route("/campaigns/{id}", get(get_campaign))
        .route("/campaigns/{id}/apply", post(apply))
        .route("/campaigns/{id}/coupons/{user_id}", get(get_coupon))
        .route("/ui", get(crate::live::page))
        .route("/ui/live.js", get(crate::live::script))
        .route("/ui/live.css", get(crate::live::style))
        .route_layer(from_fn_with_state(state.clone(), middleware::limit_address));
    // Probes and metrics stay outside the address limit: a monitor must always get in.
    Router::new()
        .merge(limited)
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::ready))
        .route("/metrics", get(probes::metrics))
        .route("/openapi.json", get(probes::openapi_json))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(from_fn_with_state(state.clone(), middleware::time_limit))
        .layer(from_fn_with_state(state.clone(), middleware::check_host))
        .layer(axum::middleware::from_fn(middleware::nosniff))
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

pub(crate) fn json_rejection(rejection: JsonRejection) -> ApiError {
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

pub(crate) fn campaign_id(text: &str) -> Result<CampaignId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_campaign",
            format!("no campaign {text:?}"),
        )
    })
}

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
    // The credentials before the body: a client without them must not hold the
    // connection for as long as it takes to send a body slowly.
    let caller = state.identity.caller(request.headers())?;
    let campaign = campaign_id(id)?;
    let OptionalJson(body) = OptionalJson::<ApplyRequest>::from_request(request, state).await?;
    let named = body.and_then(|body| body.user_id);
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
pub(crate) async fn get_coupon(
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
