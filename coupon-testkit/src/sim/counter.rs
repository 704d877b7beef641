//! The memory counter under the injector: errors around its calls, and a loss of its
//! memory (the whole counter replaced by an empty one, as a Redis restarted empty).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use super::faults::{Injector, unknown};
use coupon_core::memory::MemoryCounter;
use coupon_core::{
    Admission, Campaign, CampaignId, CounterStatus, CouponCounter, HeldSlot, Rebuild, Release,
    Result, SealEpoch, UserId,
};

/// A [`MemoryCounter`] that fails around its calls and may lose every campaign.
pub(crate) struct SimCounter {
    inner: RwLock<Arc<MemoryCounter>>,
    faults: Arc<Injector>,
}

impl SimCounter {
    pub(crate) fn new(faults: Arc<Injector>) -> Self {
        Self {
            inner: RwLock::new(Arc::new(MemoryCounter::new())),
            faults,
        }
    }

    fn inner(&self) -> Arc<MemoryCounter> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl CouponCounter for SimCounter {
    async fn try_acquire(&self, campaign: &Campaign, user: UserId) -> Result<Admission> {
        if self
            .faults
            .roll(self.faults.rates().forget, "counter forgets", || {
                "every campaign's admissions".into()
            })
        {
            *self.inner.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(MemoryCounter::new());
            self.faults.lost_memory();
        }
        let what = format!("try_acquire user {user}");
        self.faults.maybe_delay(&what).await;
        self.faults.before(&what)?;
        let admission = self.inner().try_acquire(campaign, user).await?;
        // Named without the admission time, which is the wall clock's: the trace must
        // depend on the seed alone.
        let answer = match admission {
            Admission::Granted { rank, slot, .. } => format!("granted rank {rank} slot {slot}"),
            other => format!("{other:?}"),
        };
        if self.faults.after(&format!("{what} -> {answer}")) {
            return Err(unknown(&what));
        }
        Ok(admission)
    }

    async fn release(&self, campaign: CampaignId, held: &HeldSlot) -> Result<Release> {
        let what = format!("release user {} rank {}", held.user, held.rank);
        self.faults.before(&what)?;
        let released = self.inner().release(campaign, held).await?;
        if self.faults.after(&what) {
            return Err(unknown(&what));
        }
        Ok(released)
    }

    async fn ready(&self) -> Result<()> {
        self.inner().ready().await
    }

    async fn is_admitted(&self, campaign: CampaignId, user: UserId) -> Result<bool> {
        self.inner().is_admitted(campaign, user).await
    }

    async fn status(&self, campaign: CampaignId) -> Result<CounterStatus> {
        self.inner().status(campaign).await
    }

    /// Sorted, so that the settler's order (and the faults drawn for it) replays.
    async fn slots_of(&self, campaign: &Campaign, user: UserId) -> Result<Vec<HeldSlot>> {
        self.faults.before("slots_of")?;
        self.inner().slots_of(campaign, user).await
    }

    async fn held_slots(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>> {
        self.faults.before("held_slots")?;
        let mut held = self.inner().held_slots(campaign).await?;
        held.sort_by_key(|slot| (slot.user, slot.slot, slot.rank));
        Ok(held)
    }

    async fn claim(
        &self,
        campaign: CampaignId,
        slots: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Result<Vec<HeldSlot>> {
        self.faults.before("claim")?;
        self.inner().claim(campaign, slots, reclaim_after).await
    }

    async fn confirm_epoch(&self, campaign: CampaignId, epoch: u64) -> Result<bool> {
        self.faults.before("confirm_epoch")?;
        self.inner().confirm_epoch(campaign, epoch).await
    }

    async fn rebuild(&self, campaign: &Campaign, seal: Arc<dyn SealEpoch>) -> Result<Rebuild> {
        self.faults.before("rebuild")?;
        let rebuilt = self.inner().rebuild(campaign, seal).await?;
        if let Rebuild::Built(report) = rebuilt {
            self.faults
                .note("counter rebuilt", format!("{} slots", report.admitted));
        }
        Ok(rebuilt)
    }
}
