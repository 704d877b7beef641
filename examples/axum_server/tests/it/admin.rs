//! Operators' tasks as routes and as subcommands: list campaigns, close one early and
//! reopen it, mint a token. A close made by the subcommand reaches the running service.

use crate::support;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

/// Runs the binary's subcommand `args` on the SQLite `database`; its JSON output. The
/// wait is async: the service under test runs on this thread and must keep serving (a
/// frozen service holding SQLite's write lock would lock the subcommand out).
async fn subcommand(database: &str, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    use clap::CommandFactory;

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_firstcome-server"));
    // The settings a test names, not those the environment exports: the harness's
    // backends, or the ADMIN_TOKEN and JWT_SECRET README's walk-through exports.
    for argument in firstcome_server::config::Config::command().get_arguments() {
        if let Some(name) = argument.get_env() {
            command.env_remove(name);
        }
    }
    let output = command
        .args(args)
        .env("DATABASE_URL", database)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn the_admin_lists_closes_and_reopens_a_campaign_by_route() {
    let service = support::Service::start(&["--database-url", "sqlite::memory:"]).await;
    let api = &service.api;
    let first = api.create_campaign(2).await;
    let second = api.create_campaign(5).await;
    assert_eq!(
        api.apply(first, 1).await.expect("apply").0,
        StatusCode::ACCEPTED
    );

    let (status, listed) = api
        .call(Method::GET, "/admin/campaigns", None)
        .await
        .expect("list");
    assert_eq!(status, StatusCode::OK, "{listed}");
    let campaigns = listed["campaigns"].as_array().expect("a list");
    assert_eq!(campaigns.len(), 2, "{listed}");
    assert_eq!(campaigns[0]["id"], first);
    assert_eq!(campaigns[0]["admitted"], 1);
    assert_eq!(campaigns[0]["state"], "open");
    assert_eq!(campaigns[1]["id"], second);
    assert_eq!(campaigns[1]["remaining"], 5);

    let close = format!("/admin/campaigns/{first}/close");
    let (status, closed) = api.call(Method::POST, &close, None).await.expect("close");
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert!(closed["closes_at"].is_string(), "{closed}");
    let (status, body) = api.apply(first, 2).await.expect("apply");
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("closed")),
        "{body}"
    );
    let (_, shown) = api
        .call(Method::GET, &format!("/campaigns/{first}"), None)
        .await
        .expect("get");
    assert_eq!(shown["state"], "closed", "{shown}");
    // The other campaign is untouched.
    assert_eq!(
        api.apply(second, 2).await.expect("apply").0,
        StatusCode::ACCEPTED
    );

    let reopen = format!("/admin/campaigns/{first}/reopen");
    let (status, body) = api
        .call(
            Method::POST,
            &reopen,
            Some(json!({ "closes_at": "2100-01-01T00:00:00Z" })),
        )
        .await
        .expect("reopen");
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "past what every store holds: {body}"
    );
    let (status, reopened) = api.call(Method::POST, &reopen, None).await.expect("reopen");
    assert_eq!(status, StatusCode::OK, "{reopened}");
    assert_eq!(reopened["closes_at"], Value::Null);
    let (status, body) = api.apply(first, 2).await.expect("apply");
    assert_eq!(
        (status, &body["rank"]),
        (StatusCode::ACCEPTED, &json!(2)),
        "{body}"
    );
    assert_eq!(
        api.apply(first, 3).await.expect("apply").0,
        StatusCode::CONFLICT,
        "still capped"
    );

    for (method, path) in [
        (Method::POST, "/admin/campaigns/999/close"),
        (Method::POST, "/admin/campaigns/999/reopen"),
    ] {
        let (status, body) = api.call(method, path, None).await.expect("answer");
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (status, _, body) = api
        .request(Method::GET, "/admin/campaigns", None, &[])
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    service.stop().await;
}

