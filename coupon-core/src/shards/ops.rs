//! What a backend supplies for sharded campaigns: atomic steps on one shard each. The
//! steps that span shards (routing, moving stock, deciding "sold out", rebuilding) are
//! written once, in [`ShardedCounter`](super::ShardedCounter), over these.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::{Admission, Campaign, HeldSlot, Release, RestoreReport, Result, UserId};

/// One move of stock between two shards. Every step of a move carries it, so that a
/// step sent twice (its answer lost) changes nothing the second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MoveId(pub Uuid);

impl MoveId {
    /// A fresh, random id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for MoveId {
    fn default() -> Self {
        Self::new()
    }
}

/// The holder of a rebuild's locks on every shard of a campaign: a shard's rebuild
/// steps succeed only under the token that locked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RebuildToken(pub Uuid);

impl RebuildToken {
    /// A fresh, random token.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for RebuildToken {
    fn default() -> Self {
        Self::new()
    }
}

/// Stock taken from a shard (its donor) for another one, not yet marked complete: it
/// may or may not have reached the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenMove {
    /// The move.
    pub id: MoveId,
    /// How many slots of budget it carries.
    pub slots: u64,
    /// The recipient shard.
    pub to: u16,
}

/// One shard as one atomic read sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardView {
    /// The epoch it admits in; `None` while it is not built (lost, or closed by a
    /// rebuild).
    pub epoch: Option<u64>,
    /// The slots it may hold.
    pub budget: u64,
    /// The slots it holds.
    pub admitted: u64,
    /// Grows with every change that can give the shard free budget or open or close
    /// a move (a release, a take, a give, a complete, an open) and never goes back,
    /// even when the shard loses its memory; admissions leave it alone. "Sold out"
    /// rests on it: two reads of a shard with the same version and epoch saw no free
    /// budget appear in between.
    pub version: u64,
    /// Its outgoing moves not yet complete.
    pub open: Vec<OpenMove>,
}

impl ShardView {
    /// A view of a shard.
    pub fn new(
        epoch: Option<u64>,
        budget: u64,
        admitted: u64,
        version: u64,
        open: Vec<OpenMove>,
    ) -> Self {
        Self {
            epoch,
            budget,
            admitted,
            version,
            open,
        }
    }

    /// Budget no slot holds yet.
    pub fn free(&self) -> u64 {
        self.budget.saturating_sub(self.admitted)
    }
}

/// What one shard answers to an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardAdmission {
    /// The final answer: [`Admission::Granted`] or [`Admission::AlreadyApplied`],
    /// never [`Admission::SoldOut`].
    Final(Admission),
    /// The shard's budget is used up; the campaign may still have stock elsewhere.
    Dry,
}

