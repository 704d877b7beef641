//! The conformance suite on the in-memory adapters.

use coupon_core::AdmissionLedger;
use std::sync::Arc;

use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
use coupon_testkit::{pipeline, queue};

#[path = "conformance/broken.rs"]
mod broken;

coupon_testkit::counter_scenarios!(memory_counter, Arc::new(MemoryCounter::new()));
coupon_testkit::sharded_counter_scenarios!(memory_sharded, Arc::new(MemoryCounter::new()));
coupon_testkit::store_scenarios!(memory_store, Arc::new(MemoryStore::new()));

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

/// A stampede end to end: 1,000 concurrent applicants on cap 100 give exactly 100
/// persisted coupons for 100 distinct users.
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

/// Admissions whose tickets never arrived (the process died before publishing) are
/// published again by the settler, once each, and become coupons; settled ones are left
/// alone, and a second pass publishes nothing more.
#[tokio::test]
async fn settler_republishes_only_admissions_missing_from_the_store() {
    use std::time::Duration;

    use coupon_core::{
        Admission, CouponCounter, CouponStore, IssueTicket, IssueWorker, NewCampaign, SealedEpoch,
        Settler, SettlerConfig, UserId,
    };

    let counter = Arc::new(MemoryCounter::new());
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(100));
    let campaign = store
        .create_campaign(NewCampaign::new("settle", 3))
        .await
        .unwrap();
    counter
        .rebuild(&campaign, Arc::new(SealedEpoch::new(1, Vec::new())))
        .await
        .unwrap();
    let mut granted = Vec::new();
    for user in [1, 2, 3] {
        match counter.try_acquire(&campaign, UserId(user)).await.unwrap() {
            Admission::Granted { rank, slot, .. } => granted.push((user, slot, rank)),
            other => panic!("{other:?}"),
        }
    }
    // User 1's ticket made it; users 2 and 3 were admitted and never published.
    store
        .issue_batch(&[IssueTicket::new(campaign.id, UserId(1), 1, 1)])
        .await
        .unwrap();

    let settler = Settler::new(
        counter.clone(),
        queue.clone(),
        store.clone(),
        SettlerConfig::default().with_grace(Duration::from_millis(10)),
    );
    let early = settler.settle(campaign.id).await.unwrap();
    assert_eq!(
        (early.in_flight, early.unsettled, early.republished),
        (2, 0, 0),
        "nothing is older than the grace period yet"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = settler.settle_all().await.unwrap();
    assert_eq!((report.unsettled, report.republished), (2, 2));
    assert!(report.oldest_unsettled_ms.unwrap() >= 10);
    let again = settler.settle(campaign.id).await.unwrap();
    assert_eq!(again.republished, 0, "claimed within the grace period");

    queue.close();
    let worker = IssueWorker::new(queue.clone(), store.clone());
    let persisted = worker.run(std::future::pending()).await.unwrap();
    assert_eq!(persisted.issued, 2);
    let mut holders = store.holders(campaign.id).await.unwrap();
    holders.sort_unstable();
    assert_eq!(holders, vec![UserId(1), UserId(2), UserId(3)]);
    for (user, _, rank) in granted {
        let coupons = store.coupons_of(campaign.id, UserId(user)).await.unwrap();
        assert_eq!(
            coupons[0].rank, rank,
            "user {user} keeps the rank they were granted"
        );
    }
    let settled = settler.settle(campaign.id).await.unwrap();
    assert_eq!((settled.in_flight, settled.unsettled), (0, 0));
}

