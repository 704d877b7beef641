//! [`CouponCounter`] over the campaigns' [`Slots`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{MemoryCounter, Slots, lock};
use crate::{
    Admission, Campaign, CounterStatus, CouponCounter, Error, HeldSlot, Rebuild, Release, Result,
    SealEpoch, UserId,
};

#[async_trait]
impl CouponCounter for MemoryCounter {
    async fn try_acquire(&self, campaign: &Campaign, user: UserId) -> Result<Admission> {
        if campaign.shards > 1 {
            return self.sharded.try_acquire(campaign, user).await;
        }
        let slots = self.slots(campaign.id);
        let mut slots = lock(&slots);
        let Some(epoch) = slots.epoch else {
            return Err(Error::NotReady {
                campaign: campaign.id,
                backend: "memory",
            });
        };
        Ok(slots.admit(user, campaign.per_user_limit, campaign.cap, epoch))
    }

    async fn release(&self, campaign: &Campaign, held: &HeldSlot) -> Result<Release> {
        if campaign.shards > 1 {
            return self.sharded.release(campaign, held).await;
        }
        let slots = self.slots(campaign.id);
        Ok(lock(&slots).release(held))
    }

    /// Always, unless suspended: the counter is this process's memory, and it admits
    /// only while not suspended (another process may be the one admitting).
    async fn ready(&self) -> Result<()> {
        if self.is_suspended() {
            return Err(Error::unavailable(
                "memory",
                "suspended: this process does not hold the counter lease (another one admits)",
                None,
            ));
        }
        Ok(())
    }

    async fn is_admitted(&self, campaign: &Campaign, user: UserId) -> Result<bool> {
        if campaign.shards > 1 {
            return self.sharded.is_admitted(campaign, user).await;
        }
        let slots = self.slots(campaign.id);
        let held = lock(&slots).holders.contains_key(&user);
        Ok(held)
    }

    async fn status(&self, campaign: &Campaign) -> Result<CounterStatus> {
        if campaign.shards > 1 {
            return self.sharded.status(campaign).await;
        }
        let slots = self.slots(campaign.id);
        let slots = lock(&slots);
        Ok(CounterStatus::new(slots.admitted, slots.epoch))
    }

    async fn slots_of(&self, campaign: &Campaign, user: UserId) -> Result<Vec<HeldSlot>> {
        if campaign.shards > 1 {
            return self.sharded.slots_of(campaign, user).await;
        }
        let slots = self.slots(campaign.id);
        Ok(lock(&slots).slots_of(user))
    }

    async fn held_slots(&self, campaign: &Campaign) -> Result<Vec<HeldSlot>> {
        if campaign.shards > 1 {
            return self.sharded.held_slots(campaign).await;
        }
        let slots = self.slots(campaign.id);
        Ok(lock(&slots).held_slots())
    }

    async fn claim(
        &self,
        campaign: &Campaign,
        candidates: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Result<Vec<HeldSlot>> {
        if campaign.shards > 1 {
            return self
                .sharded
                .claim(campaign, candidates, reclaim_after)
                .await;
        }
        let slots = self.slots(campaign.id);
        Ok(lock(&slots).claim(candidates, reclaim_after))
    }

    /// The epoch as this process holds it, and, when a lease guards the counter
    /// ([`MemoryCounter::confirm_with`]), the lease asked now: a process that stalled
    /// while another took the lease must not confirm what it admitted before.
    async fn confirm_epoch(&self, campaign: &Campaign, epoch: u64) -> Result<bool> {
        if campaign.shards > 1 {
            return self.sharded.confirm_epoch(campaign, epoch).await;
        }
        let slots = self.slots(campaign.id);
        let current = lock(&slots).epoch;
        Ok(current == Some(epoch) && self.standing.confirms().await)
    }

    /// Up to [`NewCampaign::MAX_SHARDS`](crate::NewCampaign::MAX_SHARDS).
    fn max_shards(&self) -> u16 {
        self.sharded.max_shards()
    }

    async fn rebuild(&self, campaign: &Campaign, seal: Arc<dyn SealEpoch>) -> Result<Rebuild> {
        if campaign.shards > 1 {
            return self.sharded.rebuild(campaign, seal).await;
        }
        let not_ready = || Error::NotReady {
            campaign: campaign.id,
            backend: "memory",
        };
        let cell = self.slots(campaign.id);
        let suspensions = self.standing.suspensions();
        let counted = {
            let mut slots = lock(&cell);
            if slots.epoch.is_some() {
                return Ok(Rebuild::AlreadyReady);
            }
            if self.is_suspended() {
                return Err(not_ready());
            }
            if slots.rebuilding {
                return Ok(Rebuild::Busy);
            }
            slots.rebuilding = true;
            slots.held()
        };
        // Clears the mark however this ends, even if the caller drops this future.
        let ending = Ending(Some(&cell));
        let sealed = seal.seal(counted).await;
        let mut slots = lock(&cell);
        // Cleared under the same lock that applies the seal: no other rebuild starts in
        // between.
        slots.rebuilding = false;
        ending.disarm();
        let sealed = sealed?;
        // Suspended while the seal ran (even if resumed since): another process may
        // have sealed a later epoch meanwhile.
        if self.is_suspended() || self.standing.suspensions() != suspensions {
            return Err(not_ready());
        }
        let report = slots.restore(&sealed.slots);
        slots.epoch = Some(sealed.epoch);
        slots.last_epoch = sealed.epoch;
        Ok(Rebuild::Built(report))
    }
}

/// Marks a campaign's rebuild over when dropped, unless disarmed.
struct Ending<'a>(Option<&'a Mutex<Slots>>);

impl Ending<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        if let Some(cell) = self.0 {
            lock(cell).rebuilding = false;
        }
    }
}
