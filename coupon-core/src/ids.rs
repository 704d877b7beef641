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
/// were derived keep their random ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketId(pub Uuid);

/// The UUID namespace of ticket ids (RFC 9562 name-based ids, version 5).
const TICKET_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a7e_93b4_4d0a_9c55_1e8f_0b2d_7a61);

impl TicketId {
    /// The id of the ticket of `user`'s `slot`-th admission (1-based) to `campaign`.
    ///
    /// ```
    /// use coupon_core::{CampaignId, TicketId, UserId};
    /// let first = TicketId::for_admission(CampaignId(7), UserId(42), 1);
    /// assert_eq!(first, TicketId::for_admission(CampaignId(7), UserId(42), 1));
    /// assert_ne!(first, TicketId::for_admission(CampaignId(7), UserId(42), 2));
    /// assert_ne!(first, TicketId::for_admission(CampaignId(8), UserId(42), 1));
    /// ```
    pub fn for_admission(campaign: CampaignId, user: UserId, slot: u32) -> Self {
        let mut name = [0u8; 20];
        name[..8].copy_from_slice(&campaign.get().to_be_bytes());
        name[8..16].copy_from_slice(&user.get().to_be_bytes());
        name[16..].copy_from_slice(&slot.to_be_bytes());
        Self(Uuid::new_v5(&TICKET_NAMESPACE, &name))
    }
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