#[tokio::test]
async fn a_close_by_subcommand_reaches_the_running_service_and_reopen_undoes_it() {
    let file = std::env::temp_dir().join(format!(
        "firstcome-admin-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let database = format!("sqlite://{}?mode=rwc", file.display());
    let service = support::Service::start(&["--database-url", &database]).await;
    let campaign = service.api.create_campaign(10).await;
    assert_eq!(
        service.api.apply(campaign, 1).await.expect("apply").0,
        StatusCode::ACCEPTED
    );

    let listed = json_of(
        &subcommand(&database, &["campaigns"], &[])
            .await
            .expect("campaigns"),
    );
    let row = &listed["campaigns"][0];
    assert_eq!(
        (&row["id"], &row["cap"], &row["admitted"], &row["state"]),
        (&json!(campaign), &json!(10), &Value::Null, &Value::Null),
        "the store's view, the in-memory counter's figures unknown here: {listed}"
    );
    assert!(row["issued"].is_u64(), "{listed}");
    let id = campaign.to_string();
    let closed = json_of(
        &subcommand(&database, &["close", "--campaign", &id], &[])
            .await
            .expect("close"),
    );
    assert!(closed["closes_at"].is_string(), "{closed}");
    // Every process reads a campaign again within a second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (status, body) = service.api.apply(campaign, 2).await.expect("apply");
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("closed")),
        "{body}"
    );

    let reopened = json_of(
        &subcommand(&database, &["reopen", "--campaign", &id], &[])
            .await
            .expect("reopen"),
    );
    assert_eq!(reopened["closes_at"], Value::Null, "{reopened}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        service.api.apply(campaign, 2).await.expect("apply").0,
        StatusCode::ACCEPTED
    );
    let unknown = subcommand(&database, &["close", "--campaign", "999"], &[])
        .await
        .expect_err("unknown");
    assert!(unknown.contains("999"), "{unknown}");
    service.stop().await;
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn mint_token_signs_with_the_configured_secret_and_refuses_a_short_one() {
    let database = "sqlite::memory:";
    let secret = "mint-token-test-secret-of-32-bytes!";
    let token = subcommand(
        database,
        &["mint-token", "--user", "42"],
        &[("JWT_SECRET", secret)],
    )
    .await
    .expect("mint-token");
    let verifier = firstcome_server::auth::JwtVerifier::hs256(
        secret.as_bytes(),
        &firstcome_server::auth::JwtRules::default(),
    )
    .expect("verifier");
    assert_eq!(
        verifier.user(token.trim()).expect("valid"),
        coupon_core::UserId(42)
    );
    let short = subcommand(
        database,
        &["mint-token", "--user", "42"],
        &[("JWT_SECRET", "short")],
    )
    .await
    .expect_err("a short secret");
    assert!(short.contains("32 bytes"), "{short}");
    let none = subcommand(database, &["mint-token", "--user", "42"], &[])
        .await
        .expect_err("no secret");
    assert!(none.contains("JWT_SECRET"), "{none}");
}

/// With a shared counter the `campaigns` subcommand shows what the admin route shows:
/// admitted, remaining and the state, read from Redis.
#[tokio::test]
async fn the_campaigns_subcommand_reads_a_shared_counter() {
    let file = std::env::temp_dir().join(format!(
        "firstcome-admin-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let database = format!("sqlite://{}?mode=rwc", file.display());
    let redis = coupon_testkit::service_url("REDIS_URL");
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let service = support::Service::start(&[
        "--database-url",
        &database,
        "--redis-url",
        &redis,
        "--redis-key-prefix",
        &prefix,
    ])
    .await;
    let campaign = service.api.create_campaign(2).await;
    for user in [1, 2] {
        assert_eq!(
            service.api.apply(campaign, user).await.expect("apply").0,
            StatusCode::ACCEPTED
        );
    }
    let (_, by_route) = service
        .api
        .call(Method::GET, "/admin/campaigns", None)
        .await
        .expect("the admin route");
    let listed = json_of(
        &subcommand(
            &database,
            &["campaigns"],
            &[("REDIS_URL", &redis), ("REDIS_KEY_PREFIX", &prefix)],
        )
        .await
        .expect("campaigns"),
    );
    let row = &listed["campaigns"][0];
    assert_eq!(
        (
            &row["id"],
            &row["admitted"],
            &row["remaining"],
            &row["state"]
        ),
        (&json!(campaign), &json!(2), &json!(0), &json!("sold_out")),
        "{listed}"
    );
    let route_row = &by_route["campaigns"][0];
    assert_eq!(
        (&row["cap"], &row["admitted"], &row["state"]),
        (
            &route_row["cap"],
            &route_row["admitted"],
            &route_row["state"]
        ),
        "the subcommand and the route agree: {listed} {by_route}"
    );
    service.stop().await;
    let _ = std::fs::remove_file(&file);
}
