//! The conformance suite on the in-memory adapters.

use std::sync::Arc;

use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
use coupon_core::testkit::{counter, pipeline, queue, store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_counter_conformance() {
    let counter = Arc::new(MemoryCounter::new());
    counter::all(counter.clone()).await;
    counter::per_user_limit_above_one(counter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conformance() {
    store::all(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_queue_delivers_every_ticket() {
    let queue = Arc::new(MemoryQueue::new(2_000));
    queue::delivers_every_published_ticket(queue.clone(), queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_queue_redelivers_dropped_batches() {
    let queue = Arc::new(MemoryQueue::new(2_000));
    queue::unacked_batches_are_redelivered(queue.clone(), queue, |source| async { source }).await;
}

/// The seed's scenario end to end: 1,000 concurrent applicants on cap 100 give exactly
/// 100 persisted coupons for 100 distinct users.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_pipeline_issues_exactly_cap() {
    let queue = Arc::new(MemoryQueue::new(64));
    pipeline::stampede_issues_exactly_cap(pipeline::Pipeline {
        counter: Arc::new(MemoryCounter::new()),
        queue: queue.clone(),
        source: queue,
        store: Arc::new(MemoryStore::new()),
    })
    .await;
}
