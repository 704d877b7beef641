//! Kafka hand-off for firstcome: `KafkaIssueQueue` (an idempotent, `acks=all` producer
//! implementing [`coupon_core::IssueQueue`]) and `KafkaIssueSource` (a consumer group
//! that commits offsets only after the store persisted a batch).
//!
//! Not implemented yet: this crate reserves the name and the place in the workspace.
//! Until it lands, use [`coupon_core::memory::MemoryQueue`] for the in-process hand-off.

pub use coupon_core::{IssueQueue, IssueSource};
