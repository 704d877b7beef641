//! Admission: the fast gate that hands out at most `cap` slots.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{Admission, Campaign, Result, UserId};

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
    /// A counter that splits campaigns over shards ([`CouponCounter::max_shards`] above
    /// 1) answers for a campaign of several as [`ShardedCounter`](crate::shards::ShardedCounter)
    /// describes: the same promises, ranks of the user's home shard.
    ///
    /// The check and the update are one atomic step; nothing changes unless granted.
    /// A failure that may have happened after the update (a timeout) must be
    /// [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown): the slot may be held.
    async fn try_acquire(&self, campaign: &Campaign, user: UserId) -> Result<Admission>;

    /// Gives back `held` (matched by user, slot, rank and epoch, where it has one) after
    /// its ticket was definitely not stored.
    ///
    /// Atomic: decrements the count only if that very slot is still held, so a double
    /// release frees one slot, not two, and never a later admission of the same slot.
    /// A slot the settler has claimed is kept ([`Release::Settling`]): its ticket may
    /// have been published by then.
    async fn release(&self, campaign: &Campaign, held: &HeldSlot) -> Result<Release>;

    /// Whether the counter answers now (for readiness probes): a round trip to its
    /// backend that reads and changes nothing.
    async fn ready(&self) -> Result<()>;

    /// Whether `user` holds a slot in `campaign` (admitted, not released). A counter
    /// shared between processes that lost its memory cannot tell, and answers
    /// [`Error::NotReady`](crate::Error::NotReady) until it is rebuilt.
    async fn is_admitted(&self, campaign: &Campaign, user: UserId) -> Result<bool>;

    /// The current admitted count of `campaign` (0 for one never seen) and the epoch the
    /// counter admits it in (`None` while it is not built: never built, or it lost its
    /// memory and waits for a rebuild).
    async fn status(&self, campaign: &Campaign) -> Result<CounterStatus>;

    /// Every slot held in `campaign`, in no particular order, each of the counter's
    /// current epoch: what the settler compares with the store.
    async fn held_slots(&self, campaign: &Campaign) -> Result<Vec<HeldSlot>>;

    /// The slots `user` holds in `campaign`, by slot, each of the counter's current
    /// epoch: what an apply answered "already applied" records as pending while their
    /// coupons are not stored yet.
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
        campaign: &Campaign,
        slots: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Result<Vec<HeldSlot>>;

    /// Whether the counter still admits `campaign` in `epoch`, asked after a ticket of
    /// that epoch was acknowledged by a queue that does not check epochs itself
    /// ([`IssueQueue::in_store`](crate::IssueQueue::in_store) is false).
    ///
    /// `true` must mean: no rebuild of the campaign has closed the counter since the
    /// ticket's admission and before this answer, so any later rebuild begins after the
    /// ticket was visible in the queue and counts it. Anything less certain is `false`
    /// (the issuer then records the ticket as pending in the store, which refuses it
    /// when a rebuild superseded it). A counter shared between processes answers from
    /// its backend, not from a cache.
    async fn confirm_epoch(&self, campaign: &Campaign, epoch: u64) -> Result<bool>;

    /// Rebuilds the counter of `campaign` in a new epoch: the fencing step behind
    /// [`Error::NotReady`](crate::Error::NotReady).
    ///
    /// A counter admits only in a campaign it built (at creation, with no slots, or
    /// after it lost its memory), so that it never grants a slot twice. The rebuild, one
    /// process at a time per campaign ([`Rebuild::Busy`] for the others):
    /// 1. closes the campaign: no admission until step 3, and a counter that is ready is
    ///    left alone ([`Rebuild::AlreadyReady`]);
    /// 2. hands the slots it still holds to `seal` ([`SealEpoch::seal`]), which seals
    ///    a new epoch in the store and answers every slot the campaign holds;
    /// 3. records those slots (keeping any it holds), recounts them, frees every rank
    ///    below the highest held that no slot holds, and admits again in the new epoch,
    ///    unless its memory was lost again since step 1 (a different server, the
    ///    rebuild's lock taken over): then it changes nothing and fails with a retryable
    ///    error, and the next rebuild starts over.
    async fn rebuild(&self, campaign: &Campaign, seal: Arc<dyn SealEpoch>) -> Result<Rebuild>;

    /// The most shards ([`Campaign::shards`]) this counter splits one campaign's cap
    /// over; campaigns asking for more are refused at creation
    /// ([`Error::InvalidCampaign`](crate::Error::InvalidCampaign) on `shards`). The
    /// default, 1, is every counter that keeps a campaign in one place.
    fn max_shards(&self) -> u16 {
        1
    }
}

