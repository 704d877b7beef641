//! Scenarios for [`CouponCounter`] implementations.

mod epochs;
mod sharded;
mod slots;

pub use epochs::{
    a_failed_seal_leaves_the_counter_closed, admissions_carry_the_epoch_they_were_made_in,
    admits_only_once_built, one_rebuild_at_a_time, rebuild_frees_the_gaps_between_stored_ranks,
};
pub use sharded::{
    a_dry_shard_takes_stock_from_the_others, a_release_on_one_shard_serves_another,
    a_sharded_rebuild_keeps_holders_and_shares_the_rest, one_grant_per_user_across_shards,
    sharded_rush_admits_exactly_the_cap,
};
pub use slots::{
    claimed_slots_are_never_released, concurrent_claims_take_each_slot_once,
    held_slots_list_every_admission, per_user_limit_above_one, release_returns_exactly_one_slot,
};

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::ready_campaign;
use coupon_core::{Admission, Campaign, CouponCounter, HeldSlot, Release, UserId};

/// Runs every scenario in one test, for a deployment too costly to start once per
/// scenario (a Redis Cluster of the test's own); elsewhere
/// [`counter_scenarios!`](crate::counter_scenarios) makes one test of each.
pub async fn all(counter: Arc<dyn CouponCounter>) {
    exact_cap_under_contention(counter.clone()).await;
    one_grant_per_user_under_contention(counter.clone()).await;
    release_returns_exactly_one_slot(counter.clone()).await;
    held_slots_list_every_admission(counter.clone()).await;
    claimed_slots_are_never_released(counter.clone()).await;
    concurrent_claims_take_each_slot_once(counter.clone()).await;
    admits_only_once_built(counter.clone()).await;
    admissions_carry_the_epoch_they_were_made_in(counter.clone()).await;
    one_rebuild_at_a_time(counter.clone()).await;
    a_failed_seal_leaves_the_counter_closed(counter.clone()).await;
    rebuild_frees_the_gaps_between_stored_ranks(counter.clone()).await;
    per_user_limit_above_one(counter).await;
}

/// 1,000 concurrent applicants on cap 100: exactly 100 grants, ranks 1..=100 once each.
pub async fn exact_cap_under_contention(counter: Arc<dyn CouponCounter>) {
    let campaign = Arc::new(ready_campaign(counter.as_ref(), 100).await);
    let mut tasks = JoinSet::new();
    for user in 1..=1_000 {
        let (counter, campaign) = (counter.clone(), campaign.clone());
        tasks.spawn(async move { counter.try_acquire(&campaign, UserId(user)).await });
    }
    let mut ranks = Vec::new();
    let mut sold_out = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task panicked").expect("try_acquire failed") {
            Admission::Granted { rank, slot, .. } => {
                assert_eq!(slot, 1, "a first admission takes slot 1");
                ranks.push(rank);
            }
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
    let status = counter.status(&campaign).await.expect("status failed");
    assert_eq!(status.admitted, 100);
}

/// 10 users x 100 concurrent attempts each on a roomy campaign: exactly 10 grants.
pub async fn one_grant_per_user_under_contention(counter: Arc<dyn CouponCounter>) {
    let campaign = Arc::new(ready_campaign(counter.as_ref(), 1_000).await);
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
    let status = counter.status(&campaign).await.expect("status failed");
    assert_eq!(status.admitted, 10);
}

/// Takes a slot that must be granted, answering it as the counter holds it.
async fn granted(counter: &dyn CouponCounter, campaign: &Campaign, user: UserId) -> HeldSlot {
    match counter.try_acquire(campaign, user).await {
        Ok(Admission::Granted {
            rank,
            slot,
            admitted_at,
            epoch,
        }) => HeldSlot {
            user,
            slot,
            rank,
            admitted_at: Some(admitted_at),
            epoch,
        },
        other => panic!("user {user} not granted: {other:?}"),
    }
}

async fn release(counter: &dyn CouponCounter, campaign: &Campaign, held: &HeldSlot) -> Release {
    counter
        .release(campaign, held)
        .await
        .expect("release failed")
}
