//! A worker on a task of its own.

use super::{IssueWorker, WorkerReport, WorkerTotals};
use crate::{Error, Result};

impl IssueWorker {
    /// Runs on a task of its own until [`RunningWorker::stop`], or until the source is
    /// closed and drained ([`RunningWorker::drain`]). Dropping the [`RunningWorker`]
    /// stops the worker as `stop` does, without waiting for it.
    #[must_use = "dropping the RunningWorker stops the worker"]
    pub fn spawn(self) -> RunningWorker {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let totals = self.totals();
        let task = tokio::spawn(async move {
            self.run(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
        });
        RunningWorker { stop, task, totals }
    }
}

/// A worker on a task of its own ([`IssueWorker::spawn`]). Dropping it stops the worker
/// (gracefully, as [`RunningWorker::stop`]) without waiting for it.
#[must_use = "dropping the RunningWorker stops the worker"]
pub struct RunningWorker {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<WorkerReport>>,
    totals: WorkerTotals,
}

impl RunningWorker {
    /// What the worker has done so far ([`IssueWorker::totals`]).
    pub fn totals(&self) -> WorkerTotals {
        self.totals.clone()
    }

    /// Stops gracefully (the batch in hand is finished and acked, or left unacked for
    /// redelivery while the store is away) and returns what the worker did.
    pub async fn stop(self) -> Result<WorkerReport> {
        let _ = self.stop.send(true);
        Self::joined(self.task.await)
    }

    /// Waits until the source ends by itself (an in-process queue that was closed, once
    /// everything in it is persisted) and returns what the worker did. It has no
    /// deadline: a shared source (Kafka, the database's queue) never ends, and a closed
    /// in-process queue ends only once the store has taken every ticket in it.
    pub async fn drain(self) -> Result<WorkerReport> {
        Self::joined(self.task.await)
    }

    fn joined(
        joined: std::result::Result<Result<WorkerReport>, tokio::task::JoinError>,
    ) -> Result<WorkerReport> {
        joined.map_err(|error| {
            Error::backend("worker", format!("the worker's task ended: {error}"), None)
        })?
    }
}
