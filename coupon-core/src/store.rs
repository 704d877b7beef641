//! Persistence: the final authority on what was issued.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    AdmissionLedger, Campaign, CampaignId, Coupon, FailureLedger, HeldSlot, IssueOutcome,
    IssueTicket, NewCampaign, Result, UserId,
};

/// The store of campaigns and coupons: what only a store can do.
///
/// It enforces the contract on its own, whatever the counter said: at most `cap`
/// coupons per campaign and `per_user_limit` per user, and each ticket at most once.
///
/// A store also keeps two ledgers the other parts need, as traits of their own:
/// [`AdmissionLedger`] (admissions without a coupon yet, and the epoch seals a counter
/// rebuild builds from) and [`FailureLedger`] (tickets it could not persist). They are
/// separate jobs with separate readers, but not separate storage: a seal gathers the
/// coupons, the pending tickets and the failures in one step atomic with
/// [`issue_batch`](CouponStore::issue_batch), so the same type implements all three.
/// Methods with a default ([`coupons_of_users`](CouponStore::coupons_of_users),
/// [`holders`](CouponStore::holders)) are correct as given; override them where the
/// backend answers in one query. A wrapper around another store should forward them
/// too, or the inner store's own answers are not used.
#[async_trait]
pub trait CouponStore: AdmissionLedger + FailureLedger + Send + Sync + 'static {
    /// Validates `new` ([`NewCampaign::validate`]) and stores it under a fresh id.
    async fn create_campaign(&self, new: NewCampaign) -> Result<Campaign>;

    /// Whether the store answers now (for readiness probes): a round trip to its
    /// database that reads and changes nothing.
    async fn ready(&self) -> Result<()>;

    /// The campaign with `id`, or [`Error::UnknownCampaign`](crate::Error::UnknownCampaign).
    async fn campaign(&self, id: CampaignId) -> Result<Campaign>;

    /// Every campaign with its issued count, by id.
    async fn campaigns(&self) -> Result<Vec<CampaignSummary>>;

    /// Replaces the window of campaign `id` (validated by [`Campaign::with_window`]):
    /// how an operator closes a campaign early or reopens it. Returns the campaign as
    /// stored now. Issuers see the change within their
    /// [`campaign_refresh`](crate::IssuerConfig::campaign_refresh).
    async fn set_window(
        &self,
        id: CampaignId,
        opens_at: Option<DateTime<Utc>>,
        closes_at: Option<DateTime<Utc>>,
    ) -> Result<Campaign>;

    /// Persists a batch of tickets atomically and idempotently, answering one outcome per
    /// ticket, in order.
    ///
    /// Must hold under concurrent callers: the check against `cap` and the insert happen
    /// in one serialised step per campaign, a ticket id stored before is a `Duplicate`,
    /// and so is a ticket whose user already holds `per_user_limit` coupons. A ticket of
    /// an epoch below the campaign's sealed epoch ([`AdmissionLedger::seal_epoch`]) whose
    /// (user, slot) that seal did not count is `Superseded` (epoch 0 is never checked).
    /// Then a ticket past the cap is `OverCap`. Re-running the same batch changes
    /// nothing. A ticket for a campaign that does not exist is answered
    /// `UnknownCampaign` without failing the others.
    ///
    /// Errors must be classified ([`Error::class`](crate::Error::class)): the worker
    /// retries a retryable or unknown-outcome error forever, and looks for the ticket to
    /// blame only on a permanent one.
    async fn issue_batch(&self, tickets: &[IssueTicket]) -> Result<Vec<IssueOutcome>>;

    /// Number of coupons persisted for `campaign`.
    async fn issued_count(&self, campaign: CampaignId) -> Result<u64>;

    /// The coupons `user` holds in `campaign` (at most `per_user_limit`), by rank.
    async fn coupons_of(&self, campaign: CampaignId, user: UserId) -> Result<Vec<Coupon>>;

    /// The coupons any of `users` hold in `campaign`, in no particular order, each
    /// once even if a user is named twice. By default one
    /// [`coupons_of`](CouponStore::coupons_of) per distinct user.
    async fn coupons_of_users(
        &self,
        campaign: CampaignId,
        users: &[UserId],
    ) -> Result<Vec<Coupon>> {
        let mut seen = std::collections::HashSet::new();
        let mut coupons = Vec::new();
        for &user in users {
            if seen.insert(user) {
                coupons.extend(self.coupons_of(campaign, user).await?);
            }
        }
        if users.is_empty() {
            // Still an UnknownCampaign for a campaign the store does not know.
            self.campaign(campaign).await?;
        }
        Ok(coupons)
    }

    /// One entry per coupon of `campaign`: the holders (a user holding two appears
    /// twice). By default read from [`coupon_slots`](CouponStore::coupon_slots).
    async fn holders(&self, campaign: CampaignId) -> Result<Vec<UserId>> {
        let slots = self.coupon_slots(campaign).await?;
        Ok(slots.into_iter().map(|slot| slot.user).collect())
    }

    /// One entry per coupon of `campaign` as the slot it fills (user, the admission's
    /// slot, rank), to rebuild a counter from. The slot is read from the ticket id where
    /// it tells ([`TicketId::admission`](crate::TicketId::admission)), else it is the
    /// coupon's position among its holder's.
    async fn coupon_slots(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>>;
}

/// A campaign with its count of persisted coupons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CampaignSummary {
    /// The definition.
    pub campaign: Campaign,
    /// Coupons persisted.
    pub issued: u64,
}

impl CampaignSummary {
    /// A summary of `campaign` with `issued` coupons.
    pub fn new(campaign: Campaign, issued: u64) -> Self {
        Self { campaign, issued }
    }
}

