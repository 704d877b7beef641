//! Rebuilding a counter that lost its memory, in a new epoch: close it, let the queue
//! hand over what it already acknowledged, seal the epoch in the store, build from that.
//!
//! No step waits for "long enough": a ticket that becomes visible after the seal is of
//! an older epoch and not counted by it, so the store refuses it as superseded, and its
//! applicant was never told yes (an acknowledged publish is confirmed against the
//! counter's epoch before `Accepted`, docs/architecture.md).

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::sync::lock;
use crate::{
    Campaign, CampaignId, CouponCounter, CouponStore, Error, HeldSlot, IssueQueue, IssueTicket,
    Rebuild, Result, SealEpoch, SealedEpoch, WindowState,
};

/// How often a rebuild asks whether the queue has drained.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Most unacked tickets of a campaign a rebuild records from the queue, one write each;
/// past it, a backlog the consumers are working through is waited for instead.
const RECORDED_AT_MOST: usize = 2_000;

/// How often the watcher looks for counters that lost their memory.
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Rebuilds run at once in this process, at most: after a counter lost every campaign
/// (a Redis restart), each rebuild drains and seals through the store, and a thousand
/// at once would take every connection of its pool from the applies.
const REBUILDS_AT_ONCE: usize = 4;

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

/// Starts at most one rebuild per campaign in this process, and watches for losses.
pub(crate) struct Fence {
    counter: Arc<dyn CouponCounter>,
    queue: Arc<dyn IssueQueue>,
    store: Arc<dyn CouponStore>,
    drain_fallback: Duration,
    rebuilding: Mutex<HashSet<CampaignId>>,
    /// One permit per rebuild running ([`REBUILDS_AT_ONCE`]).
    rebuilds: tokio::sync::Semaphore,
}

impl Fence {
    pub(crate) fn new(
        counter: Arc<dyn CouponCounter>,
        queue: Arc<dyn IssueQueue>,
        store: Arc<dyn CouponStore>,
        drain_fallback: Duration,
    ) -> Self {
        Self {
            counter,
            queue,
            store,
            drain_fallback,
            rebuilding: Mutex::new(HashSet::new()),
            rebuilds: tokio::sync::Semaphore::new(REBUILDS_AT_ONCE),
        }
    }

    /// Whether this process is rebuilding `campaign`'s counter now.
    pub(crate) fn is_rebuilding(&self, campaign: CampaignId) -> bool {
        lock(&self.rebuilding).contains(&campaign)
    }

    /// Rebuilds `campaign`'s counter on a task of its own, unless this process is
    /// rebuilding it already. Needs a tokio runtime; without one it does nothing (the
    /// watcher, or the next apply, asks again).
    pub(crate) fn rebuild_in_background(self: &Arc<Self>, campaign: Arc<Campaign>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !lock(&self.rebuilding).insert(campaign.id) {
            return;
        }
        let fence = self.clone();
        runtime.spawn(async move {
            // Whatever happens to this task (even a panic), a later call may start
            // another rebuild.
            let _done = Rebuilding {
                fence: fence.clone(),
                campaign: campaign.id,
            };
            let Ok(_permit) = fence.rebuilds.acquire().await else {
                return;
            };
            // A counter that cannot admit at all (a standby without the lease, Redis
            // down) has nothing to rebuild now: the next loss found after it is back is.
            if let Err(error) = fence.counter.ready().await {
                tracing::debug!(campaign = %campaign.id, %error, "counter not ready to rebuild");
                return;
            }
            match fence.rebuild(&campaign).await {
                Ok(Rebuild::Built(report)) => {
                    tracing::warn!(campaign = %campaign.id, admitted = report.admitted, restored = report.added, "counter rebuilt in a new epoch; admitting again");
                }
                Ok(Rebuild::AlreadyReady) => {
                    tracing::info!(campaign = %campaign.id, "counter was rebuilt meanwhile");
                }
                Ok(Rebuild::Busy) => {
                    tracing::info!(campaign = %campaign.id, "another process is rebuilding the counter");
                }
                Err(error) => {
                    tracing::warn!(campaign = %campaign.id, %error, "counter rebuild failed; it starts over");
                }
            }
        });
    }

    /// The rebuild itself: the counter closes the campaign, then the seal below runs.
    pub(crate) async fn rebuild(self: &Arc<Self>, campaign: &Campaign) -> Result<Rebuild> {
        tracing::warn!(campaign = %campaign.id, "counter not ready: rebuilding it in a new epoch");
        let seal = StoreSeal {
            fence: self.clone(),
            campaign: campaign.id,
            drain: true,
        };
        self.counter.rebuild(campaign, Arc::new(seal)).await
    }

