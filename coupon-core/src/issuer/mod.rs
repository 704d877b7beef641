//! The capped-apply algorithm: window, sold-out memo, admission, durable hand-off.

mod answers;
mod campaigns;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;

use self::campaigns::Cached;
use crate::fence::Fence;
use crate::handoff::{AbandonGuard, HandOff};
use crate::sold_out::{Memo, SoldOutMemo};
use crate::unanswered::Unanswered;
use crate::{
    Admission, ApplyOutcome, Campaign, CampaignId, CouponCounter, CouponStore, Error, HeldSlot,
    IssueQueue, IssueTicket, NewCampaign, Result, UserId, WindowState,
};

/// Settings of the issuer, the part of [`CouponService`](crate::CouponService) that admits and hands off.
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
        let most = self.hand_off.counter.max_shards();
        if new.shards > most {
            // Checked before the store keeps it: a campaign whose counter cannot route
            // its users would never admit anyone.
            return Err(Error::InvalidCampaign {
                field: "shards",
                reason: format!("this counter splits a campaign over at most {most}"),
            });
        }
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
        let outcome = self
            .hand_off
            .run(&campaign, &ticket, &releasing, deadline)
            .await;
        guard.disarm();
        if outcome.is_err() {
            // The slot may still be held (a refused hand-off gives it back; noting it
            // then costs a retry one counter trip, nothing more).
            self.hand_off.unanswered.note(campaign.id, user);
        }
        outcome
    }
}
