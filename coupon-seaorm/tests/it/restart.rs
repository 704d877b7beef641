//! PostgreSQL killed (kill -9) and restarted in the middle of a batch, on a server of
//! the test's own started through the harness script.

use std::time::{Duration, Instant};

use coupon_core::{CouponStore, IssueOutcome, IssueTicket, NewCampaign, UserId};
use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig};
use coupon_testkit::services::PrivateService;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement, TransactionTrait};

async fn count(db: &DatabaseConnection, sql: &str) -> Result<i64, sea_orm::DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await?
        .expect("a row");
    row.try_get_by_index(0)
}

/// Retries `f` on retryable errors for up to 30 s (the pool reconnecting after a restart).
async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = coupon_core::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f().await {
            Ok(value) => return value,
            Err(error) if error.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("gave up: {error:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_mid_batch_is_retryable_leaves_nothing_and_the_retry_lands_once() {
    let pg = PrivateService::start("postgres");
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port());
    let mut config = SeaOrmStoreConfig::new(&url);
    config.acquire_timeout = Duration::from_secs(3);
    let store = SeaOrmStore::connect(config).await.expect("connect");
    let first = store
        .create_campaign(NewCampaign::new("a", 1_000))
        .await
        .expect("a");
    let second = store
        .create_campaign(NewCampaign::new("b", 1_000))
        .await
        .expect("b");
    assert!(
        first.id < second.id,
        "the batch locks campaigns in id order"
    );

    // Another session holds the second campaign's row lock, so the batch inserts the
    // first campaign's coupons and then waits, mid-transaction, for the second.
    let blocker = Database::connect(&url).await.expect("blocker");
    let held = blocker.begin().await.expect("begin");
    held.execute_unprepared(&format!(
        "SELECT id FROM campaign WHERE id = {} FOR UPDATE",
        second.id
    ))
    .await
    .expect("lock the second campaign");

    let tickets: Vec<IssueTicket> = (1..=500u64)
        .map(|user| {
            let campaign = if user <= 250 { first.id } else { second.id };
            IssueTicket::new(campaign, UserId(user), 1, user)
        })
        .collect();
    let batch = {
        let (store, tickets) = (store.clone(), tickets.clone());
        tokio::spawn(async move { store.issue_batch(&tickets).await })
    };

    let watcher = Database::connect(&url).await.expect("watcher");
    let waiting = "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&watcher, waiting).await.expect("pg_stat_activity") < 1 {
        assert!(
            Instant::now() < deadline,
            "the batch never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .expect("restart");

    let error = batch
        .await
        .expect("task")
        .expect_err("the server died mid-batch");
    assert!(error.is_retryable(), "{error:?}");
    drop(held);

    let db = store.connection().clone();
    let leftover = eventually(|| {
        let db = db.clone();
        async move {
            count(&db, "SELECT COUNT(*) FROM coupon")
                .await
                .map_err(|e| coupon_core::Error::unavailable("test", e.to_string(), Some(e.into())))
        }
    })
    .await;
    assert_eq!(leftover, 0, "no partial batch is visible");

    let outcomes = eventually(|| store.issue_batch(&tickets)).await;
    let issued = outcomes
        .iter()
        .filter(|o| matches!(o, IssueOutcome::Issued(_)))
        .count();
    assert_eq!(issued, 500);
    let replay = store.issue_batch(&tickets).await.expect("replay");
    assert!(replay.iter().all(|o| *o == IssueOutcome::Duplicate));
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM coupon")
            .await
            .expect("count"),
        500
    );
    assert_eq!(store.issued_count(first.id).await.expect("a"), 250);
    assert_eq!(store.issued_count(second.id).await.expect("b"), 250);
    drop(pg);
}
