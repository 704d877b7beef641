//! Migrations and the schema check.

mod support;

use coupon_core::{CouponStore, Error, NewCampaign};
use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig};
use coupon_testkit::service_url;
use sea_orm::{ConnectionTrait, Database};

#[tokio::test]
async fn migrations_are_idempotent() {
    let url = support::fresh_database(&service_url("DATABASE_URL")).await;
    let first = SeaOrmStore::connect(SeaOrmStoreConfig::new(&url))
        .await
        .expect("first");
    let campaign = first
        .create_campaign(NewCampaign::new("kept", 5))
        .await
        .expect("campaign");
    let second = SeaOrmStore::connect(SeaOrmStoreConfig::new(&url))
        .await
        .expect("again");
    second.migrate().await.expect("and again");
    assert_eq!(
        second.campaign(campaign.id).await.expect("still there"),
        campaign
    );
}

#[tokio::test]
async fn empty_database_without_migrations_is_a_schema_mismatch() {
    let url = support::fresh_database(&service_url("DATABASE_URL")).await;
    let error = SeaOrmStore::connect(SeaOrmStoreConfig::new(url).with_migrate(false))
        .await
        .expect_err("no tables");
    match error {
        Error::SchemaMismatch { detail, .. } => assert!(detail.contains("campaign"), "{detail}"),
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn foreign_table_of_the_same_name_is_a_schema_mismatch() {
    let url = support::fresh_database(&service_url("DATABASE_URL")).await;
    let db = Database::connect(&url).await.expect("connect");
    db.execute_unprepared("CREATE TABLE campaign (id BIGINT PRIMARY KEY, title TEXT)")
        .await
        .expect("a table of someone else's");
    let error = SeaOrmStore::connect(SeaOrmStoreConfig::new(url))
        .await
        .expect_err("not our campaign table");
    assert!(matches!(error, Error::SchemaMismatch { .. }), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn unreachable_server_is_retryable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut config = SeaOrmStoreConfig::new(format!("postgres://postgres@127.0.0.1:{port}/x"));
    config.acquire_timeout = std::time::Duration::from_secs(1);
    let error = SeaOrmStore::connect(config)
        .await
        .expect_err("nothing listens");
    assert!(error.is_retryable(), "{error:?}");
}