/// An admission answered Pending lives on in the store: with the counter emptied (a
/// Redis restarted empty), the settler publishes the recorded ticket once per grace
/// period, the coupon arrives at the rank the admission took, a counter rebuilt from
/// the store counts the slot, and the record is forgotten once settled.
#[tokio::test]
async fn recorded_pending_tickets_outlive_a_counter_that_lost_its_memory() {
    use std::time::Duration;

    use coupon_core::{
        CouponCounter, CouponStore, IssueTicket, IssueWorker, NewCampaign, Settler, SettlerConfig,
        UserId, admitted_slots,
    };

    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(100));
    let campaign = store
        .create_campaign(NewCampaign::new("pending", 3))
        .await
        .unwrap();
    let pending = IssueTicket::new(campaign.id, UserId(7), 1, 2);
    store.record_pending(&pending).await.unwrap();
    // A counter that lost its memory: the campaign is not built on it.
    let counter = Arc::new(MemoryCounter::new());

    let settler = Settler::new(
        counter.clone(),
        queue.clone(),
        store.clone(),
        SettlerConfig::default().with_grace(Duration::from_millis(50)),
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    let report = settler.settle(campaign.id).await.unwrap();
    assert_eq!((report.unsettled, report.republished), (1, 1));
    let again = settler.settle(campaign.id).await.unwrap();
    assert_eq!(again.republished, 0, "once per grace period");

    let rebuilt = admitted_slots(store.as_ref(), campaign.id).await.unwrap();
    assert_eq!(rebuilt, vec![pending.held_slot()]);
    let sealed = store.seal_epoch(campaign.id, 0, &[]).await.unwrap();
    assert_eq!(
        sealed.slots, rebuilt,
        "the seal counts what the store holds"
    );
    counter.rebuild(&campaign, Arc::new(sealed)).await.unwrap();
    assert_eq!(counter.status(&campaign).await.unwrap().admitted, 1);

    queue.close();
    let worker = IssueWorker::new(queue.clone(), store.clone());
    assert_eq!(worker.run(std::future::pending()).await.unwrap().issued, 1);
    let coupons = store.coupons_of(campaign.id, UserId(7)).await.unwrap();
    assert_eq!(coupons[0].rank, 2, "the rank the admission took");
    settler.settle(campaign.id).await.unwrap();
    assert!(store.pending_tickets(campaign.id).await.unwrap().is_empty());
    assert_eq!(
        store.forget_settled_pending(campaign.id).await.unwrap(),
        0,
        "forgotten by the pass"
    );
}

/// A queue whose consumers never catch up (it is never drained past a mark) but which
/// reads the tickets not acked yet: what Kafka offers while its workers rebalance.
#[derive(Default)]
struct NeverDrained {
    published: std::sync::Mutex<Vec<coupon_core::IssueTicket>>,
}

impl NeverDrained {
    /// A ticket that shows up in the queue without a publish of this process (one that
    /// became visible late).
    fn publish_raw(&self, ticket: coupon_core::IssueTicket) {
        self.published.lock().expect("the tickets").push(ticket);
    }
}

#[coupon_core::async_trait]
impl coupon_core::IssueQueue for NeverDrained {
    async fn publish(&self, ticket: &coupon_core::IssueTicket) -> coupon_core::Result<()> {
        self.published
            .lock()
            .expect("the tickets")
            .push(ticket.clone());
        Ok(())
    }

    async fn mark(&self) -> coupon_core::Result<Option<coupon_core::QueueMark>> {
        let end = self.published.lock().expect("the tickets").len();
        Ok(Some(coupon_core::QueueMark {
            positions: vec![end as i64],
        }))
    }

    async fn drained(&self, _: &coupon_core::QueueMark) -> coupon_core::Result<bool> {
        Ok(false)
    }

    async fn unacked(
        &self,
        mark: &coupon_core::QueueMark,
    ) -> coupon_core::Result<Option<Vec<coupon_core::IssueTicket>>> {
        let end = usize::try_from(mark.positions[0]).expect("a position");
        Ok(Some(
            self.published.lock().expect("the tickets")[..end].to_vec(),
        ))
    }
}

