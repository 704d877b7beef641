//! The capped-apply algorithm: window, sold-out memo, admission, durable hand-off.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::fence::Fence;
use crate::handoff::{AbandonGuard, HandOff};
use crate::sold_out::{Holders, Memo, SoldOutMemo};
use crate::sync::lock;
use crate::unanswered::Unanswered;
use crate::{
    Admission, ApplyOutcome, Campaign, CampaignId, CouponCounter, CouponStore, Error, HeldSlot,
    IssueQueue, IssueTicket, NewCampaign, Result, TicketId, UserId, WindowState,
};

/// Settings of a [`CouponIssuer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuerConfig {
    /// How long a "sold out" answer from the counter is reused locally. Default 500 ms;
    /// zero disables the memo.
    pub sold_out_ttl: Duration,
    /// Longest wait for the queue to take a ticket; after it the apply answers
    /// `Pending` (the settler rolls the admission forward). Default 10 s.
    pub publish_timeout: Duration,
    /// How long a rebuild waits for the queue to drain when the queue cannot tell
    /// ([`IssueQueue::mark`] is `None`). Default 30 s.
    pub drain_fallback: Duration,
    /// How long a cached campaign definition is used before it is read again, so that
    /// a window an operator changed ([`CouponStore::set_window`]) takes effect in every
    /// process. A store that cannot answer then leaves the cached one in use. Default
    /// 1 s.
    pub campaign_refresh: Duration,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        Self {
            sold_out_ttl: Duration::from_millis(500),
            publish_timeout: Duration::from_secs(10),
            drain_fallback: Duration::from_secs(30),
            campaign_refresh: Duration::from_secs(1),
        }
    }
}

impl IssuerConfig {
    /// Sets [`IssuerConfig::sold_out_ttl`].
    pub fn with_sold_out_ttl(mut self, ttl: Duration) -> Self {
        self.sold_out_ttl = ttl;
        self
    }

    /// Sets [`IssuerConfig::publish_timeout`].
    pub fn with_publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Sets [`IssuerConfig::campaign_refresh`].
    pub fn with_campaign_refresh(mut self, refresh: Duration) -> Self {
        self.campaign_refresh = refresh;
        self
    }

    /// Sets [`IssuerConfig::drain_fallback`].
    pub fn with_drain_fallback(mut self, drain_fallback: Duration) -> Self {
        self.drain_fallback = drain_fallback;
        self
    }
}

/// Users known to hold every coupon they may (per process, bounded): a repeated apply
/// of theirs is `AlreadyApplied` without asking the store again. Holding coupons is
/// forever, so the memo never goes stale.
const HOLDERS_MEMO_LIMIT: usize = 1_000_000;

/// Answers applications: admits at most `cap` users through the counter and hands each
/// admitted one off durably before saying `Accepted`.
///
/// `apply` is cancel-safe: once the counter granted a slot, dropping the future (an
/// HTTP client that went away) does not abandon the admission; its hand-off finishes on
/// a task of its own. What even that cannot cover (a process killed between admission
/// and publish, a counter timeout after the slot was taken) the
/// [`Settler`](crate::Settler) rolls forward.
///
/// A counter that lost its memory answers [`Error::NotReady`]; the issuer passes that
/// on (a retryable error), unless the store already holds the campaign's cap of coupons
/// (then it answers `SoldOut`, or `AlreadyApplied` to a holder), and starts rebuilding
/// the campaign's counter in a new epoch (one rebuild per campaign in this process; the
/// counter lets one process at a time write it).
///
/// Internal to the crate: applications reach it through
/// [`CouponService`](crate::CouponService), the one way in, whose documentation shows
/// the answers above.
pub(crate) struct CouponIssuer {
    hand_off: Arc<HandOff>,
    store: Arc<dyn CouponStore>,
    campaigns: RwLock<HashMap<CampaignId, Cached>>,
    campaign_refresh: Duration,
    sold_out: Arc<SoldOutMemo>,
    holders: Mutex<HashSet<(CampaignId, UserId)>>,
    fence: Arc<Fence>,
    /// Campaigns whose store held `cap` coupons when last asked, and when it was asked:
    /// read while the counter is not ready, at most once a second per campaign.
    full: Mutex<HashMap<CampaignId, (Instant, bool)>>,
}

/// A campaign definition and when it was read from the store.
#[derive(Clone)]
struct Cached {
    campaign: Arc<Campaign>,
    read_at: Instant,
}

impl CouponIssuer {
    /// An issuer with the default [`IssuerConfig`]. The store holds the campaign
    /// definitions (cached, read again every [`IssuerConfig::campaign_refresh`]), tells
    /// whether a user who applies again already holds their coupons, and records a
    /// ticket whose publish has no known outcome as pending.
    #[cfg(test)]
    pub(crate) fn new(
        counter: Arc<dyn CouponCounter>,
        queue: Arc<dyn IssueQueue>,
        store: Arc<dyn CouponStore>,
    ) -> Self {
        Self::with_config(counter, queue, store, IssuerConfig::default())
    }

