//! Stores that each break one rule, and the store scenario that must fail on each: the
//! proof that the suite a stranger runs on their adapter catches those mistakes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use coupon_core::chrono::{DateTime, Utc};
use coupon_core::memory::MemoryStore;
use coupon_core::{
    AdmissionLedger, Campaign, CampaignId, CampaignSummary, Coupon, CouponStore, Error,
    FailureLedger, HeldSlot, IssueFailure, IssueOutcome, IssueTicket, NewCampaign, Result,
    SealedEpoch, TicketId, UserId,
};

/// The rule a [`Broken`] store breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// A ticket delivered again is stored as a new one (idempotency left to the per-user
    /// check).
    TicketIds,
    /// One coupon more than the cap.
    Cap,
    /// `coupons_of` not by rank.
    CouponOrder,
    /// `failures(Some(c))` lists every campaign's.
    FailureFilter,
    /// A pending record of an unknown campaign is accepted.
    UnknownCampaign,
    /// Pending records kept in the process, not the storage: lost when the store is
    /// opened again.
    PendingInProcess,
}

/// The memory store with `rule` broken.
struct Broken {
    /// The storage: shared by every opening of the store (see [`Broken::reopening`]).
    inner: Arc<MemoryStore>,
    rule: Rule,
    delivered: Mutex<HashSet<TicketId>>,
}

impl Broken {
    fn breaking(rule: Rule) -> Arc<dyn CouponStore> {
        Self::over(Arc::new(MemoryStore::new()), rule)
    }

    fn over(storage: Arc<MemoryStore>, rule: Rule) -> Arc<dyn CouponStore> {
        Arc::new(Self {
            inner: storage,
            rule,
            delivered: Mutex::default(),
        })
    }

    /// What the durable-store scenarios take: a function opening the store with `rule`
    /// broken (`None`: unbroken) over one storage that outlives each opening.
    fn reopening(rule: Option<Rule>) -> impl Fn() -> std::future::Ready<Arc<dyn CouponStore>> {
        let storage = Arc::new(MemoryStore::new());
        move || match rule {
            Some(rule) => std::future::ready(Self::over(storage.clone(), rule)),
            None => std::future::ready(storage.clone() as Arc<dyn CouponStore>),
        }
    }
}

