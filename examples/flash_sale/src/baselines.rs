//! The two baselines firstcome is compared with, each racing every application into a
//! scratch table of its own: a naive check-then-insert and the textbook INCR-then-send.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::AsyncCommands;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio::task::JoinSet;

use super::{Args, Tally, arrival_order, user_of};

pub(crate) async fn execute(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> Result<u64, String> {
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        values,
    ))
    .await
    .map(|r| r.rows_affected())
    .map_err(|e| e.to_string())
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> Result<i64, String> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no row")?;
    row.try_get_by_index(0).map_err(|e| e.to_string())
}

/// Rows of a scratch table: (coupons, distinct holders, holders of two or more).
async fn count_rows(db: &DatabaseConnection, table: &str) -> Result<(u64, u64, u64), String> {
    let coupons = scalar(db, &format!("SELECT COUNT(*) FROM {table}")).await?;
    let holders = scalar(db, &format!("SELECT COUNT(DISTINCT user_id) FROM {table}")).await?;
    let doubles = scalar(
        db,
        &format!("SELECT COUNT(*) FROM (SELECT user_id FROM {table} GROUP BY user_id HAVING COUNT(*) > 1) AS d"),
    )
    .await?;
    Ok((coupons as u64, holders as u64, doubles as u64))
}

/// Sends every application at once into a scratch `table` of (user_id) rows: each asks
/// `admit` whether it may insert, and inserts if so. Returns (told yes, coupons, holders,
/// holders of two or more).
async fn race<F, Fut>(
    args: &Args,
    db: &DatabaseConnection,
    table: &str,
    admit: F,
) -> Result<[u64; 4], String>
where
    F: Fn(DatabaseConnection) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<bool, String>> + Send,
{
    execute(
        db,
        &format!("CREATE TABLE {table} (user_id BIGINT NOT NULL)"),
        vec![],
    )
    .await?;
    let told_yes = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for application in arrival_order(args.applications) {
        let (db, table, told_yes, admit) = (
            db.clone(),
            table.to_owned(),
            told_yes.clone(),
            admit.clone(),
        );
        let user = user_of(application, args.users) as i64;
        tasks.spawn(async move {
            if admit(db.clone()).await? {
                let sql = format!(
                    "INSERT INTO {table} (user_id) VALUES ({})",
                    coupon_seaorm::placeholder(db.get_database_backend(), 1)
                );
                execute(&db, &sql, vec![user.into()]).await?;
                told_yes.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, String>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| e.to_string())??;
    }
    let (coupons, holders, double_winners) = count_rows(db, table).await?;
    Ok([
        told_yes.load(Ordering::Relaxed),
        coupons,
        holders,
        double_winners,
    ])
}

/// Check, then insert: two statements, so two connections both see 999 and both insert.
pub(crate) async fn naive(
    args: &Args,
    db: &DatabaseConnection,
    table: &str,
) -> Result<Tally, String> {
    let (cap, count) = (args.cap as i64, format!("SELECT COUNT(*) FROM {table}"));
    let admit = move |db: DatabaseConnection| {
        let count = count.clone();
        async move { Ok(scalar(&db, &count).await? < cap) }
    };
    let [told_yes, coupons, holders, double_winners] = race(args, db, table, admit).await?;
    Ok(Tally {
        name: "naive check-then-insert",
        told_yes,
        coupons,
        holders,
        double_winners,
        counter: None,
    })
}

/// The textbook's counter: Redis `INCR` when configured, an atomic otherwise.
enum Counter {
    Memory(AtomicU64),
    Redis(redis::aio::ConnectionManager, String),
}

impl Counter {
    async fn incr(&self) -> Result<u64, String> {
        match self {
            Counter::Memory(count) => Ok(count.fetch_add(1, Ordering::SeqCst) + 1),
            Counter::Redis(connection, key) => connection
                .clone()
                .incr(key, 1)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn value(&self) -> Result<u64, String> {
        match self {
            Counter::Memory(count) => Ok(count.load(Ordering::SeqCst)),
            Counter::Redis(connection, key) => {
                let mut connection = connection.clone();
                let value: u64 = connection.get(key).await.map_err(|e| e.to_string())?;
                let _: i64 = connection.del(key).await.map_err(|e| e.to_string())?;
                Ok(value)
            }
        }
    }
}

/// `INCR`, compare, send: the counter keeps counting past the cap, and nothing stops a
/// user who applies twice.
pub(crate) async fn textbook(
    args: &Args,
    db: &DatabaseConnection,
    table: &str,
    run: &str,
) -> Result<Tally, String> {
    let counter = Arc::new(match &args.redis_url {
        Some(url) => {
            let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
            let connection = client
                .get_connection_manager()
                .await
                .map_err(|e| e.to_string())?;
            Counter::Redis(connection, format!("flash-sale:{run}:count"))
        }
        None => Counter::Memory(AtomicU64::new(0)),
    });
    let (cap, shared) = (args.cap, counter.clone());
    // The "send": the consumer saves every message it gets.
    let admit = move |_: DatabaseConnection| {
        let counter = shared.clone();
        async move { Ok(counter.incr().await? <= cap) }
    };
    let [told_yes, coupons, holders, double_winners] = race(args, db, table, admit).await?;
    Ok(Tally {
        name: "textbook INCR-then-send",
        told_yes,
        coupons,
        holders,
        double_winners,
        counter: Some(counter.value().await?),
    })
}
