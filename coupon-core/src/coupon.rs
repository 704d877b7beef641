//! Persisted coupons and their codes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{CampaignId, IssueTicket, TicketId, UserId};

/// A coupon as persisted by a [`CouponStore`](crate::CouponStore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Coupon {
    /// The campaign it was issued for.
    pub campaign: CampaignId,
    /// Its holder.
    pub user: UserId,
    /// The admission rank the holder was promised.
    pub rank: u64,
    /// The code the holder redeems; unique and unguessable.
    pub code: CouponCode,
    /// The ticket it came from.
    pub ticket_id: TicketId,
    /// When the store persisted it.
    pub issued_at: DateTime<Utc>,
}

impl Coupon {
    /// A coupon from stored parts (for store adapters reading rows back).
    pub fn new(
        campaign: CampaignId,
        user: UserId,
        rank: u64,
        code: CouponCode,
        ticket_id: TicketId,
        issued_at: DateTime<Utc>,
    ) -> Self {
        Self {
            campaign,
            user,
            rank,
            code,
            ticket_id,
            issued_at,
        }
    }

    /// The coupon a ticket becomes, with a fresh code, issued now.
    pub fn from_ticket(ticket: &IssueTicket) -> Self {
        Self {
            campaign: ticket.campaign,
            user: ticket.user,
            rank: ticket.rank,
            code: CouponCode::generate(),
            ticket_id: ticket.ticket_id,
            issued_at: Utc::now(),
        }
    }
}

/// A redeemable coupon code: 122 random bits in Crockford base32, 26 characters.
///
/// Random rather than derived from the ticket, because the ticket id is shown to the
/// applicant and travels through the queue: a derived code could be computed by anyone
/// who saw either.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CouponCode(String);

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl CouponCode {
    /// A fresh code from the operating system's random source.
    ///
    /// ```
    /// use coupon_core::CouponCode;
    /// let (a, b) = (CouponCode::generate(), CouponCode::generate());
    /// assert_ne!(a, b);
    /// assert_eq!(a.as_str().len(), 26);
    /// ```
    pub fn generate() -> Self {
        Self::from_bits(Uuid::new_v4().as_u128())
    }

    fn from_bits(mut bits: u128) -> Self {
        let mut out = [0u8; 26];
        for slot in out.iter_mut().rev() {
            *slot = CROCKFORD[(bits & 31) as usize];
            bits >>= 5;
        }
        // Every byte comes from the ASCII alphabet above.
        Self(out.iter().map(|&b| b as char).collect())
    }

    /// Wraps a code read back from storage.
    pub fn from_stored(code: String) -> Self {
        Self(code)
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CouponCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// A code is a bearer secret: keep it out of logs that print structs with `{:?}`.
impl fmt::Debug for CouponCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.0.get(..4).unwrap_or("");
        write!(f, "CouponCode({shown}…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_all_bits_in_alphabet_order() {
        assert_eq!(CouponCode::from_bits(0).as_str(), "0".repeat(26));
        assert_eq!(
            CouponCode::from_bits(31).as_str(),
            format!("{}Z", "0".repeat(25))
        );
        assert_eq!(
            CouponCode::from_bits(u128::MAX).as_str(),
            format!("7{}", "Z".repeat(25))
        );
    }

    #[test]
    fn debug_hides_the_code() {
        let code = CouponCode::from_bits(u128::MAX);
        assert_eq!(format!("{code:?}"), "CouponCode(7ZZZ…)");
    }
}
