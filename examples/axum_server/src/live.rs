//! `GET /ui`: a live page of a running drop. Campaigns with their cap, admitted,
//! issued, remaining and waiting counts, admission and issue rates, the service's
//! apply rate and worker queue lag, refreshed every second from `/admin/campaigns` and
//! `/metrics`. A document, its script and its style, all served here: nothing from
//! anywhere else, and no inline script or style, which a content security policy
//! keeps so (an injected `<script>` would not run).

use axum::http::header;
use axum::response::IntoResponse;

/// The page.
pub const PAGE: &str = include_str!("live.html");

/// The page's script.
pub const SCRIPT: &str = include_str!("live.js");

/// The page's style.
pub const STYLE: &str = include_str!("live.css");

/// What the page may load: its own script and style from this service, and requests
/// to it; nothing inline.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The headers of the page and its files.
fn headers(content_type: &'static str) -> [(header::HeaderName, &'static str); 5] {
    [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

/// `GET /ui`: the live page. It holds no data; its script reads the campaigns with the
/// admin token, taken from the address's fragment (`/ui#token=...`, never sent to the
/// server) or asked for, and kept for the browser tab only.
#[utoipa::path(get, path = "/ui", tag = "probes",
    responses((status = 200, description = "the live page of campaigns (HTML)", content_type = "text/html", body = String)))]
pub async fn page() -> impl IntoResponse {
    (headers("text/html; charset=utf-8"), PAGE)
}

/// `GET /ui/live.js`: the live page's script.
#[utoipa::path(get, path = "/ui/live.js", tag = "probes",
    responses((status = 200, description = "the live page's script", content_type = "text/javascript", body = String)))]
pub async fn script() -> impl IntoResponse {
    (headers("text/javascript; charset=utf-8"), SCRIPT)
}

/// `GET /ui/live.css`: the live page's style.
#[utoipa::path(get, path = "/ui/live.css", tag = "probes",
    responses((status = 200, description = "the live page's style", content_type = "text/css", body = String)))]
pub async fn style() -> impl IntoResponse {
    (headers("text/css; charset=utf-8"), STYLE)
}
