//! Persisted coupons per second through `SeaOrmStore::issue_batch` at several batch
//! sizes, on PostgreSQL and SQLite, beside two baselines run in the same process on the
//! same table: a server-side `INSERT ... SELECT` of the same number of rows (the
//! ceiling), and one autocommitted single-row INSERT per coupon (a consumer that saves
//! each message on its own).
//!
//! ```sh
//! scripts/services.sh start /tmp/fc && source /tmp/fc/env
//! cargo bench -p firstcome-benches --bench store_batch
//! ```

use std::time::{Duration, Instant};

use coupon_core::{CampaignId, CouponStore, IssueTicket, NewCampaign, UserId};
use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig, placeholder, testkit};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

/// Rows written per measured configuration.
const ROWS: u64 = 20_000;
/// Rows for batch size 1 and the single-row baseline, which are two orders slower.
const SLOW_ROWS: u64 = 2_000;

fn rate(rows: u64, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64()
}

async fn campaign(store: &SeaOrmStore) -> CampaignId {
    store
        .create_campaign(NewCampaign::new("bench", i64::MAX as u64))
        .await
        .expect("campaign")
        .id
}

/// `issue_batch` in batches of `size` until `rows` coupons are persisted.
async fn ours(store: &SeaOrmStore, size: usize, rows: u64) -> f64 {
    let campaign = campaign(store).await;
    firstcome_benches::analyze(store).await;
    let tickets: Vec<IssueTicket> = (1..=rows)
        .map(|user| IssueTicket::new(campaign, UserId(user), 1, user))
        .collect();
    let started = Instant::now();
    for batch in tickets.chunks(size) {
        store.issue_batch(batch).await.expect("issue_batch");
    }
    let elapsed = started.elapsed();
    assert_eq!(store.issued_count(campaign).await.expect("count"), rows);
    rate(rows, elapsed)
}

/// The same rows generated and inserted by the server in one statement.
async fn server_side(store: &SeaOrmStore, rows: u64) -> f64 {
    let campaign = campaign(store).await;
    let db = store.connection();
    let backend = db.get_database_backend();
    let (series, rank) = match backend {
        DbBackend::Postgres => (format!("generate_series(1, {rows}) AS s(x)"), "\"rank\""),
        _ => (
            format!(
                "(WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < {rows}) SELECT x FROM s) AS s"
            ),
            "\"rank\"",
        ),
    };
    let code = match backend {
        DbBackend::Postgres => "md5(random()::text || x)",
        _ => "lower(hex(randomblob(16)))",
    };
    let ticket = match backend {
        DbBackend::Postgres => "gen_random_uuid()::text",
        _ => "lower(hex(randomblob(16)))",
    };
    let now = match backend {
        DbBackend::Postgres => "now()",
        _ => "CURRENT_TIMESTAMP",
    };
    let sql = format!(
        "INSERT INTO coupon (campaign_id, user_id, user_slot, {rank}, code, ticket_id, issued_at) \
         SELECT {campaign}, x, 1, x, substr({code}, 1, 26), {ticket}, {now} FROM {series}",
        campaign = campaign.get()
    );
    let started = Instant::now();
    db.execute_raw(Statement::from_string(backend, sql))
        .await
        .expect("server-side insert");
    rate(rows, started.elapsed())
}

/// One autocommitted INSERT per coupon, no batching, no cap check.
async fn single_row(store: &SeaOrmStore, rows: u64) -> f64 {
    let campaign = campaign(store).await;
    let db = store.connection();
    let backend = db.get_database_backend();
    let started = Instant::now();
    for user in 1..=rows {
        let [p1, p2, p3, p4, p5, p6] = [1, 2, 3, 4, 5, 6].map(|n| placeholder(backend, n));
        let sql = format!(
            "INSERT INTO coupon (campaign_id, user_id, user_slot, \"rank\", code, ticket_id, issued_at) VALUES ({p1}, {p2}, 1, {p3}, {p4}, {p5}, {p6})"
        );
        let code = Uuid::new_v4().simple().to_string()[..26].to_owned();
        let values: Vec<sea_orm::Value> = vec![
            (campaign.get() as i64).into(),
            (user as i64).into(),
            (user as i64).into(),
            code.into(),
            Uuid::new_v4().to_string().into(),
            chrono::Utc::now().into(),
        ];
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .expect("single-row insert");
    }
    rate(rows, started.elapsed())
}

async fn run(name: &str, store: SeaOrmStore) {
    println!("\n{name}");
    let ceiling = server_side(&store, ROWS).await;
    println!("  baseline: server-side INSERT ... SELECT of {ROWS} rows: {ceiling:>9.0} rows/s");
    let naive = single_row(&store, SLOW_ROWS).await;
    println!(
        "  baseline: single-row autocommit INSERTs ({SLOW_ROWS} rows): {naive:>9.0} rows/s ({:.3} of the ceiling)",
        naive / ceiling
    );
    for size in [1usize, 100, 500, 1_000] {
        let rows = if size == 1 { SLOW_ROWS } else { ROWS };
        let ours = ours(&store, size, rows).await;
        println!(
            "  issue_batch, batch {size:>5} ({rows} rows): {ours:>9.0} coupons/s ({:.2} of the ceiling, {:.1}x single-row)",
            ours / ceiling,
            ours / naive
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; this program takes no other arguments.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let postgres =
            SeaOrmStore::connect(SeaOrmStoreConfig::new(testkit::fresh_postgres().await))
                .await
                .expect("PostgreSQL store");
        run("PostgreSQL (DATABASE_URL)", postgres).await;

        let path =
            std::env::temp_dir().join(format!("firstcome-bench-{}.db", Uuid::new_v4().simple()));
        let sqlite = SeaOrmStore::connect(SeaOrmStoreConfig::new(format!(
            "sqlite://{}?mode=rwc",
            path.display()
        )))
        .await
        .expect("SQLite store");
        run("SQLite (file)", sqlite).await;
        let _ = std::fs::remove_file(path);
    });
}
