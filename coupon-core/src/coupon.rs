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

/// A redeemable coupon code: 128 bits in Crockford base32, 26 characters: the time it
/// was made in milliseconds (48 bits), then 80 random bits.
///
/// Random rather than derived from the ticket, because the ticket id is shown to the
/// applicant and travels through the queue: a derived code could be computed by anyone
/// who saw either. 80 random bits stay out of reach of guessing; the time in front
/// makes the codes of one sale sort in the order they were made, so a store's unique
/// index on the code grows at its end (a few pages per group of coupons) instead of
/// taking a write on a random page per coupon.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CouponCode(String);

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RANDOM_BITS: u32 = 80;
const TIME_MASK: u128 = (1 << 48) - 1;

/// 80 bits from the operating system's random source: a version 4 UUID's random bits
/// below its variant (62) and above its version (the top 48, of which 18 are taken).
fn random_bits() -> u128 {
    let uuid = Uuid::new_v4().as_u128();
    let low = uuid & ((1 << 62) - 1);
    let high = (uuid >> 80) & ((1 << 18) - 1);
    low | (high << 62)
}

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
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        Self::from_bits(((millis & TIME_MASK) << RANDOM_BITS) | random_bits())
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
    fn codes_sort_in_the_order_they_were_made_and_differ_within_a_millisecond() {
        let first = CouponCode::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = CouponCode::generate();
        assert!(first < later, "{} then {}", first.as_str(), later.as_str());
        let burst: std::collections::HashSet<String> = (0..10_000)
            .map(|_| CouponCode::generate().as_str().to_owned())
            .collect();
        assert_eq!(burst.len(), 10_000);
    }

    #[test]
    fn random_bits_fill_all_eighty_bits_and_no_more() {
        let mut seen = 0u128;
        for _ in 0..256 {
            let bits = random_bits();
            assert_eq!(bits >> RANDOM_BITS, 0);
            seen |= bits;
        }
        assert_eq!(seen, (1 << RANDOM_BITS) - 1, "a bit that is never set");
    }

    #[test]
    fn debug_hides_the_code() {
        let code = CouponCode::from_bits(u128::MAX);
        assert_eq!(format!("{code:?}"), "CouponCode(7ZZZ…)");
    }
}
