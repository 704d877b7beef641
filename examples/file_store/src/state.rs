//! What the file holds, replayed into memory: the events, and the rules that decide
//! which events a call writes.
//!
//! Every change is an [`Event`]; [`State::apply`] is the only way the state changes, on
//! a call and on a replay alike, so what a reopened store holds is what the calls
//! acknowledged.

use std::collections::{BTreeMap, HashMap, HashSet};

use coupon_core::chrono::{DateTime, Utc};
use coupon_core::{
    Campaign, CampaignId, Coupon, Error, HeldSlot, IssueFailure, IssueOutcome, IssueTicket, Result,
    TicketId, UserId, coupon_slot,
};
use serde::{Deserialize, Serialize};

/// One line of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    /// A campaign created, as stored.
    Created { campaign: Campaign },
    /// A campaign's window changed: the campaign as stored now.
    Window { campaign: Campaign },
    /// A coupon persisted.
    Issued { coupon: Coupon },
    /// A ticket recorded as pending.
    Pending { ticket: IssueTicket },
    /// Pending records forgotten (their coupons exist).
    Forgot { tickets: Vec<TicketId> },
    /// An epoch sealed, with the admissions without a coupon it counted.
    Sealed {
        campaign: CampaignId,
        epoch: u64,
        snapshot: Vec<(UserId, u32, u64)>,
    },
    /// A failure record as it stands after the upsert.
    Failed { failure: IssueFailure },
    /// Failure records marked replayed at `at`.
    Replayed {
        tickets: Vec<TicketId>,
        at: DateTime<Utc>,
    },
}

/// One campaign and what was issued in it.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub(crate) campaign: Campaign,
    /// In the order persisted.
    pub(crate) coupons: Vec<Coupon>,
    tickets: HashSet<TicketId>,
    /// Indices into `coupons` of each holder's coupons.
    by_user: HashMap<UserId, Vec<usize>>,
    pub(crate) epoch: u64,
    /// What the last seal counted: (user, slot, rank) of admissions without a coupon.
    snapshot: HashSet<(UserId, u32, u64)>,
}

impl Ledger {
    /// Whether `ticket` is of an epoch the last seal superseded, for an admission it
    /// did not count (epoch 0 is never checked; a ticket whose coupon exists was counted).
    pub(crate) fn supersedes(&self, ticket: &IssueTicket) -> bool {
        ticket.epoch > 0
            && ticket.epoch < self.epoch
            && !self
                .snapshot
                .contains(&(ticket.user, ticket.slot, ticket.rank))
            && !self.tickets.contains(&ticket.ticket_id)
    }

    /// Whether the coupon of `ticket` exists.
    pub(crate) fn holds(&self, ticket: TicketId) -> bool {
        self.tickets.contains(&ticket)
    }

    /// The answer to `ticket`, in the order the contract gives: an id seen before or a
    /// user at the limit is a duplicate, then the epoch fence, then the cap.
    pub(crate) fn judge(&self, ticket: &IssueTicket) -> IssueOutcome {
        let held = self.by_user.get(&ticket.user).map_or(0, Vec::len);
        if self.tickets.contains(&ticket.ticket_id) || held >= self.campaign.per_user_limit as usize
        {
            IssueOutcome::Duplicate
        } else if self.supersedes(ticket) {
            IssueOutcome::Superseded
        } else if self.coupons.len() as u64 >= self.campaign.cap {
            IssueOutcome::OverCap
        } else {
            IssueOutcome::Issued(Coupon::from_ticket(ticket))
        }
    }

    /// `user`'s coupons, by rank.
    pub(crate) fn coupons_of(&self, user: UserId) -> Vec<Coupon> {
        let indices = self.by_user.get(&user).map_or(&[][..], Vec::as_slice);
        let mut held: Vec<Coupon> = indices.iter().map(|&i| self.coupons[i].clone()).collect();
        held.sort_by_key(|coupon| coupon.rank);
        held
    }

    /// One slot per coupon; the position is among the holder's coupons as persisted.
    pub(crate) fn coupon_slots(&self) -> Vec<HeldSlot> {
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

/// Everything the file says, in memory.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) campaigns: BTreeMap<CampaignId, Ledger>,
    pub(crate) pending: BTreeMap<TicketId, IssueTicket>,
    /// In the order first recorded.
    pub(crate) failures: Vec<IssueFailure>,
    /// The id the next campaign gets.
    pub(crate) next_id: u64,
}

impl State {
    /// The ledger of `campaign`, or `UnknownCampaign`.
    pub(crate) fn ledger(&self, campaign: CampaignId) -> Result<&Ledger> {
        self.campaigns
            .get(&campaign)
            .ok_or(Error::UnknownCampaign { campaign })
    }

    /// Applies one event: the only way the state changes.
    pub(crate) fn apply(&mut self, event: Event) {
        match event {
            Event::Created { campaign } => {
                self.next_id = self.next_id.max(campaign.id.0 + 1);
                let ledger = Ledger {
                    campaign: campaign.clone(),
                    coupons: Vec::new(),
                    tickets: HashSet::new(),
                    by_user: HashMap::new(),
                    epoch: 0,
                    snapshot: HashSet::new(),
                };
                self.campaigns.insert(campaign.id, ledger);
            }
            Event::Window { campaign } => {
                if let Some(ledger) = self.campaigns.get_mut(&campaign.id) {
                    ledger.campaign = campaign;
                }
            }
            Event::Issued { coupon } => {
                if let Some(ledger) = self.campaigns.get_mut(&coupon.campaign) {
                    ledger.tickets.insert(coupon.ticket_id);
                    let index = ledger.coupons.len();
                    ledger.by_user.entry(coupon.user).or_default().push(index);
                    ledger.coupons.push(coupon);
                }
            }
            Event::Pending { ticket } => {
                self.pending.entry(ticket.ticket_id).or_insert(ticket);
            }
            Event::Forgot { tickets } => {
                for ticket in tickets {
                    self.pending.remove(&ticket);
                }
            }
            Event::Sealed {
                campaign,
                epoch,
                snapshot,
            } => {
                if let Some(ledger) = self.campaigns.get_mut(&campaign) {
                    ledger.epoch = epoch;
                    ledger.snapshot = snapshot.into_iter().collect();
                }
            }
            Event::Failed { failure } => {
                let id = failure.ticket.ticket_id;
                match self
                    .failures
                    .iter_mut()
                    .find(|known| known.ticket.ticket_id == id)
                {
                    Some(known) => *known = failure,
                    None => self.failures.push(failure),
                }
            }
            Event::Replayed { tickets, at } => {
                let replayed: HashSet<TicketId> = tickets.into_iter().collect();
                for failure in &mut self.failures {
                    if replayed.contains(&failure.ticket.ticket_id) {
                        failure.replayed_at = Some(at);
                    }
                }
            }
        }
    }
}
