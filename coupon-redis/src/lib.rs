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
//! use coupon_core::CouponService;
//! use coupon_redis::{RedisCounter, RedisCounterConfig};
//!
//! let counter = RedisCounter::connect(RedisCounterConfig::new("redis://127.0.0.1:6379/")).await?;
//! let service = CouponService::new(
//!     Arc::new(counter),
//!     Arc::new(MemoryQueue::new(10_000)),
//!     Arc::new(MemoryStore::new()),
//! );
//! # Ok(()) }
//! ```
//!
//! A counter that lost its data (a restart, an evicted or deleted key, a failover to a
//! replica) admits no one: it answers [`coupon_core::Error::NotReady`] until
//! [`CouponCounter::rebuild`](coupon_core::CouponCounter::rebuild) rebuilt it from the
//! store, which the [`CouponService`](coupon_core::CouponService) does by itself.
//! With replicas, each admission can wait for a replica's acknowledgement
//! ([`Confirm`]), one `WAIT` per group of concurrent admissions.

mod config;
mod confirm;
mod connection;
mod counter;
mod error;
mod gather;
mod keys;
mod marker;
mod probe;
mod rebuild;

pub use config::{Confirm, RedisCounterConfig};
pub use counter::RedisCounter;
pub use keys::CampaignKeys;