/// A counter that lost its memory is rebuilt without waiting for the consumers: the
/// tickets still in the queue are read from it and counted, so admissions resume (the
/// next applicant ranks after them) while no consumer has taken any.
#[tokio::test]
async fn a_rebuild_counts_the_queues_unacked_tickets_instead_of_waiting_for_the_drain() {
    use coupon_core::{ApplyOutcome, CouponService, NewCampaign, UserId};
    let counter = Arc::new(MemoryCounter::new());
    let queue = Arc::new(NeverDrained::default());
    let service = CouponService::new(counter.clone(), queue.clone(), Arc::new(MemoryStore::new()));
    let campaign = service
        .create_campaign(NewCampaign::new("unconsumed", 10))
        .await
        .expect("campaign");
    for user in 1..=4 {
        let outcome = service
            .apply(campaign.id, UserId(user))
            .await
            .expect("apply");
        assert!(
            matches!(outcome, ApplyOutcome::Accepted { rank, .. } if rank == user),
            "{outcome:?}"
        );
    }
    // The counter forgets every campaign (as a process that lost its lease and took it
    // back, or a Redis restarted empty).
    counter.suspend();
    counter.resume();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let outcome = loop {
        match service.apply(campaign.id, UserId(5)).await {
            Ok(outcome) => break outcome,
            Err(error) => {
                assert!(error.is_retryable(), "{error}");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the rebuild waits for a drain that never comes: {error}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    assert!(
        matches!(outcome, ApplyOutcome::Accepted { rank: 5, .. }),
        "the four tickets in the queue are counted: {outcome:?}"
    );
    let again = service.apply(campaign.id, UserId(2)).await.expect("apply");
    assert!(
        !matches!(again, ApplyOutcome::Accepted { .. }),
        "a user whose ticket waits in the queue is not admitted twice: {again:?}"
    );
    assert_eq!(
        service.status(campaign.id).await.expect("status").admitted,
        5
    );
}

/// A ticket read from the queue that an earlier seal superseded (published late in an
/// old epoch, its applicant never promised) is not counted by the next rebuild: the
/// store refuses it as it would refuse its coupon, so the campaign's cap holds and the
/// applicant admitted into that slot since keeps it.
#[tokio::test]
async fn a_rebuild_does_not_count_a_superseded_ticket_it_reads_from_the_queue() {
    use coupon_core::{ApplyOutcome, CouponService, IssueTicket, NewCampaign, UserId};
    let counter = Arc::new(MemoryCounter::new());
    let queue = Arc::new(NeverDrained::default());
    let service = CouponService::new(counter.clone(), queue.clone(), Arc::new(MemoryStore::new()));
    let campaign = service
        .create_campaign(NewCampaign::new("superseded", 2))
        .await
        .expect("campaign");
    let apply_until_answered = |user: u64| {
        let service = &service;
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                match service.apply(campaign.id, UserId(user)).await {
                    Ok(outcome) => break outcome,
                    Err(error) => {
                        assert!(error.is_retryable(), "{error}");
                        assert!(tokio::time::Instant::now() < deadline, "{error}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        }
    };
    assert!(matches!(
        apply_until_answered(1).await,
        ApplyOutcome::Accepted { rank: 1, .. }
    ));
    // The counter forgets; the rebuild seals epoch 2 holding user 1's slot.
    counter.suspend();
    counter.resume();
    assert!(!matches!(
        apply_until_answered(1).await,
        ApplyOutcome::Accepted { .. }
    ));
    // A publish of epoch 1 that became visible only now: rank 2, never confirmed.
    let late = IssueTicket::new(campaign.id, UserId(3), 1, 2).in_epoch(1);
    queue.publish_raw(late);
    assert!(matches!(
        apply_until_answered(4).await,
        ApplyOutcome::Accepted { rank: 2, .. }
    ));
    // The counter forgets again: the rebuild reads users 1, 3 and 4 from the queue.
    counter.suspend();
    counter.resume();
    let newcomer = apply_until_answered(5).await;
    assert_eq!(
        newcomer,
        ApplyOutcome::SoldOut,
        "users 1 and 4 hold the cap of 2; the late ticket of user 3 is not counted"
    );
    assert_eq!(
        service.status(campaign.id).await.expect("status").admitted,
        2
    );
}
