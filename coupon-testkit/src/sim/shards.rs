//! The shards of a sharded campaign under the injector: every step on one shard may
//! fail before it runs or lose its answer after, and one shard may lose its memory at
//! a step (as one node restarted empty) while the others go on. A mover whose take's
//! answer is lost leaves the stock in transit, as a mover that crashed would.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::counter::Memory;
use super::faults::{Injector, unknown};
use coupon_core::memory::MemoryShards;
use coupon_core::shards::{MoveId, RebuildToken, ShardAdmission, ShardOps, ShardView};
use coupon_core::{Admission, Campaign, HeldSlot, Release, RestoreReport, Result, UserId};

/// [`MemoryShards`] (the current ones of the simulated server) behind the injector.
pub(crate) struct SimShards {
    pub(crate) memory: Arc<Memory>,
    pub(crate) faults: Arc<Injector>,
}

impl SimShards {
    fn now(&self) -> Arc<MemoryShards> {
        self.memory.shards()
    }

    /// Fails before `what` when drawn, and loses `shard`'s memory first when drawn.
    fn before(&self, campaign: &Campaign, shard: u16, what: &str) -> Result<()> {
        if self
            .faults
            .roll(self.faults.rates().forget, "shard forgets", || {
                format!("shard {shard}, before {what}")
            })
        {
            self.now().forget_shard(campaign, shard);
            self.faults.lost_memory();
        }
        self.faults.before(what)
    }

    /// The answer of a step that ran, lost when drawn.
    fn after<T>(&self, what: &str, answer: T) -> Result<T> {
        if self.faults.after(what) {
            return Err(unknown(what));
        }
        Ok(answer)
    }
}

#[async_trait]
impl ShardOps for SimShards {
    fn max_shards(&self) -> u16 {
        self.now().max_shards()
    }

    async fn ready(&self) -> Result<()> {
        Ok(())
    }

    async fn admit(&self, campaign: &Campaign, shard: u16, user: UserId) -> Result<ShardAdmission> {
        let what = format!("admit user {user} on shard {shard}");
        self.before(campaign, shard, &what)?;
        let admitted = self.now().admit(campaign, shard, user).await?;
        // Named without the admission time, which is the wall clock's.
        let answer = match admitted {
            ShardAdmission::Final(Admission::Granted { rank, slot, .. }) => {
                format!("granted rank {rank} slot {slot}")
            }
            other => format!("{other:?}"),
        };
        self.after(&format!("{what} -> {answer}"), admitted)
    }

    async fn peek(&self, campaign: &Campaign, shard: u16) -> Result<ShardView> {
        self.faults.before(&format!("peek shard {shard}"))?;
        self.now().peek(campaign, shard).await
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
        let what = format!("take {want} from shard {shard} for shard {to}");
        self.before(campaign, shard, &what)?;
        let taken = self
            .now()
            .take(campaign, shard, epoch, id, want, to)
            .await?;
        self.after(&format!("{what} -> {taken}"), taken)
    }

    async fn give(
        &self,
        campaign: &Campaign,
        shard: u16,
        epoch: u64,
        id: MoveId,
        slots: u64,
    ) -> Result<()> {
        let what = format!("give {slots} to shard {shard}");
        self.before(campaign, shard, &what)?;
        self.now().give(campaign, shard, epoch, id, slots).await?;
        self.after(&what, ())
    }

    async fn complete(
        &self,
        campaign: &Campaign,
        shard: u16,
        epoch: u64,
        id: MoveId,
    ) -> Result<()> {
        let what = format!("complete a move from shard {shard}");
        self.faults.before(&what)?;
        self.now().complete(campaign, shard, epoch, id).await?;
        self.after(&what, ())
    }

    async fn release(&self, campaign: &Campaign, shard: u16, held: &HeldSlot) -> Result<Release> {
        let what = format!(
            "release user {} rank {} on shard {shard}",
            held.user, held.rank
        );
        self.faults.before(&what)?;
        let released = self.now().release(campaign, shard, held).await?;
        self.after(&what, released)
    }

    async fn is_admitted(&self, campaign: &Campaign, shard: u16, user: UserId) -> Result<bool> {
        self.now().is_admitted(campaign, shard, user).await
    }

    async fn slots_of(
        &self,
        campaign: &Campaign,
        shard: u16,
        user: UserId,
    ) -> Result<Vec<HeldSlot>> {
        self.now().slots_of(campaign, shard, user).await
    }

    async fn held_slots(&self, campaign: &Campaign, shard: u16) -> Result<Vec<HeldSlot>> {
        self.now().held_slots(campaign, shard).await
    }

    async fn claim(
        &self,
        campaign: &Campaign,
        shard: u16,
        candidates: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Result<Vec<HeldSlot>> {
        self.now()
            .claim(campaign, shard, candidates, reclaim_after)
            .await
    }

    async fn lock(&self, campaign: &Campaign, shard: u16, token: RebuildToken) -> Result<bool> {
        self.now().lock(campaign, shard, token).await
    }

    async fn unlock(&self, campaign: &Campaign, shard: u16, token: RebuildToken) -> Result<()> {
        self.now().unlock(campaign, shard, token).await
    }

    fn unlock_now(&self, campaign: &Campaign, shard: u16, token: RebuildToken) -> bool {
        self.now().unlock_now(campaign, shard, token)
    }

    async fn close(
        &self,
        campaign: &Campaign,
        shard: u16,
        token: RebuildToken,
    ) -> Result<Vec<HeldSlot>> {
        self.now().close(campaign, shard, token).await
    }

    async fn restore(
        &self,
        campaign: &Campaign,
        shard: u16,
        token: RebuildToken,
        sealed: &[HeldSlot],
    ) -> Result<RestoreReport> {
        let restored = self.now().restore(campaign, shard, token, sealed).await?;
        // A shard lost between a rebuild's restore and its open: the open must refuse.
        self.before(
            campaign,
            shard,
            &format!("open shard {shard} after its restore"),
        )
        .map(|()| restored)
    }

    async fn open(
        &self,
        campaign: &Campaign,
        shard: u16,
        token: RebuildToken,
        epoch: u64,
        budget: u64,
    ) -> Result<()> {
        self.now().open(campaign, shard, token, epoch, budget).await
    }
}
