//! Identifier newtypes, so a campaign id can never be passed where a user id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw number.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    };
}

numeric_id! {
    /// Identifies a campaign (one coupon event with its own cap).
    ///
    /// ```
    /// use coupon_core::CampaignId;
    /// let id: CampaignId = "42".parse().unwrap();
    /// assert_eq!(id, CampaignId(42));
    /// ```
    CampaignId
}

numeric_id! {
    /// Identifies a user of the platform running the campaign.
    UserId
}

/// Identifies one admission: the ticket handed from admission to persistence.
///
/// It is the idempotency key of the whole pipeline, and it is derived, not drawn: the
/// ticket of a user's `slot`-th admission to a campaign always has the same id
/// ([`TicketId::for_admission`]), so publishing an admission again (after a timeout, a
/// crash, by the settler) can never make a second coupon. Tickets written before ids
/// were derived keep their random (version 4) ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketId(pub Uuid);

/// The UUID namespace of ticket ids too large to pack (RFC 9562 name-based, version 5).
const TICKET_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a7e_93b4_4d0a_9c55_1e8f_0b2d_7a61);

/// Bits of a packed (version 8) ticket id: campaign, slot, user.
const CAMPAIGN_BITS: u32 = 42;
const SLOT_BITS: u32 = 16;

/// Where RFC 9562 puts the version (4 bits at 76) and the variant (2 bits at 62).
const VERSION_SHIFT: u32 = 76;
const VARIANT_SHIFT: u32 = 62;

impl TicketId {
    /// The id of the ticket of `user`'s `slot`-th admission (1-based) to `campaign`.
    ///
    /// Campaigns below 2^42 and slots below 2^16 (every realistic one) are packed bit
    /// for bit into a version 8 UUID: distinct admissions can never share an id, the id
    /// costs a few shifts on the apply path, and [`TicketId::admission`] reads it back.
    /// Larger ones get the version 5 UUID (SHA-1) of their 20 big-endian bytes in a fixed
    /// namespace; the version nibble keeps the two kinds apart.
    ///
    /// ```
    /// use coupon_core::{CampaignId, TicketId, UserId};
    /// let first = TicketId::for_admission(CampaignId(7), UserId(42), 1);
    /// assert_eq!(first, TicketId::for_admission(CampaignId(7), UserId(42), 1));
    /// assert_ne!(first, TicketId::for_admission(CampaignId(7), UserId(42), 2));
    /// assert_ne!(first, TicketId::for_admission(CampaignId(8), UserId(42), 1));
    /// assert_eq!(first.admission(), Some((CampaignId(7), UserId(42), 1)));
    /// ```
    pub fn for_admission(campaign: CampaignId, user: UserId, slot: u32) -> Self {
        if campaign.get() >> CAMPAIGN_BITS == 0 && slot >> SLOT_BITS == 0 {
            let packed = (u128::from(campaign.get()) << (SLOT_BITS + 64))
                | (u128::from(slot) << 64)
                | u128::from(user.get());
            return Self(Uuid::from_u128(spread(packed)));
        }
        let mut name = [0u8; 20];
        name[..8].copy_from_slice(&campaign.get().to_be_bytes());
        name[8..16].copy_from_slice(&user.get().to_be_bytes());
        name[16..].copy_from_slice(&slot.to_be_bytes());
        Self(Uuid::new_v5(&TICKET_NAMESPACE, &name))
    }

    /// The (campaign, user, slot) a packed ticket id stands for; `None` for ids that
    /// are hashed (version 5) or random (tickets of format version 1).
    pub fn admission(&self) -> Option<(CampaignId, UserId, u32)> {
        if self.0.get_version_num() != 8 {
            return None;
        }
        let packed = gather(self.0.as_u128());
        let user = packed as u64;
        let slot = ((packed >> 64) & ((1 << SLOT_BITS) - 1)) as u32;
        let campaign = (packed >> (SLOT_BITS + 64)) as u64;
        Some((CampaignId(campaign), UserId(user), slot))
    }
}

/// Spreads 122 bits around the version and variant fields of a version 8 UUID.
fn spread(packed: u128) -> u128 {
    let low = packed & ((1 << VARIANT_SHIFT) - 1);
    let middle = (packed >> VARIANT_SHIFT) & 0xfff;
    let high = packed >> (VARIANT_SHIFT + 12);
    (high << (VERSION_SHIFT + 4))
        | (0x8 << VERSION_SHIFT)
        | (middle << (VARIANT_SHIFT + 2))
        | (0b10 << VARIANT_SHIFT)
        | low
}

/// The inverse of [`spread`].
fn gather(id: u128) -> u128 {
    let low = id & ((1 << VARIANT_SHIFT) - 1);
    let middle = (id >> (VARIANT_SHIFT + 2)) & 0xfff;
    let high = id >> (VERSION_SHIFT + 4);
    (high << (VARIANT_SHIFT + 12)) | (middle << VARIANT_SHIFT) | low
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for TicketId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const EDGES: [u64; 6] = [0, 1, 2, 0xffff_ffff, u64::MAX - 1, u64::MAX];

    #[test]
    fn packed_ids_are_version_8_and_read_back_exactly() {
        let campaigns = [0, 1, 42, (1 << CAMPAIGN_BITS) - 1];
        let slots = [0, 1, 2, 0xffff];
        for &campaign in &campaigns {
            for &slot in &slots {
                for &user in &EDGES {
                    let id = TicketId::for_admission(CampaignId(campaign), UserId(user), slot);
                    assert_eq!(id.0.get_version_num(), 8);
                    assert_eq!(id.0.get_variant(), uuid::Variant::RFC4122);
                    assert_eq!(
                        id.admission(),
                        Some((CampaignId(campaign), UserId(user), slot))
                    );
                }
            }
        }
    }

    #[test]
    fn large_campaigns_and_slots_are_hashed_and_stay_distinct() {
        let mut ids = HashSet::new();
        for campaign in [1 << CAMPAIGN_BITS, u64::MAX] {
            for slot in [1 << SLOT_BITS, u32::MAX] {
                for &user in &EDGES {
                    let id = TicketId::for_admission(CampaignId(campaign), UserId(user), slot);
                    assert_eq!(id.0.get_version_num(), 5);
                    assert_eq!(id.admission(), None);
                    assert!(ids.insert(id));
                }
            }
        }
        let packed = TicketId::for_admission(CampaignId(1), UserId(1), 1);
        assert!(!ids.contains(&packed));
    }
}
