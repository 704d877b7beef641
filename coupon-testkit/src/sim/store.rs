//! The memory store under the injector: batches that fail before persisting or after
//! committing, and reads that fail.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::faults::{Injector, unknown};
use coupon_core::memory::MemoryStore;
use coupon_core::{
    Campaign, CampaignId, CampaignSummary, Coupon, CouponStore, HeldSlot, IssueFailure,
    IssueOutcome, IssueTicket, NewCampaign, Result, SealedEpoch, TicketId, UserId,
};

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
