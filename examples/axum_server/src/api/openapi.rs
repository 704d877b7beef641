//! The OpenAPI 3.1 document of the service, generated from the handlers' annotations
//! and the body types of [`crate::wire`]; served at `GET /openapi.json`.

use std::sync::OnceLock;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "firstcome",
        description = "First-come-first-served coupon campaigns: a campaign capped at N never \
                       issues N+1 coupons, and every applicant told yes gets one."
    ),
    paths(
        api::admin::create_campaign,
        api::get_campaign,
        api::apply,
        api::get_coupon,
        api::admin::list_campaigns,
        api::admin::close_campaign,
        api::admin::reopen_campaign,
        api::admin::settle,
        api::admin::dead_letters,
        api::admin::replay,
        api::probes::healthz,
        api::probes::ready,
        api::probes::metrics,
        crate::console::page,
        crate::console::asset,
    ),
    modifiers(&SecuritySchemes, &EveryRoute),
    tags(
        (name = "applicants", description = "applying, and reading one's coupon"),
        (name = "admin", description = "the admin token's routes"),
        (name = "probes", description = "health, readiness, metrics, the console"),
    )
)]
pub struct ApiDoc;

/// How callers identify themselves: a user's JWT or gateway header, the admin token.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "user",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("a JWT whose `sub` is the user id (--identity jwt)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "user_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-User-Id",
                "set by an authenticating gateway (--identity header)",
            ))),
        );
        components.add_security_scheme(
            "metrics",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("the metrics token (--metrics-token), when set"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("the admin token"))
                    .build(),
            ),
        );
    }
}

/// Answers any route but the health probes may give besides its own: 421 when
/// `--allowed-hosts` leaves out the request's host.
struct EveryRoute;

impl Modify for EveryRoute {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let misdirected = utoipa::openapi::ResponseBuilder::new()
            .description("the request's Host is not one of --allowed-hosts (`unknown_host`)")
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for (path, item) in &mut openapi.paths.paths {
            // The health probes answer any host (`api::middleware::check_host`).
            if path == "/healthz" || path == "/readyz" {
                continue;
            }
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                operation
                    .responses
                    .responses
                    .insert("421".to_owned(), misdirected.clone().into());
            }
        }
    }
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default())
}
