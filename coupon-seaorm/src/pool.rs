//! The store's connection pool: what each connection is set up with, and what is
//! checked when one comes back.

use std::time::Duration;

use sea_orm::ConnectOptions;

/// How long PostgreSQL lets a session of the store sit idle inside a transaction before
/// ending it (and the transaction): the store's transactions run their statements back
/// to back, so only a process that stalled or vanished mid-transaction (a pause, a
/// partition) is idle there, and its row locks would otherwise hold up the seal of a
/// counter rebuild, and every publish behind it, until the database noticed.
#[cfg(feature = "postgres")]
const IDLE_IN_TRANSACTION: &str = "5s";

/// How long MySQL/MariaDB waits on a silent session of the store before ending it: the
/// same reason (it has no timeout for idle transactions alone). Above the pool's idle
/// timeout, so that a connection merely resting in the pool is closed by the pool first.
#[cfg(feature = "mysql")]
const MYSQL_WAIT_TIMEOUT_SECS: u64 = 60;

/// Sets the pool's hooks, in one place because sea-orm keeps one pool-options function
/// per backend (a second `map_sqlx_*_pool_opts` call replaces the first):
///
/// - every new connection is set up so that a stalled holder of its locks is cut off
///   within seconds, not hours (PostgreSQL's default keepalive notices a vanished client
///   after two hours; MySQL's `wait_timeout` is eight hours by default); on PostgreSQL
///   also TCP keepalives every few seconds, so a client gone without a word is noticed;
/// - a connection dropped mid-call (a call past the operation timeout) still owes
///   answers, and the pool pings it before taking it back, waiting for all of them; when
///   the network swallowed them, that ping waits forever and the connection's pool slot
///   is lost for good. So a released connection is first pinged within `limit`, and
///   closed (not returned) when that ping does not answer.
pub(crate) fn hooks(options: &mut ConnectOptions, limit: Duration) {
    #[cfg(feature = "postgres")]
    options.map_sqlx_postgres_pool_opts(move |pool| {
        pool.after_connect(|connection, _| {
            Box::pin(async move {
                sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(format!(
                    "SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'; \
                     SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
                     SET tcp_keepalives_count = 3"
                )))
                .execute(connection)
                .await
                .map(drop)
            })
        })
        .after_release(move |connection, _| Box::pin(answers_within(connection, limit)))
    });
    #[cfg(feature = "mysql")]
    {
        if options.get_url().starts_with("mysql") || options.get_url().starts_with("mariadb") {
            options.idle_timeout(Duration::from_secs(MYSQL_WAIT_TIMEOUT_SECS / 2));
        }
        options.map_sqlx_mysql_pool_opts(move |pool| {
            pool.after_connect(|connection, _| {
                Box::pin(async move {
                    sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(format!(
                        "SET SESSION wait_timeout = {MYSQL_WAIT_TIMEOUT_SECS}"
                    )))
                    .execute(connection)
                    .await
                    .map(drop)
                })
            })
            .after_release(move |connection, _| Box::pin(answers_within(connection, limit)))
        });
    }
    let _ = (options, limit); // SQLite is a local file: nothing stalls or swallows answers
}

/// `Ok(true)` when `connection` answers a ping within `limit`: it may go back to the pool.
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn answers_within<C: sea_orm::sqlx::Connection>(
    connection: &mut C,
    limit: Duration,
) -> std::result::Result<bool, sea_orm::sqlx::Error> {
    match tokio::time::timeout(limit, connection.ping()).await {
        Ok(Ok(())) => Ok(true),
        Ok(Err(error)) => Err(error),
        // An error makes the pool close the connection without a goodbye.
        Err(_) => Err(sea_orm::sqlx::Error::PoolTimedOut),
    }
}
