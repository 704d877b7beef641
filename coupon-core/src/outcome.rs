//! What each step of the pipeline answers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Coupon, TicketId};

/// The answer to one application, as the caller hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ApplyOutcome {
    /// Admitted and handed off durably: the coupon will be persisted.
    Accepted {
        /// The admission rank: 1..=cap on a campaign of one shard; on a sharded one,
        /// unique and in the home shard's class (see
        /// [`ShardedCounter`](crate::shards::ShardedCounter)).
        rank: u64,
        /// The ticket that will become the coupon.
        ticket_id: TicketId,
    },
    /// Admitted, but whether the ticket reached the queue is not known yet (a timeout,
    /// or a retry while the first attempt's hand-off is unconfirmed). Nothing is lost:
    /// the settler publishes the admission's ticket again until the store holds the
    /// coupon, and the coupon route tells when it does.
    Pending,
    /// Every slot is taken.
    SoldOut,
    /// The user already holds as many slots as the campaign allows.
    AlreadyApplied,
    /// The campaign's window has not opened yet.
    NotOpen,
    /// The campaign's window has closed.
    Closed,
}

/// What a [`CouponCounter`](crate::CouponCounter) answers to `try_acquire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A slot was taken; `rank` is the admitted count after taking it (on a sharded
    /// campaign, its shard's next rank).
    Granted {
        /// 1..=cap on a campaign of one shard; on a sharded one, the shard's next rank
        /// of its own class (unique per campaign, at most `cap * shards`).
        rank: u64,
        /// Which of the user's slots (1..=per_user_limit): the lowest one free.
        slot: u32,
        /// When: by the counter's clock where it keeps admission times (the ticket
        /// carries it), else the caller's.
        admitted_at: DateTime<Utc>,
        /// The counter's epoch in the campaign: the one its last rebuild sealed
        /// ([`AdmissionLedger::seal_epoch`](crate::AdmissionLedger::seal_epoch)).
        epoch: u64,
    },
    /// The count is at the cap; nothing changed.
    SoldOut,
    /// The user already holds `per_user_limit` slots; nothing changed.
    AlreadyApplied,
}

/// What a [`CouponStore`](crate::CouponStore) did with one ticket of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueOutcome {
    /// A new coupon was persisted.
    Issued(Coupon),
    /// Nothing was written: this ticket was stored before, or the user already holds
    /// `per_user_limit` coupons of this campaign.
    Duplicate,
    /// Nothing was written: the campaign already holds `cap` coupons.
    OverCap,
    /// Nothing was written: the ticket names a campaign the store does not know.
    UnknownCampaign,
    /// Nothing was written: the ticket is of a counter epoch a rebuild superseded, and
    /// that rebuild did not count its slot, which may belong to someone else now. Its
    /// applicant was never told yes (docs/architecture.md, "Fences rest on identity").
    Superseded,
}
