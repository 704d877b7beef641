//! First-come-first-served coupon issuing that holds under a stampede.
//!
//! A campaign promises `cap` coupons. [`CouponService`] is the one way in: every use
//! case (create, apply, close, reopen, status, settle, dead letters, replay, rebuild)
//! is one of its methods. [`CouponService::apply`] admits at most `cap`
//! applicants through a [`CouponCounter`], hands each admitted one to an
//! [`IssueQueue`], and answers `Accepted` only once that hand-off is durable. An
//! [`IssueWorker`] moves tickets from the [`IssueSource`] into a [`CouponStore`], the
//! final authority, which enforces the cap and the per-user limit again and makes
//! redelivery harmless.
//!
//! The [`memory`] adapters run all of it in one process; `coupon-redis`,
//! `coupon-kafka` and `coupon-seaorm` swap each part for a shared backend.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
//! use std::sync::Arc;
//! use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
//! use coupon_core::{ApplyOutcome, CouponService, CouponStore, IssueWorker, NewCampaign, UserId};
//!
//! let store = Arc::new(MemoryStore::new());
//! let queue = Arc::new(MemoryQueue::new(1024));
//! let service = CouponService::new(Arc::new(MemoryCounter::new()), queue.clone(), store.clone());
//! let campaign = service.create_campaign(NewCampaign::new("flash drop", 2)).await?;
//!
//! for user in 1..=3 {
//!     let outcome = service.apply(campaign.id, UserId(user)).await?;
//!     println!("user {user}: {outcome:?}");
//! }
//! queue.close();
//! IssueWorker::new(queue, store.clone()).run(std::future::pending()).await?;
//! assert_eq!(store.issued_count(campaign.id).await?, 2);
//! # Ok(()) }
//! ```
//!
//! Every admission ends as a coupon: a hand-off whose outcome is unknown, a caller that
//! went away, a process killed between admission and publish all leave a slot that the
//! [`Settler`] rolls forward by publishing its (deterministic) ticket again.
//!
//! The conformance suite every adapter runs lives in the `coupon-testkit` crate.

mod campaign;
mod coalesce;
pub mod codec;
mod counter;
mod coupon;
mod error;
mod fence;
mod handoff;
mod ids;
mod issuer;
mod ledger;
pub mod memory;
mod outcome;
mod queue;
mod redact;
mod replay;
mod service;
mod settler;
pub mod shards;
mod sold_out;
mod store;
pub(crate) use store::{close_campaign, reopen_campaign};
mod sync;
mod ticket;
mod unanswered;
mod worker;

#[cfg(test)]
mod tests;

pub use campaign::{Campaign, NewCampaign, WindowState};
pub use coalesce::Coalesced;
pub use counter::{
    CounterStatus, CouponCounter, HeldSlot, Rebuild, Release, RestoreReport, SealEpoch, SealedEpoch,
};
pub use coupon::{Coupon, CouponCode};
pub use error::{BoxError, Error, ErrorClass, Result};
pub use ids::{CampaignId, TicketId, UserId};
pub(crate) use issuer::CouponIssuer;
pub use issuer::IssuerConfig;
pub use ledger::{AdmissionLedger, FailureLedger};
pub use outcome::{Admission, ApplyOutcome, IssueOutcome};
pub use queue::{Batch, IssueQueue, IssueSource, QueueMark};
pub use redact::redact_url;
pub use replay::{ReplayReport, replay_failures};
pub use service::{
    CampaignState, CampaignStatus, CouponService, CouponStatus, Readiness, ServiceConfig,
};
pub use settler::{SettleReport, Settler, SettlerConfig};
pub use shards::home_shard;
pub use store::{CampaignSummary, CouponStore, IssueFailure, admitted_slots, coupon_slot};
pub use ticket::IssueTicket;
pub use worker::{IssueWorker, RunningWorker, WorkerConfig, WorkerReport, WorkerTotals};

/// The attribute the traits are written with: an adapter implements them with
/// `#[coupon_core::async_trait]`, with no dependency of its own.
pub use async_trait::async_trait;
/// The date and time types of the traits' signatures (`DateTime<Utc>`), the version
/// coupon-core uses.
pub use chrono;

#[cfg(test)]
pub(crate) use counter::MockCouponCounter;
#[cfg(test)]
pub(crate) use queue::{MockIssueQueue, MockIssueSource};
#[cfg(test)]
pub(crate) use tests::mock_store::MockCouponStore;

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
