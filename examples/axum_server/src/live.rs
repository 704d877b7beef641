//! `GET /ui`: a live page of a running drop. Campaigns with their cap, admitted,
//! issued, remaining and waiting counts, admission and issue rates, the service's
//! apply rate and worker queue lag, refreshed every second from `/admin/campaigns` and
//! `/metrics`. One self-contained document: no outside script, style, font or image,
//! and a content security policy that keeps it so.

use axum::http::header;
use axum::response::IntoResponse;

/// The page: inline style and script only.
pub const PAGE: &str = include_str!("live.html");

/// What the page may load: its own inline code, and requests to this service.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// `GET /ui`: the live page. It holds no data; its script reads the campaigns with the
/// admin token, taken from the address's fragment (`/ui#token=...`, never sent to the
/// server) or asked for, and kept for the browser tab only.
#[utoipa::path(get, path = "/ui", tag = "probes",
    responses((status = 200, description = "the live page of campaigns (HTML)", content_type = "text/html", body = String)))]
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
}
