use std::sync::Arc;

use super::unavailable;
use crate::memory::{MemoryCounter, MemoryQueue, MemoryStore};
use crate::{
    ApplyOutcome, CampaignState, CouponCounter, CouponService, CouponStatus, CouponStore,
    IssueSource, IssueTicket, MockCouponStore, NewCampaign, UserId,
};

fn memory_service() -> (
    CouponService,
    Arc<MemoryCounter>,
    Arc<MemoryQueue>,
    Arc<MemoryStore>,
) {
    let counter = Arc::new(MemoryCounter::new());
    let queue = Arc::new(MemoryQueue::new(100));
    let store = Arc::new(MemoryStore::new());
    let service = CouponService::new(counter.clone(), queue.clone(), store.clone());
    (service, counter, queue, store)
}

#[tokio::test]
async fn coupon_status_tells_issued_pending_and_none_apart() {
    let (service, _, queue, store) = memory_service();
    let campaign = service
        .create_campaign(NewCampaign::new("status", 2))
        .await
        .unwrap();
    assert!(matches!(
        service.apply(campaign.id, UserId(1)).await.unwrap(),
        ApplyOutcome::Accepted { .. }
    ));
    assert_eq!(
        service.coupon_status(campaign.id, UserId(1)).await.unwrap(),
        CouponStatus::Pending
    );
    assert_eq!(
        service.coupon_status(campaign.id, UserId(2)).await.unwrap(),
        CouponStatus::None
    );
    let batch = queue.next_batch(10).await.unwrap().expect("the ticket");
    store.issue_batch(&batch.tickets).await.unwrap();
    let CouponStatus::Issued(coupons) =
        service.coupon_status(campaign.id, UserId(1)).await.unwrap()
    else {
        panic!("the coupon is stored");
    };
    assert_eq!(coupons.len(), 1);
    assert_eq!(coupons[0].user, UserId(1));
}

#[tokio::test]
async fn status_and_campaigns_count_admissions_and_coupons() {
    let (service, _, _, store) = memory_service();
    let campaign = service
        .create_campaign(NewCampaign::new("counts", 2))
        .await
        .unwrap();
    let status = service.status(campaign.id).await.unwrap();
    assert_eq!(
        (status.admitted, status.issued, status.remaining()),
        (0, 0, 2)
    );
    assert_eq!(status.state, CampaignState::Open);
    service.apply(campaign.id, UserId(1)).await.unwrap();
    service.apply(campaign.id, UserId(2)).await.unwrap();
    store
        .issue_batch(&[IssueTicket::new(campaign.id, UserId(1), 1, 1)])
        .await
        .unwrap();
    let all = service.campaigns().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].admitted, all[0].issued, all[0].remaining()),
        (2, 1, 0)
    );
    assert!(all[0].is_sold_out());
    let closed = service.close(campaign.id).await.unwrap();
    assert_eq!(
        service.status(closed.id).await.unwrap().state,
        CampaignState::Closed
    );
}

#[tokio::test]
async fn readiness_names_each_port_that_does_not_answer() {
    let (service, ..) = memory_service();
    assert!(service.readiness().await.is_ready());

    let mut store = MockCouponStore::new();
    store.expect_ready().returning(|| Err(unavailable()));
    let service = CouponService::new(
        Arc::new(MemoryCounter::new()),
        Arc::new(MemoryQueue::new(1)),
        Arc::new(store),
    );
    let readiness = service.readiness().await;
    assert!(!readiness.is_ready());
    assert_eq!(readiness.failures.len(), 1);
    assert_eq!(readiness.failures[0].0, "store");
    assert!(readiness.to_string().starts_with("store: "), "{readiness}");
}

#[tokio::test]
async fn rebuild_counters_builds_a_fresh_counter_in_a_new_epoch() {
    let (service, _, _, store) = memory_service();
    let campaign = service
        .create_campaign(NewCampaign::new("restore", 3))
        .await
        .unwrap();
    store
        .issue_batch(&[
            IssueTicket::new(campaign.id, UserId(1), 1, 1),
            IssueTicket::new(campaign.id, UserId(2), 1, 2),
        ])
        .await
        .unwrap();
    // A process starting again: a fresh counter and an empty queue over the same store.
    let counter = Arc::new(MemoryCounter::new());
    let restarted = CouponService::new(counter.clone(), Arc::new(MemoryQueue::new(10)), store);
    assert_eq!(restarted.rebuild_counters().await.unwrap(), 1);
    let status = counter.status(&campaign).await.unwrap();
    assert_eq!(
        (status.admitted, status.epoch),
        (2, Some(2)),
        "the creation sealed epoch 1, the restart epoch 2"
    );
    assert!(counter.is_admitted(&campaign, UserId(2)).await.unwrap());
    assert!(matches!(
        restarted.apply(campaign.id, UserId(1)).await.unwrap(),
        ApplyOutcome::AlreadyApplied
    ));
    assert!(matches!(
        restarted.apply(campaign.id, UserId(3)).await.unwrap(),
        ApplyOutcome::Accepted { rank: 3, .. }
    ));
    assert_eq!(
        restarted.rebuild_counters().await.unwrap(),
        0,
        "built already"
    );
}

