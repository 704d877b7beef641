//! Rebuilding a sharded campaign: every shard together, in one new epoch, so that stock
//! in transit when a shard lost its memory is never counted twice.

use std::sync::Arc;

use super::ops::{RebuildToken, ShardOps};
use super::{plan, shards_of};
use crate::{Campaign, HeldSlot, Rebuild, RestoreReport, Result, SealEpoch, home_shard};

/// Rebuilds every shard of `campaign` (see [`CouponCounter::rebuild`]):
/// 1. locks every shard, in order, under one token ([`Rebuild::Busy`] if another
///    rebuild holds any);
/// 2. leaves a campaign whose shards all admit in one epoch alone;
/// 3. closes every shard and hands the slots they hold to `seal`, once;
/// 4. restores each sealed slot on its holder's home shard;
/// 5. opens every shard in the sealed epoch with the slots it holds plus an even share
///    of what the cap leaves: every move of the epoch before is forgotten, and the
///    stock it carried is shared out again with the rest.
///
/// Should a shard lose its memory (and with it the lock) before it is opened, its open
/// fails: the shards opened already admit within budgets that add up to at most the
/// cap less what the others hold, the rest stay closed, and the next rebuild counts
/// everything again.
///
/// [`CouponCounter::rebuild`]: crate::CouponCounter::rebuild
pub(super) async fn rebuild<O: ShardOps>(
    ops: &Arc<O>,
    campaign: &Campaign,
    seal: Arc<dyn SealEpoch>,
) -> Result<Rebuild> {
    let token = RebuildToken::new();
    let mut locks = Locks {
        ops: ops.clone(),
        campaign: campaign.clone(),
        token,
        held: Vec::new(),
    };
    for shard in 0..shards_of(campaign) {
        if !ops.lock(campaign, shard, token).await? {
            locks.release().await;
            return Ok(Rebuild::Busy);
        }
        locks.held.push(shard);
    }
    let rebuilt = rebuild_locked(ops.as_ref(), campaign, seal, token).await;
    locks.release().await;
    rebuilt
}

async fn rebuild_locked<O: ShardOps>(
    ops: &O,
    campaign: &Campaign,
    seal: Arc<dyn SealEpoch>,
    token: RebuildToken,
) -> Result<Rebuild> {
    let mut epochs = Vec::with_capacity(usize::from(shards_of(campaign)));
    for shard in 0..shards_of(campaign) {
        epochs.push(ops.peek(campaign, shard).await?.epoch);
    }
    if epochs[0].is_some() && epochs.iter().all(|epoch| *epoch == epochs[0]) {
        return Ok(Rebuild::AlreadyReady);
    }
    let mut counted = Vec::new();
    for shard in 0..shards_of(campaign) {
        counted.extend(ops.close(campaign, shard, token).await?);
    }
    let sealed = seal.seal(counted).await?;
    let mut routed: Vec<Vec<HeldSlot>> = vec![Vec::new(); usize::from(shards_of(campaign))];
    for slot in sealed.slots {
        routed[usize::from(home_shard(slot.user, shards_of(campaign)))].push(slot);
    }
    let (mut added, mut held) = (0, Vec::with_capacity(routed.len()));
    for (shard, slots) in routed.iter().enumerate() {
        let restored = ops.restore(campaign, shard as u16, token, slots).await?;
        added += restored.added;
        held.push(restored.admitted);
    }
    let admitted: u64 = held.iter().sum();
    let shares = plan::shares(campaign.cap.saturating_sub(admitted), shards_of(campaign));
    for (shard, (holds, share)) in held.iter().zip(shares).enumerate() {
        ops.open(campaign, shard as u16, token, sealed.epoch, holds + share)
            .await?;
    }
    Ok(Rebuild::Built(RestoreReport::new(added, admitted)))
}

/// The shards a rebuild locked: given back when it ends, and, should the rebuild be
/// dropped before it ends, by a task of their own.
struct Locks<O: ShardOps> {
    ops: Arc<O>,
    campaign: Campaign,
    token: RebuildToken,
    held: Vec<u16>,
}

impl<O: ShardOps> Locks<O> {
    async fn release(&mut self) {
        for shard in std::mem::take(&mut self.held) {
            // A lock that cannot be given back now expires or is cleared with the
            // shard's memory; the rebuild's own outcome is what the caller needs.
            let _ = self.ops.unlock(&self.campaign, shard, self.token).await;
        }
    }
}

impl<O: ShardOps> Drop for Locks<O> {
    fn drop(&mut self) {
        let (ops, campaign, token) = (&self.ops, &self.campaign, self.token);
        self.held
            .retain(|&shard| !ops.unlock_now(campaign, shard, token));
        if self.held.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut rest = Locks {
            ops: self.ops.clone(),
            campaign: self.campaign.clone(),
            token: self.token,
            held: std::mem::take(&mut self.held),
        };
        runtime.spawn(async move { rest.release().await });
    }
}
