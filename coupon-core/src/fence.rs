//! Rebuilding a counter that lost its memory: wait out the publishes already on their
//! way, let the queue drain them into the store, then rebuild from the store.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::memory::lock;
use crate::{Campaign, CampaignId, CouponCounter, CouponStore, IssueQueue, Rebuild, Result};

/// How often a rebuild asks whether the queue has drained.
const DRAIN_POLL: Duration = Duration::from_millis(200);

/// Marks a campaign's rebuild over when dropped.
struct Rebuilding {
    fence: Arc<Fence>,
    campaign: CampaignId,
}

impl Drop for Rebuilding {
    fn drop(&mut self) {
        lock(&self.fence.rebuilding).remove(&self.campaign);
    }
}

/// Starts at most one rebuild per campaign in this process.
pub(crate) struct Fence {
    counter: Arc<dyn CouponCounter>,
    queue: Arc<dyn IssueQueue>,
    store: Arc<dyn CouponStore>,
    grace: Duration,
    drain_fallback: Duration,
    rebuilding: Mutex<HashSet<CampaignId>>,
}

impl Fence {
    pub(crate) fn new(
        counter: Arc<dyn CouponCounter>,
        queue: Arc<dyn IssueQueue>,
        store: Arc<dyn CouponStore>,
        grace: Duration,
        drain_fallback: Duration,
    ) -> Self {
        Self {
            counter,
            queue,
            store,
            grace,
            drain_fallback,
            rebuilding: Mutex::new(HashSet::new()),
        }
    }

    /// Rebuilds `campaign`'s counter on a task of its own, unless this process is
    /// rebuilding it already. Needs a tokio runtime; without one it does nothing (the
    /// next apply asks again).
    pub(crate) fn rebuild_in_background(self: &Arc<Self>, campaign: Arc<Campaign>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !lock(&self.rebuilding).insert(campaign.id) {
            return;
        }
        let fence = self.clone();
        runtime.spawn(async move {
            // Whatever happens to this task (even a panic), the next apply may start
            // another rebuild.
            let _done = Rebuilding {
                fence: fence.clone(),
                campaign: campaign.id,
            };
            match fence.rebuild(&campaign).await {
                Ok(Rebuild::Built(report)) => {
                    tracing::warn!(campaign = %campaign.id, admitted = report.admitted, restored = report.added, "counter rebuilt from the store; admitting again");
                }
                Ok(Rebuild::AlreadyReady) => {
                    tracing::info!(campaign = %campaign.id, "counter was rebuilt meanwhile");
                }
                Ok(Rebuild::Busy) => {
                    tracing::info!(campaign = %campaign.id, "another process is rebuilding the counter");
                }
                Err(error) => {
                    tracing::warn!(campaign = %campaign.id, %error, "counter rebuild failed; the next apply tries again");
                }
            }
        });
    }

    /// The rebuild itself. Every admission made before the loss was published, or
    /// gave up publishing, within the grace period; the queue's mark taken after it
    /// covers all of them, and once the queue has drained past it their coupons are in
    /// the store, which is then the whole truth with the tickets recorded as pending
    /// (each recorded by the same deadline as the publish it follows).
    async fn rebuild(&self, campaign: &Campaign) -> Result<Rebuild> {
        tracing::warn!(campaign = %campaign.id, grace = ?self.grace, "counter not ready: rebuilding it from the store once the queue has drained");
        tokio::time::sleep(self.grace).await;
        match self.queue.mark().await? {
            Some(mark) => {
                while !self.queue.drained(&mark).await? {
                    tokio::time::sleep(DRAIN_POLL).await;
                }
            }
            None => tokio::time::sleep(self.drain_fallback).await,
        }
        let held = crate::admitted_slots(self.store.as_ref(), campaign.id).await?;
        self.counter.rebuild(campaign, &held).await
    }
}