    /// An issuer with explicit settings.
    pub(crate) fn with_config(
        counter: Arc<dyn CouponCounter>,
        queue: Arc<dyn IssueQueue>,
        store: Arc<dyn CouponStore>,
        config: IssuerConfig,
    ) -> Self {
        Self {
            fence: Arc::new(Fence::new(
                counter.clone(),
                queue.clone(),
                store.clone(),
                config.drain_fallback,
            )),
            hand_off: Arc::new(HandOff {
                counter,
                queue,
                store: store.clone(),
                publish_timeout: config.publish_timeout,
                unanswered: Unanswered::default(),
            }),
            store,
            campaigns: RwLock::new(HashMap::new()),
            campaign_refresh: config.campaign_refresh,
            sold_out: Arc::new(SoldOutMemo::new(config.sold_out_ttl)),
            holders: Mutex::new(HashSet::new()),
            full: Mutex::new(HashMap::new()),
        }
    }

    /// The fence that rebuilds this issuer's counter.
    pub(crate) fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// Creates a campaign in the store and builds its counter, so that it admits from
    /// its first apply. Should the build fail (the counter is unreachable), the
    /// campaign exists anyway and its first apply starts the rebuild.
    pub(crate) async fn create_campaign(&self, new: NewCampaign) -> Result<Campaign> {
        let campaign = self.store.create_campaign(new).await?;
        match self.fence.build_new(&campaign).await {
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(campaign = %campaign.id, %error, "counter not built at creation; the first apply rebuilds it");
            }
        }
        Ok(campaign)
    }

    /// Applies `user` to `campaign`.
    ///
    /// Answers `Accepted` only once the queue acknowledged the ticket, and `Pending`
    /// when the user holds a slot whose coupon is not in the store yet (this call's
    /// hand-off outcome is unknown, or an earlier call's is). Errors:
    /// [`Error::UnknownCampaign`]; a counter error as is (nothing was published; an
    /// [`Error::OutcomeUnknown`] may have taken a slot, which the settler rolls
    /// forward); [`Error::NotHandedOff`] when the queue refused the ticket and the slot
    /// was given back.
    pub(crate) async fn apply(&self, campaign: CampaignId, user: UserId) -> Result<ApplyOutcome> {
        let campaign = self.campaign(campaign).await?;
        match campaign.window_state(Utc::now()) {
            WindowState::NotOpen => return Ok(ApplyOutcome::NotOpen),
            WindowState::Closed => return Ok(ApplyOutcome::Closed),
            WindowState::Open => {}
        }
        // Sold out for everyone but the holders (who hear where their slots stand) and an
        // applicant whose earlier apply here took a slot and told them nothing.
        match self.sold_out.check(campaign.id, user, Instant::now()) {
            Memo::SoldOut if !self.hand_off.unanswered.contains(campaign.id, user) => {
                return Ok(ApplyOutcome::SoldOut);
            }
            Memo::Holder { .. } => return self.answer_holder(&campaign, user).await,
            _ => {}
        }
        let admission = match self.hand_off.counter.try_acquire(&campaign, user).await {
            Ok(admission) => admission,
            Err(error) => {
                if matches!(error, Error::NotReady { .. }) {
                    self.fence.rebuild_in_background(campaign.clone());
                }
                // Nothing was admitted (an unknown outcome may have taken a slot, and
                // its applicant must not hear "sold out"): the store may answer.
                if error.is_retryable()
                    && !error.is_outcome_unknown()
                    && let Some(answer) = self.while_rebuilding(&campaign, user).await
                {
                    return Ok(answer);
                }
                return Err(error);
            }
        };
        let held = match admission {
            Admission::Granted {
                rank,
                slot,
                admitted_at,
                epoch,
            } => HeldSlot {
                user,
                slot,
                rank,
                admitted_at: Some(admitted_at),
                epoch,
            },
            Admission::AlreadyApplied => return self.answer_holder(&campaign, user).await,
            Admission::SoldOut => {
                self.sold_out_now(&campaign, false);
                return Ok(ApplyOutcome::SoldOut);
            }
        };
        let ticket = IssueTicket::for_slot(campaign.id, &held);
        let releasing = AtomicBool::new(false);
        // Every publish of this admission, here or on behalf of a caller that went
        // away, ends by this deadline.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(self.hand_off.publish_timeout)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        let guard = AbandonGuard {
            hand_off: &self.hand_off,
            ticket: Some(&ticket),
            releasing: &releasing,
            deadline,
        };
        let outcome = self.hand_off.run(&ticket, &releasing, deadline).await;
        guard.disarm();
        if outcome.is_err() {
            // The slot may still be held (a refused hand-off gives it back; noting it
            // then costs a retry one counter trip, nothing more).
            self.hand_off.unanswered.note(campaign.id, user);
        }
        outcome
    }

    /// The campaign definition, from the cache or the store. A cached one older than
    /// the refresh period is read again by one caller while the others use it; if the
    /// store cannot answer, the cached one stays in use.
    pub(crate) async fn campaign(&self, id: CampaignId) -> Result<Arc<Campaign>> {
        let now = Instant::now();
        let Some(cached) = self.cached(id) else {
            let campaign = Arc::new(self.store.campaign(id).await?);
            self.remember(id, campaign.clone());
            return Ok(campaign);
        };
        if now.saturating_duration_since(cached.read_at) < self.campaign_refresh
            || !self.claim_refresh(id, now)
        {
            return Ok(cached.campaign);
        }
        match self.store.campaign(id).await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                self.replace(id, &cached.campaign, fresh.clone());
                Ok(fresh)
            }
            Err(error) => {
                tracing::debug!(campaign = %id, %error, "campaign not read again; the cached one stays");
                Ok(cached.campaign)
            }
        }
    }

    /// Closes campaign `id` to applications now (one not open yet never opens) and
    /// returns it as stored; this issuer answers `Closed` from its next apply, others
    /// within their refresh period.
    pub(crate) async fn close(&self, id: CampaignId) -> Result<Campaign> {
        let closed = crate::close_campaign(self.store.as_ref(), id).await?;
        self.remember(id, Arc::new(closed.clone()));
        Ok(closed)
    }

    /// Opens campaign `id` again until `closes_at` (for good when `None`) and returns it
    /// as stored. Admissions resume where the counter stands: at most `cap` in all.
    pub(crate) async fn reopen(
        &self,
        id: CampaignId,
        closes_at: Option<chrono::DateTime<Utc>>,
    ) -> Result<Campaign> {
        let reopened = crate::reopen_campaign(self.store.as_ref(), id, closes_at).await?;
        self.remember(id, Arc::new(reopened.clone()));
        Ok(reopened)
    }

    fn cached(&self, id: CampaignId) -> Option<Cached> {
        let campaigns = self.campaigns.read().unwrap_or_else(|e| e.into_inner());
        campaigns.get(&id).cloned()
    }

    fn remember(&self, id: CampaignId, campaign: Arc<Campaign>) {
        let mut campaigns = self.campaigns.write().unwrap_or_else(|e| e.into_inner());
        campaigns.insert(
            id,
            Cached {
                campaign,
                read_at: Instant::now(),
            },
        );
    }

    /// Caches `fresh` unless the entry changed from `read` meanwhile (a close or reopen
    /// in this process, newer than this read).
    fn replace(&self, id: CampaignId, read: &Arc<Campaign>, fresh: Arc<Campaign>) {
        let mut campaigns = self.campaigns.write().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = campaigns.get_mut(&id)
            && Arc::ptr_eq(&cached.campaign, read)
        {
            cached.campaign = fresh;
        }
    }

    /// Whether this caller reads `id` again: the first to find it stale does, and
    /// marks it fresh meanwhile so the others keep using it.
    fn claim_refresh(&self, id: CampaignId, now: Instant) -> bool {
        let mut campaigns = self.campaigns.write().unwrap_or_else(|e| e.into_inner());
        match campaigns.get_mut(&id) {
            Some(cached)
                if now.saturating_duration_since(cached.read_at) >= self.campaign_refresh =>
            {
                cached.read_at = now;
                true
            }
            _ => false,
        }
    }

    /// A user who holds slots applied again: where their slots stand.
    async fn answer_holder(&self, campaign: &Campaign, user: UserId) -> Result<ApplyOutcome> {
        let answer = self.already_applied(campaign, user).await;
        if answer.is_ok() {
            self.hand_off.unanswered.answered(campaign.id, user);
        }
        answer
    }

    /// Records that `campaign` is sold out now and, when the memo asks for it, loads who
    /// holds its slots on a task of its own: from the counter, or from the store's
    /// coupons when the counter is not ready.
    fn sold_out_now(&self, campaign: &Campaign, from_store: bool) {
        if !self.sold_out.mark(campaign.id, Instant::now()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sold_out.loaded(campaign.id, None, Instant::now());
            return;
        };
        let (memo, id) = (self.sold_out.clone(), campaign.id);
        let (counter, store) = (self.hand_off.counter.clone(), self.store.clone());
        runtime.spawn(async move {
            let holders = if from_store {
                store
                    .holders(id)
                    .await
                    .map(|users| Holders::tally(users, true))
            } else {
                counter
                    .held_slots(id)
                    .await
                    .map(|slots| Holders::tally(slots.into_iter().map(|slot| slot.user), false))
            };
            if let Err(error) = &holders {
                tracing::debug!(campaign = %id, %error, "loading the holders of a sold-out campaign failed");
            }
            memo.loaded(id, holders.ok(), Instant::now());
        });
    }

    /// The answer to `user` while the counter cannot admit (being rebuilt, or away),
    /// when the store can give one: a campaign whose store holds `cap` coupons is sold
    /// out whatever the counter says (`AlreadyApplied` to a holder of as many coupons as
    /// the limit allows). `None` otherwise: the caller hears the counter's retryable
    /// error.
    async fn while_rebuilding(&self, campaign: &Campaign, user: UserId) -> Option<ApplyOutcome> {
        if !self.store_is_full(campaign).await {
            return None;
        }
        self.sold_out_now(campaign, true);
        match self.sold_out.check(campaign.id, user, Instant::now()) {
            Memo::SoldOut => Some(ApplyOutcome::SoldOut),
            Memo::Holder { count, .. } if count >= campaign.per_user_limit => {
                Some(ApplyOutcome::AlreadyApplied)
            }
            Memo::Holder { .. } => Some(ApplyOutcome::SoldOut),
            // The holders are loading: the store answers this one.
            Memo::Unknown => {
                let coupons = self.store.coupons_of(campaign.id, user).await.ok()?;
                Some(if coupons.len() >= campaign.per_user_limit as usize {
                    ApplyOutcome::AlreadyApplied
                } else {
                    ApplyOutcome::SoldOut
                })
            }
        }
    }

    /// Whether the store holds `campaign`'s cap of coupons, read at most once a second.
    async fn store_is_full(&self, campaign: &Campaign) -> bool {
        let now = Instant::now();
        if let Some(&(at, full)) = lock(&self.full).get(&campaign.id)
            && now.saturating_duration_since(at) < Duration::from_secs(1)
        {
            return full;
        }
        let full = match self.store.issued_count(campaign.id).await {
            Ok(issued) => issued >= campaign.cap,
            Err(_) => false,
        };
        lock(&self.full).insert(campaign.id, (now, full));
        full
    }

    /// The counter says the user holds every slot they may: `AlreadyApplied` once the
    /// store holds that many coupons, `Pending` until then, once the tickets of the
    /// slots without a coupon are recorded in the store (the earlier apply that took
    /// them may have ended in an error, a timeout or a client gone away, leaving them
    /// only in the counter). A store that cannot tell now is a retryable error.
    async fn already_applied(&self, campaign: &Campaign, user: UserId) -> Result<ApplyOutcome> {
        let key = (campaign.id, user);
        if lock(&self.holders).contains(&key) {
            return Ok(ApplyOutcome::AlreadyApplied);
        }
        let coupons = self.store.coupons_of(campaign.id, user).await?;
        if coupons.len() >= campaign.per_user_limit as usize {
            let mut holders = lock(&self.holders);
            if holders.len() >= HOLDERS_MEMO_LIMIT {
                holders.clear();
            }
            holders.insert(key);
            return Ok(ApplyOutcome::AlreadyApplied);
        }
        let changed = || {
            // A slot was given back since the counter answered (its hand-off was
            // refused), or the counter lost it: nothing to promise; applying again
            // tells what holds now.
            Error::unavailable(
                "issuer",
                format!(
                    "user {user}'s admission to campaign {} changed while answering",
                    campaign.id
                ),
                None,
            )
        };
        let held = self.hand_off.counter.slots_of(campaign, user).await?;
        let stored: HashSet<TicketId> = coupons.iter().map(|coupon| coupon.ticket_id).collect();
        let waiting: Vec<HeldSlot> = held
            .iter()
            .filter(|slot| !stored.contains(&TicketId::for_admission(campaign.id, user, slot.slot)))
            .copied()
            .collect();
        // Claimed, a slot is never given back (a hand-off of it refused at this very
        // moment keeps it): its ticket may be published from the store from now on.
        let claimed = self
            .hand_off
            .counter
            .claim(campaign.id, &waiting, Duration::ZERO)
            .await?;
        // Every slot the user may hold must be a coupon or claimed now; one missing was
        // released or lost since the counter answered, and `Pending` would promise it.
        if claimed.len() < waiting.len()
            || coupons.len() + claimed.len() < campaign.per_user_limit as usize
        {
            return Err(changed());
        }
        let tickets: Vec<IssueTicket> = claimed
            .iter()
            .map(|slot| IssueTicket::for_slot(campaign.id, slot))
            .collect();
        self.hand_off.record_pending(&tickets).await?;
        Ok(ApplyOutcome::Pending)
    }
}
