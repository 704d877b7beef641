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
//! ([`AdmissionLedger::seal_epoch`](coupon_core::AdmissionLedger::seal_epoch)), after which the
//! tickets of the one it replaced are refused unless that seal counted them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coupon_core::memory::{LeaseCheck, MemoryCounter};
use coupon_core::{Coalesced, Result};
use tokio::sync::Mutex;

mod session;

use session::Session;

/// How often the holder checks that its session still holds the lease, and a waiter
/// tries to take it.
pub const LEASE_CHECK: Duration = Duration::from_secs(1);

/// The lease on one database, held or not.
pub struct CounterLease {
    url: String,
    held: Arc<Held>,
    /// When the session last answered "held".
    answered: Instant,
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
                        tokio::time::timeout(LEASE_CHECK * 2, session::still_held(session)).await,
                        Ok(Ok(true))
                    ),
                    None => false,
                }
            })
            .await
    }
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
            answered: Instant::now(),
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
        let opened = session::open(&self.url).await?;
        let taken = opened.is_some();
        self.answered = Instant::now();
        *self.held.session.lock().await = opened;
        Ok(taken)
    }

    /// Whether the lease is still this process's: its session answers and holds the
    /// lock (a session that ended took the lease with it). A session that answers "not
    /// held" or fails is dropped; one that does not answer in time is kept (a slow
    /// database is no proof of a lost lease) and the check is an error, until it has
    /// been silent longer than the database waits for a silent holder: by then the
    /// database has ended the session (and the lease), or cannot be reached to say
    /// otherwise, so it is dropped and the lease counts as lost.
    pub async fn check(&mut self) -> Result<bool> {
        let mut held = self.held.session.lock().await;
        let Some(session) = held.as_mut() else {
            return Ok(false);
        };
        match tokio::time::timeout(LEASE_CHECK * 2, session::still_held(session)).await {
            Ok(Ok(true)) => {
                self.answered = Instant::now();
                Ok(true)
            }
            Ok(Ok(false)) => {
                if let Some(session) = held.take() {
                    session::close(session).await;
                }
                Ok(false)
            }
            Ok(Err(error)) => {
                if let Some(session) = held.take() {
                    session::close(session).await;
                }
                Err(error)
            }
            Err(_) if self.answered.elapsed() > session::SILENT_HOLDER => {
                tracing::warn!(
                    "the counter lease's session has not answered for {:?}: counted as lost",
                    self.answered.elapsed()
                );
                if let Some(session) = held.take() {
                    session::close(session).await;
                }
                Ok(false)
            }
            Err(_) => Err(session::failed(format!(
                "the check did not answer within {:?}",
                LEASE_CHECK * 2
            ))),
        }
    }

    /// Gives the lease up (ends the session that holds it, at once).
    pub async fn release(&mut self) {
        if let Some(session) = self.held.session.lock().await.take() {
            session::close(session).await;
        }
    }

    /// Keeps `counter` admitting exactly while this process holds the lease, until the
    /// returned keeper is released (or dropped, or the runtime ends): every
    /// [`LEASE_CHECK`], a waiter tries to take it and resumes the counter when it does
    /// (the service's watcher then rebuilds its campaigns in new epochs); a holder
    /// checks it and suspends the counter when it was lost. The counter also asks the
    /// lease before it confirms an epoch ([`MemoryCounter::confirm_with`]). Answers
    /// whether the lease was held at once, before the keeper starts; an error when the
    /// first attempt shows the lease can never be held here (a standby, a pool in
    /// statement mode, a lease file that cannot be written), which waiting would not
    /// mend. A database that does not answer yet is waited for.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::sync::Arc;
    /// use coupon_core::memory::MemoryCounter;
    /// use coupon_seaorm::CounterLease;
    /// let path = std::env::temp_dir().join(format!("keep-doc-{}.db", std::process::id()));
    /// let url = format!("sqlite://{}?mode=rwc", path.display());
    /// let counter = Arc::new(MemoryCounter::suspended());
    /// let (held, keeper) = CounterLease::new(&url).keep(counter.clone()).await.unwrap();
    /// assert!(held && !counter.is_suspended());
    /// // At shutdown: the counter stops admitting and the next process takes over at once.
    /// keeper.release().await;
    /// assert!(counter.is_suspended());
    /// assert!(CounterLease::new(&url).try_acquire().await.unwrap());
    /// # }
    /// ```
    pub async fn keep(mut self, counter: Arc<MemoryCounter>) -> Result<(bool, LeaseKeeper)> {
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
            Err(error) if !error.is_retryable() => {
                counter.suspend();
                return Err(error);
            }
            Err(error) => {
                counter.suspend();
                tracing::warn!(%error, "the counter lease could not be asked for; trying again");
                false
            }
        };
        let keeper = LeaseKeeper {
            held: self.held.clone(),
            counter: counter.clone(),
            task: Some(tokio::spawn(
                async move { self.watch(&counter, held).await },
            )),
        };
        Ok((held, keeper))
    }

    /// The keeper's loop: checks the lease every [`LEASE_CHECK`] and tells the counter.
    async fn watch(mut self, counter: &MemoryCounter, mut held: bool) {
        // Whether the last attempt failed: a database down logs once, not every second.
        let mut failing = false;
        loop {
            tokio::time::sleep(LEASE_CHECK).await;
            let outcome = self.try_acquire().await;
            let still = self.is_held().await;
            match (held, still, outcome) {
                (_, _, Ok(_)) if failing && (still || !held) => {
                    tracing::info!("the counter lease answers again");
                    failing = false;
                    if still && !held {
                        tracing::warn!("took the counter lease: this process admits now");
                        counter.resume();
                    }
                }
                (true, true, Ok(_)) | (false, false, Ok(_)) => {}
                (false, true, Ok(_)) => {
                    tracing::warn!("took the counter lease: this process admits now");
                    counter.resume();
                }
                (true, true, Err(error)) => {
                    // No answer in time: the session may still hold the lease; admissions
                    // go on (every new epoch asks the lease first).
                    if !failing {
                        tracing::warn!(%error, "the counter lease did not answer; still held until it says otherwise");
                    }
                    failing = true;
                }
                (true, false, outcome) => {
                    counter.suspend();
                    tracing::error!(error = ?outcome.err(), "the counter lease was lost: admissions stop until it is taken again");
                }
                (false, _, Err(error)) => {
                    if failing {
                        tracing::debug!(%error, "asking for the counter lease failed again");
                    } else {
                        tracing::warn!(%error, "cannot ask for the counter lease (the database?); trying every second");
                    }
                    failing = true;
                }
            }
            held = still;
        }
    }
}

/// Keeps the lease for [`CounterLease::keep`]. Dropping it stops the checks and
/// suspends the counter (nobody would notice a lost lease any more); the session, and
/// the lease, go when the database notices. [`release`](LeaseKeeper::release) gives the
/// lease up at once.
#[derive(Debug)]
pub struct LeaseKeeper {
    held: Arc<Held>,
    counter: Arc<MemoryCounter>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseKeeper {
    /// Stops the checks and suspends the counter: it admits no one from now on, while
    /// this process still holds the lease, so that what it admitted can be handed off
    /// (an in-process queue drained) before another process takes over.
    pub async fn stop_admitting(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // Wait for the abort to land: a check between taking the lease and resuming
            // the counter must not resume it after the suspension below.
            let _ = task.await;
        }
        self.counter.suspend();
    }

    /// Stops admitting (as [`stop_admitting`](Self::stop_admitting)), then ends the
    /// session holding the lease, so that another process takes over without waiting
    /// for the database to notice this one gone.
    pub async fn release(mut self) {
        self.stop_admitting().await;
        if let Some(session) = self.held.session.lock().await.take() {
            session::close(session).await;
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.counter.suspend();
    }
}
