//! What the service answers about a campaign, a user's coupon and its own readiness.

use chrono::Utc;

use crate::{Campaign, Coupon, Error, WindowState};

/// Where a campaign stands for an applicant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignState {
    /// Before its window.
    NotOpen,
    /// Admitting.
    Open,
    /// In its window, every slot admitted.
    SoldOut,
    /// After its window, or closed early.
    Closed,
}

/// A campaign with its counts and its state, as [`CouponService::status`](crate::CouponService::status) read them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CampaignStatus {
    /// The definition.
    pub campaign: Campaign,
    /// Applications the counter admitted (what it holds now: after it lost its memory,
    /// fewer than were admitted, until rebuilt).
    pub admitted: u64,
    /// Coupons the store holds.
    pub issued: u64,
    /// Where it stands now: sold out when either the counter or the store is full.
    pub state: CampaignState,
    /// Whether its counter is being rebuilt (it lost its memory): applications answer
    /// 503 meanwhile. Never for a campaign closed or sold out.
    pub rebuilding: bool,
}

impl CampaignStatus {
    /// The status of `campaign` with these counts, its state as of now.
    ///
    /// ```
    /// use coupon_core::{Campaign, CampaignId, CampaignState, CampaignStatus, NewCampaign};
    /// let campaign = Campaign::from_new(CampaignId(1), NewCampaign::new("drop", 10));
    /// // A counter that lost its memory says 0; the store holds all 10.
    /// let status = CampaignStatus::new(campaign, 0, 10);
    /// assert_eq!((status.state, status.remaining()), (CampaignState::SoldOut, 0));
    /// ```
    pub fn new(campaign: Campaign, admitted: u64, issued: u64) -> Self {
        let taken = admitted.max(issued);
        let state = match campaign.window_state(Utc::now()) {
            WindowState::NotOpen => CampaignState::NotOpen,
            WindowState::Closed => CampaignState::Closed,
            WindowState::Open if taken >= campaign.cap => CampaignState::SoldOut,
            WindowState::Open => CampaignState::Open,
        };
        Self {
            campaign,
            admitted,
            issued,
            state,
            rebuilding: false,
        }
    }

    /// Slots not taken yet: never more than the coupons the store could still take.
    pub fn remaining(&self) -> u64 {
        self.campaign
            .cap
            .saturating_sub(self.admitted.max(self.issued))
    }

    /// Whether the window is open and every slot taken.
    pub fn is_sold_out(&self) -> bool {
        self.state == CampaignState::SoldOut
    }
}

/// What a user holds of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CouponStatus {
    /// Persisted coupons, at least one (more under a per-user limit above one).
    Issued(Vec<Coupon>),
    /// Admitted; the coupon is on its way (queued, or to be rolled forward).
    Pending,
    /// Neither.
    None,
}

/// The answer of [`CouponService::readiness`](crate::CouponService::readiness).
#[derive(Debug)]
pub struct Readiness {
    /// Each port that did not answer (`"counter"`, `"queue"`, `"store"`), with why.
    pub failures: Vec<(&'static str, Error)>,
}

impl Readiness {
    /// Whether every port answered.
    pub fn is_ready(&self) -> bool {
        self.failures.is_empty()
    }
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.failures.is_empty() {
            return f.write_str("ready");
        }
        for (i, (port, error)) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{port}: {error}")?;
        }
        Ok(())
    }
}
