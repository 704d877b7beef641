//! Redis admission counter for firstcome.
//!
//! [`RedisCounter`] implements [`coupon_core::CouponCounter`] with one atomic Lua
//! script per operation: `try_acquire` checks the user, compares the count with the cap
//! and only then increments, in one round trip, so the count never passes the cap.
//! Keys of one campaign share a hash tag (`{coupon:<id>}:count`, `:users`, `:slots`),
//! which keeps a campaign on one Redis Cluster slot (`cluster` feature).
//!
//! ```no_run
//! # async fn demo() -> coupon_core::Result<()> {
//! use std::sync::Arc;
//! use coupon_core::memory::{MemoryQueue, MemoryStore};
//! use coupon_core::CouponIssuer;
//! use coupon_redis::{RedisCounter, RedisCounterConfig};
//!
//! let counter = RedisCounter::connect(RedisCounterConfig::new("redis://127.0.0.1:6379/")).await?;
//! let issuer = CouponIssuer::new(
//!     Arc::new(counter),
//!     Arc::new(MemoryQueue::new(10_000)),
//!     Arc::new(MemoryStore::new()),
//! );
//! # Ok(()) }
//! ```
//!
//! After Redis lost its data (a restart without persistence, `FLUSHALL`, a failover to
//! a replica that missed writes), rebuild a campaign with
//! [`CouponCounter::restore`](coupon_core::CouponCounter::restore) from
//! [`CouponStore::holders`](coupon_core::CouponStore::holders); it is safe while
//! applications keep arriving, and never lowers a count.

mod config;
mod connection;
mod counter;
mod error;
mod keys;

pub use config::RedisCounterConfig;
pub use counter::RedisCounter;
pub use keys::CampaignKeys;