/// The atomic steps on one shard of a sharded campaign. `admit`, `is_admitted` and the
/// steps given an `epoch` answer [`Error::NotReady`](crate::Error::NotReady) on a shard
/// that does not admit (in that epoch). `slots_of` and `held_slots` answer what a shard
/// closed by a rebuild holds, each slot of the epoch it last admitted in, never 0: a
/// ticket made from one must meet the store's epoch fence (a shard that lost its memory
/// holds none). The rebuild steps (`lock` to `open`) work on a shard that does not
/// admit. The steps marked so must raise [`ShardView::version`]: the "sold out"
/// answer is only as sound as that.
#[async_trait]
pub trait ShardOps: Send + Sync + 'static {
    /// The most shards the backend splits a campaign over.
    fn max_shards(&self) -> u16;

    /// One round trip to the backend that reads and changes nothing.
    async fn ready(&self) -> Result<()>;

    /// [`CouponCounter::try_acquire`](crate::CouponCounter::try_acquire) on `shard`,
    /// bounded by the shard's budget instead of the cap ([`ShardAdmission::Dry`] when
    /// it is used up). A new rank is the shard's next of its own (`shard + 1`, then
    /// every `campaign.shards`-th); a released one of the shard is granted first.
    async fn admit(&self, campaign: &Campaign, shard: u16, user: UserId) -> Result<ShardAdmission>;

    /// The shard as one atomic read.
    async fn peek(&self, campaign: &Campaign, shard: u16) -> Result<ShardView>;

    /// Takes slots of free budget from `shard` for `to`: `want`, at most half of what
    /// is free now (rounded up, so the last one moves too), recording an open move
    /// `id` on `shard` in the same atomic step, and answers how many were taken. Sent
    /// again with the same `id`, it answers what the first call took and takes nothing
    /// more, even after the move completed: the record is kept for the epoch, also
    /// when nothing was taken. Raises the version when it takes any.
    async fn take(
        &self,
        campaign: &Campaign,
        shard: u16,
        epoch: u64,
        id: MoveId,
        want: u64,
        to: u16,
    ) -> Result<u64>;

    /// Adds `slots` to `shard`'s budget for move `id`, once: sent again, it changes
    /// nothing. Raises the version.
    async fn give(
        &self,
        campaign: &Campaign,
        shard: u16,
        epoch: u64,
        id: MoveId,
        slots: u64,
    ) -> Result<()>;

    /// Marks move `id`, taken from `shard`, complete (its give is done). Idempotent;
    /// raises the version when the move was open.
    async fn complete(&self, campaign: &Campaign, shard: u16, epoch: u64, id: MoveId)
    -> Result<()>;

    /// [`CouponCounter::release`](crate::CouponCounter::release) on `shard`; a slot
    /// released raises the version.
    async fn release(&self, campaign: &Campaign, shard: u16, held: &HeldSlot) -> Result<Release>;

    /// [`CouponCounter::is_admitted`](crate::CouponCounter::is_admitted) on `shard`.
    async fn is_admitted(&self, campaign: &Campaign, shard: u16, user: UserId) -> Result<bool>;

    /// [`CouponCounter::slots_of`](crate::CouponCounter::slots_of) on `shard`.
    async fn slots_of(
        &self,
        campaign: &Campaign,
        shard: u16,
        user: UserId,
    ) -> Result<Vec<HeldSlot>>;

    /// [`CouponCounter::held_slots`](crate::CouponCounter::held_slots) on `shard`.
    async fn held_slots(&self, campaign: &Campaign, shard: u16) -> Result<Vec<HeldSlot>>;

    /// [`CouponCounter::claim`](crate::CouponCounter::claim) on `shard`.
    async fn claim(
        &self,
        campaign: &Campaign,
        shard: u16,
        candidates: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Result<Vec<HeldSlot>>;

    /// Whatever the backend must check beyond every shard admitting in `epoch` before
    /// [`CouponCounter::confirm_epoch`](crate::CouponCounter::confirm_epoch) says yes
    /// (the memory counter asks its lease). Default: nothing.
    async fn confirm(&self, _campaign: &Campaign, _epoch: u64) -> Result<bool> {
        Ok(true)
    }

    /// Locks `shard` for a rebuild under `token`: `false` if another rebuild holds it.
    async fn lock(&self, campaign: &Campaign, shard: u16, token: RebuildToken) -> Result<bool>;

    /// Gives back the lock `token` holds on `shard`, if it still does.
    async fn unlock(&self, campaign: &Campaign, shard: u16, token: RebuildToken) -> Result<()>;

    /// Gives back the lock at once, without waiting, where the backend can (a rebuild
    /// dropped before it ended): `true` if it did. Default `false`: the lock is given
    /// back by [`ShardOps::unlock`] on a task of its own, or expires.
    fn unlock_now(&self, _campaign: &Campaign, _shard: u16, _token: RebuildToken) -> bool {
        false
    }

    /// Closes `shard` (no step admits or moves stock on it until [`ShardOps::open`])
    /// and answers the slots it holds.
    async fn close(
        &self,
        campaign: &Campaign,
        shard: u16,
        token: RebuildToken,
    ) -> Result<Vec<HeldSlot>>;

    /// Adds the slots of `sealed` the closed `shard` lacks (never changing one it
    /// holds), frees the shard's own ranks below its highest that no slot holds, and
    /// answers how many it added and how many it holds afterwards.
    async fn restore(
        &self,
        campaign: &Campaign,
        shard: u16,
        token: RebuildToken,
        sealed: &[HeldSlot],
    ) -> Result<RestoreReport>;

    /// Opens the closed `shard` in `epoch` with `budget`, forgetting every move of the
    /// epoch before, and raises the version; fails, changing nothing, when `token` no
    /// longer holds the lock (the shard lost its memory again since).
    async fn open(
        &self,
        campaign: &Campaign,
        shard: u16,
        token: RebuildToken,
        epoch: u64,
        budget: u64,
    ) -> Result<()>;
}
