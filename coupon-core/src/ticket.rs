//! The ticket handed from admission to persistence.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CampaignId, HeldSlot, TicketId, UserId};

/// One admitted application, on its way from the counter to the store.
///
/// Its id follows from (campaign, user, slot) ([`TicketId::for_admission`]), so the
/// same admission always makes the same ticket. It carries the epoch of the counter that
/// admitted it: a ticket whose epoch a counter rebuild superseded, and whose slot that
/// rebuild did not count, is refused by the store ([`IssueOutcome::Superseded`](crate::IssueOutcome::Superseded)). Serialised as self-describing JSON with
/// a `version` field so that a consumer can refuse (and dead-letter) a shape it does not
/// understand instead of guessing.
///
/// ```
/// use coupon_core::{CampaignId, IssueTicket, TicketId, UserId};
/// let ticket = IssueTicket::new(CampaignId(7), UserId(42), 1, 9);
/// assert_eq!(ticket.ticket_id, TicketId::for_admission(CampaignId(7), UserId(42), 1));
/// let json = serde_json::to_string(&ticket).unwrap();
/// let back: IssueTicket = serde_json::from_str(&json).unwrap();
/// assert_eq!(back, ticket);
/// assert_eq!(back.version, IssueTicket::VERSION);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IssueTicket {
    /// Wire format version; [`IssueTicket::VERSION`] for tickets made by this crate.
    pub version: u16,
    /// The idempotency key, derived from campaign, user and slot.
    pub ticket_id: TicketId,
    /// The campaign the slot belongs to.
    pub campaign: CampaignId,
    /// The admitted user.
    pub user: UserId,
    /// Which of the user's admissions this is (1..=per_user_limit). Version 1 tickets
    /// had no slot; they read as slot 1.
    #[serde(default = "first_slot")]
    pub slot: u32,
    /// The counter value at admission (1..=cap; on a sharded campaign its shard's
    /// rank, see [`Admission::Granted`](crate::Admission::Granted)): the first-come
    /// order. 0 for an
    /// admission the counter rebuilt from the store, whose rank it no longer knows.
    pub rank: u64,
    /// When the counter admitted the user.
    pub admitted_at: DateTime<Utc>,
    /// The epoch of the counter that admitted it, or that counted it when it was
    /// rebuilt ([`AdmissionLedger::seal_epoch`](crate::AdmissionLedger::seal_epoch)). 0 for a
    /// ticket written before epochs existed (versions 1 and 2), which the store takes
    /// without that check.
    #[serde(default)]
    pub epoch: u64,
}

fn first_slot() -> u32 {
    1
}

impl IssueTicket {
    /// The ticket format this crate writes.
    pub const VERSION: u16 = 3;

    /// The versions this crate reads: 1 (random ids, no slot), 2 (no epoch) and 3.
    pub const READABLE_VERSIONS: [u16; 3] = [1, 2, 3];

    /// The ticket of `user`'s `slot`-th admission to `campaign` at `rank`, admitted now,
    /// of no epoch (0: [`IssueTicket::in_epoch`] sets one).
    pub fn new(campaign: CampaignId, user: UserId, slot: u32, rank: u64) -> Self {
        let held = HeldSlot {
            user,
            slot,
            rank,
            admitted_at: Some(Utc::now()),
            epoch: 0,
        };
        Self::for_slot(campaign, &held)
    }

    /// A ticket rebuilt from the fields a store kept of it, as read back: nothing is
    /// stamped now (unlike [`new`](Self::new)), and the id is the one stored, whatever
    /// campaign, user and slot would derive (tickets of version 1 had random ids).
    ///
    /// ```
    /// use coupon_core::chrono::{TimeZone, Utc};
    /// use coupon_core::{CampaignId, IssueTicket, TicketId, UserId};
    /// let admitted = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
    /// let id = TicketId::for_admission(CampaignId(7), UserId(42), 2);
    /// let ticket = IssueTicket::from_stored(id, CampaignId(7), UserId(42), 2, 9, admitted, 3);
    /// assert_eq!(ticket, IssueTicket::new(CampaignId(7), UserId(42), 2, 9).in_epoch(3).admitted(admitted));
    /// ```
    pub fn from_stored(
        ticket_id: TicketId,
        campaign: CampaignId,
        user: UserId,
        slot: u32,
        rank: u64,
        admitted_at: DateTime<Utc>,
        epoch: u64,
    ) -> Self {
        Self {
            version: Self::VERSION,
            ticket_id,
            campaign,
            user,
            slot,
            rank,
            admitted_at,
            epoch,
        }
    }

    /// The same ticket, admitted at `at` (a store reading one back, a test fixing time).
    pub fn admitted(mut self, at: DateTime<Utc>) -> Self {
        self.admitted_at = at;
        self
    }

    /// The same ticket, of counter epoch `epoch`.
    ///
    /// ```
    /// use coupon_core::{CampaignId, IssueTicket, UserId};
    /// let ticket = IssueTicket::new(CampaignId(7), UserId(42), 1, 9).in_epoch(3);
    /// assert_eq!((ticket.epoch, ticket.held_slot().epoch), (3, 3));
    /// ```
    pub fn in_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// The ticket of a slot the counter holds: the same id and rank as when it was first
    /// published (and the same admission time, where the counter keeps it), of the epoch
    /// the counter holds it in.
    pub fn for_slot(campaign: CampaignId, held: &HeldSlot) -> Self {
        Self {
            version: Self::VERSION,
            ticket_id: TicketId::for_admission(campaign, held.user, held.slot),
            campaign,
            user: held.user,
            slot: held.slot,
            rank: held.rank,
            admitted_at: held.admitted_at.unwrap_or_else(Utc::now),
            epoch: held.epoch,
        }
    }

    /// The slot this ticket stands for, as the counter knows it.
    pub fn held_slot(&self) -> HeldSlot {
        HeldSlot {
            user: self.user,
            slot: self.slot,
            rank: self.rank,
            admitted_at: Some(self.admitted_at),
            epoch: self.epoch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_tickets_read_as_slot_one_and_keep_their_id() {
        let json = r#"{"version":1,"ticket_id":"0b0f1c1e-2a54-4c5b-9a51-5c4f3f5e1a10",
            "campaign":7,"user":42,"rank":3,"admitted_at":"2026-11-25T10:00:00Z"}"#;
        let ticket: IssueTicket = serde_json::from_str(json).unwrap();
        assert_eq!(
            (ticket.version, ticket.slot, ticket.rank, ticket.epoch),
            (1, 1, 3, 0)
        );
        assert_eq!(
            ticket.ticket_id.to_string(),
            "0b0f1c1e-2a54-4c5b-9a51-5c4f3f5e1a10"
        );
    }

    #[test]
    fn a_slot_republished_is_the_same_ticket() {
        let ticket = IssueTicket::new(CampaignId(7), UserId(42), 2, 11);
        let again = IssueTicket::for_slot(CampaignId(7), &ticket.held_slot());
        assert_eq!(again, ticket);
    }
}
