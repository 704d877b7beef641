use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;

use super::lock;
use chrono::{DateTime, Utc};

use crate::{
    AdmissionLedger, Campaign, CampaignId, CampaignSummary, Coupon, CouponStore, Error,
    FailureLedger, HeldSlot, IssueFailure, IssueOutcome, IssueTicket, NewCampaign, Result,
    SealedEpoch, TicketId, UserId, coupon_slot,
};

/// A coupon store in process memory, enforcing the same rules as the database stores:
/// the cap, the per-user limit and the epoch fence under one lock per campaign,
/// idempotence by ticket id.
///
/// Locks are taken in one order, a campaign's ledger, then the pending tickets, then the
/// failures, so that an epoch seal sees all three at one instant.
#[derive(Debug)]
pub struct MemoryStore {
    next_id: AtomicU64,
    campaigns: RwLock<HashMap<CampaignId, Arc<Mutex<Ledger>>>>,
    failures: Mutex<Vec<IssueFailure>>,
    pending: Mutex<HashMap<TicketId, IssueTicket>>,
}

#[derive(Debug)]
struct Ledger {
    campaign: Campaign,
    coupons: Vec<Coupon>,
    tickets: HashSet<TicketId>,
    /// Indices into `coupons` of each holder's coupons.
    by_user: HashMap<UserId, Vec<usize>>,
    /// The last sealed counter epoch (0: none yet).
    epoch: u64,
    /// The admissions without a coupon that the last seal counted, by (user, slot,
    /// rank): a ticket of an older epoch is taken only if it is one of these (another
    /// admission of the same slot, at another rank, is a different one).
    snapshot: HashSet<(UserId, u32, u64)>,
}

impl Ledger {
    /// Whether `ticket` is of an epoch the last seal superseded, for a slot it did not
    /// count.
    fn supersedes(&self, ticket: &IssueTicket) -> bool {
        ticket.epoch > 0
            && ticket.epoch < self.epoch
            && !self
                .snapshot
                .contains(&(ticket.user, ticket.slot, ticket.rank))
            // Its coupon exists: whatever the epoch, it was counted.
            && !self.tickets.contains(&ticket.ticket_id)
    }

    fn issue(&mut self, ticket: &IssueTicket) -> IssueOutcome {
        let held = self.by_user.get(&ticket.user).map_or(0, Vec::len);
        if self.tickets.contains(&ticket.ticket_id) || held >= self.campaign.per_user_limit as usize
        {
            return IssueOutcome::Duplicate;
        }
        if self.supersedes(ticket) {
            return IssueOutcome::Superseded;
        }
        if self.coupons.len() as u64 >= self.campaign.cap {
            return IssueOutcome::OverCap;
        }
        let coupon = Coupon::from_ticket(ticket);
        self.tickets.insert(ticket.ticket_id);
        self.by_user
            .entry(ticket.user)
            .or_default()
            .push(self.coupons.len());
        self.coupons.push(coupon.clone());
        IssueOutcome::Issued(coupon)
    }

    /// One slot per coupon.
    fn coupon_slots(&self) -> Vec<HeldSlot> {
        let mut slots = Vec::with_capacity(self.coupons.len());
        for indices in self.by_user.values() {
            for (position, &i) in indices.iter().enumerate() {
                let position = u32::try_from(position + 1).unwrap_or(u32::MAX);
                slots.push(coupon_slot(&self.coupons[i], position));
            }
        }
        slots
    }
}

