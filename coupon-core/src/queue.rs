//! Hand-off: the durable path from admission to persistence.

use std::any::Any;
use std::fmt;

use async_trait::async_trait;

use crate::{IssueTicket, Result};

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

    /// Whether the queue lives in the store's own database and takes part in its epoch
    /// seals ([`AdmissionLedger::seal_epoch`](crate::AdmissionLedger::seal_epoch)): the seal
    /// counts the tickets waiting in it, and a publish of a ticket whose epoch a seal
    /// superseded (and whose slot that seal did not count) is refused
    /// ([`Error::PublishRefused`](crate::Error::PublishRefused)), atomically with the
    /// seal. Then an acknowledged publish proves the ticket is counted by every later
    /// rebuild, and a rebuild need not wait for the queue to drain.
    ///
    /// `false` by default: a rebuild waits for the queue to drain past its mark
    /// ([`IssueQueue::mark`]), and the issuer asks the counter to confirm the epoch
    /// after each acknowledged publish ([`CouponCounter::confirm_epoch`](crate::CouponCounter::confirm_epoch)).
    fn in_store(&self) -> bool {
        false
    }

    /// Whether the queue can take tickets now (for readiness probes); `Ok` by default.
    async fn ready(&self) -> Result<()> {
        Ok(())
    }

    /// The queue's position now: every ticket published before this call lies before
    /// it. `None` when the queue cannot tell (the default); a counter rebuild then
    /// waits a fixed time instead ([`IssuerConfig::drain_fallback`](crate::IssuerConfig)).
    /// Not asked of a queue [`in_store`](IssueQueue::in_store).
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

    /// The tickets published before `mark` that the consumers have not acked yet, read
    /// from the queue itself (without consuming them), so that a counter rebuild counts
    /// them instead of waiting for the consumers to drain the queue past `mark`, which
    /// takes as long as the slowest of them (a rebalance, a store outage). `None` (the
    /// default) when the queue cannot read them: the rebuild waits for
    /// [`drained`](IssueQueue::drained).
    async fn unacked(&self, mark: &QueueMark) -> Result<Option<Vec<IssueTicket>>> {
        let _ = mark;
        Ok(None)
    }
}

/// Publishes `ticket` on `queue` by `deadline`; a queue that has not answered by then
/// is an unknown outcome (`who` names the caller), so no caller waits on a queue for
/// ever.
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
