//! Scenarios for [`CouponCounter`] implementations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;

use super::{fresh_campaign, fresh_campaign_from};
use crate::{Admission, CouponCounter, NewCampaign, UserId};

/// Runs every scenario that applies to a counter with a per-user limit of 1.
pub async fn all(counter: Arc<dyn CouponCounter>) {
    exact_cap_under_contention(counter.clone()).await;
    one_grant_per_user_under_contention(counter.clone()).await;
    release_returns_exactly_one_slot(counter.clone()).await;
    admitted_before_lists_older_admissions(counter.clone()).await;
    restore_adds_holders_and_never_lowers(counter).await;
}

/// 1,000 concurrent applicants on cap 100: exactly 100 grants, ranks 1..=100 once each.
pub async fn exact_cap_under_contention(counter: Arc<dyn CouponCounter>) {
    let campaign = Arc::new(fresh_campaign(100));
    let mut tasks = JoinSet::new();
    for user in 1..=1_000 {
        let (counter, campaign) = (counter.clone(), campaign.clone());
        tasks.spawn(async move { counter.try_acquire(&campaign, UserId(user)).await });
    }
    let mut ranks = Vec::new();
    let mut sold_out = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task panicked").expect("try_acquire failed") {
            Admission::Granted { rank } => ranks.push(rank),
            Admission::SoldOut => sold_out += 1,
            Admission::AlreadyApplied => panic!("distinct users answered AlreadyApplied"),
        }
    }
    ranks.sort_unstable();
    assert_eq!(
        ranks,
        (1..=100).collect::<Vec<u64>>(),
        "ranks 1..=100 once each"
    );
    assert_eq!(sold_out, 900);
    let status = counter.status(campaign.id).await.expect("status failed");
    assert_eq!(status.admitted, 100);
}

/// 10 users x 100 concurrent attempts each on a roomy campaign: exactly 10 grants.
pub async fn one_grant_per_user_under_contention(counter: Arc<dyn CouponCounter>) {
    let campaign = Arc::new(fresh_campaign(1_000));
    let mut tasks = JoinSet::new();
    for attempt in 0..1_000 {
        let (counter, campaign) = (counter.clone(), campaign.clone());
        let user = UserId(attempt % 10);
        tasks.spawn(async move { (user, counter.try_acquire(&campaign, user).await) });
    }
    let mut grants: BTreeMap<UserId, u32> = BTreeMap::new();
    let mut already = 0;
    while let Some(joined) = tasks.join_next().await {
        let (user, admission) = joined.expect("task panicked");
        match admission.expect("try_acquire failed") {
            Admission::Granted { .. } => *grants.entry(user).or_default() += 1,
            Admission::AlreadyApplied => already += 1,
            Admission::SoldOut => panic!("sold out below the cap"),
        }
    }
    assert_eq!(grants.len(), 10, "every user granted");
    assert!(
        grants.values().all(|&n| n == 1),
        "one grant each: {grants:?}"
    );
    assert_eq!(already, 990);
    let status = counter.status(campaign.id).await.expect("status failed");
    assert_eq!(status.admitted, 10);
}

/// Release frees exactly one slot, only for a holder, and never goes below zero.
pub async fn release_returns_exactly_one_slot(counter: Arc<dyn CouponCounter>) {
    let campaign = fresh_campaign(2);
    let (a, b, c) = (UserId(1), UserId(2), UserId(3));
    let acquire = |user| {
        let (counter, campaign) = (counter.clone(), campaign.clone());
        async move {
            counter
                .try_acquire(&campaign, user)
                .await
                .expect("try_acquire failed")
        }
    };
    let admitted = || async {
        let status = counter.status(campaign.id).await.expect("status failed");
        status.admitted
    };
    let release = |user| {
        let counter = counter.clone();
        async move {
            counter
                .release(campaign.id, user)
                .await
                .expect("release failed")
        }
    };

    assert_eq!(acquire(a).await, Admission::Granted { rank: 1 });
    assert_eq!(acquire(b).await, Admission::Granted { rank: 2 });
    assert_eq!(acquire(c).await, Admission::SoldOut);

    let holds = |user| {
        let counter = counter.clone();
        async move {
            counter
                .is_admitted(campaign.id, user)
                .await
                .expect("is_admitted failed")
        }
    };
    assert!(holds(a).await && holds(b).await && !holds(c).await);
    assert!(release(a).await, "a held a slot");
    assert!(!holds(a).await, "released");
    assert_eq!(admitted().await, 1);
    assert!(!release(a).await, "a double release frees nothing");
    assert!(!release(c).await, "a non-holder frees nothing");
    assert_eq!(admitted().await, 1);

    assert_eq!(acquire(c).await, Admission::Granted { rank: 2 });
    assert_eq!(acquire(a).await, Admission::SoldOut);
    assert!(release(b).await);
    assert!(release(c).await);
    assert_eq!(admitted().await, 0);
    assert!(!release(b).await);
    assert_eq!(admitted().await, 0, "never below zero");
    assert_eq!(acquire(a).await, Admission::Granted { rank: 1 });
}

