//! The memory store under the injector: batches that fail before persisting or after
//! committing, tickets it refuses for good (the worker dead-letters them), and reads
//! that fail.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::faults::{Injector, unknown};
use crate::lock;
use coupon_core::memory::MemoryStore;
use coupon_core::{
    AdmissionLedger, Campaign, CampaignId, CampaignSummary, Coupon, CouponStore, Error,
    FailureLedger, HeldSlot, IssueFailure, IssueOutcome, IssueTicket, NewCampaign, Result,
    SealedEpoch, TicketId, UserId,
};

/// What the store answers about a ticket it refuses for good; a dead letter's record
/// holds it (and nothing else may hold a record).
pub(crate) const REFUSED: &str = "injected: the store refuses this ticket for good";

/// A [`MemoryStore`] whose batches fail before persisting or after committing, or for
/// good while they hold a ticket it refuses.
pub(crate) struct SimStore {
    pub(crate) inner: MemoryStore,
    faults: Arc<Injector>,
    /// Tickets refused for good until the worker has one alone (and dead-letters it).
    refusing: Mutex<HashSet<TicketId>>,
}

impl SimStore {
    pub(crate) fn new(faults: Arc<Injector>) -> Self {
        Self {
            inner: MemoryStore::new(),
            faults,
            refusing: Mutex::new(HashSet::new()),
        }
    }

    /// The permanent error of a batch holding a ticket the store refuses (as a real
    /// store refuses one it cannot write, before any of its rules), if it holds one.
    /// A ticket is refused until it comes alone, as the worker's split brings it: then
    /// once more, and no longer (the cause fixed, a replay of it is taken).
    fn refusal(&self, tickets: &[IssueTicket]) -> Option<Error> {
        let mut refusing = lock(&self.refusing);
        for ticket in tickets {
            if !refusing.contains(&ticket.ticket_id)
                && self
                    .faults
                    .roll(self.faults.rates().refuse, "store refuses", || {
                        format!(
                            "user {} rank {} epoch {}",
                            ticket.user, ticket.rank, ticket.epoch
                        )
                    })
            {
                refusing.insert(ticket.ticket_id);
            }
        }
        let refused = tickets
            .iter()
            .find(|ticket| refusing.contains(&ticket.ticket_id))?;
        if let [alone] = tickets {
            refusing.remove(&alone.ticket_id);
            self.faults.refused_for_good(alone.ticket_id);
            self.faults.note(
                "refused for good",
                format!(
                    "user {} rank {} epoch {}",
                    alone.user, alone.rank, alone.epoch
                ),
            );
        }
        Some(Error::backend(
            "sim",
            format!("{REFUSED}: user {}", refused.user),
            None,
        ))
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
        if let Some(refused) = self.refusal(tickets) {
            return Err(refused);
        }
        let outcomes = self.inner.issue_batch(tickets).await?;
        for (ticket, outcome) in tickets.iter().zip(&outcomes) {
            let late = self.faults.was_late(ticket.ticket_id, ticket.epoch);
            match outcome {
                IssueOutcome::Issued(_) => self.faults.issued(ticket.ticket_id),
                IssueOutcome::Superseded => self.faults.note(
                    if late {
                        "late superseded"
                    } else {
                        "superseded"
                    },
                    format!(
                        "user {} rank {} epoch {}",
                        ticket.user, ticket.rank, ticket.epoch
                    ),
                ),
                _ => {}
            }
        }
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
}

#[async_trait]
impl AdmissionLedger for SimStore {
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
}

#[async_trait]
impl FailureLedger for SimStore {
    async fn record_failure(&self, failure: &IssueFailure) -> Result<()> {
        self.inner.record_failure(failure).await?;
        let ticket = &failure.ticket;
        self.faults.note(
            "dead letter",
            format!(
                "user {} rank {} epoch {}: {}",
                ticket.user, ticket.rank, ticket.epoch, failure.error
            ),
        );
        let coupons = self.inner.coupons_of(ticket.campaign, ticket.user).await?;
        if coupons
            .iter()
            .all(|coupon| coupon.ticket_id != ticket.ticket_id)
        {
            self.faults.dead_lettered(ticket.ticket_id);
            self.faults
                .maybe_forget_after(|| format!("user {}'s dead letter", ticket.user));
        }
        Ok(())
    }

    async fn failures(&self, campaign: Option<CampaignId>) -> Result<Vec<IssueFailure>> {
        self.inner.failures(campaign).await
    }

    async fn mark_replayed(&self, tickets: &[TicketId], at: DateTime<Utc>) -> Result<u64> {
        self.inner.mark_replayed(tickets, at).await
    }
}
