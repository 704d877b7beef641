//! The HTTP API: routes, request bodies, answers.
//!
//! Where things are: the shared state ([`AppState`]) and the router ([`router`]) here;
//! who a user route acts for (the admin, a user, a trusted client) in `acting`;
//! the layers every request passes (time limit, host check, address limit) in
//! `middleware`; body extractors in `extract`; the routes by audience in `applicants`
//! (apply, a campaign, a user's coupon), `admin` (behind the admin token) and `probes`
//! (health, readiness, metrics, the OpenAPI document); the document itself in
//! [`openapi`]; a worker-only process serves only [`worker_only`]'s probes. Error answers are [`crate::error::ApiError`], bodies [`crate::wire`].

mod acting;
pub(crate) mod admin;
mod applicants;
mod extract;
mod middleware;
pub mod openapi;
pub(crate) mod probes;
pub mod worker_only;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use coupon_core::CouponService;

// The OpenAPI document names the applicants' handlers (and the `__path_` structs
// utoipa generates beside them) by these paths.
pub(crate) use applicants::{
    __path_apply, __path_get_campaign, __path_get_coupon, apply, get_campaign, get_coupon,
};
use extract::campaign_id;
pub use extract::{ApiJson, OptionalJson};

use crate::auth::{Identity, JwtVerifier};
use crate::error::ApiError;
use crate::limits::{Limiter, RateLimits};
use crate::metrics::Metrics;

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
        .route("/ui", get(crate::console::page))
        .route("/ui/{asset}", get(crate::console::asset))
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
