//! Classifying database errors into the core's retryable / permanent errors.

use coupon_core::Error;
use sea_orm::{DbErr, RuntimeErr};

pub(crate) const BACKEND: &str = "database";

/// SQLSTATEs (PostgreSQL; MySQL reports some) after which the same transaction may
/// succeed later: serialisation failure, deadlock, lock and statement timeouts, a server
/// shutting down, starting or read-only (a standby during failover), lost connections
/// (class 08), insufficient resources (class 53: disk full, out of memory, too many
/// connections), system and I/O errors (class 58).
const RETRYABLE_SQLSTATES: &[&str] = &[
    "40001", // serialization_failure (PostgreSQL; MySQL's deadlock 1213 reports it too)
    "40P01", // deadlock_detected
    "55P03", // lock_not_available
    "57014", // query_canceled (statement_timeout, pg_cancel_backend)
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "25006", // read_only_sql_transaction (a standby, or a primary being demoted)
    "25P03", // idle_in_transaction_session_timeout
];
const RETRYABLE_SQLSTATE_CLASSES: &[&str] = &["08", "53", "58"];

/// SQLite primary result codes (the low byte of the extended code sqlx reports): busy,
/// locked, I/O error, disk full, cannot open, lock protocol error.
const RETRYABLE_SQLITE_CODES: &[i32] = &[5, 6, 10, 13, 14, 15];

/// MySQL/MariaDB error numbers that pass: lock wait timeout, deadlock, too many
/// connections, shutdown in progress, network read/write errors, read-only server
/// (`--read-only`, `super_read_only`, a demoted primary), read-only transaction,
/// statement timeouts (MySQL 3024, MariaDB 1969), query interrupted, connection killed,
/// disk full, out of memory.
#[cfg(feature = "mysql")]
const RETRYABLE_MYSQL_NUMBERS: &[u16] = &[
    1205, 1213, 1040, 1053, 1158, 1159, 1160, 1161, 1290, 1792, 1836, 3024, 1969, 1317, 1927, 1021,
    1037, 1038, 1041, 4031,
];

/// Messages of the same conditions, for drivers that report them without a number.
const RETRYABLE_MYSQL_MESSAGES: &[&str] = &[
    "Lock wait timeout exceeded",
    "Deadlock found",
    "server has gone away",
    "Lost connection",
    "Server shutdown in progress",
    "--read-only",
];

/// Whether `error` is a deadlock or serialisation failure: the transaction lost a lock
/// race and may be run again at once.
pub(crate) fn is_lock_conflict(error: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error))) =
        error
    else {
        return false;
    };
    let sea_orm::sqlx::Error::Database(database) = error.as_ref() else {
        return false;
    };
    matches!(database.code().as_deref(), Some("40001" | "40P01"))
        || database.message().contains("Deadlock found")
}

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
            Sqlx::Database(database) => database_error_is_retryable(database.as_ref()),
            _ => false,
        },
        RuntimeErr::Internal(message) => message.contains("connection"),
        #[allow(unreachable_patterns)] // other drivers' variants, when their features are on
        _ => false,
    }
}

fn database_error_is_retryable(error: &dyn sea_orm::sqlx::error::DatabaseError) -> bool {
    #[cfg(feature = "mysql")]
    if let Some(mysql) = error.try_downcast_ref::<sea_orm::sqlx::mysql::MySqlDatabaseError>()
        && RETRYABLE_MYSQL_NUMBERS.contains(&mysql.number())
    {
        return true;
    }
    #[cfg(feature = "sqlite")]
    if error
        .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
        .is_some()
    {
        let code = error.code().and_then(|code| code.parse::<i32>().ok());
        return code.is_some_and(|code| RETRYABLE_SQLITE_CODES.contains(&(code & 0xff)));
    }
    let code = error.code();
    let code = code.as_deref().unwrap_or("");
    RETRYABLE_SQLSTATES.contains(&code)
        || RETRYABLE_SQLSTATE_CLASSES
            .iter()
            .any(|class| code.starts_with(class))
        || RETRYABLE_MYSQL_MESSAGES
            .iter()
            .any(|needle| error.message().contains(needle))
}

/// [`classify`] for a `COMMIT`: the server may have committed before the connection
/// failed, so a retryable failure there is an unknown outcome.
pub(crate) fn classify_commit(error: DbErr, what: impl FnOnce() -> String) -> Error {
    if is_retryable(&error) {
        Error::outcome_unknown(BACKEND, format!("{}: {error}", what()), Some(error.into()))
    } else {
        classify(error, what)
    }
}

/// Converts `error`, naming `what` (the operation and its tables) in the message.
pub(crate) fn classify(error: DbErr, what: impl FnOnce() -> String) -> Error {
    if is_retryable(&error) {
        Error::unavailable(BACKEND, format!("{}: {error}", what()), Some(error.into()))
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

    /// A server error with a SQLSTATE, as PostgreSQL reports them.
    #[derive(Debug)]
    struct ServerError {
        code: &'static str,
        message: &'static str,
    }

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{} ({})", self.message, self.code)
        }
    }

    impl std::error::Error for ServerError {}

    impl sea_orm::sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            self.message
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.code.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sea_orm::sqlx::error::ErrorKind {
            sea_orm::sqlx::error::ErrorKind::Other
        }
    }

    fn server(code: &'static str, message: &'static str) -> DbErr {
        sqlx(sea_orm::sqlx::Error::Database(Box::new(ServerError {
            code,
            message,
        })))
    }

    #[test]
    fn passing_server_conditions_are_retryable() {
        for code in [
            "25006", "57014", "53100", "53200", "53300", "53000", "58030", "08006", "40001",
            "40P01", "57P01",
        ] {
            assert!(is_retryable(&server(code, "passing")), "SQLSTATE {code}");
        }
        assert!(is_retryable(&server(
            "HY000",
            "The MySQL server is running with the --read-only option so it cannot execute this statement"
        )));
    }

    #[test]
    fn broken_statements_and_constraints_are_permanent() {
        for code in ["23505", "23514", "42P01", "42703", "22003", "42601"] {
            assert!(!is_retryable(&server(code, "broken")), "SQLSTATE {code}");
        }
    }

    #[test]
    fn a_failed_commit_is_an_unknown_outcome() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let error = classify_commit(sqlx(sea_orm::sqlx::Error::Io(reset)), || "COMMIT".into());
        assert!(error.is_outcome_unknown(), "{error:?}");
        let broken = classify_commit(server("23505", "duplicate"), || "COMMIT".into());
        assert!(!broken.is_retryable());
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
