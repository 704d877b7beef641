//! The in-memory adapters wrapped in a seeded fault injector: errors before the effect
//! and after it (the effect happened, the caller hears a failure), delays, duplicated
//! publishes, and a counter that loses its memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::lock;
use crate::rng::Rng;
use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
use coupon_core::{
    Admission, Batch, Campaign, CampaignId, CampaignSummary, CounterStatus, Coupon, CouponCounter,
    CouponStore, Error, HeldSlot, IssueFailure, IssueOutcome, IssueQueue, IssueSource, IssueTicket,
    NewCampaign, QueueMark, Rebuild, Release, Result, SealEpoch, SealedEpoch, TicketId, UserId,
};

/// How likely each fault is, per call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FaultRates {
    /// A call fails before it does anything (retryable).
    pub before: f64,
    /// A call does its work, then the caller hears a failure of unknown outcome.
    pub after: f64,
    /// A call is delayed by up to three seconds first.
    pub delay: f64,
    /// A publish stores its ticket twice.
    pub duplicate: f64,
    /// An admission finds the counter emptied, as a restarted Redis would be.
    pub forget: f64,
    /// A worker is killed mid-run (per batch it takes).
    pub crash: f64,
    /// An applicant gives up on a request mid-way.
    pub give_up: f64,
}

impl Default for FaultRates {
    fn default() -> Self {
        Self {
            before: 0.04,
            after: 0.04,
            delay: 0.03,
            duplicate: 0.02,
            forget: 0.002,
            crash: 0.03,
            give_up: 0.05,
        }
    }
}

/// The seeded source of every fault, and the trace of those it injected.
pub(crate) struct Injector {
    rng: Mutex<Rng>,
    rates: FaultRates,
    started: tokio::time::Instant,
    enabled: std::sync::atomic::AtomicBool,
    trace: Mutex<Vec<String>>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// When the counter lost its memory (virtual time).
    losses: Mutex<Vec<tokio::time::Instant>>,
}

impl Injector {
    pub(crate) fn new(seed: u64, rates: FaultRates) -> Self {
        Self {
            rng: Mutex::new(Rng::new(seed)),
            rates,
            started: tokio::time::Instant::now(),
            enabled: std::sync::atomic::AtomicBool::new(true),
            trace: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
            losses: Mutex::new(Vec::new()),
        }
    }

    /// Ends the fault window: from now on every call behaves.
    pub(crate) fn disable(&self) {
        self.enabled
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.note("faults", "end of the fault window".into());
    }

    pub(crate) fn rates(&self) -> &FaultRates {
        &self.rates
    }

    /// A draw that does not depend on the fault window (arrival times, give-ups).
    pub(crate) fn below(&self, n: u64) -> u64 {
        lock(&self.rng).below(n)
    }

    /// Whether to inject fault `kind` with probability `p`, noting it when so.
    pub(crate) fn roll(&self, p: f64, kind: &'static str, what: impl FnOnce() -> String) -> bool {
        if !self.enabled.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        if !lock(&self.rng).chance(p) {
            return false;
        }
        self.note(kind, what());
        true
    }

    /// Records an event in the trace with the virtual time.
    pub(crate) fn note(&self, kind: &'static str, what: String) {
        let at = self.started.elapsed().as_secs_f64();
        lock(&self.trace).push(format!("{at:>8.3}s {kind:<18} {what}"));
        *lock(&self.counts).entry(kind).or_default() += 1;
    }

    /// Sleeps up to three seconds when a delay is drawn.
    async fn maybe_delay(&self, what: &str) {
        if self.roll(self.rates.delay, "delay", || what.to_owned()) {
            let millis = self.below(3_000);
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
    }

    fn before(&self, what: &str) -> Result<()> {
        if self.roll(self.rates.before, "error before", || what.to_owned()) {
            return Err(Error::unavailable(
                "sim",
                format!("injected before {what}"),
                None,
            ));
        }
        Ok(())
    }

    fn after(&self, what: &str) -> bool {
        self.roll(self.rates.after, "error after", || what.to_owned())
    }

    /// Every moment the counter lost its memory.
    pub(crate) fn losses(&self) -> Vec<tokio::time::Instant> {
        lock(&self.losses).clone()
    }

    pub(crate) fn trace(&self) -> Vec<String> {
        lock(&self.trace).clone()
    }

    pub(crate) fn counts(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.counts).clone()
    }
}

