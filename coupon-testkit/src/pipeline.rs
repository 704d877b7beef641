//! The whole pipeline: the service (issuer), queue, worker and store together.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use coupon_core::{
    ApplyOutcome, CouponCounter, CouponService, CouponStatus, CouponStore, IssueQueue, IssueSource,
    IssueWorker, NewCampaign, UserId,
};

/// The parts of one deployment.
#[derive(Clone)]
pub struct Pipeline {
    /// Admission.
    pub counter: Arc<dyn CouponCounter>,
    /// Producing side of the hand-off.
    pub queue: Arc<dyn IssueQueue>,
    /// Consuming side of the same hand-off.
    pub source: Arc<dyn IssueSource>,
    /// Persistence.
    pub store: Arc<dyn CouponStore>,
}

/// 1,000 concurrent applicants on cap 100, through the [`CouponService`]: exactly 100
/// accepted (ranks 1..=100), and once the worker drains, exactly 100 persisted coupons
/// for those 100 distinct users, each with the rank they were told; the service then
/// counts 100 issued, and tells each winner their coupon and every other applicant none.
pub async fn stampede_issues_exactly_cap(pipeline: Pipeline) {
    let service = Arc::new(CouponService::new(
        pipeline.counter.clone(),
        pipeline.queue.clone(),
        pipeline.store.clone(),
    ));
    let campaign = service
        .create_campaign(NewCampaign::new("stampede", 100))
        .await
        .expect("create_campaign failed");
    let worker = IssueWorker::new(pipeline.source.clone(), pipeline.store.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(async move {
        worker
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });

    let mut tasks = JoinSet::new();
    for user in 1..=1_000 {
        let service = service.clone();
        tasks.spawn(async move { (UserId(user), service.apply(campaign.id, UserId(user)).await) });
    }
    let mut accepted: BTreeMap<UserId, u64> = BTreeMap::new();
    let mut sold_out = 0;
    while let Some(joined) = tasks.join_next().await {
        let (user, outcome) = joined.expect("task panicked");
        match outcome.expect("apply failed") {
            ApplyOutcome::Accepted { rank, .. } => {
                accepted.insert(user, rank);
            }
            ApplyOutcome::SoldOut => sold_out += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((accepted.len(), sold_out), (100, 900));
    let ranks: BTreeSet<u64> = accepted.values().copied().collect();
    assert_eq!(ranks, (1..=100).collect());

    super::wait_for_issued(
        pipeline.store.as_ref(),
        campaign.id,
        100,
        Duration::from_secs(60),
    )
    .await;
    let _ = stop.send(());
    let report = worker
        .await
        .expect("worker panicked")
        .expect("worker failed");
    assert_eq!(report.issued, 100);
    assert_eq!(report.dead_lettered, 0);

    let store = pipeline.store.as_ref();
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 100);
    let holders: BTreeSet<UserId> = store
        .holders(campaign.id)
        .await
        .expect("holders")
        .into_iter()
        .collect();
    assert_eq!(holders, accepted.keys().copied().collect());
    for (&user, &rank) in &accepted {
        let coupons = store
            .coupons_of(campaign.id, user)
            .await
            .expect("coupons_of");
        assert_eq!(coupons.len(), 1);
        assert_eq!(
            coupons[0].rank, rank,
            "user {user} keeps the rank they were told"
        );
    }

    let status = service.status(campaign.id).await.expect("status");
    assert_eq!((status.admitted, status.issued), (100, 100));
    assert!(status.is_sold_out());
    for user in (1..=1_000).map(UserId) {
        let held = service
            .coupon_status(campaign.id, user)
            .await
            .expect("coupon_status");
        match (&held, accepted.get(&user)) {
            (CouponStatus::Issued(coupons), Some(&rank)) => assert_eq!(coupons[0].rank, rank),
            (CouponStatus::None, None) => {}
            _ => panic!("user {user}: {held:?}, told {:?}", accepted.get(&user)),
        }
    }
}