#[coupon_core::async_trait]
impl CouponStore for Broken {
    async fn create_campaign(&self, new: NewCampaign) -> Result<Campaign> {
        if self.rule != Rule::Cap {
            return self.inner.create_campaign(new).await;
        }
        let cap = new.cap;
        let mut wider = new;
        wider.cap = cap + 1;
        let mut stored = self.inner.create_campaign(wider).await?;
        stored.cap = cap;
        Ok(stored)
    }
    async fn ready(&self) -> Result<()> {
        self.inner.ready().await
    }
    async fn campaign(&self, id: CampaignId) -> Result<Campaign> {
        let mut campaign = self.inner.campaign(id).await?;
        if self.rule == Rule::Cap {
            campaign.cap -= 1;
        }
        Ok(campaign)
    }
    async fn campaigns(&self) -> Result<Vec<CampaignSummary>> {
        self.inner.campaigns().await
    }
    async fn set_window(
        &self,
        id: CampaignId,
        opens_at: Option<DateTime<Utc>>,
        closes_at: Option<DateTime<Utc>>,
    ) -> Result<Campaign> {
        self.inner.set_window(id, opens_at, closes_at).await
    }
    async fn issue_batch(&self, tickets: &[IssueTicket]) -> Result<Vec<IssueOutcome>> {
        if self.rule != Rule::TicketIds {
            return self.inner.issue_batch(tickets).await;
        }
        let renamed: Vec<IssueTicket> = tickets
            .iter()
            .map(|ticket| {
                let mut ticket = ticket.clone();
                if !self
                    .delivered
                    .lock()
                    .expect("seen")
                    .insert(ticket.ticket_id)
                {
                    // Seen before: this store forgot it and takes it as a new ticket of
                    // the user's next slot.
                    ticket.ticket_id = TicketId(uuid_like(ticket.ticket_id));
                    ticket.slot += 1;
                }
                ticket
            })
            .collect();
        self.inner.issue_batch(&renamed).await
    }
    async fn issued_count(&self, campaign: CampaignId) -> Result<u64> {
        self.inner.issued_count(campaign).await
    }
    async fn coupons_of(&self, campaign: CampaignId, user: UserId) -> Result<Vec<Coupon>> {
        let mut coupons = self.inner.coupons_of(campaign, user).await?;
        if self.rule == Rule::CouponOrder {
            coupons.reverse();
        }
        Ok(coupons)
    }
    async fn coupons_of_users(
        &self,
        campaign: CampaignId,
        users: &[UserId],
    ) -> Result<Vec<Coupon>> {
        self.inner.coupons_of_users(campaign, users).await
    }
    async fn holders(&self, campaign: CampaignId) -> Result<Vec<UserId>> {
        self.inner.holders(campaign).await
    }
    async fn coupon_slots(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>> {
        self.inner.coupon_slots(campaign).await
    }
}

#[coupon_core::async_trait]
impl AdmissionLedger for Broken {
    async fn record_pending(&self, ticket: &IssueTicket) -> Result<()> {
        if self.rule == Rule::PendingInProcess {
            self.delivered
                .lock()
                .expect("seen")
                .insert(ticket.ticket_id);
        }
        match self.inner.record_pending(ticket).await {
            Err(Error::UnknownCampaign { .. }) if self.rule == Rule::UnknownCampaign => Ok(()),
            other => other,
        }
    }
    async fn sealed_epoch(&self, campaign: CampaignId) -> Result<u64> {
        self.inner.sealed_epoch(campaign).await
    }
    async fn seal_epoch(
        &self,
        campaign: CampaignId,
        after: u64,
        counted: &[HeldSlot],
    ) -> Result<SealedEpoch> {
        self.inner.seal_epoch(campaign, after, counted).await
    }
    async fn pending_tickets(&self, campaign: CampaignId) -> Result<Vec<IssueTicket>> {
        let mut pending = self.inner.pending_tickets(campaign).await?;
        if self.rule == Rule::PendingInProcess {
            let recorded = self.delivered.lock().expect("seen");
            pending.retain(|ticket| recorded.contains(&ticket.ticket_id));
        }
        Ok(pending)
    }
    async fn forget_settled_pending(&self, campaign: CampaignId) -> Result<u64> {
        self.inner.forget_settled_pending(campaign).await
    }
}

#[coupon_core::async_trait]
impl FailureLedger for Broken {
    async fn record_failure(&self, failure: &IssueFailure) -> Result<()> {
        self.inner.record_failure(failure).await
    }
    async fn failures(&self, campaign: Option<CampaignId>) -> Result<Vec<IssueFailure>> {
        let campaign = if self.rule == Rule::FailureFilter {
            None
        } else {
            campaign
        };
        self.inner.failures(campaign).await
    }
    async fn mark_replayed(&self, tickets: &[TicketId], at: DateTime<Utc>) -> Result<u64> {
        self.inner.mark_replayed(tickets, at).await
    }
}

/// Another id derived from `id` (its bits reversed): a different ticket to the store.
fn uuid_like(id: TicketId) -> uuid::Uuid {
    uuid::Uuid::from_u128(id.0.as_u128().reverse_bits())
}

/// Runs `scenario` on the store broken by `rule`; it must fail (panic).
async fn must_fail<F, Fut>(rule: Rule, scenario: F)
where
    F: FnOnce(Arc<dyn CouponStore>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let outcome = tokio::spawn(scenario(Broken::breaking(rule))).await;
    assert!(
        outcome
            .as_ref()
            .is_err_and(tokio::task::JoinError::is_panic),
        "the suite let a store that breaks {rule:?} through"
    );
}

#[tokio::test]
async fn the_store_suite_fails_a_store_that_breaks_any_one_rule() {
    use coupon_testkit::store;
    must_fail(Rule::TicketIds, store::same_ticket_twice_gives_one_coupon).await;
    must_fail(Rule::Cap, store::batch_over_cap_persists_exactly_cap).await;
    must_fail(
        Rule::CouponOrder,
        store::coupons_of_lists_a_holders_coupons_by_rank,
    )
    .await;
    must_fail(
        Rule::FailureFilter,
        store::failures_are_listed_per_campaign_in_the_order_first_seen,
    )
    .await;
    must_fail(
        Rule::UnknownCampaign,
        store::unknown_campaign_is_a_typed_error,
    )
    .await;
}

#[tokio::test]
async fn the_same_scenarios_pass_on_the_store_unbroken() {
    use coupon_testkit::store;
    let store = || -> Arc<dyn CouponStore> { Arc::new(MemoryStore::new()) };
    store::same_ticket_twice_gives_one_coupon(store()).await;
    store::batch_over_cap_persists_exactly_cap(store()).await;
    store::coupons_of_lists_a_holders_coupons_by_rank(store()).await;
    store::failures_are_listed_per_campaign_in_the_order_first_seen(store()).await;
    store::unknown_campaign_is_a_typed_error(store()).await;
    coupon_testkit::durable::acknowledged_writes_survive_a_reopen(Broken::reopening(None)).await;
}

#[tokio::test]
async fn the_durable_store_suite_fails_a_store_that_loses_what_it_acknowledged() {
    let reopening = Broken::reopening(Some(Rule::PendingInProcess));
    let outcome = tokio::spawn(async move {
        coupon_testkit::durable::acknowledged_writes_survive_a_reopen(reopening).await;
    })
    .await;
    assert!(
        outcome
            .as_ref()
            .is_err_and(tokio::task::JoinError::is_panic),
        "the suite let a store that loses its pending records on a restart through"
    );
}
