//! Closing a campaign early and reopening it: the issuer answers by the window as it
//! stands, and the settler keeps settling a reopened campaign it had finished with.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
use coupon_core::{
    ApplyOutcome, CouponCounter, CouponService, IssueSource, IssuerConfig, NewCampaign,
    ServiceConfig, SettlerConfig, UserId,
};

#[tokio::test]
async fn a_reopened_campaign_admits_again_and_its_lost_hand_offs_are_settled() {
    let (counter, queue, store) = (
        Arc::new(MemoryCounter::new()),
        Arc::new(MemoryQueue::new(100)),
        Arc::new(MemoryStore::new()),
    );
    // No grace: a closed campaign with nothing in flight is finished at the first pass.
    let issuer = CouponService::with_config(
        counter.clone(),
        queue.clone(),
        store.clone(),
        ServiceConfig::default()
            .with_issuer(IssuerConfig::default().with_campaign_refresh(Duration::ZERO))
            .with_settler(SettlerConfig::default().with_grace(Duration::ZERO)),
    );
    let settler = issuer.settler().clone();
    let campaign = issuer
        .create_campaign(NewCampaign::new("reopened", 3))
        .await
        .expect("campaign");
    issuer.close(campaign.id).await.expect("close");
    assert_eq!(
        issuer.apply(campaign.id, UserId(1)).await.expect("apply"),
        ApplyOutcome::Closed
    );
    // Nothing in flight and closed longer than the grace: finished, skipped from now on.
    settler.settle_all().await.expect("settle");

    let reopened = issuer.reopen(campaign.id, None).await.expect("reopen");
    assert!(matches!(
        issuer.apply(campaign.id, UserId(1)).await.expect("apply"),
        ApplyOutcome::Accepted { rank: 1, .. }
    ));
    // An admission whose hand-off was lost (the process died after the counter).
    counter
        .try_acquire(&reopened, UserId(2))
        .await
        .expect("admitted");
    let mut republished = 0;
    for _ in 0..3 {
        republished += settler.settle_all().await.expect("settle").republished;
    }
    assert!(republished >= 1, "the reopened campaign was settled again");
    let batch = queue
        .next_batch(100)
        .await
        .expect("a batch")
        .expect("tickets");
    let users: BTreeSet<u64> = batch.tickets.iter().map(|t| t.user.0).collect();
    assert_eq!(
        users,
        BTreeSet::from([1, 2]),
        "user 1's ticket as published, user 2's lost hand-off published by the settler"
    );
}
