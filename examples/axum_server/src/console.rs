//! `GET /ui`: the operator's console of a running drop. Campaigns with their counts,
//! rates and charts of the last minutes; creating one, closing and reopening it,
//! settling now, replaying dead letters; the state that explains a pause. A document,
//! its script modules and its style, all served here: nothing from anywhere else, and
//! no inline script or style, which a content security policy keeps so (an injected
//! `<script>` would not run). Every action is a request to this API with the admin
//! token: the console can do nothing the API does not allow.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The page.
pub const PAGE: &str = include_str!("console/index.html");

/// The page's files by name: `/ui/<name>` serves the content with the type.
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("main.js", JAVASCRIPT, include_str!("console/main.js")),
    ("api.js", JAVASCRIPT, include_str!("console/api.js")),
    (
        "campaigns.js",
        JAVASCRIPT,
        include_str!("console/campaigns.js"),
    ),
    ("charts.js", JAVASCRIPT, include_str!("console/charts.js")),
    ("create.js", JAVASCRIPT, include_str!("console/create.js")),
    (
        "dead_letters.js",
        JAVASCRIPT,
        include_str!("console/dead_letters.js"),
    ),
    ("metrics.js", JAVASCRIPT, include_str!("console/metrics.js")),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
];

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// What the page may load: its own scripts and style from this service, and requests
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

/// `GET /ui`: the console. It holds no data; its script reads the API with the admin
/// token, taken from the address's fragment (`/ui#token=...`, never sent to the
/// server) or asked for, and kept for the browser tab only. Without an accepted token
/// it shows the sign-in and nothing else.
#[utoipa::path(get, path = "/ui", tag = "probes",
    responses((status = 200, description = "the operator's console (HTML)", content_type = "text/html", body = String)))]
pub async fn page() -> impl IntoResponse {
    (headers("text/html; charset=utf-8"), PAGE)
}

/// `GET /ui/{asset}`: one of the console's script modules or its style.
#[utoipa::path(get, path = "/ui/{asset}", tag = "probes",
    params(("asset" = String, Path, description = "a file of the console: `main.js`, `console.css`, ...")),
    responses(
        (status = 200, description = "the file (JavaScript or CSS)", content_type = "text/javascript", body = String),
        (status = 404, description = "no such file (`not_found`)", body = crate::wire::ErrorBody)
    ))]
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(known, _, _)| *known == name) {
        Some((_, content_type, content)) => (headers(content_type), *content).into_response(),
        None => ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "no such file of the console",
        )
        .into_response(),
    }
}
