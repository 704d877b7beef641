//! The counter lease: one process at a time may admit with a counter kept in its own
//! memory, for one database.
//!
//! Two copies of a service with in-memory counters on one database would each admit up
//! to the cap. So such a process admits only while it holds this lease: a lock the
//! database keeps for the session that took it (PostgreSQL's session advisory lock,
//! MySQL/MariaDB's `GET_LOCK`, an exclusive lock on a file beside a SQLite database)
//! and releases when that session ends, however the process ended. Its liveness rests
//! on the database noticing a dead session; safety does not rest on it at all: a
//! process that took over rebuilds every campaign in a new epoch
//! ([`CouponStore::seal_epoch`](coupon_core::CouponStore::seal_epoch)), after which the
//! tickets of the one it replaced are refused unless that seal counted them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coupon_core::memory::{LeaseCheck, MemoryCounter};
use coupon_core::{Coalesced, Error, Result};
use tokio::sync::Mutex;

use crate::error::BACKEND;

/// How often the holder checks that its session still holds the lease, and a waiter
/// tries to take it.
pub const LEASE_CHECK: Duration = Duration::from_secs(1);

/// How long a database waits for a silent holder before it ends the session (and the
/// lease with it): the holder's checks keep a live session busy.
#[cfg(any(feature = "postgres", feature = "mysql"))]
const SILENT_HOLDER_SECS: u32 = 15;

/// The name of the lease (MySQL/MariaDB), and the key of PostgreSQL's advisory lock
/// ("firstcome" in ASCII, then 2).
#[cfg(feature = "mysql")]
const LEASE_NAME: &str = "firstcome.counter";
#[cfg(feature = "postgres")]
const LEASE_KEY: i64 = 0x6669_7273_7463_6f02;

/// The lease on one database, held or not.
pub struct CounterLease {
    url: String,
    held: Arc<Held>,
}

/// The session holding the lease, shared with the checks made on behalf of the counter.
#[derive(Default)]
struct Held {
    session: Mutex<Option<Session>>,
    checks: Coalesced<bool>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").finish_non_exhaustive()
    }
}

/// Asks the database, at the moment of the call, whether this process's session still
/// holds the lease: one query per group of concurrent questions.
#[async_trait]
impl LeaseCheck for Held {
    async fn still_held(&self) -> bool {
        self.checks
            .ask(|| async {
                let mut session = self.session.lock().await;
                match session.as_mut() {
                    Some(session) => matches!(
                        tokio::time::timeout(LEASE_CHECK * 2, still_held(session)).await,
                        Ok(Ok(true))
                    ),
                    None => false,
                }
            })
            .await
    }
}

enum Session {
    #[cfg(feature = "postgres")]
    Postgres(sea_orm::sqlx::PgConnection),
    #[cfg(feature = "mysql")]
    MySql(sea_orm::sqlx::MySqlConnection),
    #[cfg(feature = "sqlite")]
    File(#[allow(dead_code)] std::fs::File),
    /// An in-memory SQLite database: no other process can reach it.
    Private,
}

impl std::fmt::Debug for CounterLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterLease")
            .field("url", &coupon_core::redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

impl CounterLease {
    /// The lease of the database behind `url` (the store's URL), not held yet.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            held: Arc::default(),
        }
    }

    /// Whether this process held the lease at its last check.
    pub async fn is_held(&self) -> bool {
        self.held.session.lock().await.is_some()
    }

    /// Takes the lease if no other session holds it (`Ok(false)` if one does), or
    /// checks it when this one holds it already.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
    /// use coupon_seaorm::CounterLease;
    /// let path = std::env::temp_dir().join(format!("lease-doc-{}.db", std::process::id()));
    /// let url = format!("sqlite://{}?mode=rwc", path.display());
    /// let (mut first, mut second) = (CounterLease::new(&url), CounterLease::new(&url));
    /// assert!(first.try_acquire().await?);
    /// assert!(!second.try_acquire().await?, "one holder at a time");
    /// first.release().await;
    /// assert!(second.try_acquire().await?);
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(&mut self) -> Result<bool> {
        if self.is_held().await {
            return self.check().await;
        }
        let opened = open(&self.url).await?;
        let taken = opened.is_some();
        *self.held.session.lock().await = opened;
        Ok(taken)
    }

    /// Whether the lease is still this process's: its session answers and holds the
    /// lock (a session that ended took the lease with it). A failed check drops the
    /// session.
    pub async fn check(&mut self) -> Result<bool> {
        let mut held = self.held.session.lock().await;
        let Some(session) = held.as_mut() else {
            return Ok(false);
        };
        match tokio::time::timeout(LEASE_CHECK * 2, still_held(session)).await {
            Ok(Ok(true)) => Ok(true),
            Ok(Ok(false)) | Err(_) => {
                *held = None;
                Ok(false)
            }
            Ok(Err(error)) => {
                *held = None;
                Err(error)
            }
        }
    }

