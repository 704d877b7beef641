//! Campaigns: what is promised (a cap, a per-user limit, a time window).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CampaignId, Error, Result};

/// A coupon campaign as stored: at most `cap` coupons, at most `per_user_limit` per user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Campaign {
    /// Assigned by the store at creation.
    pub id: CampaignId,
    /// Human-readable name.
    pub name: String,
    /// The most coupons this campaign will ever issue.
    pub cap: u64,
    /// The most coupons one user may hold (default 1).
    pub per_user_limit: u32,
    /// Applications before this instant are answered `NotOpen`.
    pub opens_at: Option<DateTime<Utc>>,
    /// Applications at or after this instant are answered `Closed`.
    pub closes_at: Option<DateTime<Utc>>,
    /// How many counters share the cap (default 1); fixed at creation, because each
    /// user's home counter is [`home_shard`](crate::home_shard)`(user, shards)`.
    #[serde(default = "one_shard")]
    pub shards: u16,
}

/// Where an instant falls relative to a campaign's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowState {
    /// Before `opens_at`.
    NotOpen,
    /// Inside the window (or no window was set).
    Open,
    /// At or after `closes_at`.
    Closed,
}

impl Campaign {
    /// Builds a campaign from validated parts; stores call this once they assign an id.
    pub fn from_new(id: CampaignId, new: NewCampaign) -> Self {
        Self {
            id,
            name: new.name,
            cap: new.cap,
            per_user_limit: new.per_user_limit,
            opens_at: new.opens_at,
            closes_at: new.closes_at,
            shards: new.shards,
        }
    }

    /// The same campaign with the window `opens_at..closes_at`, validated as a new
    /// campaign would be: what a store saves when an operator closes or reopens it.
    /// Everything else (the cap, the per-user limit, the shards) is kept.
    ///
    /// ```
    /// use chrono::{Duration, Utc};
    /// use coupon_core::{Campaign, CampaignId, NewCampaign, WindowState};
    /// let campaign = Campaign::from_new(CampaignId(1), NewCampaign::new("launch", 10).shards(3));
    /// let now = Utc::now();
    /// let closed = campaign.with_window(None, Some(now)).unwrap();
    /// assert_eq!(closed.window_state(now), WindowState::Closed);
    /// assert_eq!(closed.shards, 3);
    /// assert!(campaign.with_window(Some(now), Some(now - Duration::hours(1))).is_err());
    /// ```
    pub fn with_window(
        &self,
        opens_at: Option<DateTime<Utc>>,
        closes_at: Option<DateTime<Utc>>,
    ) -> Result<Campaign> {
        let mut new = NewCampaign::new(self.name.clone(), self.cap)
            .per_user_limit(self.per_user_limit)
            .shards(self.shards);
        new.opens_at = opens_at;
        new.closes_at = closes_at;
        new.validate()?;
        Ok(Campaign::from_new(self.id, new))
    }

    /// Where `now` falls relative to the window.
    ///
    /// ```
    /// use chrono::{Duration, Utc};
    /// use coupon_core::{Campaign, CampaignId, NewCampaign, WindowState};
    /// let now = Utc::now();
    /// let campaign = Campaign::from_new(
    ///     CampaignId(1),
    ///     NewCampaign::new("launch", 10).opens_at(now + Duration::minutes(5)),
    /// );
    /// assert_eq!(campaign.window_state(now), WindowState::NotOpen);
    /// assert_eq!(campaign.window_state(now + Duration::minutes(5)), WindowState::Open);
    /// ```
    pub fn window_state(&self, now: DateTime<Utc>) -> WindowState {
        if self.opens_at.is_some_and(|opens| now < opens) {
            WindowState::NotOpen
        } else if self.closes_at.is_some_and(|closes| now >= closes) {
            WindowState::Closed
        } else {
            WindowState::Open
        }
    }
}

/// What a caller asks for when creating a campaign; the store assigns the id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewCampaign {
    /// Human-readable name; must not be blank.
    pub name: String,
    /// The most coupons to issue; at least 1.
    pub cap: u64,
    /// The most coupons per user; at least 1. Defaults to 1.
    #[serde(default = "default_per_user_limit")]
    pub per_user_limit: u32,
    /// Optional start of the window.
    #[serde(default)]
    pub opens_at: Option<DateTime<Utc>>,
    /// Optional end of the window (exclusive).
    #[serde(default)]
    pub closes_at: Option<DateTime<Utc>>,
    /// How many counters share the cap: 1 (the default) to [`NewCampaign::MAX_SHARDS`],
    /// and no more than the counter in use supports
    /// ([`CouponCounter::max_shards`](crate::CouponCounter::max_shards)).
    #[serde(default = "one_shard")]
    pub shards: u16,
}

fn default_per_user_limit() -> u32 {
    1
}

fn one_shard() -> u16 {
    1
}

impl NewCampaign {
    /// The longest name every store holds, in characters.
    pub const MAX_NAME_CHARS: usize = 255;