    /// Builds the counter of a campaign just created: nothing of it can be on its way,
    /// so the seal waits for no queue.
    pub(crate) async fn build_new(self: &Arc<Self>, campaign: &Campaign) -> Result<Rebuild> {
        // Marked as rebuilding while it builds, so that the watcher, which may list the
        // campaign as soon as the store holds it, does not take it for a lost counter
        // and rebuild it under the first applicants (who would hear 503 meanwhile).
        let _building = lock(&self.rebuilding)
            .insert(campaign.id)
            .then(|| Rebuilding {
                fence: self.clone(),
                campaign: campaign.id,
            });
        let seal = StoreSeal {
            fence: self.clone(),
            campaign: campaign.id,
            drain: false,
        };
        self.counter.rebuild(campaign, Arc::new(seal)).await
    }

    /// Every [`WATCH_INTERVAL`] until `shutdown`: starts the rebuild of every campaign
    /// that may admit (not closed) whose counter is not built, so that a loss is acted
    /// on when it happens, not at the next apply.
    pub(crate) async fn watch(self: &Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            if let Err(error) = self.rebuild_lost().await {
                tracing::debug!(%error, "looking for counters to rebuild failed; trying again");
            }
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
        }
    }

    /// One pass of [`watch`](Self::watch): the campaigns whose rebuilds it started.
    pub(crate) async fn rebuild_lost(self: &Arc<Self>) -> Result<usize> {
        // A counter that cannot admit at all (a standby without the lease, Redis down)
        // is not known to have lost anything.
        if self.counter.ready().await.is_err() {
            return Ok(0);
        }
        let now = Utc::now();
        let mut started = 0;
        for summary in self.store.campaigns().await? {
            let campaign = summary.campaign;
            if admits_no_more(&campaign, summary.issued, now) {
                continue;
            }
            // A counter that cannot answer now is not known to be lost.
            let Ok(status) = self.counter.status(&campaign).await else {
                continue;
            };
            if !status.is_ready() && !self.is_rebuilding(campaign.id) {
                self.rebuild_in_background(Arc::new(campaign));
                started += 1;
            }
        }
        Ok(started)
    }

    /// Waits until the store knows every ticket of `campaign` the queue acknowledged
    /// before now. When the queue can read what its consumers have not acked
    /// ([`IssueQueue::unacked`]) and it holds at most [`RECORDED_AT_MOST`] tickets of the
    /// campaign, each is recorded as pending ([`AdmissionLedger::record_pending`](crate::AdmissionLedger::record_pending)), which the
    /// seal then counts: the store refuses a ticket an earlier seal superseded (its
    /// applicant was never promised) as it would refuse its coupon, so only admissible
    /// tickets are counted. Otherwise: the consumers' drain past the queue's mark, or the
    /// fallback wait for a queue that cannot tell.
    async fn drain(&self, campaign: CampaignId) -> Result<()> {
        let Some(mark) = self.queue.mark().await? else {
            tokio::time::sleep(self.drain_fallback).await;
            return Ok(());
        };
        match self.queue.unacked(&mark).await {
            Ok(Some(tickets)) => {
                let ours: Vec<&IssueTicket> = tickets
                    .iter()
                    .filter(|ticket| ticket.campaign == campaign)
                    .collect();
                if ours.len() <= RECORDED_AT_MOST {
                    for ticket in ours {
                        match self.store.record_pending(ticket).await {
                            Ok(())
                            | Err(Error::Superseded { .. } | Error::TicketRefused { .. }) => {}
                            Err(error) => return Err(error),
                        }
                    }
                    return Ok(());
                }
            }
            Ok(None) => {}
            // Reading the queue failed: its consumers may still drain it.
            Err(error) => {
                tracing::debug!(%campaign, %error, "reading the queue's unacked tickets failed; waiting for the drain");
            }
        }
        while !self.queue.drained(&mark).await? {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        Ok(())
    }
}

/// The seal of a rebuild: once the counter is closed, the tickets the queue already
/// acknowledged are counted (read from the queue, or drained into the store, or counted
/// in place by a queue kept in the store), then the store seals the new epoch.
struct StoreSeal {
    fence: Arc<Fence>,
    campaign: CampaignId,
    /// Whether to wait for the queue (never for a campaign just created).
    drain: bool,
}

#[async_trait]
impl SealEpoch for StoreSeal {
    async fn seal(&self, counted: Vec<HeldSlot>) -> Result<SealedEpoch> {
        // Read once the counter is closed: a seal by another rebuild from now on makes
        // ours fail rather than land after it.
        let after = self.fence.store.sealed_epoch(self.campaign).await?;
        if self.drain && !self.fence.queue.in_store() {
            self.fence.drain(self.campaign).await?;
        }
        self.fence
            .store
            .seal_epoch(self.campaign, after, &counted)
            .await
    }
}

/// Whether a campaign admits no one any more: closed, or full in the store (sold out
/// whatever a counter says). Its counter is never rebuilt after a loss (nothing to
/// admit), so what the store holds is the answer about it.
pub(crate) fn admits_no_more(campaign: &Campaign, issued: u64, now: DateTime<Utc>) -> bool {
    campaign.window_state(now) == WindowState::Closed || issued >= campaign.cap
}
