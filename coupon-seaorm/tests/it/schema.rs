//! Migrations and the schema check.

use crate::support;

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

/// Stores migrating one fresh database at once all succeed, each backend taking its
/// own lock (advisory lock, `GET_LOCK`, `BEGIN IMMEDIATE`). Within one process the runs
/// rarely overlap enough to collide without the lock; the collision itself is shown with
/// processes (`firstcome-server`'s deployments test). This checks every lock path works
/// and is released: a lock left held would make the later stores wait or fail.
async fn concurrent_migrations_all_succeed(url: String) {
    const REPLICAS: usize = 8;
    let replicas = (0..REPLICAS).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { SeaOrmStore::connect(SeaOrmStoreConfig::new(url)).await })
    });
    let mut failures = Vec::new();
    for replica in replicas {
        if let Err(error) = replica.await.expect("the task") {
            failures.push(error.to_string());
        }
    }
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "{REPLICAS} stores migrating at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_on_postgres_all_succeed() {
    concurrent_migrations_all_succeed(support::fresh_database(&service_url("DATABASE_URL")).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_on_mysql_all_succeed() {
    concurrent_migrations_all_succeed(support::fresh_database(&service_url("MYSQL_URL")).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_on_a_sqlite_file_all_succeed() {
    let path = std::env::temp_dir().join(format!("firstcome-{}.db", uuid::Uuid::new_v4().simple()));
    concurrent_migrations_all_succeed(format!("sqlite://{}?mode=rwc", path.display())).await;
}

/// A database made before `campaign.shards` existed upgrades on connect: its campaigns
/// read back with one shard (what they always had), and new ones keep theirs, on every
/// backend.
#[tokio::test]
async fn a_database_from_before_shards_upgrades_in_place() {
    use sea_orm_migration::MigratorTrait;
    let sqlite =
        std::env::temp_dir().join(format!("firstcome-{}.db", uuid::Uuid::new_v4().simple()));
    for url in [
        support::fresh_database(&service_url("DATABASE_URL")).await,
        support::fresh_database(&service_url("MYSQL_URL")).await,
        format!("sqlite://{}?mode=rwc", sqlite.display()),
    ] {
        let db = Database::connect(&url).await.expect("connect");
        // Every migration before the one that adds the column.
        let before = coupon_seaorm::Migrator::migrations().len() as u32 - 1;
        coupon_seaorm::Migrator::up(&db, Some(before))
            .await
            .expect("the older schema");
        db.execute_unprepared(
            "INSERT INTO campaign (name, cap, per_user_limit, issued) VALUES ('older', 5, 1, 0)",
        )
        .await
        .expect("a campaign of the older schema");
        let store = SeaOrmStore::connect(SeaOrmStoreConfig::new(&url))
            .await
            .expect("migrates the rest");
        let campaigns = store.campaigns().await.expect("campaigns");
        let shards: Vec<(String, u16)> = campaigns
            .iter()
            .map(|summary| (summary.campaign.name.clone(), summary.campaign.shards))
            .collect();
        assert_eq!(shards, [("older".to_owned(), 1)], "{url}");
        let split = store
            .create_campaign(NewCampaign::new("split", 30).shards(3))
            .await
            .expect("create");
        assert_eq!(
            store.campaign(split.id).await.expect("read").shards,
            3,
            "{url}"
        );
    }
}
