//! The OpenAPI document: it describes every route the router serves, and schemathesis
//! (the API fuzzer from PyPI) finds no 5xx and no answer outside the document, on the
//! embedded default, both with trusted clients and with JWT identity.

use crate::support;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};

/// Every path the router serves (a new route must be documented, and this list grown).
const ROUTES: [&str; 15] = [
    "/campaigns",
    "/campaigns/{id}",
    "/campaigns/{id}/apply",
    "/campaigns/{id}/coupons/{user_id}",
    "/admin/campaigns",
    "/admin/campaigns/{id}/close",
    "/admin/campaigns/{id}/reopen",
    "/admin/settle",
    "/admin/dead-letters",
    "/admin/dead-letters/replay",
    "/healthz",
    "/readyz",
    "/metrics",
    "/ui",
    "/ui/{asset}",
];

#[tokio::test]
async fn the_served_document_is_openapi_3_1_and_names_every_route() {
    let service = support::Service::start(&["--database-url", "sqlite::memory:"]).await;
    let (status, _, document) = service
        .api
        .request(Method::GET, "/openapi.json", None, &[])
        .await
        .expect("the document");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0", "{document}");
    let paths: BTreeSet<&str> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(paths, ROUTES.into_iter().collect(), "documented vs served");
    // Each documented path is served: a method it does not take is 405, where a path
    // the router lacks would be the fallback's 404.
    for route in ROUTES {
        let probe = route
            .replace("{id}", "1")
            .replace("{user_id}", "1")
            .replace("{asset}", "main.js");
        let undocumented = service
            .api
            .request(Method::DELETE, &probe, None, &[])
            .await
            .expect("an answer");
        assert_eq!(
            undocumented.0,
            StatusCode::METHOD_NOT_ALLOWED,
            "{route} is routed"
        );
    }
    let schemas = &document["components"]["schemas"];
    for name in ["ApplyAnswer", "CampaignStatus", "CouponView", "ErrorBody"] {
        assert!(schemas[name].is_object(), "{name} missing: {schemas}");
    }
    service.stop().await;
}

/// Runs schemathesis against the service started with `args`, sending `authorization`
/// with every request; its output on failure.
async fn fuzz(args: &[&str], authorization: &str) {
    let Ok(schemathesis) = std::env::var("SCHEMATHESIS") else {
        panic!(
            "SCHEMATHESIS is not set: run the tests with scripts/test.sh, or \
             `scripts/services.sh install` and export SCHEMATHESIS from a \
             `scripts/services.sh start DIR` (DIR/env)"
        );
    };
    let service = support::Service::start(args).await;
    let output = tokio::process::Command::new(&schemathesis)
        .args([
            "run",
            &format!("{}/openapi.json", service.api.url),
            "--header",
            &format!("Authorization: Bearer {authorization}"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
            "--max-examples",
            "40",
            "--seed",
            "20261127",
            // One: with more, Python 3.11's ast.parse (called from Hypothesis in
            // several threads) fails now and then with "AST constructor recursion
            // depth mismatch", an error of the tool, not of the service.
            "--workers",
            "1",
            "--no-color",
        ])
        // Its caches (.hypothesis, .schemathesis) go there, not into the repository.
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {schemathesis}: {e}"));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found answers outside the document:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_5xx_and_no_undocumented_answer_with_trusted_clients() {
    // As the admin: every admin route is reached; trusted clients name users in bodies.
    fuzz(&["--database-url", "sqlite::memory:"], support::TOKEN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_5xx_and_no_undocumented_answer_with_jwt_identity() {
    // As a user: applies and coupon reads pass the identity check (admin routes 401).
    let secret = "openapi-tests-secret-of-32-bytes!!!";
    let token = firstcome_server::auth::mint_hs256(
        secret.as_bytes(),
        coupon_core::UserId(7),
        3_600,
        &firstcome_server::auth::JwtRules::default(),
    )
    .expect("a token");
    fuzz(
        &[
            "--identity",
            "jwt",
            "--jwt-secret",
            secret,
            "--rate-limit-user-per-sec",
            "0",
            "--rate-limit-address-per-sec",
            "0",
            "--database-url",
            "sqlite::memory:",
        ],
        &token,
    )
    .await;
}
