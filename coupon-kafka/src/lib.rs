//! Kafka hand-off for firstcome.
//!
//! - [`KafkaIssueQueue`] implements [`coupon_core::IssueQueue`]: an idempotent,
//!   `acks=all` producer; `publish` returns once the ticket is stored, and tells a
//!   definite refusal from an unknown outcome.
//! - [`KafkaIssueSource`] implements [`coupon_core::IssueSource`]: a consumer group that
//!   commits offsets only after the store persisted a batch, survives rebalances, and
//!   parks unreadable messages on the dead-letter topic.
//!
//! Both check at start-up that the configured topics exist with the expected partition
//! count (or create them when [`KafkaConfig::create_topics`] is set): a misspelt topic
//! fails loudly instead of losing messages. The same code runs against Apache Kafka,
//! Redpanda and tansu.
//!
//! ```no_run
//! # async fn demo() -> coupon_core::Result<()> {
//! use std::sync::Arc;
//! use coupon_core::IssueWorker;
//! use coupon_kafka::{KafkaConfig, KafkaIssueQueue, KafkaIssueSource};
//! # let store: Arc<dyn coupon_core::CouponStore> = Arc::new(coupon_core::memory::MemoryStore::new());
//!
//! let config = KafkaConfig::new("127.0.0.1:9092").with_create_topics(true);
//! let queue = KafkaIssueQueue::connect(config.clone()).await?; // for the issuer
//! let source = KafkaIssueSource::connect(config).await?;        // for the worker
//! IssueWorker::new(Arc::new(source), store).run(std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! rdkafka builds its bundled librdkafka with cmake (Debian's librdkafka is too old for
//! some brokers); building needs cmake, a C/C++ compiler, and the zlib and curl headers
//! (`scripts/services.sh install` installs them).

pub mod codec;
mod commit;
mod config;
mod context;
mod dead_letter;
mod error;
mod group;
mod offsets;
mod producer;
mod queue;
mod source;
mod topics;

pub use config::{KafkaConfig, MAX_GROUP, MAX_POLL_INTERVAL, RESERVED_SETTINGS, reserved_setting};
pub use dead_letter::{KIND_HEADER, ORIGIN_HEADER, REASON_HEADER};
pub use queue::KafkaIssueQueue;
pub use source::KafkaIssueSource;
