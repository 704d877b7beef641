//! The ledgers a store keeps for the other parts: admissions whose coupon is not stored
//! yet (for the settler and counter rebuilds) and tickets it could not persist (for
//! operators). Implemented by the store itself: see [`CouponStore`](crate::CouponStore).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{CampaignId, HeldSlot, IssueFailure, IssueTicket, Result, SealedEpoch, TicketId};

/// Admissions the store knows of before their coupon exists: tickets recorded as
/// pending (an applicant was told so) and the epoch seals a counter rebuild builds from.
///
/// Kept by the [`CouponStore`](crate::CouponStore) itself: a seal is one step atomic with its
/// [`issue_batch`](crate::CouponStore::issue_batch).
#[async_trait]
pub trait AdmissionLedger: Send + Sync + 'static {
    /// Records the ticket of an admission whose hand-off has no known outcome, before
    /// its applicant hears [`ApplyOutcome::Pending`](crate::ApplyOutcome::Pending): from
    /// then on the admission outlives the counter (every later epoch seal counts it)
    /// and the [`Settler`](crate::Settler) publishes its ticket until the coupon exists.
    /// Idempotent by ticket id; durable when it returns.
    ///
    /// Refuses, atomically with the seals, a ticket the issue rules refuse: of an epoch a
    /// seal superseded and not counted by it ([`Error::Superseded`](crate::Error::Superseded)),
    /// or one with an open failure record of its epoch or a later one
    /// ([`Error::TicketRefused`](crate::Error::TicketRefused): the store refused it for
    /// good, so no `Pending` may promise it; a record of an earlier epoch is of an
    /// earlier admission of the same slot, which a seal superseded).
    async fn record_pending(&self, ticket: &IssueTicket) -> Result<()>;

    /// The last counter epoch sealed for `campaign` ([`AdmissionLedger::seal_epoch`]); 0
    /// before the first. [`Error::UnknownCampaign`](crate::Error::UnknownCampaign) for a
    /// campaign it does not know.
    async fn sealed_epoch(&self, campaign: CampaignId) -> Result<u64>;

    /// Seals counter epoch `after + 1` of `campaign`, provided the last one sealed is
    /// still `after` (read by the rebuild with [`AdmissionLedger::sealed_epoch`] once it
    /// closed the counter): what a counter rebuild builds from. When another rebuild
    /// sealed meanwhile, nothing changes and the answer is a retryable
    /// [`Error::Unavailable`](crate::Error::Unavailable): two rebuilds never both seal
    /// from the same epoch, so the one that admits holds the last seal.
    ///
    /// In one step, atomic with [`issue_batch`](crate::CouponStore::issue_batch),
    /// [`record_pending`](AdmissionLedger::record_pending) and the publishes of a queue kept
    /// in this store ([`IssueQueue::in_store`](crate::IssueQueue::in_store)):
    /// - gathers every slot admitted in the campaign: `counted` (what the counter still
    ///   holds), one per coupon ([`CouponStore::coupon_slots`](crate::CouponStore::coupon_slots)), one per recorded pending
    ///   ticket without a coupon, one per failure record without a coupon (a dead letter
    ///   may be replayed, and a replayed one may still be on its way), and one per
    ///   ticket waiting in a queue kept in this store;
    /// - makes the campaign's epoch one more than its last, and keeps the gathered slots
    ///   without a coupon as that epoch's snapshot: from then on a ticket of an older
    ///   epoch whose (user, slot) is not in it is superseded;
    /// - answers the new epoch and the gathered slots, one per (user, slot).
    ///
    /// Fails with [`Error::UnknownCampaign`](crate::Error::UnknownCampaign) for a campaign
    /// it does not know.
    async fn seal_epoch(
        &self,
        campaign: CampaignId,
        after: u64,
        counted: &[HeldSlot],
    ) -> Result<SealedEpoch>;

    /// The recorded pending tickets of `campaign` whose coupon the store does not hold
    /// (no coupon with that ticket id), oldest admission first.
    async fn pending_tickets(&self, campaign: CampaignId) -> Result<Vec<IssueTicket>>;

    /// Forgets the recorded pending tickets of `campaign` whose coupon the store holds;
    /// returns how many.
    async fn forget_settled_pending(&self, campaign: CampaignId) -> Result<u64>;
}

/// Tickets the store could not persist, kept for operators to read and replay: dead
/// letters (refused for good) and tickets over the cap.
#[async_trait]
pub trait FailureLedger: Send + Sync + 'static {
    /// Records a ticket that could not be persisted (upserting by ticket id, so a
    /// repeated failure bumps `attempts` and `last_seen` and reopens a replayed record).
    /// A record holds the ticket of the latest epoch it saw: one id is one (user,
    /// slot), which a later epoch may admit again after a seal superseded the first
    /// admission, and a replay must publish the admission that still counts.
    /// Must be durable when it returns: the worker acks the ticket afterwards.
    async fn record_failure(&self, failure: &IssueFailure) -> Result<()>;

    /// The recorded failures of `campaign` (of every campaign when `None`), oldest first.
    async fn failures(&self, campaign: Option<CampaignId>) -> Result<Vec<IssueFailure>>;

    /// Marks the failures of `tickets` as replayed at `at` (their tickets were published
    /// again after `at`), except those that failed again after `at`: a replay must not
    /// hide a new failure. Returns how many records it changed.
    async fn mark_replayed(&self, tickets: &[TicketId], at: DateTime<Utc>) -> Result<u64>;
}
