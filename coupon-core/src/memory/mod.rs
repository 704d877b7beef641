//! In-memory adapters: the embedded default for single-process deployments and tests.
//!
//! They keep the full contract of their traits (exact caps under contention, idempotent
//! batches, at-least-once redelivery) within one process. They are not mocks.

mod counter;
mod queue;
mod store;

pub use counter::{LeaseCheck, MemoryCounter, MemoryShards};
pub use queue::MemoryQueue;
pub use store::MemoryStore;

pub(crate) use crate::sync::lock;
