//! Classifying database errors into the core's retryable / permanent errors.

use coupon_core::Error;
use sea_orm::{DbErr, RuntimeErr};

pub(crate) const BACKEND: &str = "database";

/// SQLSTATEs (PostgreSQL, MySQL) and SQLite result codes after which the same
/// transaction may succeed: serialisation failure, deadlock, lock timeouts, a server
/// shutting down or starting, too many connections, a lost connection, a busy database.
const RETRYABLE_CODES: &[&str] = &[
    "40001", // serialization_failure (PostgreSQL; MySQL's deadlock 1213 reports it too)
    "40P01", // deadlock_detected
    "55P03", // lock_not_available
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "53300", // too_many_connections
    "5",     // SQLITE_BUSY
    "6",     // SQLITE_LOCKED
    "261",   // SQLITE_BUSY_RECOVERY
    "517",   // SQLITE_BUSY_SNAPSHOT
    "262",   // SQLITE_LOCKED_SHAREDCACHE
];

/// MySQL/MariaDB error numbers that come with a generic SQLSTATE: lock wait timeout,
/// deadlock, server gone away, lost connection, server shutdown.
const RETRYABLE_MYSQL_MESSAGES: &[&str] = &[
    "Lock wait timeout exceeded",
    "Deadlock found",
    "server has gone away",
    "Lost connection",
    "Server shutdown in progress",
];

/// Whether the same operation may succeed if tried again.
pub(crate) fn is_retryable(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime_is_retryable(runtime),
        _ => false,
    }
}

fn runtime_is_retryable(error: &RuntimeErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match error {
        RuntimeErr::SqlxError(error) => match error.as_ref() {
            Sqlx::Io(_)
            | Sqlx::Tls(_)
            | Sqlx::Protocol(_)
            | Sqlx::PoolTimedOut
            | Sqlx::PoolClosed
            | Sqlx::WorkerCrashed => true,
            Sqlx::Database(database) => {
                let code = database.code();
                let message = database.message();
                code.as_deref()
                    .is_some_and(|code| RETRYABLE_CODES.contains(&code) || code.starts_with("08"))
                    || RETRYABLE_MYSQL_MESSAGES
                        .iter()
                        .any(|needle| message.contains(needle))
            }
            _ => false,
        },
        RuntimeErr::Internal(message) => message.contains("connection"),
        #[allow(unreachable_patterns)] // other drivers' variants, when their features are on
        _ => false,
    }
}

/// Converts `error`, naming `what` (the operation and its tables) in the message.
pub(crate) fn classify(error: DbErr, what: impl FnOnce() -> String) -> Error {
    if is_retryable(&error) {
        Error::Unavailable {
            backend: BACKEND,
            message: format!("{}: {error}", what()),
            source: Some(error.into()),
        }
    } else {
        Error::backend(BACKEND, format!("{}: {error}", what()), Some(error.into()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

    use super::*;

    fn sqlx(error: sea_orm::sqlx::Error) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(Arc::new(error)))
    }

    #[test]
    fn pool_and_connection_trouble_is_retryable() {
        assert!(is_retryable(&DbErr::ConnectionAcquire(
            ConnAcquireErr::Timeout
        )));
        assert!(is_retryable(&DbErr::ConnectionAcquire(
            ConnAcquireErr::ConnectionClosed
        )));
        assert!(is_retryable(&sqlx(sea_orm::sqlx::Error::PoolTimedOut)));
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(is_retryable(&sqlx(sea_orm::sqlx::Error::Io(reset))));
    }

    #[test]
    fn logic_errors_are_permanent_and_keep_their_context() {
        assert!(!is_retryable(&DbErr::RecordNotFound("campaign".into())));
        assert!(!is_retryable(&sqlx(sea_orm::sqlx::Error::RowNotFound)));
        let error = classify(DbErr::Custom("boom".into()), || "reading campaign 7".into());
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("reading campaign 7"), "{error}");
    }
}
