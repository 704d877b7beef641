//! The ledgers the other parts need, kept in the same file as the coupons: a seal reads
//! coupons, pending records and failures under the same lock as `issue_batch`.

use std::collections::HashSet;

use coupon_core::chrono::{DateTime, Utc};
use coupon_core::{
    AdmissionLedger, CampaignId, Error, FailureLedger, HeldSlot, IssueFailure, IssueTicket, Result,
    SealedEpoch, TicketId, UserId, async_trait,
};

use crate::FileStore;
use crate::state::Event;

#[async_trait]
impl AdmissionLedger for FileStore {
    async fn record_pending(&self, ticket: &IssueTicket) -> Result<()> {
        let mut inner = self.lock()?;
        let ledger = inner.state.ledger(ticket.campaign)?;
        if ledger.supersedes(ticket) {
            return Err(Error::Superseded {
                campaign: ticket.campaign,
                user: ticket.user,
                epoch: ticket.epoch,
            });
        }
        let refused = inner.state.failures.iter().find(|failure| {
            // A record of an earlier epoch's admission of the same slot is not this
            // ticket's: a seal superseded that one.
            failure.ticket.ticket_id == ticket.ticket_id
                && failure.is_open()
                && failure.ticket.epoch >= ticket.epoch
        });
        if let Some(failure) = refused {
            return Err(Error::TicketRefused {
                campaign: ticket.campaign,
                user: ticket.user,
                reason: failure.error.clone(),
            });
        }
        if inner.state.pending.contains_key(&ticket.ticket_id) {
            return Ok(());
        }
        inner.write(vec![Event::Pending {
            ticket: ticket.clone(),
        }])
    }

    async fn sealed_epoch(&self, campaign: CampaignId) -> Result<u64> {
        Ok(self.lock()?.state.ledger(campaign)?.epoch)
    }

    async fn seal_epoch(
        &self,
        campaign: CampaignId,
        after: u64,
        counted: &[HeldSlot],
    ) -> Result<SealedEpoch> {
        let mut inner = self.lock()?;
        let state = &inner.state;
        let ledger = state.ledger(campaign)?;
        if ledger.epoch != after {
            return Err(Error::unavailable(
                "file-store",
                format!(
                    "campaign {campaign}: epoch {} was sealed by another rebuild since this one read {after}",
                    ledger.epoch
                ),
                None,
            ));
        }
        let mut slots = ledger.coupon_slots();
        let mut known: HashSet<(UserId, u32)> =
            slots.iter().map(|slot| (slot.user, slot.slot)).collect();
        // Pending records, then failure records the last seal did not supersede (a
        // ticket refused for good after it was superseded was never promised), then
        // what the counter still holds: once per (user, slot), first one wins.
        let failed = state
            .failures
            .iter()
            .map(|failure| &failure.ticket)
            .filter(|ticket| !ledger.supersedes(ticket));
        let waiting = state
            .pending
            .values()
            .chain(failed)
            .filter(|ticket| ticket.campaign == campaign && !ledger.holds(ticket.ticket_id))
            .map(IssueTicket::held_slot)
            .chain(counted.iter().copied());
        let mut snapshot = Vec::new();
        for slot in waiting {
            if known.insert((slot.user, slot.slot)) {
                snapshot.push((slot.user, slot.slot, slot.rank));
                slots.push(slot);
            }
        }
        let epoch = after + 1;
        inner.write(vec![Event::Sealed {
            campaign,
            epoch,
            snapshot,
        }])?;
        Ok(SealedEpoch::new(epoch, slots))
    }

    async fn pending_tickets(&self, campaign: CampaignId) -> Result<Vec<IssueTicket>> {
        let inner = self.lock()?;
        let ledger = inner.state.ledger(campaign)?;
        let mut pending: Vec<IssueTicket> = inner
            .state
            .pending
            .values()
            .filter(|ticket| ticket.campaign == campaign && !ledger.holds(ticket.ticket_id))
            .cloned()
            .collect();
        pending.sort_by_key(|ticket| (ticket.admitted_at, ticket.ticket_id));
        Ok(pending)
    }

    async fn forget_settled_pending(&self, campaign: CampaignId) -> Result<u64> {
        let mut inner = self.lock()?;
        let ledger = inner.state.ledger(campaign)?;
        let settled: Vec<TicketId> = inner
            .state
            .pending
            .values()
            .filter(|ticket| ticket.campaign == campaign && ledger.holds(ticket.ticket_id))
            .map(|ticket| ticket.ticket_id)
            .collect();
        let forgotten = settled.len() as u64;
        inner.write(if settled.is_empty() {
            Vec::new()
        } else {
            vec![Event::Forgot { tickets: settled }]
        })?;
        Ok(forgotten)
    }
}

#[async_trait]
impl FailureLedger for FileStore {
    async fn record_failure(&self, failure: &IssueFailure) -> Result<()> {
        let mut inner = self.lock()?;
        let id = failure.ticket.ticket_id;
        // Upsert: an existing record keeps its first sighting, adds the attempts, takes
        // the new error and last sighting, and is open again; its ticket is replaced
        // by one of a later epoch (a later admission of the same slot, the one a
        // replay must publish).
        let record = match inner
            .state
            .failures
            .iter()
            .find(|known| known.ticket.ticket_id == id)
        {
            Some(known) => {
                let mut record = known.clone();
                if failure.ticket.epoch > record.ticket.epoch {
                    record.ticket = failure.ticket.clone();
                }
                record.error.clone_from(&failure.error);
                record.attempts += failure.attempts;
                record.last_seen = failure.last_seen;
                record.replayed_at = None;
                record
            }
            None => failure.clone(),
        };
        inner.write(vec![Event::Failed { failure: record }])
    }

    async fn failures(&self, campaign: Option<CampaignId>) -> Result<Vec<IssueFailure>> {
        Ok(self
            .lock()?
            .state
            .failures
            .iter()
            .filter(|failure| campaign.is_none_or(|c| failure.ticket.campaign == c))
            .cloned()
            .collect())
    }

    async fn mark_replayed(&self, tickets: &[TicketId], at: DateTime<Utc>) -> Result<u64> {
        let mut inner = self.lock()?;
        let wanted: HashSet<TicketId> = tickets.iter().copied().collect();
        let replayed: Vec<TicketId> = inner
            .state
            .failures
            .iter()
            .filter(|failure| wanted.contains(&failure.ticket.ticket_id) && failure.last_seen <= at)
            .map(|failure| failure.ticket.ticket_id)
            .collect();
        let changed = replayed.len() as u64;
        if !replayed.is_empty() {
            inner.write(vec![Event::Replayed {
                tickets: replayed,
                at,
            }])?;
        }
        Ok(changed)
    }
}
