//! The memory queue under the injector: publishes that fail before or after storing,
//! are delayed or stored twice, and a consumer side that fails before taking a batch.

use std::sync::Arc;

use async_trait::async_trait;

use super::faults::Injector;
use coupon_core::memory::MemoryQueue;
use coupon_core::{Batch, Error, IssueQueue, IssueSource, IssueTicket, QueueMark, Result};

/// A [`MemoryQueue`] whose publishes fail before or after storing, are delayed or
/// stored twice, and whose consumer side fails before taking a batch.
pub(crate) struct SimQueue {
    inner: MemoryQueue,
    faults: Arc<Injector>,
}

impl SimQueue {
    pub(crate) fn new(inner: MemoryQueue, faults: Arc<Injector>) -> Self {
        Self { inner, faults }
    }
}

#[async_trait]
impl IssueQueue for SimQueue {
    async fn publish(&self, ticket: &IssueTicket) -> Result<()> {
        let what = format!("publish user {} rank {}", ticket.user, ticket.rank);
        self.faults.maybe_delay(&what).await;
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
