//! [`ShardedCounter`]: a [`CouponCounter`] for sharded campaigns over any backend's
//! [`ShardOps`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::ops::ShardOps;
use super::{admit, rebuild, shards_of};
use crate::{
    Admission, Campaign, CounterStatus, CouponCounter, HeldSlot, Rebuild, Release, Result,
    SealEpoch, UserId, home_shard,
};

/// The counter of sharded campaigns ([`Campaign::shards`] above 1): each user is
/// routed to their home shard ([`home_shard`]), where their per-user check and slots
/// live; a dry home shard takes stock from the others; "sold out" means every shard
/// was empty with no stock in transit; a rebuild rebuilds every shard in one epoch.
/// A backend supplies the steps on one shard ([`ShardOps`]) and hands its sharded
/// campaigns to this counter.
///
/// Ranks: shard `s` grants `s + 1`, then every `shards`-th after, so ranks stay unique
/// per campaign; `ceil(rank / shards)` is the applicant's place on their shard, and
/// across shards ranks follow arrival only roughly. A full campaign's ranks need not be
/// `1..=cap`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
/// use std::sync::Arc;
/// use coupon_core::memory::MemoryCounter;
/// use coupon_core::{Admission, Campaign, CampaignId, CouponCounter, NewCampaign, SealedEpoch, UserId};
/// let counter = MemoryCounter::new();
/// let campaign = Campaign::from_new(CampaignId(1), NewCampaign::new("hot", 3).shards(3));
/// counter.rebuild(&campaign, Arc::new(SealedEpoch::new(1, vec![]))).await?;
/// let mut granted = 0;
/// for user in 1..=10 {
///     if let Admission::Granted { .. } = counter.try_acquire(&campaign, UserId(user)).await? {
///         granted += 1;
///     }
/// }
/// assert_eq!(granted, 3, "the cap, whichever shards the users landed on");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ShardedCounter<O> {
    ops: Arc<O>,
}

impl<O: ShardOps> ShardedCounter<O> {
    /// The sharded counter over `ops`.
    pub fn new(ops: Arc<O>) -> Self {
        Self { ops }
    }

    /// The backend's steps.
    pub fn ops(&self) -> &Arc<O> {
        &self.ops
    }
}

#[async_trait]
impl<O: ShardOps> CouponCounter for ShardedCounter<O> {
    async fn try_acquire(&self, campaign: &Campaign, user: UserId) -> Result<Admission> {
        admit::try_acquire(self.ops.as_ref(), campaign, user).await
    }

    async fn release(&self, campaign: &Campaign, held: &HeldSlot) -> Result<Release> {
        let home = home_shard(held.user, campaign.shards);
        self.ops.release(campaign, home, held).await
    }

    async fn ready(&self) -> Result<()> {
        self.ops.ready().await
    }

    async fn is_admitted(&self, campaign: &Campaign, user: UserId) -> Result<bool> {
        let home = home_shard(user, campaign.shards);
        self.ops.is_admitted(campaign, home, user).await
    }

    /// The slots every shard holds; an epoch only when every shard admits in the
    /// same one.
    async fn status(&self, campaign: &Campaign) -> Result<CounterStatus> {
        let (mut admitted, mut epochs) = (0, Vec::new());
        for shard in 0..shards_of(campaign) {
            let view = self.ops.peek(campaign, shard).await?;
            admitted += view.admitted;
            epochs.push(view.epoch);
        }
        let epoch = epochs[0].filter(|_| epochs.iter().all(|epoch| *epoch == epochs[0]));
        Ok(CounterStatus::new(admitted, epoch))
    }

    async fn held_slots(&self, campaign: &Campaign) -> Result<Vec<HeldSlot>> {
        let mut held = Vec::new();
        for shard in 0..shards_of(campaign) {
            held.extend(self.ops.held_slots(campaign, shard).await?);
        }
        Ok(held)
    }

    async fn slots_of(&self, campaign: &Campaign, user: UserId) -> Result<Vec<HeldSlot>> {
        let home = home_shard(user, campaign.shards);
        self.ops.slots_of(campaign, home, user).await
    }

    async fn claim(
        &self,
        campaign: &Campaign,
        candidates: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Result<Vec<HeldSlot>> {
        let mut claimed = Vec::new();
        for shard in 0..shards_of(campaign) {
            let routed: Vec<HeldSlot> = candidates
                .iter()
                .filter(|held| home_shard(held.user, campaign.shards) == shard)
                .copied()
                .collect();
            if !routed.is_empty() {
                claimed.extend(
                    self.ops
                        .claim(campaign, shard, &routed, reclaim_after)
                        .await?,
                );
            }
        }
        Ok(claimed)
    }

    /// Yes only while every shard admits in `epoch` (and the backend's own check
    /// agrees): a rebuild closes every shard before its seal takes the queue's mark.
    async fn confirm_epoch(&self, campaign: &Campaign, epoch: u64) -> Result<bool> {
        for shard in 0..shards_of(campaign) {
            if self.ops.peek(campaign, shard).await?.epoch != Some(epoch) {
                return Ok(false);
            }
        }
        self.ops.confirm(campaign, epoch).await
    }

    async fn rebuild(&self, campaign: &Campaign, seal: Arc<dyn SealEpoch>) -> Result<Rebuild> {
        rebuild::rebuild(&self.ops, campaign, seal).await
    }

    fn max_shards(&self) -> u16 {
        self.ops.max_shards()
    }
}