/// The step of a counter rebuild that decides what the rebuilt counter holds: it seals a
/// new epoch of the campaign in the store ([`AdmissionLedger::seal_epoch`](crate::AdmissionLedger::seal_epoch)),
/// after whatever wait the hand-off needs, and answers the epoch with every slot the
/// campaign holds.
///
/// [`SealedEpoch`] itself is one: a fixed answer, for tests and tools.
#[async_trait]
pub trait SealEpoch: Send + Sync + 'static {
    /// Called once the counter admits no one in the campaign, with the slots it still
    /// holds (`counted`): returns the new epoch and every slot the counter must hold in
    /// it, `counted` among them.
    async fn seal(&self, counted: Vec<HeldSlot>) -> Result<SealedEpoch>;
}

/// A sealed counter epoch: its number and every slot the campaign holds in it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SealedEpoch {
    /// The new epoch (greater than every earlier one of the campaign).
    pub epoch: u64,
    /// Every slot admitted in the campaign, one per (user, slot).
    pub slots: Vec<HeldSlot>,
}

impl SealedEpoch {
    /// Epoch `epoch` holding `slots`.
    pub fn new(epoch: u64, slots: Vec<HeldSlot>) -> Self {
        Self { epoch, slots }
    }
}

/// A fixed answer: this epoch, with these slots and those the counter still held.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
/// use std::sync::Arc;
/// use coupon_core::memory::MemoryCounter;
/// use coupon_core::{Campaign, CampaignId, CouponCounter, NewCampaign, Rebuild, SealedEpoch};
/// let counter = MemoryCounter::new();
/// let campaign = Campaign::from_new(CampaignId(1), NewCampaign::new("drop", 10));
/// let built = counter.rebuild(&campaign, Arc::new(SealedEpoch::new(1, vec![]))).await?;
/// assert!(matches!(built, Rebuild::Built(_)));
/// assert_eq!(counter.status(&campaign).await?.epoch, Some(1));
/// # Ok(()) }
/// ```
#[async_trait]
impl SealEpoch for SealedEpoch {
    async fn seal(&self, counted: Vec<HeldSlot>) -> Result<SealedEpoch> {
        let mut slots = self.slots.clone();
        let known: std::collections::HashSet<(UserId, u32)> =
            slots.iter().map(|slot| (slot.user, slot.slot)).collect();
        slots.extend(
            counted
                .into_iter()
                .filter(|slot| !known.contains(&(slot.user, slot.slot))),
        );
        Ok(SealedEpoch::new(self.epoch, slots))
    }
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
    /// The counter epoch the slot is held in, which its ticket carries; 0 where no epoch
    /// applies (a slot read from the store).
    pub epoch: u64,
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
    /// The epoch it admits in; `None` while it is not built (it answers
    /// [`Error::NotReady`](crate::Error::NotReady) until rebuilt).
    pub epoch: Option<u64>,
}

impl CounterStatus {
    /// A status with `admitted` slots taken, admitting in `epoch` (`None`: not built).
    pub fn new(admitted: u64, epoch: Option<u64>) -> Self {
        Self { admitted, epoch }
    }

    /// Whether the counter admits (it is built).
    pub fn is_ready(&self) -> bool {
        self.epoch.is_some()
    }
}

/// What a rebuild ([`CouponCounter::rebuild`]) changed.
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