    /// Gives the lease up (ends the session that holds it).
    pub async fn release(&mut self) {
        *self.held.session.lock().await = None;
    }

    /// Keeps `counter` admitting exactly while this process holds the lease, until the
    /// returned task is aborted (or the runtime ends): every [`LEASE_CHECK`], a waiter
    /// tries to take it and resumes the counter when it does (the service's watcher then
    /// rebuilds its campaigns in new epochs); a holder checks it and suspends the
    /// counter when it was lost. The counter also asks the lease before it confirms an
    /// epoch ([`MemoryCounter::confirm_with`]). Answers whether the lease was held at
    /// once, before the task starts.
    pub async fn keep(
        mut self,
        counter: Arc<MemoryCounter>,
    ) -> (bool, tokio::task::JoinHandle<()>) {
        counter.confirm_with(self.held.clone());
        let held = match self.try_acquire().await {
            Ok(true) => {
                counter.resume();
                true
            }
            Ok(false) => {
                counter.suspend();
                tracing::warn!(
                    "another process holds this database's counter lease: the in-memory counter admits in one process only; waiting for it (set REDIS_URL to admit from several)"
                );
                false
            }
            Err(error) => {
                counter.suspend();
                tracing::warn!(%error, "the counter lease could not be asked for; trying again");
                false
            }
        };
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_CHECK).await;
                let held_before = self.is_held().await;
                match (held_before, self.try_acquire().await) {
                    (true, Ok(true)) | (false, Ok(false)) => {}
                    (false, Ok(true)) => {
                        tracing::warn!("took the counter lease: this process admits now");
                        counter.resume();
                    }
                    (true, outcome) => {
                        counter.suspend();
                        tracing::error!(error = ?outcome.err(), "the counter lease was lost: admissions stop until it is taken again");
                    }
                    (false, Err(error)) => {
                        tracing::debug!(%error, "asking for the counter lease failed");
                    }
                }
            }
        });
        (held, task)
    }
}

fn failed(error: impl std::fmt::Display) -> Error {
    Error::unavailable(BACKEND, format!("counter lease: {error}"), None)
}

/// A session holding the lease, or `None` when another holds it.
async fn open(url: &str) -> Result<Option<Session>> {
    #[cfg(feature = "postgres")]
    if url.starts_with("postgres") {
        use sea_orm::sqlx::Connection;
        let mut connection = sea_orm::sqlx::PgConnection::connect(url)
            .await
            .map_err(failed)?;
        // A holder gone silent (a partition) loses its session, and the lease, soon.
        let settings = format!(
            "SET idle_session_timeout = '{SILENT_HOLDER_SECS}s'; SET tcp_keepalives_idle = 5; \
             SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"
        );
        sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(settings))
            .execute(&mut connection)
            .await
            .map_err(failed)?;
        let taken: bool = sea_orm::sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEASE_KEY)
            .fetch_one(&mut connection)
            .await
            .map_err(failed)?;
        return Ok(taken.then_some(Session::Postgres(connection)));
    }
    #[cfg(feature = "mysql")]
    if url.starts_with("mysql") || url.starts_with("mariadb") {
        use sea_orm::sqlx::Connection;
        let mut connection = sea_orm::sqlx::MySqlConnection::connect(url)
            .await
            .map_err(failed)?;
        sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(format!(
            "SET SESSION wait_timeout = {SILENT_HOLDER_SECS}"
        )))
        .execute(&mut connection)
        .await
        .map_err(failed)?;
        let taken: Option<i64> = sea_orm::sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
            .bind(LEASE_NAME)
            .fetch_one(&mut connection)
            .await
            .map_err(failed)?;
        return Ok((taken == Some(1)).then_some(Session::MySql(connection)));
    }
    #[cfg(feature = "sqlite")]
    if url.starts_with("sqlite") {
        let Some(path) = sqlite_path(url) else {
            return Ok(Some(Session::Private));
        };
        let lease = format!("{path}-lease");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lease)
            .map_err(|e| failed(format!("{lease}: {e}")))?;
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

/// Whether `session` still holds the lease.
async fn still_held(session: &mut Session) -> Result<bool> {
    match session {
        #[cfg(feature = "postgres")]
        Session::Postgres(connection) => {
            let held: bool = sea_orm::sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                 AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
                 AND classid = (($1::bigint >> 32) & 4294967295)::bigint::oid \
                 AND objid = ($1::bigint & 4294967295)::bigint::oid)",
            )
            .bind(LEASE_KEY)
            .fetch_one(connection)
            .await
            .map_err(failed)?;
            Ok(held)
        }
        #[cfg(feature = "mysql")]
        Session::MySql(connection) => {
            let held: Option<i64> =
                sea_orm::sqlx::query_scalar("SELECT IS_USED_LOCK(?) = CONNECTION_ID()")
                    .bind(LEASE_NAME)
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
