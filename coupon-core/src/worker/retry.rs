//! Retrying with capped backoff, keeping the source alive meanwhile, until shutdown.

use std::future::Future;

use super::{IssueWorker, Stop, Stopped, WorkerReport};
use crate::{IssueFailure, Result};

impl IssueWorker {
    /// Records `failure` durably, however long that takes: the ticket is acked after.
    pub(super) async fn record(
        &self,
        failure: &IssueFailure,
        report: &mut WorkerReport,
        stop: &mut Stop<'_>,
    ) -> std::result::Result<(), Stopped> {
        self.retrying(report, stop, "record_failure", || {
            self.store.record_failure(failure)
        })
        .await
    }

    /// Calls `call` until it succeeds. Even a permanent error is retried (and logged as
    /// an error): acking a ticket whose failure was not kept would lose it.
    pub(super) async fn retrying<F, Fut>(
        &self,
        report: &mut WorkerReport,
        stop: &mut Stop<'_>,
        what: &'static str,
        mut call: F,
    ) -> std::result::Result<(), Stopped>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    attempt += 1;
                    report.retries += 1;
                    if error.is_retryable() {
                        tracing::warn!(%error, attempt, "{what} failed, retrying");
                    } else {
                        tracing::error!(%error, attempt, "{what} failed for good; retrying rather than dropping the ticket");
                    }
                    self.wait(attempt, stop).await?;
                }
            }
        }
    }

    /// Waits the backoff of `attempt`, keeping the source alive, unless `stop` fires.
    pub(super) async fn wait(
        &self,
        attempt: u32,
        stop: &mut Stop<'_>,
    ) -> std::result::Result<(), Stopped> {
        let deadline = tokio::time::Instant::now() + self.config.backoff(attempt);
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let nap = (deadline - now).min(self.config.keep_alive_interval);
            tokio::select! {
                biased;
                () = stop.wait() => return Err(Stopped),
                () = tokio::time::sleep(nap) => {}
            }
            if let Err(error) = self.source.keep_alive().await {
                tracing::debug!(%error, "keeping the source alive failed");
            }
        }
    }
}
