//! The memory queue under the injector: publishes that fail before or after storing,
//! are delayed, stored twice or stored after their caller stopped waiting, and a
//! consumer side that fails before taking a batch.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::faults::Injector;
use coupon_core::memory::MemoryQueue;
use coupon_core::{Batch, Error, IssueQueue, IssueSource, IssueTicket, QueueMark, Result};

/// A [`MemoryQueue`] whose publishes fail before or after storing, are delayed, stored
/// twice or stored late, and whose consumer side fails before taking a batch.
pub(crate) struct SimQueue {
    inner: MemoryQueue,
    faults: Arc<Injector>,
}

impl SimQueue {
    pub(crate) fn new(inner: MemoryQueue, faults: Arc<Injector>) -> Self {
        Self { inner, faults }
    }

    /// A publish that answers nothing in time while its ticket is on its way (a broker
    /// client that keeps the message and sends it after its caller gave up): the ticket
    /// becomes visible up to eight seconds after the call, whoever waits for the answer,
    /// which comes up to four seconds after the call as an unknown outcome (the issuer
    /// waits two).
    async fn publish_late(&self, ticket: &IssueTicket) -> Error {
        let visible = Duration::from_millis(self.faults.below(8_000));
        let answer = Duration::from_millis(self.faults.below(4_000));
        let (queue, faults, ticket) = (self.inner.clone(), self.faults.clone(), ticket.clone());
        tokio::spawn(async move {
            tokio::time::sleep(visible).await;
            let stored = queue.publish(&ticket).await;
            faults.visible_late(ticket.ticket_id, ticket.epoch);
            faults.note(
                "late visible",
                format!(
                    "user {} rank {} epoch {} after {} ms: {}",
                    ticket.user,
                    ticket.rank,
                    ticket.epoch,
                    visible.as_millis(),
                    if stored.is_ok() { "stored" } else { "refused" }
                ),
            );
        });
        tokio::time::sleep(answer).await;
        Error::PublishUnknown {
            backend: "sim",
            source: "injected: no answer in time; the ticket is on its way".into(),
        }
    }
}

#[async_trait]
impl IssueQueue for SimQueue {
    async fn publish(&self, ticket: &IssueTicket) -> Result<()> {
        let what = format!(
            "publish user {} rank {} epoch {}",
            ticket.user, ticket.rank, ticket.epoch
        );
        self.faults.maybe_delay(&what).await;
        if self
            .faults
            .roll(self.faults.rates().late, "publish late", || what.clone())
        {
            self.faults
                .maybe_forget_after(|| format!("user {}'s late publish", ticket.user));
            return Err(self.publish_late(ticket).await);
        }
        if self
            .faults
            .roll(self.faults.rates().before / 2.0, "publish refused", || {
                what.clone()
            })
        {
            return Err(Error::PublishRefused {
                backend: "sim",
                source: "injected refusal".into(),
            });
        }
        if self
            .faults
            .roll(self.faults.rates().before / 2.0, "publish lost", || {
                what.clone()
            })
        {
            return Err(Error::PublishUnknown {
                backend: "sim",
                source: "injected: not stored, outcome unknown".into(),
            });
        }
        self.inner.publish(ticket).await?;
        if self
            .faults
            .roll(self.faults.rates().duplicate, "publish twice", || {
                what.clone()
            })
        {
            self.inner.publish(ticket).await?;
        }
        if self.faults.after(&what) {
            return Err(Error::PublishUnknown {
                backend: "sim",
                source: "injected: stored, outcome unknown".into(),
            });
        }
        Ok(())
    }

    async fn mark(&self) -> Result<Option<QueueMark>> {
        self.inner.mark().await
    }

    async fn drained(&self, mark: &QueueMark) -> Result<bool> {
        self.inner.drained(mark).await
    }
}

#[async_trait]
impl IssueSource for SimQueue {
    async fn next_batch(&self, max: usize) -> Result<Option<Batch>> {
        self.faults.before("next_batch")?;
        self.inner.next_batch(max).await
    }

    async fn ack(&self, batch: Batch) -> Result<()> {
        self.inner.ack(batch).await
    }

    async fn keep_alive(&self) -> Result<()> {
        self.inner.keep_alive().await
    }

    async fn lag(&self) -> Result<Option<u64>> {
        IssueSource::lag(&self.inner).await
    }
}
