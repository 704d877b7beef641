//! The use cases of a deployment behind one value: what an HTTP layer, a CLI or a test
//! calls, so that none of them rebuilds the domain from the ports.

use std::sync::Arc;

use chrono::Utc;

use crate::{
    ApplyOutcome, Campaign, CampaignId, CampaignSummary, CouponCounter, CouponStore, IssueFailure,
    IssueQueue, IssueSource, IssuerConfig, NewCampaign, ReplayReport, Result, SettleReport,
    Settler, SettlerConfig, TicketId, UserId, replay_failures,
};
use crate::{CouponIssuer, IssueWorker, RunningWorker, WorkerConfig};

mod status;

pub use status::{CampaignState, CampaignStatus, CouponStatus, Readiness};

/// Settings of a [`CouponService`]: its issuer's and its settler's.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// How applications are admitted and handed off.
    pub issuer: IssuerConfig,
    /// How admissions left without a coupon are rolled forward.
    pub settler: SettlerConfig,
}

impl ServiceConfig {
    /// Sets [`ServiceConfig::issuer`].
    pub fn with_issuer(mut self, issuer: IssuerConfig) -> Self {
        self.issuer = issuer;
        self
    }

    /// Sets [`ServiceConfig::settler`].
    pub fn with_settler(mut self, settler: SettlerConfig) -> Self {
        self.settler = settler;
        self
    }
}

/// Every use case of a process that admits: campaigns, applications, what a user holds,
/// readiness, settlement, dead letters, restoring an in-memory counter, and the worker
/// when the process also persists. Built once from the ports; the issuer, the settler
/// and the worker inside it share them.
///
/// ```
/// use std::sync::Arc;
/// use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
/// use coupon_core::{ApplyOutcome, CouponService, CouponStatus, NewCampaign, UserId};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
/// let service = CouponService::new(
///     Arc::new(MemoryCounter::new()),
///     Arc::new(MemoryQueue::new(100)),
///     Arc::new(MemoryStore::new()),
/// );
/// let campaign = service.create_campaign(NewCampaign::new("launch", 1)).await?;
/// let outcome = service.apply(campaign.id, UserId(7)).await?;
/// assert!(matches!(outcome, ApplyOutcome::Accepted { .. }));
/// // Admitted, not persisted yet: no worker runs in this example.
/// assert_eq!(service.coupon_status(campaign.id, UserId(7)).await?, CouponStatus::Pending);
/// // Applying again is safe: the admission is not made twice.
/// assert_eq!(service.apply(campaign.id, UserId(7)).await?, ApplyOutcome::Pending);
/// assert_eq!(service.apply(campaign.id, UserId(8)).await?, ApplyOutcome::SoldOut);
/// assert!(service.status(campaign.id).await?.is_sold_out());
/// # Ok(()) }
/// ```
pub struct CouponService {
    counter: Arc<dyn CouponCounter>,
    queue: Arc<dyn IssueQueue>,
    store: Arc<dyn CouponStore>,
    source: Option<Arc<dyn IssueSource>>,
    issuer: CouponIssuer,
    settler: Arc<Settler>,
}

impl CouponService {
    /// A service over the ports with the default [`ServiceConfig`].
    pub fn new(
        counter: Arc<dyn CouponCounter>,
        queue: Arc<dyn IssueQueue>,
        store: Arc<dyn CouponStore>,
    ) -> Self {
        Self::with_config(counter, queue, store, ServiceConfig::default())
    }

    /// A service over the ports with explicit settings.
    pub fn with_config(
        counter: Arc<dyn CouponCounter>,
        queue: Arc<dyn IssueQueue>,
        store: Arc<dyn CouponStore>,
        config: ServiceConfig,
    ) -> Self {
        let issuer =
            CouponIssuer::with_config(counter.clone(), queue.clone(), store.clone(), config.issuer);
        let settler = Arc::new(Settler::new(
            counter.clone(),
            queue.clone(),
            store.clone(),
            config.settler,
        ));
        Self {
            counter,
            queue,
            store,
            source: None,
            issuer,
            settler,
        }
    }

