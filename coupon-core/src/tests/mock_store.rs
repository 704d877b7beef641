//! A mock of the store and its ledgers, as one type (mockall's `automock` does not
//! take a trait with supertraits).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{
    AdmissionLedger, Campaign, CampaignId, CampaignSummary, Coupon, CouponStore, FailureLedger,
    HeldSlot, IssueFailure, IssueOutcome, IssueTicket, NewCampaign, Result, SealedEpoch, TicketId,
    UserId,
};

mockall::mock! {
    pub CouponStore {}

    #[async_trait]
    impl CouponStore for CouponStore {
        async fn create_campaign(&self, new: NewCampaign) -> Result<Campaign>;
        async fn ready(&self) -> Result<()>;
        async fn campaign(&self, id: CampaignId) -> Result<Campaign>;
        async fn campaigns(&self) -> Result<Vec<CampaignSummary>>;
        async fn set_window(
            &self,
            id: CampaignId,
            opens_at: Option<DateTime<Utc>>,
            closes_at: Option<DateTime<Utc>>,
        ) -> Result<Campaign>;
        async fn issue_batch(&self, tickets: &[IssueTicket]) -> Result<Vec<IssueOutcome>>;
        async fn issued_count(&self, campaign: CampaignId) -> Result<u64>;
        async fn coupons_of(&self, campaign: CampaignId, user: UserId) -> Result<Vec<Coupon>>;
        async fn coupons_of_users(
            &self,
            campaign: CampaignId,
            users: &[UserId],
        ) -> Result<Vec<Coupon>>;
        async fn holders(&self, campaign: CampaignId) -> Result<Vec<UserId>>;
        async fn coupon_slots(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>>;
    }

    #[async_trait]
    impl AdmissionLedger for CouponStore {
        async fn record_pending(&self, ticket: &IssueTicket) -> Result<()>;
        async fn sealed_epoch(&self, campaign: CampaignId) -> Result<u64>;
        async fn seal_epoch(
            &self,
            campaign: CampaignId,
            after: u64,
            counted: &[HeldSlot],
        ) -> Result<SealedEpoch>;
        async fn pending_tickets(&self, campaign: CampaignId) -> Result<Vec<IssueTicket>>;
        async fn forget_settled_pending(&self, campaign: CampaignId) -> Result<u64>;
    }

    #[async_trait]
    impl FailureLedger for CouponStore {
        async fn record_failure(&self, failure: &IssueFailure) -> Result<()>;
        async fn failures(&self, campaign: Option<CampaignId>) -> Result<Vec<IssueFailure>>;
        async fn mark_replayed(&self, tickets: &[TicketId], at: DateTime<Utc>) -> Result<u64>;
    }
}
