//! Settlement: every admission ends as a coupon, by publishing its ticket again until
//! the store holds it. Forward steps are idempotent; the settler never releases a slot.

mod pass;
mod recorded;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::sync::lock;
use crate::{
    CampaignId, CampaignSummary, CouponCounter, CouponStore, HeldSlot, IssueQueue, Result,
    TicketId, UserId,
};

/// A held slot's identity: user, slot, rank.
type SlotKey = (UserId, u32, u64);

fn key(slot: &HeldSlot) -> SlotKey {
    (slot.user, slot.slot, slot.rank)
}

/// Settings of a [`Settler`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SettlerConfig {
    /// How old an admission without a coupon must be before its ticket is published
    /// again, and how long before the same admission is published again after that.
    /// Default 30 s: above a healthy pipeline's admission-to-coupon time, so that a
    /// healthy run republishes nothing. Any value is safe: a republished ticket whose
    /// coupon exists is a duplicate the store ignores.
    pub grace: Duration,
    /// How often [`Settler::run`] settles every campaign. Default 10 s.
    pub interval: Duration,
    /// How long one pass may spend publishing the admissions it claimed, from the claim
    /// on: claims left when time runs out expire, and a later pass takes them again.
    /// Default 10 s, as the issuer's [`publish_timeout`](crate::IssuerConfig::publish_timeout).
    pub publish_timeout: Duration,
}

impl Default for SettlerConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(30),
            interval: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(10),
        }
    }
}

impl SettlerConfig {
    /// Sets [`SettlerConfig::grace`].
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets [`SettlerConfig::publish_timeout`].
    pub fn with_publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Sets [`SettlerConfig::interval`] (at least 10 ms).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }
}

/// What one settlement pass found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SettleReport {
    /// Campaigns whose admissions were compared with the store.
    pub campaigns: u64,
    /// Admitted slots without a coupon yet, of any age (admitted minus issued).
    pub in_flight: u64,
    /// Admitted slots older than the grace period without a coupon.
    pub unsettled: u64,
    /// Tickets published again in this pass.
    pub republished: u64,
    /// Age of the oldest unsettled admission, in milliseconds.
    pub oldest_unsettled_ms: Option<u64>,
    /// Campaigns that could not be settled now (a backend unavailable); tried again on
    /// the next pass.
    pub failed_campaigns: u64,
}

impl SettleReport {
    fn add(&mut self, other: SettleReport) {
        self.campaigns += other.campaigns;
        self.in_flight += other.in_flight;
        self.unsettled += other.unsettled;
        self.republished += other.republished;
        self.oldest_unsettled_ms = self.oldest_unsettled_ms.max(other.oldest_unsettled_ms);
        self.failed_campaigns += other.failed_campaigns;
    }
}

/// Rolls admissions forward: for each campaign, every slot the counter holds that is
/// older than the grace period and has no coupon in the store gets its ticket published
/// again (the same ticket, so the store keeps one coupon), and so does every ticket the
/// store recorded as pending ([`AdmissionLedger::record_pending`](crate::AdmissionLedger::record_pending): its applicant heard
/// `Pending`), whether or not the counter still remembers the admission.
///
/// Safe to run from many processes at once and at any time: a slot is claimed in the
/// counter before its ticket is published ([`CouponCounter::claim`]), so at most one
/// settler republishes it per grace period, and the issuer never gives a claimed slot
/// back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
/// use coupon_core::{AdmissionLedger, CouponCounter, CouponStore, NewCampaign, Settler, SettlerConfig, UserId};
///
/// let (counter, queue, store) =
///     (Arc::new(MemoryCounter::new()), Arc::new(MemoryQueue::new(16)), Arc::new(MemoryStore::new()));
/// let campaign = store.create_campaign(NewCampaign::new("drop", 10)).await?;
/// // What CouponService::create_campaign does: seal the first epoch, build the counter.
/// let sealed = store.seal_epoch(campaign.id, 0, &[]).await?;
/// counter.rebuild(&campaign, Arc::new(sealed)).await?;
/// // A slot was taken, and the process died before publishing its ticket:
/// counter.try_acquire(&campaign, UserId(7)).await?;
///
/// let settler = Settler::new(counter, queue.clone(), store, SettlerConfig::default().with_grace(Duration::ZERO));
/// let report = settler.settle(campaign.id).await?;
/// assert_eq!((report.unsettled, report.republished), (1, 1));
/// assert_eq!(queue.lag(), 1);
/// # Ok(()) }
/// ```
pub struct Settler {
    counter: Arc<dyn CouponCounter>,
    queue: Arc<dyn IssueQueue>,
    store: Arc<dyn CouponStore>,
    config: SettlerConfig,
    /// Slots seen with their coupon, per campaign: a coupon is forever, so they are not
    /// looked up again. Dropped once the campaign is fully settled.
    confirmed: Mutex<HashMap<CampaignId, HashSet<SlotKey>>>,
    /// When this settler first saw each held slot whose counter keeps no admission
    /// time: its age is counted from then.
    first_seen: Mutex<HashMap<CampaignId, HashMap<SlotKey, DateTime<Utc>>>>,
    /// Closed campaigns found fully settled: nothing can be admitted to them any more.
    finished: Mutex<HashSet<CampaignId>>,
    /// When this settler last published each recorded pending ticket: once per grace
    /// period, like a claimed slot.
    recorded_published: Mutex<HashMap<CampaignId, HashMap<TicketId, DateTime<Utc>>>>,
    republished: AtomicU64,
    last: Mutex<Option<SettleReport>>,
    /// When a pass last compared every campaign with the store (its creation before
    /// the first): how long promises have gone unchecked.
    last_complete: Mutex<std::time::Instant>,
}

