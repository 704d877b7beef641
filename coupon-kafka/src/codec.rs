//! The wire format of tickets on the topic: the core's versioned JSON
//! ([`coupon_core::codec`]), one ticket or a group of them per record, and which
//! partition a ticket goes to.

use coupon_core::IssueTicket;
pub use coupon_core::codec::{DecodeError, decode, decode_group, encode, encode_group};

/// The message key of a single ticket (dead letters): campaign and user.
///
/// ```
/// use coupon_core::{CampaignId, IssueTicket, UserId};
/// let ticket = IssueTicket::new(CampaignId(7), UserId(42), 1, 3);
/// assert_eq!(coupon_kafka::codec::key(&ticket), "7:42");
/// ```
pub fn key(ticket: &IssueTicket) -> String {
    format!("{}:{}", ticket.campaign, ticket.user)
}

/// The partition (of `partitions`) a ticket is published to: a fixed hash (FNV-1a) of
/// its campaign and user, the same in every process and version, so one user's tickets
/// all go to one partition, in order, whichever process publishes them.
///
/// ```
/// use coupon_core::{CampaignId, IssueTicket, UserId};
/// use coupon_kafka::codec::partition;
/// let ticket = IssueTicket::new(CampaignId(7), UserId(42), 1, 3);
/// let again = IssueTicket::new(CampaignId(7), UserId(42), 2, 9);
/// assert_eq!(partition(&ticket, 3), partition(&again, 3));
/// assert!((0..3).contains(&partition(&ticket, 3)));
/// ```
pub fn partition(ticket: &IssueTicket, partitions: i32) -> i32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in ticket
        .campaign
        .get()
        .to_le_bytes()
        .into_iter()
        .chain(ticket.user.get().to_le_bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let partitions = u64::try_from(partitions.max(1)).unwrap_or(1);
    i32::try_from(hash % partitions).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coupon_core::{CampaignId, UserId};

    #[test]
    fn users_spread_over_every_partition() {
        let mut counts = [0u32; 3];
        for user in 0..3_000 {
            let ticket = IssueTicket::new(CampaignId(1), UserId(user), 1, user + 1);
            counts[usize::try_from(partition(&ticket, 3)).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
