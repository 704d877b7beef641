//! The database session that holds the counter lease, one kind per backend: how it is
//! taken and how it is checked.
//!
//! The lease is named after the database (and PostgreSQL's schema) the store uses, so
//! two services on two databases of one server each hold their own. On PostgreSQL the
//! session holds it inside a transaction left open (`pg_try_advisory_xact_lock`): a
//! connection pool in transaction mode (PgBouncer's `pool_mode = transaction`) keeps a
//! client on one server connection only for a transaction, so a lock taken outside one
//! would stay behind on a server connection that other clients share.

use std::time::Duration;

use coupon_core::{Error, Result};

use crate::error::BACKEND;

/// How long a database waits for a silent holder before it ends the session (and the
/// lease with it): the holder's checks, every second, keep a live session busy.
#[cfg(any(feature = "postgres", feature = "mysql"))]
const SILENT_HOLDER_SECS: u32 = 15;

/// [`SILENT_HOLDER_SECS`] as the holder counts it: a session silent this long is
/// counted as lost by the holder too.
pub(super) const SILENT_HOLDER: Duration = Duration::from_secs(15);

/// How long opening the lease's session may take: a database that does not answer
/// leaves the lease untaken, to be asked for again.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The lease's key on PostgreSQL: the first 64 bits of the MD5 of the database, the
/// schema and "firstcome.counter".
#[cfg(feature = "postgres")]
const PG_KEY: &str = "('x' || substr(md5(current_database() || '/' || \
     coalesce(current_schema(), '') || '/firstcome.counter'), 1, 16))::bit(64)::bigint";

/// A session holding the lease.
pub(super) enum Session {
    #[cfg(feature = "postgres")]
    Postgres {
        connection: sea_orm::sqlx::PgConnection,
        /// The server process of the session that took the lock: a check answered by
        /// another one means a pool between us and the database moved the session.
        pid: i32,
        key: i64,
    },
    #[cfg(feature = "mysql")]
    MySql {
        connection: sea_orm::sqlx::MySqlConnection,
        name: String,
    },
    #[cfg(feature = "sqlite")]
    File(#[allow(dead_code)] std::fs::File),
    /// An in-memory SQLite database: no other process can reach it.
    Private,
}

pub(super) fn failed(error: impl std::fmt::Display) -> Error {
    Error::unavailable(BACKEND, format!("counter lease: {error}"), None)
}

/// A statement of the lease refused by the database itself (not a connection lost on
/// the way) will be refused again: a pool in statement mode refusing `BEGIN`, a
/// missing privilege.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn refused(error: sea_orm::sqlx::Error) -> Error {
    match error {
        sea_orm::sqlx::Error::Database(_) => {
            Error::backend(BACKEND, format!("counter lease: {error}"), None)
        }
        error => failed(error),
    }
}

/// A session holding the lease, or `None` when another holds it.
pub(super) async fn open(url: &str) -> Result<Option<Session>> {
    tokio::time::timeout(OPEN_TIMEOUT, open_now(url))
        .await
        .unwrap_or_else(|_| {
            Err(failed(format!(
                "the database did not answer within {OPEN_TIMEOUT:?}"
            )))
        })
}

