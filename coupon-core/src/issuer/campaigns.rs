//! The campaign definitions an issuer answers by: read from the store, cached, and
//! refreshed; closing and reopening a campaign updates the cache at once.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::CouponIssuer;
use crate::{Campaign, CampaignId, Result};

/// A campaign definition and when it was read from the store.
#[derive(Clone)]
pub(super) struct Cached {
    campaign: Arc<Campaign>,
    read_at: Instant,
}

impl CouponIssuer {
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
}
