//! The wire format of a ticket on the topic: the core's versioned JSON
//! ([`coupon_core::codec`]), keyed by campaign and user.

use coupon_core::IssueTicket;
pub use coupon_core::codec::{DecodeError, decode, encode};

/// The message key: campaign and user, so one user's tickets stay on one partition, in
/// order.
///
/// ```
/// use coupon_core::{CampaignId, IssueTicket, UserId};
/// let ticket = IssueTicket::new(CampaignId(7), UserId(42), 1, 3);
/// assert_eq!(coupon_kafka::codec::key(&ticket), "7:42");
/// ```
pub fn key(ticket: &IssueTicket) -> String {
    format!("{}:{}", ticket.campaign, ticket.user)
}
