//! Admission: the fast gate that hands out at most `cap` slots.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{Admission, Campaign, CampaignId, Result, UserId};

/// The admission counter of every campaign.
///
/// Implementations must be exact under any concurrency, across every process that
/// shares the backend: the count never passes `campaign.cap`, and a user never holds
/// more than `campaign.per_user_limit` slots.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait CouponCounter: Send + Sync + 'static {
    /// Atomically admits `user` to `campaign`.
    ///
    /// - the user already holds `per_user_limit` slots: [`Admission::AlreadyApplied`];
    /// - the count is at `cap`: [`Admission::SoldOut`];
    /// - otherwise the user's slot is recorded with the current time and the count is
    ///   incremented, [`Admission::Granted`] with the new count as the rank.
    ///
    /// The check and the update are one atomic step; nothing changes unless granted.
    async fn try_acquire(&self, campaign: &Campaign, user: UserId) -> Result<Admission>;

    /// Gives back one slot `user` holds in `campaign`.
    ///
    /// Returns whether a slot was held. Decrements only then, so the count never goes
    /// below zero and a double release frees one slot, not two.
    async fn release(&self, campaign: CampaignId, user: UserId) -> Result<bool>;

    /// Whether `user` holds a slot in `campaign` (admitted, not released).
    async fn is_admitted(&self, campaign: CampaignId, user: UserId) -> Result<bool>;

    /// The current admitted count of `campaign` (0 for one never seen).
    async fn status(&self, campaign: CampaignId) -> Result<CounterStatus>;

    /// Users admitted to `campaign` before `cutoff`, for reconciliation: those whose
    /// tickets should have been persisted by now.
    async fn admitted_before(
        &self,
        campaign: CampaignId,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<UserId>>;

    /// Rebuilds the counter of `campaign` from the store's truth after the counter lost
    /// data: every user in `holders` (one entry per coupon held) is recorded as admitted.
    ///
    /// Must never lower the count and must be safe while applications are arriving:
    /// users admitted since the loss stay admitted, and the count ends as the number of
    /// slots recorded.
    async fn restore(&self, campaign: &Campaign, holders: &[UserId]) -> Result<RestoreReport>;
}

/// A counter's view of one campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CounterStatus {
    /// Slots currently taken.
    pub admitted: u64,
}

impl CounterStatus {
    /// A status with `admitted` slots taken.
    pub fn new(admitted: u64) -> Self {
        Self { admitted }
    }
}

/// What [`CouponCounter::restore`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreReport {
    /// Holder slots that were missing and were recorded.
    pub added: u64,
    /// The admitted count afterwards.
    pub admitted: u64,
}

impl RestoreReport {
    /// A report of `added` slots recorded, `admitted` in total afterwards.
    pub fn new(added: u64, admitted: u64) -> Self {
        Self { added, admitted }
    }
}
