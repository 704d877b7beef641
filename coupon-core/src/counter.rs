//! Admission: the fast gate that hands out at most `cap` slots.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{Admission, Campaign, CampaignId, Result, UserId};

/// The admission counter of every campaign.
///
/// Implementations must be exact under any concurrency, across every process that
/// shares the backend: the count never passes `campaign.cap`, and a user never holds
/// more than `campaign.per_user_limit` slots.
///
/// Besides the count, a counter remembers each slot it granted ([`HeldSlot`]: user,
/// slot, rank, time), so that the [`Settler`](crate::Settler) can publish the ticket of
/// any admission the store does not hold yet. A slot is given back only by
/// [`release`](CouponCounter::release), and only while the settler has not claimed it.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait CouponCounter: Send + Sync + 'static {
    /// Atomically admits `user` to `campaign`.
    ///
    /// - the user already holds `per_user_limit` slots: [`Admission::AlreadyApplied`];
    /// - the count is at `cap`: [`Admission::SoldOut`];
    /// - otherwise the user takes their lowest free slot, recorded with its rank and the
    ///   current time, and the count is incremented: [`Admission::Granted`] with the new
    ///   count as the rank.
    ///
    /// The check and the update are one atomic step; nothing changes unless granted.
    /// A failure that may have happened after the update (a timeout) must be
    /// [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown): the slot may be held.
    async fn try_acquire(&self, campaign: &Campaign, user: UserId) -> Result<Admission>;

    /// Gives back `held` (matched by user, slot and rank) after its ticket was
    /// definitely not stored.
    ///
    /// Atomic: decrements the count only if that very slot is still held, so a double
    /// release frees one slot, not two, and never a later admission of the same slot.
    /// A slot the settler has claimed is kept ([`Release::Settling`]): its ticket may
    /// have been published by then.
    async fn release(&self, campaign: CampaignId, held: &HeldSlot) -> Result<Release>;

    /// Whether the counter answers now (for readiness probes): a round trip to its
    /// backend that reads and changes nothing.
    async fn ready(&self) -> Result<()>;

    /// Whether `user` holds a slot in `campaign` (admitted, not released).
    async fn is_admitted(&self, campaign: CampaignId, user: UserId) -> Result<bool>;

    /// The current admitted count of `campaign` (0 for one never seen).
    async fn status(&self, campaign: CampaignId) -> Result<CounterStatus>;

    /// Every slot held in `campaign`, in no particular order: what the settler compares
    /// with the store.
    async fn held_slots(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>>;

    /// The slots `user` holds in `campaign`, by slot: what an apply answered
    /// "already applied" records as pending while their coupons are not stored yet.
    async fn slots_of(&self, campaign: &Campaign, user: UserId) -> Result<Vec<HeldSlot>>;

    /// Claims slots for settlement: atomically per slot, marks each one of `slots` that
    /// is still held with the same rank and was not claimed in the last
    /// `reclaim_after`, and returns those. The caller then publishes their tickets.
    ///
    /// A claimed slot is never released, because its ticket may exist from then on;
    /// and two settlers cannot both claim a slot within `reclaim_after`, so many
    /// instances may settle at once without flooding the queue.
    async fn claim(
        &self,
        campaign: CampaignId,
        slots: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Result<Vec<HeldSlot>>;

    /// Rebuilds the counter of `campaign` from the store's truth after the counter lost
    /// data: every slot of `held` ([`CouponStore::coupon_slots`](crate::CouponStore::coupon_slots):
    /// one per coupon, with its user, slot and rank) that the counter lacks is recorded
    /// as admitted.
    ///
    /// Must never lower the count and must be safe while applications are arriving: a
    /// slot admitted since the loss stays as it is, and the count ends as the number of
    /// slots held. Where the counter reuses released ranks, the ranks below the highest
    /// one recorded that no slot holds become free, so new admissions take neither a
    /// stored rank nor one above the cap.
    async fn restore(&self, campaign: &Campaign, held: &[HeldSlot]) -> Result<RestoreReport>;

    /// Builds the counter of `campaign` from the store's slots and marks it ready on
    /// this backend: the fencing step behind [`Error::NotReady`](crate::Error::NotReady).
    ///
    /// A counter admits only in a campaign it built (at creation, with no slots, or
    /// after a loss, once the queue has drained what was published before it), so that
    /// a counter that lost its memory can never grant a slot twice. Like
    /// [`restore`](CouponCounter::restore) it only adds the slots it lacks; it then
    /// recounts the slots and the free ranks and writes the marker. One process at a
    /// time rebuilds a campaign ([`Rebuild::Busy`] for the others); a counter that is
    /// ready already is left alone ([`Rebuild::AlreadyReady`]).
    async fn rebuild(&self, campaign: &Campaign, held: &[HeldSlot]) -> Result<Rebuild>;
}

/// What [`CouponCounter::rebuild`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebuild {
    /// The counter was built and admits again.
    Built(RestoreReport),
    /// The counter was ready: nothing changed.
    AlreadyReady,
    /// Another process is rebuilding it.
    Busy,
}

/// One slot a counter granted: whose, which of theirs, at which rank and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeldSlot {
    /// The holder.
    pub user: UserId,
    /// Which of the holder's slots (1..=per_user_limit).
    pub slot: u32,
    /// The rank it was granted at (0 if rebuilt from the store).
    pub rank: u64,
    /// When it was granted, for counters that keep it (the memory counter does; the
    /// Redis counter does not, to keep each admission one small integer). The settler
    /// times slots without it from when it first saw them.
    pub admitted_at: Option<DateTime<Utc>>,
}

/// What [`CouponCounter::release`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The slot was held and is free again.
    Released,
    /// No such slot is held (released before, or the counter lost it): nothing changed.
    NotHeld,
    /// The settler claimed the slot and may have published its ticket: kept.
    Settling,
}

/// A counter's view of one campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CounterStatus {
    /// Slots currently taken.
    pub admitted: u64,
}

impl CounterStatus {
    /// A status with `admitted` slots taken.
    pub fn new(admitted: u64) -> Self {
        Self { admitted }
    }
}

/// What [`CouponCounter::restore`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreReport {
    /// Holder slots that were missing and were recorded.
    pub added: u64,
    /// The admitted count afterwards.
    pub admitted: u64,
}

impl RestoreReport {
    /// A report of `added` slots recorded, `admitted` in total afterwards.
    pub fn new(added: u64, admitted: u64) -> Self {
        Self { added, admitted }
    }
}
