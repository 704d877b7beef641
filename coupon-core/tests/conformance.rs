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

/// A reserved slot whose ticket never arrived is released; a persisted one is confirmed.
#[tokio::test]
async fn reconcile_releases_only_slots_missing_from_the_store() {
    use coupon_core::{CouponCounter, CouponStore, IssueTicket, NewCampaign, UserId, reconcile};
    let (counter, store) = (MemoryCounter::new(), MemoryStore::new());
    let campaign = store
        .create_campaign(NewCampaign::new("reconcile", 2))
        .await
        .unwrap();
    for user in [1, 2] {
        counter.try_acquire(&campaign, UserId(user)).await.unwrap();
    }
    store
        .issue_batch(&[IssueTicket::new(campaign.id, UserId(1), 1)])
        .await
        .unwrap();
    let cutoff = chrono::Utc::now();
    counter.try_acquire(&campaign, UserId(3)).await.unwrap(); // sold out: cap 2

    let report = reconcile(&counter, &store, campaign.id, cutoff)
        .await
        .unwrap();
    assert_eq!(report.confirmed, 1);
    assert_eq!(report.released, vec![UserId(2)]);
    assert_eq!((report.admitted, report.issued), (1, 1));
}