    /// Also runs a worker on `source`, the consuming side of the hand-off
    /// ([`CouponService::spawn_worker`]), and reports its lag.
    pub fn with_source(mut self, source: Arc<dyn IssueSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// The worker of this process, on a task of its own: it persists what the source
    /// delivers into the service's store, until [`RunningWorker::stop`] (graceful: the
    /// batch in hand is finished and acked) or, for an in-process queue that was closed,
    /// [`RunningWorker::drain`]. `None` without a source ([`CouponService::with_source`]).
    #[must_use = "dropping the RunningWorker stops the worker"]
    pub fn spawn_worker(&self, config: WorkerConfig) -> Option<RunningWorker> {
        let source = self.source.clone()?;
        Some(IssueWorker::with_config(source, self.store.clone(), config).spawn())
    }

    /// The settler sharing this service's ports, to run on a schedule
    /// ([`Settler::run`]) and to read its totals from.
    pub fn settler(&self) -> &Arc<Settler> {
        &self.settler
    }

    /// Creates a campaign and builds its counter (the issuer's `create_campaign`).
    pub async fn create_campaign(&self, new: NewCampaign) -> Result<Campaign> {
        self.issuer.create_campaign(new).await
    }

    /// Applies for `user` (the issuer's `apply`).
    pub async fn apply(&self, campaign: CampaignId, user: UserId) -> Result<ApplyOutcome> {
        self.issuer.apply(campaign, user).await
    }

    /// Closes `campaign` from now (the issuer's `close`).
    pub async fn close(&self, campaign: CampaignId) -> Result<Campaign> {
        self.issuer.close(campaign).await
    }

    /// Opens `campaign` again, until `closes_at` if given (the issuer's `reopen`).
    pub async fn reopen(
        &self,
        campaign: CampaignId,
        closes_at: Option<chrono::DateTime<Utc>>,
    ) -> Result<Campaign> {
        self.issuer.reopen(campaign, closes_at).await
    }

    /// A campaign's counts and state now.
    pub async fn status(&self, campaign: CampaignId) -> Result<CampaignStatus> {
        let campaign = self.issuer.campaign(campaign).await?;
        let issued = self.store.issued_count(campaign.id).await?;
        self.status_of(Campaign::clone(&campaign), issued).await
    }

    /// Every campaign with its counts and state, in the store's order.
    pub async fn campaigns(&self) -> Result<Vec<CampaignStatus>> {
        let mut statuses = Vec::new();
        for summary in self.store.campaigns().await? {
            statuses.push(self.status_of(summary.campaign, summary.issued).await?);
        }
        Ok(statuses)
    }

    /// Every campaign with its count of persisted coupons, from the store alone: what a
    /// process can tell that does not share the counter (an operator's command beside a
    /// service whose counter lives in that service's memory).
    pub async fn stored_campaigns(&self) -> Result<Vec<CampaignSummary>> {
        self.store.campaigns().await
    }

    async fn status_of(&self, campaign: Campaign, issued: u64) -> Result<CampaignStatus> {
        // A counter that does not answer now (Redis away, a standby without the lease)
        // says nothing: the store's count stands, and nothing says it lost its memory,
        // so the campaign is not reported as rebuilding (readiness tells that story).
        let (admitted, lost) = match self.counter.status(&campaign).await {
            Ok(counter) => (counter.admitted, !counter.is_ready()),
            Err(_) => (0, false),
        };
        let mut status = CampaignStatus::new(campaign, admitted, issued);
        // Only a campaign that may still admit is rebuilt (one closed, or full in the
        // store, is answered without its counter).
        status.rebuilding =
            lost && matches!(status.state, CampaignState::Open | CampaignState::NotOpen);
        Ok(status)
    }

    /// What `user` holds of `campaign`: coupons, an admission not persisted yet, or
    /// nothing.
    pub async fn coupon_status(&self, campaign: CampaignId, user: UserId) -> Result<CouponStatus> {
        let coupons = self.store.coupons_of(campaign, user).await?;
        if !coupons.is_empty() {
            return Ok(CouponStatus::Issued(coupons));
        }
        let defined = self.issuer.campaign(campaign).await?;
        match self.counter.is_admitted(&defined, user).await {
            Ok(true) => Ok(CouponStatus::Pending),
            Ok(false) => Ok(CouponStatus::None),
            // A counter that cannot tell (it lost its memory) is rebuilt only while the
            // campaign may admit. Where it will not be, the store's answer stands: a
            // campaign full in the store (each admission is then a coupon, and this user
            // holds none), or a closed one (no rebuild comes; an admission whose coupon
            // is still on its way reads as none until the worker stores it).
            Err(error) => {
                let issued = self.store.issued_count(campaign).await;
                match issued
                    .is_ok_and(|issued| crate::fence::admits_no_more(&defined, issued, Utc::now()))
                {
                    true => Ok(CouponStatus::None),
                    false => Err(error),
                }
            }
        }
    }

    /// Whether every port answers now; each one that does not, with its error.
    pub async fn readiness(&self) -> Readiness {
        let (counter, queue, store) =
            tokio::join!(self.counter.ready(), self.queue.ready(), self.store.ready());
        let failures = [("counter", counter), ("queue", queue), ("store", store)]
            .into_iter()
            .filter_map(|(port, answer)| answer.err().map(|error| (port, error)))
            .collect();
        Readiness { failures }
    }

    /// Settles `campaign`, or every campaign when `None`, now ([`Settler::settle`]).
    pub async fn settle(&self, campaign: Option<CampaignId>) -> Result<SettleReport> {
        match campaign {
            Some(campaign) => self.settler.settle(campaign).await,
            None => self.settler.settle_all().await,
        }
    }

    /// Tickets the worker gave up on, of `campaign` or of every campaign.
    pub async fn dead_letters(&self, campaign: Option<CampaignId>) -> Result<Vec<IssueFailure>> {
        self.store.failures(campaign).await
    }

    /// Publishes dead letters again ([`replay_failures`]).
    pub async fn replay(
        &self,
        campaign: Option<CampaignId>,
        tickets: &[TicketId],
    ) -> Result<ReplayReport> {
        replay_failures(self.store.as_ref(), self.queue.as_ref(), campaign, tickets).await
    }

    /// What waits in the hand-off this process's worker reads ([`IssueSource::lag`]:
    /// tickets, or Kafka records of up to a group each), when there is one and it can
    /// tell.
    pub async fn lag(&self) -> Option<u64> {
        match &self.source {
            Some(source) => source.lag().await.ok().flatten(),
            None => None,
        }
    }

    /// Rebuilds, one after the other, the counter of every campaign that may admit (not
    /// closed, not full in the store) and is not built: what a process whose counter
    /// starts empty (in memory) does before it listens, so that its first applies find
    /// their campaigns ready.
    /// Returns how many it built; a campaign that fails is left to the watcher
    /// ([`CouponService::watch_counters`]).
    pub async fn rebuild_counters(&self) -> Result<usize> {
        let now = Utc::now();
        let mut built = 0;
        for summary in self.store.campaigns().await? {
            let campaign = summary.campaign;
            // Nothing to admit, so nothing to rebuild; an apply there is answered from
            // the store.
            if crate::fence::admits_no_more(&campaign, summary.issued, now)
                || self.counter.status(&campaign).await?.is_ready()
            {
                continue;
            }
            match self.issuer.fence().rebuild(&campaign).await {
                Ok(crate::Rebuild::Built(_)) => built += 1,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(campaign = %campaign.id, %error, "counter not rebuilt at start; the watcher tries again");
                }
            }
        }
        Ok(built)
    }

    /// Watches the counter until `shutdown`: about every second, every campaign that may
    /// admit and whose counter is not built (it lost its memory: a restart, a failover,
    /// a lease lost) is rebuilt on a task of its own, without waiting for an apply.
    /// Every process that admits runs it; the counter lets one rebuild a campaign at a
    /// time.
    pub async fn watch_counters(&self, shutdown: impl std::future::Future<Output = ()>) {
        self.issuer.fence().watch(shutdown).await;
    }
}