/// Admissions older than a cutoff are listed for reconciliation; newer ones are not.
pub async fn admitted_before_lists_older_admissions(counter: Arc<dyn CouponCounter>) {
    let campaign = fresh_campaign(10);
    let granted = |admission| matches!(admission, Ok(Admission::Granted { .. }));
    assert!(granted(counter.try_acquire(&campaign, UserId(1)).await));
    assert!(granted(counter.try_acquire(&campaign, UserId(2)).await));
    // Admission times may be taken from another clock (the Redis server's); leave a
    // margin well above clock granularity on both sides of the cutoff.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cutoff = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(granted(counter.try_acquire(&campaign, UserId(3)).await));

    let mut old = counter
        .admitted_before(campaign.id, cutoff)
        .await
        .expect("admitted_before failed");
    old.sort_unstable();
    assert_eq!(old, vec![UserId(1), UserId(2)]);
}

/// Restore records the store's holders, keeps admissions made since the loss, and never
/// lowers the count; running it twice changes nothing.
pub async fn restore_adds_holders_and_never_lowers(counter: Arc<dyn CouponCounter>) {
    let campaign = fresh_campaign(10);
    // Admitted after the counter lost its data, not yet in the store.
    for user in [1, 2] {
        let admission = counter.try_acquire(&campaign, UserId(user)).await;
        assert!(matches!(admission, Ok(Admission::Granted { .. })));
    }
    let holders = [UserId(2), UserId(3), UserId(4)];
    let report = counter
        .restore(&campaign, &holders)
        .await
        .expect("restore failed");
    assert_eq!((report.added, report.admitted), (2, 4));
    let status = counter.status(campaign.id).await.expect("status failed");
    assert_eq!(status.admitted, 4);
    let again = counter.try_acquire(&campaign, UserId(3)).await;
    assert_eq!(
        again.expect("try_acquire failed"),
        Admission::AlreadyApplied
    );

    let report = counter
        .restore(&campaign, &holders)
        .await
        .expect("restore failed");
    assert_eq!((report.added, report.admitted), (0, 4));
    let next = counter.try_acquire(&campaign, UserId(5)).await;
    assert_eq!(
        next.expect("try_acquire failed"),
        Admission::Granted { rank: 5 }
    );
}

/// A per-user limit of 3 grants each user exactly 3 slots (for counters that support it).
pub async fn per_user_limit_above_one(counter: Arc<dyn CouponCounter>) {
    let campaign = fresh_campaign_from(NewCampaign::new("limit", 100).per_user_limit(3));
    let mut ranks = Vec::new();
    for _ in 0..5 {
        for user in [1, 2] {
            match counter.try_acquire(&campaign, UserId(user)).await {
                Ok(Admission::Granted { rank }) => ranks.push(rank),
                Ok(Admission::AlreadyApplied) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(ranks, vec![1, 2, 3, 4, 5, 6]);
    assert!(
        counter
            .release(campaign.id, UserId(1))
            .await
            .expect("release failed")
    );
    let status = counter.status(campaign.id).await.expect("status failed");
    assert_eq!(status.admitted, 5);
}