/// A rebuild seals only once the queue has handed the store what it holds: a ticket
/// waiting in the channel holds the rebuild until a worker has persisted it, and then
/// it is counted.
#[tokio::test]
async fn a_rebuild_waits_for_the_queue_to_drain_then_counts_what_it_held() {
    let (service, _, queue, store) = memory_service();
    let campaign = service
        .create_campaign(NewCampaign::new("drained", 3))
        .await
        .unwrap();
    assert!(matches!(
        service.apply(campaign.id, UserId(1)).await.unwrap(),
        ApplyOutcome::Accepted { .. }
    ));
    // A process starting again over the same queue and store, its counter empty.
    let counter = Arc::new(MemoryCounter::new());
    let restarted = Arc::new(CouponService::new(
        counter.clone(),
        queue.clone(),
        store.clone(),
    ));
    let rebuilding = {
        let restarted = restarted.clone();
        tokio::spawn(async move { restarted.rebuild_counters().await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !rebuilding.is_finished(),
        "sealed with a ticket still queued"
    );
    let worker = crate::IssueWorker::new(queue.clone(), store.clone()).spawn();
    let built = tokio::time::timeout(std::time::Duration::from_secs(5), rebuilding)
        .await
        .expect("rebuilt once drained")
        .unwrap()
        .unwrap();
    assert_eq!(built, 1);
    assert_eq!(counter.status(&campaign).await.unwrap().admitted, 1);
    assert!(counter.is_admitted(&campaign, UserId(1)).await.unwrap());
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn the_service_runs_its_worker_until_drained_or_stopped() {
    let counter = Arc::new(MemoryCounter::new());
    let queue = Arc::new(MemoryQueue::new(100));
    let store = Arc::new(MemoryStore::new());
    let service = CouponService::new(counter.clone(), queue.clone(), store.clone());
    assert!(
        service
            .spawn_worker(crate::WorkerConfig::default())
            .is_none(),
        "no source, no worker"
    );
    let service = service.with_source(queue.clone());
    let campaign = service
        .create_campaign(NewCampaign::new("worker", 3))
        .await
        .unwrap();

    // Stopped while the queue stays open: it ends anyway.
    let worker = service
        .spawn_worker(crate::WorkerConfig::default())
        .expect("a worker");
    service.apply(campaign.id, UserId(1)).await.unwrap();
    let issued = coupon_issued_soon(&service, campaign.id, UserId(1)).await;
    assert!(issued, "the running worker persisted the first coupon");
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), worker.stop())
        .await
        .expect("the worker stops when told")
        .expect("a clean stop");
    assert_eq!(stopped.issued, 1);

    // Drained: what is queued when the queue closes is persisted before it ends.
    for user in [2, 3] {
        service.apply(campaign.id, UserId(user)).await.unwrap();
    }
    let worker = service
        .spawn_worker(crate::WorkerConfig::default())
        .expect("a worker");
    queue.close();
    let drained = tokio::time::timeout(std::time::Duration::from_secs(10), worker.drain())
        .await
        .expect("the worker ends once the closed queue is empty")
        .expect("a clean drain");
    assert_eq!(drained.issued, 2);
    assert_eq!(store.issued_count(campaign.id).await.unwrap(), 3);
}

/// Whether `user`'s coupon is stored within two seconds.
async fn coupon_issued_soon(
    service: &CouponService,
    campaign: crate::CampaignId,
    user: UserId,
) -> bool {
    for _ in 0..200 {
        if matches!(
            service.coupon_status(campaign, user).await.unwrap(),
            CouponStatus::Issued(_)
        ) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn a_counter_that_cannot_tell_is_not_needed_once_every_coupon_is_stored() {
    let store = Arc::new(MemoryStore::new());
    let campaign = store
        .create_campaign(NewCampaign::new("lost counter", 1))
        .await
        .unwrap();
    let service = with_a_counter_that_cannot_tell(store.clone());
    // While the only coupon is not stored, whether user 2 was admitted is unknown.
    assert!(service.coupon_status(campaign.id, UserId(2)).await.is_err());
    // Once it is, the campaign is full in the store: nobody else holds an admission.
    store
        .issue_batch(&[IssueTicket::new(campaign.id, UserId(1), 1, 1)])
        .await
        .unwrap();
    assert_eq!(
        service.coupon_status(campaign.id, UserId(2)).await.unwrap(),
        CouponStatus::None
    );
}

/// A closed campaign is never rebuilt, so a counter that lost its memory stays unable
/// to tell for good: the store's answer stands (a user without a coupon holds none),
/// instead of a 503 that would never end.
#[tokio::test]
async fn a_closed_campaign_needs_no_counter_to_say_a_user_holds_nothing() {
    let store = Arc::new(MemoryStore::new());
    let campaign = store
        .create_campaign(NewCampaign::new("closed early", 10))
        .await
        .unwrap();
    let service = with_a_counter_that_cannot_tell(store.clone());
    assert!(service.coupon_status(campaign.id, UserId(2)).await.is_err());
    service.close(campaign.id).await.unwrap();
    assert_eq!(
        service.coupon_status(campaign.id, UserId(2)).await.unwrap(),
        CouponStatus::None
    );
}

/// The service over `store` with a counter that lost its memory: it cannot tell who
/// was admitted.
fn with_a_counter_that_cannot_tell(store: Arc<MemoryStore>) -> CouponService {
    let mut counter = crate::MockCouponCounter::new();
    counter
        .expect_is_admitted()
        .returning(|campaign, _| Err(not_ready(campaign.id)));
    CouponService::new(Arc::new(counter), Arc::new(MemoryQueue::new(1)), store)
}

fn not_ready(campaign: crate::CampaignId) -> crate::Error {
    crate::Error::NotReady {
        campaign,
        backend: "mock",
    }
}

/// A counter that does not answer (Redis away, a standby without the lease) is not a
/// counter that lost its memory: the campaign is not reported as being rebuilt, and its
/// counts are the store's.
#[tokio::test]
async fn a_counter_that_does_not_answer_is_not_reported_as_rebuilding() {
    let store = Arc::new(MemoryStore::new());
    let campaign = store
        .create_campaign(NewCampaign::new("quiet counter", 5))
        .await
        .unwrap();
    let mut counter = crate::MockCouponCounter::new();
    counter.expect_status().returning(|_| Err(unavailable()));
    let service = CouponService::new(
        Arc::new(counter),
        Arc::new(MemoryQueue::new(10)),
        store.clone(),
    );
    let status = service.status(campaign.id).await.unwrap();
    assert!(!status.rebuilding, "{status:?}");
    assert_eq!(
        (status.admitted, status.issued, status.remaining()),
        (0, 0, 5)
    );
    let listed = service.campaigns().await.unwrap();
    assert!(!listed[0].rebuilding, "{listed:?}");
}

#[tokio::test]
async fn more_shards_than_the_counter_splits_over_are_refused_before_the_store() {
    let mut counter = crate::MockCouponCounter::new();
    counter.expect_max_shards().return_const(1_u16);
    // Nothing else may be asked of the counter: the refusal comes first.
    let store = Arc::new(MemoryStore::new());
    let service = CouponService::new(
        Arc::new(counter),
        Arc::new(MemoryQueue::new(10)),
        store.clone(),
    );
    let refused = service
        .create_campaign(NewCampaign::new("split", 30).shards(2))
        .await;
    assert!(
        matches!(
            refused,
            Err(crate::Error::InvalidCampaign {
                field: "shards",
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(
        store.campaigns().await.unwrap().is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn the_memory_counter_takes_campaigns_of_up_to_64_shards() {
    let (service, counter, _, _) = memory_service();
    assert_eq!(counter.max_shards(), NewCampaign::MAX_SHARDS);
    let campaign = service
        .create_campaign(NewCampaign::new("split", 30).shards(64))
        .await
        .unwrap();
    assert_eq!(campaign.shards, 64);
    assert!(matches!(
        service.apply(campaign.id, UserId(1)).await.unwrap(),
        ApplyOutcome::Accepted { .. }
    ));
}
