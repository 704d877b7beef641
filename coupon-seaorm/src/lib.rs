//! SeaORM coupon store for firstcome: the database as the final authority.
//!
//! [`SeaOrmStore`] implements [`coupon_core::CouponStore`] on SQLite (feature `sqlite`,
//! on by default), PostgreSQL (`postgres`) and MySQL/MariaDB (`mysql`). Whatever the
//! admission counter said, a campaign never holds more than its cap of coupons, a user
//! never more than the per-user limit, and a ticket becomes at most one coupon: each
//! batch is one transaction that serialises on the campaign and checks all three.
//!
//! Tables (created by the [`Migrator`] migrations, run on connect by default):
//!
//! | table | columns | keys |
//! | --- | --- | --- |
//! | `campaign` | id, name, cap, per_user_limit, opens_at, closes_at, issued, shards | primary id |
//! | `coupon` | id, campaign_id, user_id, user_slot, rank, code, ticket_id, issued_at | unique (user_id, campaign_id, user_slot), index campaign_id, unique code, unique ticket_id |
//! | `issue_failure` | id, ticket_id, campaign_id, ticket, error, attempts, first_seen, last_seen, replayed_at | unique ticket_id |
//! | `issue_queue` | id, ticket_id, campaign_id, user_id, ticket, enqueued_at, available_at, deliveries, dead_reason | index available_at, index campaign_id |
//! | `pending_ticket` | id, ticket_id, campaign_id, ticket, recorded_at | unique ticket_id, index campaign_id |
//! | `counter_epoch` | campaign_id, epoch | primary campaign_id |
//! | `epoch_slot` | campaign_id, user_id, user_slot | primary (campaign_id, user_id, user_slot) |
//!
//! [`SqlIssueQueue`] and [`SqlIssueSource`] are the hand-off as the `issue_queue` table of
//! the same database: no broker to run, and an accepted ticket is as durable as a coupon.
//!
//! `user_slot` runs 1..=per_user_limit, so for the default limit of 1 the unique key is
//! (user_id, campaign_id): one coupon per user and campaign. User ids are 64-bit unsigned; they are stored bit for bit in
//! signed `BIGINT` columns.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
//! use coupon_core::{CouponStore, NewCampaign};
//! use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig};
//!
//! let store = SeaOrmStore::connect(SeaOrmStoreConfig::new("sqlite::memory:")).await?;
//! let campaign = store.create_campaign(NewCampaign::new("launch", 1_000)).await?;
//! assert_eq!(store.issued_count(campaign.id).await?, 0);
//! # Ok(()) }
//! ```

mod commit;
pub mod entity;
mod epoch;
mod error;
mod issue;
mod lease;
mod migration;
mod pool;
mod queue;
mod source;
mod sql;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use lease::{CounterLease, LEASE_CHECK, LeaseKeeper};
pub use migration::Migrator;
pub use queue::{SqlIssueQueue, SqlQueueConfig};
pub use source::SqlIssueSource;
pub use sql::placeholder;
pub use store::{SeaOrmStore, SeaOrmStoreConfig};