/// The answer to a seal whose rebuild another one overtook.
pub(crate) fn sealed_meanwhile(campaign: CampaignId, after: u64, now: u64) -> Error {
    Error::unavailable(
        "store",
        format!(
            "campaign {campaign}: epoch {now} was sealed by another rebuild since this one read {after}; it starts over"
        ),
        None,
    )
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store; campaign ids start at 1.
    pub fn new() -> Self {
        Self {
            next_id: AtomicU64::new(1),
            campaigns: RwLock::new(HashMap::new()),
            failures: Mutex::new(Vec::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn ledger(&self, campaign: CampaignId) -> Result<Arc<Mutex<Ledger>>> {
        self.campaigns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&campaign)
            .cloned()
            .ok_or(Error::UnknownCampaign { campaign })
    }
}

#[async_trait]
impl CouponStore for MemoryStore {
    async fn create_campaign(&self, new: NewCampaign) -> Result<Campaign> {
        new.validate()?;
        let id = CampaignId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let campaign = Campaign::from_new(id, new);
        let ledger = Ledger {
            campaign: campaign.clone(),
            coupons: Vec::new(),
            tickets: HashSet::new(),
            by_user: HashMap::new(),
            epoch: 0,
            snapshot: HashSet::new(),
        };
        self.campaigns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::new(Mutex::new(ledger)));
        Ok(campaign)
    }

    /// Always: the store is this process's memory.
    async fn ready(&self) -> Result<()> {
        Ok(())
    }

    async fn campaign(&self, id: CampaignId) -> Result<Campaign> {
        let ledger = self.ledger(id)?;
        Ok(lock(&ledger).campaign.clone())
    }

    async fn campaigns(&self) -> Result<Vec<CampaignSummary>> {
        let ledgers: Vec<Arc<Mutex<Ledger>>> = self
            .campaigns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut summaries: Vec<CampaignSummary> = ledgers
            .iter()
            .map(|ledger| {
                let ledger = lock(ledger);
                CampaignSummary::new(ledger.campaign.clone(), ledger.coupons.len() as u64)
            })
            .collect();
        summaries.sort_by_key(|summary| summary.campaign.id);
        Ok(summaries)
    }

    async fn set_window(
        &self,
        id: CampaignId,
        opens_at: Option<DateTime<Utc>>,
        closes_at: Option<DateTime<Utc>>,
    ) -> Result<Campaign> {
        let ledger = self.ledger(id)?;
        let mut ledger = lock(&ledger);
        ledger.campaign = ledger.campaign.with_window(opens_at, closes_at)?;
        Ok(ledger.campaign.clone())
    }

    async fn issue_batch(&self, tickets: &[IssueTicket]) -> Result<Vec<IssueOutcome>> {
        Ok(tickets
            .iter()
            .map(|ticket| match self.ledger(ticket.campaign) {
                Ok(ledger) => lock(&ledger).issue(ticket),
                Err(_) => IssueOutcome::UnknownCampaign,
            })
            .collect())
    }

    async fn issued_count(&self, campaign: CampaignId) -> Result<u64> {
        let ledger = self.ledger(campaign)?;
        Ok(lock(&ledger).coupons.len() as u64)
    }

    async fn coupons_of(&self, campaign: CampaignId, user: UserId) -> Result<Vec<Coupon>> {
        let ledger = self.ledger(campaign)?;
        let ledger = lock(&ledger);
        let indices = ledger.by_user.get(&user).map_or(&[][..], Vec::as_slice);
        let mut held: Vec<Coupon> = indices.iter().map(|&i| ledger.coupons[i].clone()).collect();
        // By rank, as the trait says: tickets may be stored out of rank order (a later
        // slot's ticket delivered first, a rebuilt slot of rank 0).
        held.sort_by_key(|coupon| coupon.rank);
        Ok(held)
    }

    async fn coupons_of_users(
        &self,
        campaign: CampaignId,
        users: &[UserId],
    ) -> Result<Vec<Coupon>> {
        let ledger = self.ledger(campaign)?;
        let ledger = lock(&ledger);
        let wanted: HashSet<UserId> = users.iter().copied().collect();
        Ok(wanted
            .iter()
            .filter_map(|user| ledger.by_user.get(user))
            .flatten()
            .map(|&i| ledger.coupons[i].clone())
            .collect())
    }

    async fn coupon_slots(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>> {
        let ledger = self.ledger(campaign)?;
        let slots = lock(&ledger).coupon_slots();
        Ok(slots)
    }

    async fn holders(&self, campaign: CampaignId) -> Result<Vec<UserId>> {
        let ledger = self.ledger(campaign)?;
        let ledger = lock(&ledger);
        Ok(ledger.coupons.iter().map(|coupon| coupon.user).collect())
    }
}

#[async_trait]
impl AdmissionLedger for MemoryStore {
    async fn record_pending(&self, ticket: &IssueTicket) -> Result<()> {
        let ledger = self.ledger(ticket.campaign)?;
        let ledger = lock(&ledger);
        if ledger.supersedes(ticket) {
            return Err(Error::Superseded {
                campaign: ticket.campaign,
                user: ticket.user,
                epoch: ticket.epoch,
            });
        }
        let mut pending = lock(&self.pending);
        if let Some(failure) = lock(&self.failures).iter().find(|failure| {
            // A record of an earlier epoch's admission of the same slot is not this
            // ticket's: a seal superseded that one.
            failure.ticket.ticket_id == ticket.ticket_id
                && failure.is_open()
                && failure.ticket.epoch >= ticket.epoch
        }) {
            return Err(Error::TicketRefused {
                campaign: ticket.campaign,
                user: ticket.user,
                reason: failure.error.clone(),
            });
        }
        pending
            .entry(ticket.ticket_id)
            .or_insert_with(|| ticket.clone());
        Ok(())
    }

    async fn sealed_epoch(&self, campaign: CampaignId) -> Result<u64> {
        let ledger = self.ledger(campaign)?;
        let epoch = lock(&ledger).epoch;
        Ok(epoch)
    }

    async fn seal_epoch(
        &self,
        campaign: CampaignId,
        after: u64,
        counted: &[HeldSlot],
    ) -> Result<SealedEpoch> {
        let ledger = self.ledger(campaign)?;
        let mut ledger = lock(&ledger);
        if ledger.epoch != after {
            return Err(sealed_meanwhile(campaign, after, ledger.epoch));
        }
        let pending = lock(&self.pending);
        let failures = lock(&self.failures);
        let mut slots = ledger.coupon_slots();
        let mut known: HashSet<(UserId, u32)> =
            slots.iter().map(|slot| (slot.user, slot.slot)).collect();
        let mut snapshot = HashSet::new();
        // A failure record counts only if its ticket was admissible under the last seal:
        // one refused for good after that seal superseded it was never promised.
        // (Pending records and queued tickets were checked when they were written.)
        let waiting = pending
            .values()
            .chain(
                failures
                    .iter()
                    .map(|failure| &failure.ticket)
                    .filter(|ticket| !ledger.supersedes(ticket)),
            )
            .filter(|ticket| {
                ticket.campaign == campaign && !ledger.tickets.contains(&ticket.ticket_id)
            })
            .map(IssueTicket::held_slot)
            .chain(counted.iter().copied());
        for slot in waiting {
            if known.insert((slot.user, slot.slot)) {
                snapshot.insert((slot.user, slot.slot, slot.rank));
                slots.push(slot);
            }
        }
        ledger.epoch += 1;
        ledger.snapshot = snapshot;
        Ok(SealedEpoch::new(ledger.epoch, slots))
    }

    async fn pending_tickets(&self, campaign: CampaignId) -> Result<Vec<IssueTicket>> {
        let ledger = self.ledger(campaign)?;
        let recorded: Vec<IssueTicket> = lock(&self.pending)
            .values()
            .filter(|ticket| ticket.campaign == campaign)
            .cloned()
            .collect();
        let ledger = lock(&ledger);
        let mut pending: Vec<IssueTicket> = recorded
            .into_iter()
            .filter(|ticket| !ledger.tickets.contains(&ticket.ticket_id))
            .collect();
        pending.sort_by_key(|ticket| (ticket.admitted_at, ticket.ticket_id));
        Ok(pending)
    }

    async fn forget_settled_pending(&self, campaign: CampaignId) -> Result<u64> {
        let ledger = self.ledger(campaign)?;
        let ledger = lock(&ledger);
        let mut pending = lock(&self.pending);
        let before = pending.len();
        pending.retain(|id, ticket| ticket.campaign != campaign || !ledger.tickets.contains(id));
        Ok((before - pending.len()) as u64)
    }
}

#[async_trait]
impl FailureLedger for MemoryStore {
    async fn record_failure(&self, failure: &IssueFailure) -> Result<()> {
        let mut failures = lock(&self.failures);
        match failures
            .iter_mut()
            .find(|known| known.ticket.ticket_id == failure.ticket.ticket_id)
        {
            Some(known) => {
                if failure.ticket.epoch > known.ticket.epoch {
                    // A later admission of the same slot: the one a replay must publish.
                    known.ticket = failure.ticket.clone();
                }
                known.error.clone_from(&failure.error);
                known.attempts += failure.attempts;
                known.last_seen = failure.last_seen;
                known.replayed_at = None;
            }
            None => failures.push(failure.clone()),
        }
        Ok(())
    }

    async fn failures(&self, campaign: Option<CampaignId>) -> Result<Vec<IssueFailure>> {
        Ok(lock(&self.failures)
            .iter()
            .filter(|failure| campaign.is_none_or(|c| failure.ticket.campaign == c))
            .cloned()
            .collect())
    }

    async fn mark_replayed(&self, tickets: &[TicketId], at: DateTime<Utc>) -> Result<u64> {
        let wanted: HashSet<TicketId> = tickets.iter().copied().collect();
        let mut changed = 0;
        for failure in lock(&self.failures).iter_mut() {
            if wanted.contains(&failure.ticket.ticket_id) && failure.last_seen <= at {
                failure.replayed_at = Some(at);
                changed += 1;
            }
        }
        Ok(changed)
    }
}
