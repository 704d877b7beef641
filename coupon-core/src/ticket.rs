//! The ticket handed from admission to persistence.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CampaignId, TicketId, UserId};

/// One admitted application, on its way from the counter to the store.
///
/// Serialised as self-describing JSON with a `version` field so that a consumer can
/// refuse (and dead-letter) a shape it does not understand instead of guessing.
///
/// ```
/// use coupon_core::{CampaignId, IssueTicket, UserId};
/// let ticket = IssueTicket::new(CampaignId(7), UserId(42), 1);
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
    /// The idempotency key: the request id of the application that was admitted.
    pub ticket_id: TicketId,
    /// The campaign the slot belongs to.
    pub campaign: CampaignId,
    /// The admitted user.
    pub user: UserId,
    /// The counter value at admission (1..=cap): the first-come order.
    pub rank: u64,
    /// When the counter admitted the user.
    pub admitted_at: DateTime<Utc>,
}

impl IssueTicket {
    /// The ticket format this crate writes and reads.
    pub const VERSION: u16 = 1;

    /// A ticket with a fresh random id, admitted now.
    pub fn new(campaign: CampaignId, user: UserId, rank: u64) -> Self {
        Self {
            version: Self::VERSION,
            ticket_id: TicketId::random(),
            campaign,
            user,
            rank,
            admitted_at: Utc::now(),
        }
    }
}