    /// The largest per-user limit: it bounds the work one application can cause (the
    /// counter reads and the store writes of one user's slots), whatever a campaign
    /// asks for.
    pub const MAX_PER_USER_LIMIT: u32 = 1_000;

    /// The most counters one campaign's cap may be split over.
    pub const MAX_SHARDS: u16 = 64;

    /// The earliest window bound every store holds.
    pub const EARLIEST: DateTime<Utc> = DateTime::from_timestamp(1, 0).expect("in range");

    /// The latest window bound every store holds.
    pub const LATEST: DateTime<Utc> = DateTime::from_timestamp(2_147_483_647, 0).expect("in range");

    /// A campaign of `cap` coupons, one per user, always open.
    pub fn new(name: impl Into<String>, cap: u64) -> Self {
        Self {
            name: name.into(),
            cap,
            per_user_limit: default_per_user_limit(),
            opens_at: None,
            closes_at: None,
            shards: one_shard(),
        }
    }

    /// Sets the per-user limit.
    pub fn per_user_limit(mut self, limit: u32) -> Self {
        self.per_user_limit = limit;
        self
    }

    /// Splits the cap over `shards` counters (see [`Campaign::shards`]).
    ///
    /// ```
    /// use coupon_core::{Error, NewCampaign};
    /// assert!(NewCampaign::new("hot", 3_000).shards(3).validate().is_ok());
    /// let err = NewCampaign::new("hot", 3_000).shards(0).validate().unwrap_err();
    /// assert!(matches!(err, Error::InvalidCampaign { field: "shards", .. }));
    /// ```
    pub fn shards(mut self, shards: u16) -> Self {
        self.shards = shards;
        self
    }

    /// Sets the start of the window.
    pub fn opens_at(mut self, at: DateTime<Utc>) -> Self {
        self.opens_at = Some(at);
        self
    }

    /// Sets the end of the window (exclusive).
    pub fn closes_at(mut self, at: DateTime<Utc>) -> Self {
        self.closes_at = Some(at);
        self
    }

    /// Checks the invariants every store enforces before creating the campaign.
    ///
    /// ```
    /// use coupon_core::{Error, NewCampaign};
    /// let err = NewCampaign::new("empty", 0).validate().unwrap_err();
    /// assert!(matches!(err, Error::InvalidCampaign { field: "cap", .. }));
    /// ```
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, reason: &str| {
            Err(Error::InvalidCampaign {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.name.trim().is_empty() {
            return invalid("name", "must not be blank");
        }
        if self.name.chars().count() > NewCampaign::MAX_NAME_CHARS {
            // Every SQL backend stores it in a VARCHAR(255).
            return invalid("name", "must be at most 255 characters");
        }
        if self.name.chars().any(char::is_control) {
            // PostgreSQL refuses NUL in text, and no campaign name needs a control
            // character.
            return invalid("name", "must not contain control characters");
        }
        for (field, at) in [("opens_at", self.opens_at), ("closes_at", self.closes_at)] {
            if at.is_some_and(|at| !(NewCampaign::EARLIEST..=NewCampaign::LATEST).contains(&at)) {
                // MySQL's TIMESTAMP, the narrowest of the backends' columns.
                return invalid(
                    field,
                    "must be between 1970-01-01T00:00:01Z and 2038-01-19T03:14:07Z",
                );
            }
        }
        if self.cap == 0 {
            return invalid("cap", "must be at least 1");
        }
        if self.cap > i64::MAX as u64 {
            // Every SQL backend stores the cap in a signed 64-bit column.
            return invalid("cap", "must fit in a signed 64-bit integer");
        }
        if self.per_user_limit == 0 {
            return invalid("per_user_limit", "must be at least 1");
        }
        if self.per_user_limit > Self::MAX_PER_USER_LIMIT {
            return invalid("per_user_limit", "must be at most 1000");
        }
        if self.per_user_limit > i32::MAX as u32 {
            // SQL backends store it in a signed 32-bit column.
            return invalid("per_user_limit", "must fit in a signed 32-bit integer");
        }
        if self.shards == 0 {
            return invalid("shards", "must be at least 1");
        }
        if self.shards > Self::MAX_SHARDS {
            return invalid("shards", "must be at most 64");
        }
        if self
            .cap
            .checked_mul(u64::from(self.shards))
            .is_none_or(|top| top > i64::MAX as u64)
        {
            // A shard's ranks interleave with the others' (its k-th is (k-1)*shards +
            // shard + 1), so the highest rank is below cap * shards, and every store
            // keeps ranks in a signed 64-bit column.
            return invalid(
                "shards",
                "cap times shards must fit in a signed 64-bit integer",
            );
        }
        if let (Some(opens), Some(closes)) = (self.opens_at, self.closes_at)
            && closes <= opens
        {
            return invalid("closes_at", "must be after opens_at");
        }
        Ok(())
    }
}
