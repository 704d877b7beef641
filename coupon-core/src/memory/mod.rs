//! In-memory adapters: the embedded default for single-process deployments and tests.
//!
//! They keep the full contract of their traits (exact caps under contention, idempotent
//! batches, at-least-once redelivery) within one process. They are not mocks.

mod counter;
mod queue;
mod store;

pub use counter::{LeaseCheck, MemoryCounter};
pub use queue::MemoryQueue;
pub use store::MemoryStore;

/// Locks a std mutex, recovering the data of a poisoned one: every critical section in
/// this module leaves its data consistent before anything that could panic.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