async fn open_now(url: &str) -> Result<Option<Session>> {
    #[cfg(feature = "postgres")]
    if url.starts_with("postgres") {
        return open_postgres(url).await;
    }
    #[cfg(feature = "mysql")]
    if url.starts_with("mysql") || url.starts_with("mariadb") {
        return open_mysql(url).await;
    }
    #[cfg(feature = "sqlite")]
    if url.starts_with("sqlite") {
        let Some(path) = sqlite_path(url) else {
            return Ok(Some(Session::Private));
        };
        // The file itself, not the name it was reached by: two processes reaching one
        // database through a link must lock one lease file.
        let path = std::fs::canonicalize(&path)
            .map(|real| real.display().to_string())
            .unwrap_or(path);
        let lease = format!("{path}-lease");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lease)
            .map_err(|e| Error::backend(BACKEND, format!("counter lease: {lease}: {e}"), None))?;
        return match file.try_lock() {
            Ok(()) => Ok(Some(Session::File(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(failed(format!("{lease}: {e}"))),
        };
    }
    Err(Error::backend(
        BACKEND,
        format!(
            "counter lease: no database backend for {}",
            coupon_core::redact_url(url)
        ),
        None,
    ))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Option<Session>> {
    // The simple protocol only: a pool in transaction mode (PgBouncer before 1.21)
    // cannot keep a prepared statement for a client.
    use sea_orm::sqlx::{AssertSqlSafe, Connection, Row, raw_sql};
    let mut connection = sea_orm::sqlx::PgConnection::connect(url)
        .await
        .map_err(failed)?;
    // Settings local to the transaction, which lasts as long as the lease: a holder
    // gone silent (a partition, a stalled process) loses its session soon, and with it
    // the lease; nothing leaks to other clients of a pool.
    let begin = format!(
        "BEGIN; SET LOCAL idle_in_transaction_session_timeout = '{SILENT_HOLDER_SECS}s'; \
         SET LOCAL tcp_keepalives_idle = 5; SET LOCAL tcp_keepalives_interval = 2; \
         SET LOCAL tcp_keepalives_count = 3"
    );
    raw_sql(AssertSqlSafe(begin))
        .execute(&mut connection)
        .await
        .map_err(refused)?;
    let row = raw_sql(AssertSqlSafe(format!(
        "SELECT pg_try_advisory_xact_lock(key), pg_backend_pid(), key, pg_is_in_recovery() \
         FROM (SELECT {PG_KEY} AS key) AS lease"
    )))
    .fetch_one(&mut connection)
    .await
    .map_err(refused)?;
    let (taken, pid, key, standby): (bool, i32, i64, bool) = (
        row.try_get(0).map_err(failed)?,
        row.try_get(1).map_err(failed)?,
        row.try_get(2).map_err(failed)?,
        row.try_get(3).map_err(failed)?,
    );
    if standby {
        // Advisory locks are not replicated: one taken on a standby excludes nobody
        // who takes it on the primary.
        let _ = connection.close().await;
        return Err(Error::backend(
            BACKEND,
            "counter lease: DATABASE_URL reaches a standby (pg_is_in_recovery()); the lease must be taken on the primary",
            None,
        ));
    }
    if !taken {
        let _ = connection.close().await;
        return Ok(None);
    }
    Ok(Some(Session::Postgres {
        connection,
        pid,
        key,
    }))
}

#[cfg(feature = "mysql")]
async fn open_mysql(url: &str) -> Result<Option<Session>> {
    use sea_orm::sqlx::{AssertSqlSafe, Connection, raw_sql};
    let mut connection = sea_orm::sqlx::MySqlConnection::connect(url)
        .await
        .map_err(failed)?;
    raw_sql(AssertSqlSafe(format!(
        "SET SESSION wait_timeout = {SILENT_HOLDER_SECS}"
    )))
    .execute(&mut connection)
    .await
    .map_err(refused)?;
    // GET_LOCK names are the server's, whatever the database: the name carries the
    // database's (at most 64 characters, so its MD5).
    let (taken, name): (Option<i64>, String) = sea_orm::sqlx::query_as(
        "SELECT GET_LOCK(name, 0), name FROM \
         (SELECT CONCAT('firstcome.counter.', MD5(COALESCE(DATABASE(), ''))) AS name) AS lease",
    )
    .fetch_one(&mut connection)
    .await
    .map_err(refused)?;
    if taken != Some(1) {
        let _ = connection.close().await;
        return Ok(None);
    }
    Ok(Some(Session::MySql { connection, name }))
}

/// Whether `session` still holds the lease.
pub(super) async fn still_held(session: &mut Session) -> Result<bool> {
    match session {
        #[cfg(feature = "postgres")]
        Session::Postgres {
            connection,
            pid,
            key,
        } => {
            use sea_orm::sqlx::Row;
            let row = sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(format!(
                "SELECT pg_backend_pid(), EXISTS (SELECT 1 FROM pg_locks \
                 WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND objsubid = 1 \
                 AND classid = (({key}::bigint >> 32) & 4294967295)::bigint::oid \
                 AND objid = ({key}::bigint & 4294967295)::bigint::oid)"
            )))
            .fetch_one(connection)
            .await
            .map_err(failed)?;
            let (answered_by, held): (i32, bool) = (
                row.try_get(0).map_err(failed)?,
                row.try_get(1).map_err(failed)?,
            );
            if answered_by != *pid {
                return Err(Error::backend(
                    BACKEND,
                    format!(
                        "counter lease: the lock was taken by server process {pid} and the check answered by {answered_by}: something between this process and PostgreSQL (a pool in statement mode?) moves the session, so the lease cannot be held; point DATABASE_URL at PostgreSQL or at a pool in session or transaction mode"
                    ),
                    None,
                ));
            }
            Ok(held)
        }
        #[cfg(feature = "mysql")]
        Session::MySql { connection, name } => {
            let held: Option<i64> =
                sea_orm::sqlx::query_scalar("SELECT IS_USED_LOCK(?) = CONNECTION_ID()")
                    .bind(name.as_str())
                    .fetch_one(connection)
                    .await
                    .map_err(failed)?;
            Ok(held == Some(1))
        }
        // The kernel holds the file lock for this process until it closes the file.
        #[cfg(feature = "sqlite")]
        Session::File(_) => Ok(true),
        Session::Private => Ok(true),
    }
}

/// How long ending the lease's session may take: past it the connection is dropped
/// (during a partition the goodbye would wait for ever, and shutdown with it).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Ends `session`, and with it the lease: at once, rather than when the database
/// notices the connection closed; within [`CLOSE_TIMEOUT`], else by dropping it.
pub(super) async fn close(session: Session) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, close_now(session)).await;
}

async fn close_now(session: Session) {
    use sea_orm::sqlx::Connection;
    match session {
        #[cfg(feature = "postgres")]
        Session::Postgres { mut connection, .. } => {
            let _ = sea_orm::sqlx::raw_sql("ROLLBACK")
                .execute(&mut connection)
                .await;
            let _ = connection.close().await;
        }
        #[cfg(feature = "mysql")]
        Session::MySql {
            mut connection,
            name,
        } => {
            let _ = sea_orm::sqlx::query("SELECT RELEASE_LOCK(?)")
                .bind(name)
                .execute(&mut connection)
                .await;
            let _ = connection.close().await;
        }
        #[cfg(feature = "sqlite")]
        Session::File(file) => drop(file),
        Session::Private => {}
    }
}

/// The file behind a SQLite URL, `None` for an in-memory database.
#[cfg(feature = "sqlite")]
fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return None;
    }
    Some(path.to_owned())
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    #[test]
    fn finds_the_file_of_a_sqlite_url() {
        assert_eq!(
            sqlite_path("sqlite://firstcome.db?mode=rwc").as_deref(),
            Some("firstcome.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.db").as_deref(),
            Some("/tmp/x.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://x.db?mode=memory"), None);
    }
}