impl Settler {
    /// A settler over the deployment's ports.
    pub fn new(
        counter: Arc<dyn CouponCounter>,
        queue: Arc<dyn IssueQueue>,
        store: Arc<dyn CouponStore>,
        config: SettlerConfig,
    ) -> Self {
        Self {
            counter,
            queue,
            store,
            config,
            confirmed: Mutex::new(HashMap::new()),
            first_seen: Mutex::new(HashMap::new()),
            finished: Mutex::new(HashSet::new()),
            recorded_published: Mutex::new(HashMap::new()),
            republished: AtomicU64::new(0),
            last: Mutex::new(None),
            last_complete: Mutex::new(std::time::Instant::now()),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &SettlerConfig {
        &self.config
    }

    /// Tickets this settler has published again since it was made.
    pub fn republished_total(&self) -> u64 {
        self.republished.load(Ordering::Relaxed)
    }

    /// The report of the last pass over every campaign, if one ran.
    pub fn last_report(&self) -> Option<SettleReport> {
        *lock(&self.last)
    }

    /// How long since a pass last compared every campaign with the store (since this
    /// settler was made, before the first): while the store or the counter is away (or
    /// the counter is suspended, in a process without the counter lease) the passes
    /// check nothing, [`last_report`](Self::last_report) stays as it was, and this grows.
    /// Past the grace period, admissions may be waiting for their coupon unseen.
    pub fn since_complete_pass(&self) -> std::time::Duration {
        lock(&self.last_complete).elapsed()
    }

    /// Settles every campaign of the store. A campaign that fails (a backend
    /// unavailable) is counted in `failed_campaigns` and does not stop the others.
    pub async fn settle_all(&self) -> Result<SettleReport> {
        // A counter that does not answer (Redis away, or suspended in a process without
        // the lease) tells no admission: a pass over it checks nothing.
        let counter_answers = self.counter.ready().await.is_ok();
        let mut report = SettleReport::default();
        for summary in self.store.campaigns().await? {
            let id = summary.campaign.id;
            {
                let mut finished = lock(&self.finished);
                if finished.contains(&id) {
                    if self.long_closed(&summary.campaign) {
                        continue;
                    }
                    // Reopened since: its new admissions need settling like any.
                    finished.remove(&id);
                }
            }
            match self.settle_summary(&summary).await {
                Ok(settled) => report.add(settled),
                Err(error) => {
                    tracing::warn!(campaign = %id, %error, "could not settle campaign now");
                    report.failed_campaigns += 1;
                }
            }
        }
        if counter_answers && report.failed_campaigns == 0 {
            *lock(&self.last_complete) = std::time::Instant::now();
        }
        *lock(&self.last) = Some(report);
        Ok(report)
    }

    /// Settles one campaign.
    pub async fn settle(&self, campaign: CampaignId) -> Result<SettleReport> {
        let definition = self.store.campaign(campaign).await?;
        let issued = self.store.issued_count(campaign).await?;
        self.settle_summary(&CampaignSummary::new(definition, issued))
            .await
    }

    /// Settles every campaign every [`SettlerConfig::interval`] until `shutdown`.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.config.interval) => {}
            }
            match self.settle_all().await {
                Ok(report) if report.republished > 0 || report.unsettled > 0 => {
                    tracing::info!(?report, "settlement pass");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "settlement pass failed"),
            }
        }
    }
}