fn unknown(what: &str) -> Error {
    Error::outcome_unknown("sim", format!("injected after {what}"), None)
}

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
            .roll(self.faults.rates.forget, "counter forgets", || {
                "every campaign's admissions".into()
            })
        {
            *self.inner.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(MemoryCounter::new());
            lock(&self.faults.losses).push(tokio::time::Instant::now());
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

/// A [`MemoryQueue`] whose publishes fail before or after storing, are delayed or
/// stored twice, and whose consumer side fails before taking a batch.
pub(crate) struct SimQueue {
    inner: MemoryQueue,
    faults: Arc<Injector>,
}

impl SimQueue {
    pub(crate) fn new(inner: MemoryQueue, faults: Arc<Injector>) -> Self {
        Self { inner, faults }
    }
}

#[async_trait]
impl IssueQueue for SimQueue {
    async fn publish(&self, ticket: &IssueTicket) -> Result<()> {
        let what = format!("publish user {} rank {}", ticket.user, ticket.rank);
        self.faults.maybe_delay(&what).await;
        if self
            .faults
            .roll(self.faults.rates.before / 2.0, "publish refused", || {
                what.clone()
            })
        {
            return Err(Error::PublishRefused {
                backend: "sim",
                source: "injected refusal".into(),
            });
        }
        if self
            .faults
            .roll(self.faults.rates.before / 2.0, "publish lost", || {
                what.clone()
            })
        {
            return Err(Error::PublishUnknown {
                backend: "sim",
                source: "injected: not stored, outcome unknown".into(),
            });
        }
        self.inner.publish(ticket).await?;
        if self
            .faults
            .roll(self.faults.rates.duplicate, "publish twice", || {
                what.clone()
            })
        {
            self.inner.publish(ticket).await?;
        }
        if self.faults.after(&what) {
            return Err(Error::PublishUnknown {
                backend: "sim",
                source: "injected: stored, outcome unknown".into(),
            });
        }
        Ok(())
    }

    async fn mark(&self) -> Result<Option<QueueMark>> {
        self.inner.mark().await
    }

    async fn drained(&self, mark: &QueueMark) -> Result<bool> {
        self.inner.drained(mark).await
    }
}

#[async_trait]
impl IssueSource for SimQueue {
    async fn next_batch(&self, max: usize) -> Result<Option<Batch>> {
        self.faults.before("next_batch")?;
        self.inner.next_batch(max).await
    }

    async fn ack(&self, batch: Batch) -> Result<()> {
        self.inner.ack(batch).await
    }

    async fn keep_alive(&self) -> Result<()> {
        self.inner.keep_alive().await
    }

    async fn lag(&self) -> Result<Option<u64>> {
        IssueSource::lag(&self.inner).await
    }
}

/// A [`MemoryStore`] whose batches fail before persisting or after committing.
pub(crate) struct SimStore {
    pub(crate) inner: MemoryStore,
    faults: Arc<Injector>,
}

impl SimStore {
    pub(crate) fn new(faults: Arc<Injector>) -> Self {
        Self {
            inner: MemoryStore::new(),
            faults,
        }
    }
}

#[async_trait]
impl CouponStore for SimStore {
    async fn ready(&self) -> Result<()> {
        self.faults.before("ready")?;
        self.inner.ready().await
    }

    async fn create_campaign(&self, new: NewCampaign) -> Result<Campaign> {
        self.inner.create_campaign(new).await
    }

    async fn campaign(&self, id: CampaignId) -> Result<Campaign> {
        self.faults.before("campaign")?;
        self.inner.campaign(id).await
    }

    async fn campaigns(&self) -> Result<Vec<CampaignSummary>> {
        self.faults.before("campaigns")?;
        self.inner.campaigns().await
    }

    async fn set_window(
        &self,
        id: CampaignId,
        opens_at: Option<DateTime<Utc>>,
        closes_at: Option<DateTime<Utc>>,
    ) -> Result<Campaign> {
        self.faults.before("set_window")?;
        self.inner.set_window(id, opens_at, closes_at).await
    }

    async fn issue_batch(&self, tickets: &[IssueTicket]) -> Result<Vec<IssueOutcome>> {
        let what = format!("issue_batch of {}", tickets.len());
        self.faults.maybe_delay(&what).await;
        self.faults.before(&what)?;
        let outcomes = self.inner.issue_batch(tickets).await?;
        if self.faults.after(&what) {
            return Err(unknown(&what));
        }
        Ok(outcomes)
    }

    async fn issued_count(&self, campaign: CampaignId) -> Result<u64> {
        self.inner.issued_count(campaign).await
    }

    async fn coupons_of(&self, campaign: CampaignId, user: UserId) -> Result<Vec<Coupon>> {
        self.faults.before("coupons_of")?;
        self.inner.coupons_of(campaign, user).await
    }

    async fn coupons_of_users(
        &self,
        campaign: CampaignId,
        users: &[UserId],
    ) -> Result<Vec<Coupon>> {
        self.faults.before("coupons_of_users")?;
        self.inner.coupons_of_users(campaign, users).await
    }

    async fn holders(&self, campaign: CampaignId) -> Result<Vec<UserId>> {
        self.inner.holders(campaign).await
    }

    async fn coupon_slots(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>> {
        self.faults.before("coupon_slots")?;
        self.inner.coupon_slots(campaign).await
    }

    async fn sealed_epoch(&self, campaign: CampaignId) -> Result<u64> {
        self.faults.before("sealed_epoch")?;
        self.inner.sealed_epoch(campaign).await
    }

    async fn seal_epoch(
        &self,
        campaign: CampaignId,
        after: u64,
        counted: &[HeldSlot],
    ) -> Result<SealedEpoch> {
        self.faults.before("seal_epoch")?;
        self.inner.seal_epoch(campaign, after, counted).await
    }

    async fn record_pending(&self, ticket: &IssueTicket) -> Result<()> {
        let what = format!("record_pending of {}", ticket.ticket_id);
        self.faults.before(&what)?;
        self.inner.record_pending(ticket).await?;
        if self.faults.after(&what) {
            return Err(unknown(&what));
        }
        Ok(())
    }

    async fn pending_tickets(&self, campaign: CampaignId) -> Result<Vec<IssueTicket>> {
        self.faults.before("pending_tickets")?;
        self.inner.pending_tickets(campaign).await
    }

    async fn forget_settled_pending(&self, campaign: CampaignId) -> Result<u64> {
        self.faults.before("forget_settled_pending")?;
        self.inner.forget_settled_pending(campaign).await
    }

    async fn record_failure(&self, failure: &IssueFailure) -> Result<()> {
        self.inner.record_failure(failure).await
    }

    async fn failures(&self, campaign: Option<CampaignId>) -> Result<Vec<IssueFailure>> {
        self.inner.failures(campaign).await
    }

    async fn mark_replayed(&self, tickets: &[TicketId], at: DateTime<Utc>) -> Result<u64> {
        self.inner.mark_replayed(tickets, at).await
    }
}