/// A ticket that could not be persisted, kept for operators: a dead letter (the store
/// refused it for good) or a ticket over the cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IssueFailure {
    /// The ticket as delivered.
    pub ticket: IssueTicket,
    /// The last error, as text.
    pub error: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it first failed.
    pub first_seen: DateTime<Utc>,
    /// When it last failed.
    pub last_seen: DateTime<Utc>,
    /// When its ticket was last published again by a replay, if it was since it last
    /// failed.
    pub replayed_at: Option<DateTime<Utc>>,
}

impl IssueFailure {
    /// A failure of `ticket` after `attempts` attempts, seen now.
    pub fn new(ticket: IssueTicket, error: impl Into<String>, attempts: u32) -> Self {
        let now = Utc::now();
        Self {
            ticket,
            error: error.into(),
            attempts,
            first_seen: now,
            last_seen: now,
            replayed_at: None,
        }
    }

    /// The same failure with the times a store kept: what reading a record back needs,
    /// since [`new`](Self::new) stamps the current time.
    ///
    /// ```
    /// use coupon_core::chrono::{TimeZone, Utc};
    /// use coupon_core::{CampaignId, IssueFailure, IssueTicket, UserId};
    /// let first = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
    /// let last = Utc.with_ymd_and_hms(2026, 12, 1, 10, 5, 0).unwrap();
    /// let ticket = IssueTicket::new(CampaignId(1), UserId(7), 1, 1);
    /// let stored = IssueFailure::new(ticket, "over cap", 3)
    ///     .seen_between(first, last)
    ///     .replayed_at(Some(last));
    /// assert_eq!((stored.first_seen, stored.last_seen), (first, last));
    /// assert!(!stored.is_open());
    /// ```
    pub fn seen_between(mut self, first_seen: DateTime<Utc>, last_seen: DateTime<Utc>) -> Self {
        self.first_seen = first_seen;
        self.last_seen = last_seen;
        self
    }

    /// The same failure, last replayed at `at` (`None`: open).
    pub fn replayed_at(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.replayed_at = at;
        self
    }

    /// Whether it waits for a replay: it failed and was not replayed since.
    pub fn is_open(&self) -> bool {
        self.replayed_at.is_none()
    }
}

/// The slot `coupon` fills, for [`CouponStore::coupon_slots`]: the slot its ticket id
/// names, or `position` (1-based, among its holder's coupons) for ids that do not tell.
pub fn coupon_slot(coupon: &Coupon, position: u32) -> HeldSlot {
    let slot = match coupon.ticket_id.admission() {
        Some((campaign, user, slot)) if campaign == coupon.campaign && user == coupon.user => slot,
        _ => position,
    };
    HeldSlot {
        user: coupon.user,
        slot,
        rank: coupon.rank,
        admitted_at: None,
        epoch: 0,
    }
}

/// Every slot of `campaign` the store knows was admitted: one per coupon
/// ([`CouponStore::coupon_slots`]), one per recorded pending ticket without a coupon
/// ([`AdmissionLedger::pending_tickets`]) and one per failure record without a coupon
/// ([`FailureLedger::failures`]: a dead letter may be replayed, and a replayed one may be
/// on its way), one per (user, slot).
/// What a store gathers when it seals an epoch ([`AdmissionLedger::seal_epoch`]), read here
/// through the trait: a store may call it inside its own atomic step.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
/// use coupon_core::memory::MemoryStore;
/// use coupon_core::{AdmissionLedger, CouponStore, IssueTicket, NewCampaign, UserId, admitted_slots};
///
/// let store = MemoryStore::new();
/// let campaign = store.create_campaign(NewCampaign::new("drop", 10)).await?;
/// store.issue_batch(&[IssueTicket::new(campaign.id, UserId(1), 1, 1)]).await?;
/// store.record_pending(&IssueTicket::new(campaign.id, UserId(2), 1, 2)).await?;
/// assert_eq!(admitted_slots(&store, campaign.id).await?.len(), 2);
/// # Ok(()) }
/// ```
pub async fn admitted_slots(
    store: &(impl CouponStore + ?Sized),
    campaign: CampaignId,
) -> Result<Vec<HeldSlot>> {
    let pending = store.pending_tickets(campaign).await?;
    let failed = store.failures(Some(campaign)).await?;
    let mut slots = store.coupon_slots(campaign).await?;
    // Read after the pending tickets and the failures: one whose coupon was stored in
    // between is in the coupons, and counted once.
    let mut known: std::collections::HashSet<(UserId, u32)> =
        slots.iter().map(|slot| (slot.user, slot.slot)).collect();
    let others = pending
        .iter()
        .chain(failed.iter().map(|failure| &failure.ticket));
    for ticket in others {
        if known.insert((ticket.user, ticket.slot)) {
            slots.push(ticket.held_slot());
        }
    }
    Ok(slots)
}

/// Closes campaign `id` in `store` to applications from now on (one not open yet never
/// opens); returns it as stored. Reached through
/// [`CouponService::close`](crate::CouponService::close), which updates its own cache at
/// once.
pub(crate) async fn close_campaign(store: &dyn CouponStore, id: CampaignId) -> Result<Campaign> {
    let campaign = store.campaign(id).await?;
    let now = Utc::now();
    let opens_at = campaign.opens_at.filter(|opens| *opens < now);
    store.set_window(id, opens_at, Some(now)).await
}

/// Opens campaign `id` in `store` again until `closes_at` (for good when `None`);
/// returns it as stored. Admissions resume where the counter stands: at most `cap`.
pub(crate) async fn reopen_campaign(
    store: &dyn CouponStore,
    id: CampaignId,
    closes_at: Option<DateTime<Utc>>,
) -> Result<Campaign> {
    let campaign = store.campaign(id).await?;
    store.set_window(id, campaign.opens_at, closes_at).await
}
