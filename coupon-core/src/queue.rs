//! Hand-off: the durable path from admission to persistence.

use std::any::Any;
use std::fmt;

use async_trait::async_trait;

use crate::{CampaignId, HeldSlot, IssueTicket, Result};

/// The producing side of the hand-off, called on the apply path.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait IssueQueue: Send + Sync + 'static {
    /// Hands `ticket` off; returns only once the hand-off is durable (the broker
    /// acknowledged it, the channel holds it).
    ///
    /// Publishing the same ticket twice must be harmless: the settler publishes a ticket
    /// again when its coupon is late, and the store keeps one coupon per ticket id.
    ///
    /// Failures must be classified, because the issuer's next step depends on it:
    /// - [`Error::PublishRefused`](crate::Error::PublishRefused): the ticket was
    ///   definitely not stored; the issuer releases the slot.
    /// - [`Error::PublishUnknown`](crate::Error::PublishUnknown): the ticket may have
    ///   been stored (a timeout); the issuer keeps the slot and the settler rolls it
    ///   forward.
    ///
    /// The issuer treats any other error like `PublishUnknown`, the side that never
    /// over-issues.
    async fn publish(&self, ticket: &IssueTicket) -> Result<()>;

    /// Whether the queue can take tickets now (for readiness probes); `Ok` by default.
    async fn ready(&self) -> Result<()> {
        Ok(())
    }

    /// The queue's position now: every ticket published before this call lies before
    /// it. `None` when the queue cannot tell (the default); a counter rebuild then
    /// waits a fixed time instead ([`IssuerConfig::drain_fallback`](crate::IssuerConfig)).
    async fn mark(&self) -> Result<Option<QueueMark>> {
        Ok(None)
    }

    /// Whether every ticket before `mark` (from [`IssueQueue::mark`]) has been
    /// consumed and acked: persisted or dead-lettered. A counter that lost its memory
    /// is rebuilt from the store only once this holds, so that no admission still on
    /// its way is forgotten. `true` by default, as no default mark exists.
    async fn drained(&self, mark: &QueueMark) -> Result<bool> {
        let _ = mark;
        Ok(true)
    }

    /// The slots of `campaign` whose tickets wait in the queue, for rebuilding an
    /// in-memory counter at start-up together with the store's coupons
    /// ([`CouponService::restore_counter`](crate::CouponService::restore_counter)).
    /// `None` when the queue cannot list what it holds (the default).
    async fn queued_slots(&self, campaign: CampaignId) -> Result<Option<Vec<HeldSlot>>> {
        let _ = campaign;
        Ok(None)
    }
}

/// Publishes `ticket` on `queue` by `deadline`; a queue that has not answered by then
/// is an unknown outcome (`who` names the caller). Every publish of an admission is
/// bounded this way, so that a counter rebuild's grace period can wait all of them out.
pub(crate) async fn publish_by(
    queue: &dyn IssueQueue,
    ticket: &IssueTicket,
    deadline: tokio::time::Instant,
    who: &'static str,
) -> Result<()> {
    match tokio::time::timeout_at(deadline, queue.publish(ticket)).await {
        Ok(result) => result,
        Err(_) => Err(crate::Error::PublishUnknown {
            backend: who,
            source: "no answer from the queue by the publish deadline".into(),
        }),
    }
}

/// A position in a queue (per partition, where it has partitions), from
/// [`IssueQueue::mark`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMark {
    /// The position in each partition (one entry for a queue without partitions).
    pub positions: Vec<i64>,
}

/// The consuming side of the hand-off, driven by the [`IssueWorker`](crate::IssueWorker).
///
/// Delivery is at least once: a batch that is not acked is delivered again (to this
/// consumer or another of its group), which the idempotent store turns into exactly once.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait IssueSource: Send + Sync + 'static {
    /// Waits for the next batch of at most `max` tickets; `None` once the source is
    /// closed and drained.
    ///
    /// Must be cancel-safe: dropping the future before it completes loses no ticket.
    async fn next_batch(&self, max: usize) -> Result<Option<Batch>>;

    /// Marks every ticket of `batch` as done (commits its offsets). Call only after the
    /// store has persisted (or dead-lettered) all of them.
    async fn ack(&self, batch: Batch) -> Result<()>;

    /// Parks a ticket the store refused for good where the queue's own tooling sees it
    /// (a dead-letter topic), besides the store's failure record, which is the one
    /// operators list and replay. Called before the ticket is acked, so a mirror must be
    /// durable when it returns. Does nothing by default.
    async fn dead_letter(&self, ticket: &IssueTicket, reason: &str) -> Result<()> {
        let _ = (ticket, reason);
        Ok(())
    }

    /// Called about once a second while the worker holds a batch it cannot persist yet
    /// (the store is unavailable), so that a source whose group membership depends on
    /// being polled keeps it, without taking new tickets meanwhile. Does nothing by
    /// default.
    async fn keep_alive(&self) -> Result<()> {
        Ok(())
    }

    /// What waits for this consumer (its share of the queue lag), when the source can
    /// tell: tickets, or messages where a message may hold several (Kafka's records
    /// hold groups); `None` by default.
    async fn lag(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// Tickets delivered together, with the receipt the source needs to ack them.
pub struct Batch {
    /// The tickets, in delivery order.
    pub tickets: Vec<IssueTicket>,
    receipt: Box<dyn Any + Send + Sync>,
}

impl Batch {
    /// A batch of `tickets` with a source-specific `receipt` (offsets, a delivery tag).
    ///
    /// ```
    /// use coupon_core::{Batch, CampaignId, IssueTicket, UserId};
    /// let batch = Batch::new(vec![IssueTicket::new(CampaignId(1), UserId(2), 1, 1)], 17_u64);
    /// assert_eq!(batch.len(), 1);
    /// assert_eq!(batch.into_receipt::<u64>().ok(), Some(17));
    /// ```
    pub fn new(tickets: Vec<IssueTicket>, receipt: impl Any + Send + Sync) -> Self {
        Self {
            tickets,
            receipt: Box::new(receipt),
        }
    }

    /// Number of tickets.
    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    /// Whether the batch holds no ticket.
    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }

    /// Takes the receipt back out as the type the source put in; the batch itself
    /// when the type does not match.
    pub fn into_receipt<R: Any>(self) -> std::result::Result<R, Self> {
        match self.receipt.downcast::<R>() {
            Ok(receipt) => Ok(*receipt),
            Err(receipt) => Err(Self {
                tickets: self.tickets,
                receipt,
            }),
        }
    }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("tickets", &self.tickets.len())
            .finish_non_exhaustive()
    }
}
