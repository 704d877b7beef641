//! The shards of sharded campaigns in process memory: each one [`Slots`] with its
//! budget, version and moves, behind a mutex of its own, as a shared backend keeps
//! each shard behind one key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use self::shard::{Shard, not_ready};
use super::{Standing, lock};
use crate::shards::{MoveId, OpenMove, RebuildToken, ShardAdmission, ShardOps, ShardView};
use crate::{
    Admission, Campaign, CampaignId, HeldSlot, NewCampaign, Release, RestoreReport, Result, UserId,
};

/// The shards of sharded campaigns in process memory: the [`ShardOps`] behind
/// [`MemoryCounter`](super::MemoryCounter)'s sharded campaigns, and on its own a
/// backend to wrap (a fault injector, as the seeded simulation does) under a
/// [`ShardedCounter`](crate::shards::ShardedCounter).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
/// use std::sync::Arc;
/// use coupon_core::memory::MemoryShards;
/// use coupon_core::shards::ShardedCounter;
/// use coupon_core::{Campaign, CampaignId, CouponCounter, NewCampaign, SealedEpoch};
/// let shards = Arc::new(MemoryShards::new());
/// let counter = ShardedCounter::new(shards.clone());
/// let campaign = Campaign::from_new(CampaignId(1), NewCampaign::new("hot", 30).shards(3));
/// counter.rebuild(&campaign, Arc::new(SealedEpoch::new(1, vec![]))).await?;
/// shards.forget_shard(&campaign, 2); // as a node restarted empty
/// assert_eq!(counter.status(&campaign).await?.epoch, None, "rebuilt before it admits");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemoryShards {
    campaigns: RwLock<HashMap<CampaignId, Arc<[Mutex<Shard>]>>>,
    standing: Arc<Standing>,
}

impl Default for MemoryShards {
    fn default() -> Self {
        Self::with_standing(Arc::default())
    }
}

impl MemoryShards {
    /// Shards of their own, never suspended.
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn with_standing(standing: Arc<Standing>) -> Self {
        Self {
            campaigns: RwLock::default(),
            standing,
        }
    }

    /// Loses everything `shard` of `campaign` holds, a rebuild's lock on it included,
    /// as a shared backend's node restarted empty: the shard answers
    /// [`Error::NotReady`] until a rebuild of the campaign, and a rebuild under way
    /// fails at its next step on it.
    pub fn forget_shard(&self, campaign: &Campaign, shard: u16) {
        let shards = self.shards(campaign);
        let mut lost = lock(&shards[usize::from(shard)]);
        *lost = Shard {
            version: lost.version + 1,
            ..Shard::new(shards.len() as u64, u64::from(shard))
        };
    }

    /// Forgets every shard (the counter was suspended), keeping rebuilds' locks so that
    /// a rebuild under way ends, and fails, before another begins, and the versions, so
    /// that two reads of a shard around the loss never look alike.
    pub(super) fn forget(&self) {
        let campaigns = self.campaigns.read().unwrap_or_else(|e| e.into_inner());
        for shards in campaigns.values() {
            let count = shards.len() as u64;
            for (index, shard) in shards.iter().enumerate() {
                let mut shard = lock(shard);
                *shard = Shard {
                    lock: shard.lock,
                    version: shard.version + 1,
                    ..Shard::new(count, index as u64)
                };
            }
        }
    }

    fn shards(&self, campaign: &Campaign) -> Arc<[Mutex<Shard>]> {
        if let Some(shards) = self
            .campaigns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&campaign.id)
        {
            return shards.clone();
        }
        let mut campaigns = self.campaigns.write().unwrap_or_else(|e| e.into_inner());
        let count = u64::from(campaign.shards);
        campaigns
            .entry(campaign.id)
            .or_insert_with(|| {
                (0..count)
                    .map(|index| Mutex::new(Shard::new(count, index)))
                    .collect()
            })
            .clone()
    }

    /// Runs `step` on `shard` of `campaign` under its lock.
    fn with<T>(&self, campaign: &Campaign, shard: u16, step: impl FnOnce(&mut Shard) -> T) -> T {
        let shards = self.shards(campaign);
        let mut shard = lock(&shards[usize::from(shard)]);
        step(&mut shard)
    }
}

#[async_trait]
impl ShardOps for MemoryShards {
    fn max_shards(&self) -> u16 {
        NewCampaign::MAX_SHARDS
    }

    async fn ready(&self) -> Result<()> {
        Ok(())
    }

    async fn admit(&self, campaign: &Campaign, shard: u16, user: UserId) -> Result<ShardAdmission> {
        self.with(campaign, shard, |shard| {
            let epoch = shard.slots.epoch.ok_or_else(|| not_ready(campaign))?;
            Ok(
                match shard
                    .slots
                    .admit(user, campaign.per_user_limit, shard.budget, epoch)
                {
                    Admission::SoldOut => ShardAdmission::Dry,
                    answer => ShardAdmission::Final(answer),
                },
            )
        })
    }

    async fn peek(&self, campaign: &Campaign, shard: u16) -> Result<ShardView> {
        Ok(self.with(campaign, shard, |shard| {
            let open = shard.open.values().copied().collect();
            ShardView::new(
                shard.slots.epoch,
                shard.budget,
                shard.slots.admitted,
                shard.version,
                open,
            )
        }))
    }

