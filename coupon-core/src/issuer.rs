//! The capped-apply algorithm: window, sold-out memo, admission, durable hand-off.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::sold_out::SoldOutMemo;
use crate::{
    Admission, ApplyOutcome, Campaign, CampaignId, CouponCounter, CouponStore, Error, IssueQueue,
    IssueTicket, Result, SlotState, UserId, WindowState,
};

/// Settings of a [`CouponIssuer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuerConfig {
    /// How long a "sold out" answer from the counter is reused locally. Default 500 ms;
    /// zero disables the memo.
    pub sold_out_ttl: Duration,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        Self {
            sold_out_ttl: Duration::from_millis(500),
        }
    }
}

impl IssuerConfig {
    /// Sets [`IssuerConfig::sold_out_ttl`].
    pub fn with_sold_out_ttl(mut self, ttl: Duration) -> Self {
        self.sold_out_ttl = ttl;
        self
    }
}

/// Answers applications: admits at most `cap` users through the counter and hands each
/// admitted one off durably before saying `Accepted`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
/// use std::sync::Arc;
/// use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
/// use coupon_core::{ApplyOutcome, CouponIssuer, CouponStore, NewCampaign, UserId};
///
/// let store = Arc::new(MemoryStore::new());
/// let queue = Arc::new(MemoryQueue::new(1024));
/// let issuer = CouponIssuer::new(Arc::new(MemoryCounter::new()), queue, store.clone());
/// let campaign = store.create_campaign(NewCampaign::new("launch", 1)).await?;
///
/// assert!(matches!(issuer.apply(campaign.id, UserId(1)).await?, ApplyOutcome::Accepted { rank: 1, .. }));
/// assert_eq!(issuer.apply(campaign.id, UserId(1)).await?, ApplyOutcome::AlreadyApplied);
/// assert_eq!(issuer.apply(campaign.id, UserId(2)).await?, ApplyOutcome::SoldOut);
/// # Ok(()) }
/// ```
pub struct CouponIssuer {
    counter: Arc<dyn CouponCounter>,
    queue: Arc<dyn IssueQueue>,
    store: Arc<dyn CouponStore>,
    campaigns: RwLock<HashMap<CampaignId, Arc<Campaign>>>,
    sold_out: SoldOutMemo,
}

impl CouponIssuer {
    /// An issuer with the default [`IssuerConfig`]. The store is only read, for campaign
    /// definitions, which are cached for the issuer's lifetime.
    pub fn new(
        counter: Arc<dyn CouponCounter>,
        queue: Arc<dyn IssueQueue>,
        store: Arc<dyn CouponStore>,
    ) -> Self {
        Self::with_config(counter, queue, store, IssuerConfig::default())
    }

    /// An issuer with explicit settings.
    pub fn with_config(
        counter: Arc<dyn CouponCounter>,
        queue: Arc<dyn IssueQueue>,
        store: Arc<dyn CouponStore>,
        config: IssuerConfig,
    ) -> Self {
        Self {
            counter,
            queue,
            store,
            campaigns: RwLock::new(HashMap::new()),
            sold_out: SoldOutMemo::new(config.sold_out_ttl),
        }
    }

    /// Applies `user` to `campaign`.
    ///
    /// Answers `Accepted` only once the queue acknowledged the ticket. Errors:
    /// [`Error::UnknownCampaign`]; a counter error as is (nothing was published);
    /// [`Error::NotHandedOff`] when the hand-off failed, saying whether the slot was
    /// released or stays reserved for reconciliation.
    pub async fn apply(&self, campaign: CampaignId, user: UserId) -> Result<ApplyOutcome> {
        let campaign = self.campaign(campaign).await?;
        match campaign.window_state(Utc::now()) {
            WindowState::NotOpen => return Ok(ApplyOutcome::NotOpen),
            WindowState::Closed => return Ok(ApplyOutcome::Closed),
            WindowState::Open => {}
        }
        if self.sold_out.is_sold_out(campaign.id, Instant::now()) {
            return Ok(ApplyOutcome::SoldOut);
        }
        let rank = match self.counter.try_acquire(&campaign, user).await? {
            Admission::Granted { rank } => rank,
            Admission::AlreadyApplied => return Ok(ApplyOutcome::AlreadyApplied),
            Admission::SoldOut => {
                self.sold_out.mark(campaign.id, Instant::now());
                return Ok(ApplyOutcome::SoldOut);
            }
        };
        let ticket = IssueTicket::new(campaign.id, user, rank);
        match self.queue.publish(&ticket).await {
            Ok(()) => Ok(ApplyOutcome::Accepted {
                rank,
                ticket_id: ticket.ticket_id,
            }),
            Err(error) => Err(self.hand_off_failed(&ticket, error).await),
        }
    }

    /// The campaign definition, from the cache or the store.
    pub async fn campaign(&self, id: CampaignId) -> Result<Arc<Campaign>> {
        if let Some(campaign) = self.cached(id) {
            return Ok(campaign);
        }
        let campaign = Arc::new(self.store.campaign(id).await?);
        let mut campaigns = self.campaigns.write().unwrap_or_else(|e| e.into_inner());
        Ok(campaigns.entry(id).or_insert(campaign).clone())
    }

    fn cached(&self, id: CampaignId) -> Option<Arc<Campaign>> {
        let campaigns = self.campaigns.read().unwrap_or_else(|e| e.into_inner());
        campaigns.get(&id).cloned()
    }

    async fn hand_off_failed(&self, ticket: &IssueTicket, error: Error) -> Error {
        let slot = match error {
            // Only a definite refusal proves the ticket does not exist anywhere; any other
            // failure might have stored it, and releasing then could issue cap + 1.
            Error::PublishRefused { .. } => {
                match self.counter.release(ticket.campaign, ticket.user).await {
                    Ok(_) => SlotState::Released,
                    Err(release_error) => {
                        tracing::warn!(
                            campaign = %ticket.campaign,
                            user = %ticket.user,
                            error = %release_error,
                            "could not release the slot of a refused hand-off; reconciliation will"
                        );
                        SlotState::Reserved
                    }
                }
            }
            _ => SlotState::Reserved,
        };
        tracing::warn!(
            campaign = %ticket.campaign,
            user = %ticket.user,
            ticket = %ticket.ticket_id,
            ?slot,
            %error,
            "hand-off failed"
        );
        Error::NotHandedOff {
            campaign: ticket.campaign,
            user: ticket.user,
            slot,
            source: Box::new(error),
        }
    }
}
