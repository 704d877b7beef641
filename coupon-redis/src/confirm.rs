//! Confirmed admissions: `WAIT` for replicas before an admission counts, one `WAIT` per
//! group of concurrent admissions.
//!
//! `WAIT n timeout` returns once `n` replicas acknowledged every write this connection
//! sent before it. Admissions share one multiplexed connection, so a `WAIT` sent after
//! an admission's script answered covers that admission, and one `WAIT` covers every
//! admission that answered before it was sent. At most one `WAIT` is in flight per
//! connection; the admissions that answer meanwhile are covered by the next one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::{Mutex, watch};

/// The `WAIT`s of one connection.
pub(crate) struct Confirmer {
    /// `WAIT`s sent so far on this connection.
    sent: AtomicU64,
    /// Held by the caller sending a `WAIT`.
    sending: Mutex<()>,
    /// The last `WAIT` that answered: its number and whether enough replicas acked.
    answered: watch::Sender<(u64, bool)>,
}

impl Confirmer {
    pub(crate) fn new() -> Self {
        Self {
            sent: AtomicU64::new(0),
            sending: Mutex::new(()),
            answered: watch::channel((0, false)).0,
        }
    }

    /// Whether `replicas` replicas acknowledged every write `connection` carried before
    /// this call, within `timeout`. An error of the connection counts as no.
    pub(crate) async fn confirm(
        &self,
        connection: &MultiplexedConnection,
        replicas: u64,
        timeout: Duration,
    ) -> bool {
        // Any WAIT numbered above this one is sent after this point, so it covers us.
        let needed = self.sent.load(Ordering::Acquire) + 1;
        let mut answered = self.answered.subscribe();
        loop {
            let (last, acked) = *answered.borrow_and_update();
            if last >= needed {
                return acked;
            }
            if let Ok(sending) = self.sending.try_lock() {
                let number = self.sent.fetch_add(1, Ordering::AcqRel) + 1;
                let acked = wait(connection.clone(), replicas, timeout).await;
                // Free the turn before announcing, so that whoever wakes can take it.
                drop(sending);
                self.answered.send_replace((number, acked));
                if number >= needed {
                    return acked;
                }
                continue;
            }
            // A sender whose caller went away announces nothing: look again after a
            // while rather than wait for an answer that may never come.
            if let Ok(Err(_)) = tokio::time::timeout(timeout, answered.changed()).await {
                return false;
            }
        }
    }
}

/// One `WAIT`: whether at least `replicas` acknowledged in time.
async fn wait(mut connection: MultiplexedConnection, replicas: u64, timeout: Duration) -> bool {
    let millis = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let acked: redis::RedisResult<u64> = redis::cmd("WAIT")
        .arg(replicas)
        .arg(millis)
        .query_async(&mut connection)
        .await;
    match acked {
        Ok(acked) => acked >= replicas,
        Err(error) => {
            tracing::warn!(%error, "WAIT failed; the admissions it covered are unconfirmed");
            false
        }
    }
}