    async fn take(
        &self,
        campaign: &Campaign,
        shard: u16,
        epoch: u64,
        id: MoveId,
        want: u64,
        to: u16,
    ) -> Result<u64> {
        self.with(campaign, shard, |shard| {
            shard.admits_in(campaign, epoch)?;
            if let Some(open) = shard.open.get(&id) {
                return Ok(open.slots);
            }
            if let Some(&slots) = shard.done.get(&id) {
                return Ok(slots);
            }
            let free = shard.budget.saturating_sub(shard.slots.admitted);
            let slots = want.min(free.div_ceil(2));
            if slots == 0 {
                // Kept all the same: a late copy of this take must not take anything.
                shard.done.insert(id, 0);
                return Ok(0);
            }
            shard.budget -= slots;
            shard.version += 1;
            shard.open.insert(id, OpenMove { id, slots, to });
            Ok(slots)
        })
    }

    async fn give(
        &self,
        campaign: &Campaign,
        shard: u16,
        epoch: u64,
        id: MoveId,
        slots: u64,
    ) -> Result<()> {
        self.with(campaign, shard, |shard| {
            shard.admits_in(campaign, epoch)?;
            if shard.given.insert(id) {
                shard.budget += slots;
                shard.version += 1;
            }
            Ok(())
        })
    }

    async fn complete(
        &self,
        campaign: &Campaign,
        shard: u16,
        epoch: u64,
        id: MoveId,
    ) -> Result<()> {
        self.with(campaign, shard, |shard| {
            shard.admits_in(campaign, epoch)?;
            if let Some(open) = shard.open.remove(&id) {
                shard.done.insert(id, open.slots);
                shard.version += 1;
            }
            Ok(())
        })
    }

    async fn release(&self, campaign: &Campaign, shard: u16, held: &HeldSlot) -> Result<Release> {
        Ok(self.with(campaign, shard, |shard| {
            let released = shard.slots.release(held);
            if released == Release::Released {
                shard.version += 1;
            }
            released
        }))
    }

    async fn is_admitted(&self, campaign: &Campaign, shard: u16, user: UserId) -> Result<bool> {
        self.with(campaign, shard, |shard| {
            shard.slots.epoch.ok_or_else(|| not_ready(campaign))?;
            Ok(shard.slots.holders.contains_key(&user))
        })
    }

    async fn slots_of(
        &self,
        campaign: &Campaign,
        shard: u16,
        user: UserId,
    ) -> Result<Vec<HeldSlot>> {
        Ok(self.with(campaign, shard, |shard| shard.slots.slots_of(user)))
    }

    async fn held_slots(&self, campaign: &Campaign, shard: u16) -> Result<Vec<HeldSlot>> {
        Ok(self.with(campaign, shard, |shard| shard.slots.held_slots()))
    }

    async fn claim(
        &self,
        campaign: &Campaign,
        shard: u16,
        candidates: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Result<Vec<HeldSlot>> {
        Ok(self.with(campaign, shard, |shard| {
            shard.slots.claim(candidates, reclaim_after)
        }))
    }

    async fn confirm(&self, _campaign: &Campaign, _epoch: u64) -> Result<bool> {
        Ok(self.standing.confirms().await)
    }

    async fn lock(&self, campaign: &Campaign, shard: u16, token: RebuildToken) -> Result<bool> {
        if self.standing.is_suspended() {
            return Err(not_ready(campaign));
        }
        let suspensions = self.standing.suspensions();
        Ok(self.with(campaign, shard, |shard| {
            if shard.lock.is_some() {
                return false;
            }
            shard.lock = Some((token, suspensions));
            true
        }))
    }

    async fn unlock(&self, campaign: &Campaign, shard: u16, token: RebuildToken) -> Result<()> {
        self.unlock_now(campaign, shard, token);
        Ok(())
    }

    fn unlock_now(&self, campaign: &Campaign, shard: u16, token: RebuildToken) -> bool {
        self.with(campaign, shard, |shard| {
            if shard.lock.is_some_and(|(held, _)| held == token) {
                shard.lock = None;
            }
        });
        true
    }

    async fn close(
        &self,
        campaign: &Campaign,
        shard: u16,
        token: RebuildToken,
    ) -> Result<Vec<HeldSlot>> {
        self.with(campaign, shard, |shard| {
            shard.locked_by(campaign, token)?;
            shard.slots.epoch = None;
            Ok(shard.slots.held())
        })
    }

    async fn restore(
        &self,
        campaign: &Campaign,
        shard: u16,
        token: RebuildToken,
        sealed: &[HeldSlot],
    ) -> Result<RestoreReport> {
        self.with(campaign, shard, |shard| {
            shard.locked_by(campaign, token)?;
            Ok(shard.slots.restore(sealed))
        })
    }

    async fn open(
        &self,
        campaign: &Campaign,
        shard: u16,
        token: RebuildToken,
        epoch: u64,
        budget: u64,
    ) -> Result<()> {
        let standing = &self.standing;
        self.with(campaign, shard, |shard| {
            let suspensions = shard.locked_by(campaign, token)?;
            // Suspended since the rebuild began (even if resumed since): another process
            // may have sealed a later epoch meanwhile.
            if standing.is_suspended() || standing.suspensions() != suspensions {
                return Err(not_ready(campaign));
            }
            shard.slots.epoch = Some(epoch);
            shard.slots.last_epoch = epoch;
            shard.budget = budget;
            shard.version += 1;
            shard.open.clear();
            shard.done.clear();
            shard.given.clear();
            Ok(())
        })
    }
}

mod shard;
#[cfg(test)]
mod tests;
