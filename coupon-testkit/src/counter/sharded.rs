//! Scenarios for counters that split a campaign over shards
//! ([`CouponCounter::max_shards`] of 4 or more): the cap stays exact, one grant per
//! user, no applicant hears "sold out" while any shard holds stock, and ranks stay
//! unique, each in its shard's class.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::super::{fresh_campaign_from, ready_campaign_from};
use coupon_core::{
    Admission, Campaign, CouponCounter, Error, HeldSlot, NewCampaign, Rebuild, Release,
    SealedEpoch, UserId, home_shard,
};

/// The first `count` users (from 1) whose home is `shard` of `shards`.
fn homed_on(shard: u16, shards: u16, count: usize) -> Vec<UserId> {
    (1..)
        .map(UserId)
        .filter(|&user| home_shard(user, shards) == shard)
        .take(count)
        .collect()
}

fn assert_rank_in_class(campaign: &Campaign, user: UserId, rank: u64) {
    let shards = u64::from(campaign.shards);
    assert!(rank >= 1, "rank 0 granted to {user:?}");
    assert_eq!(
        (rank - 1) % shards,
        u64::from(home_shard(user, campaign.shards)),
        "rank {rank} of {user:?} is not of their home shard's class"
    );
}

async fn sharded(counter: &dyn CouponCounter, cap: u64, shards: u16) -> Campaign {
    assert!(
        counter.max_shards() >= shards,
        "the counter splits a campaign over at most {} shards",
        counter.max_shards()
    );
    ready_campaign_from(counter, NewCampaign::new("sharded", cap).shards(shards)).await
}

/// 1,000 concurrent applicants on cap 100 over 4 shards: exactly 100 grants, every
/// other applicant `SoldOut`, ranks distinct and each of its holder's home shard.
pub async fn sharded_rush_admits_exactly_the_cap(counter: Arc<dyn CouponCounter>) {
    let campaign = Arc::new(sharded(counter.as_ref(), 100, 4).await);
    let mut tasks = JoinSet::new();
    for user in 1..=1_000 {
        let (counter, campaign) = (counter.clone(), campaign.clone());
        tasks.spawn(async move {
            let user = UserId(user);
            (user, counter.try_acquire(&campaign, user).await)
        });
    }
    let (mut ranks, mut sold_out) = (BTreeSet::new(), 0);
    while let Some(joined) = tasks.join_next().await {
        let (user, answer) = joined.expect("task panicked");
        match answer.expect("try_acquire failed") {
            Admission::Granted { rank, .. } => {
                assert_rank_in_class(&campaign, user, rank);
                assert!(ranks.insert(rank), "rank {rank} granted twice");
            }
            Admission::SoldOut => sold_out += 1,
            Admission::AlreadyApplied => panic!("distinct users answered AlreadyApplied"),
        }
    }
    assert_eq!((ranks.len(), sold_out), (100, 900));
    let status = counter.status(&campaign).await.expect("status");
    assert_eq!(status.admitted, 100);
    assert_eq!(
        counter.held_slots(&campaign).await.expect("held").len(),
        100
    );
}

/// Every applicant homed on one shard of 4: stock moves to it until the whole cap is
/// granted, and nobody hears `SoldOut` before that.
pub async fn a_dry_shard_takes_stock_from_the_others(counter: Arc<dyn CouponCounter>) {
    let campaign = sharded(counter.as_ref(), 40, 4).await;
    let mut answers = Vec::new();
    for user in homed_on(0, 4, 60) {
        answers.push(
            counter
                .try_acquire(&campaign, user)
                .await
                .expect("try_acquire"),
        );
    }
    let granted = answers
        .iter()
        .take_while(|answer| matches!(answer, Admission::Granted { .. }))
        .count();
    assert_eq!(granted, 40, "stock stranded on other shards: {answers:?}");
    assert!(
        answers[40..]
            .iter()
            .all(|answer| matches!(answer, Admission::SoldOut)),
        "{answers:?}"
    );
}

/// 10 users applying 20 times each at once, over 3 shards: one grant each.
pub async fn one_grant_per_user_across_shards(counter: Arc<dyn CouponCounter>) {
    let campaign = Arc::new(sharded(counter.as_ref(), 100, 3).await);
    let mut tasks = JoinSet::new();
    for user in 1..=10 {
        for _ in 0..20 {
            let (counter, campaign) = (counter.clone(), campaign.clone());
            tasks.spawn(async move { counter.try_acquire(&campaign, UserId(user)).await });
        }
    }
    let mut granted = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task panicked").expect("try_acquire failed") {
            Admission::Granted { .. } => granted += 1,
            Admission::AlreadyApplied => {}
            Admission::SoldOut => panic!("sold out with 90 slots free"),
        }
    }
    assert_eq!(granted, 10);
    assert_eq!(
        counter.status(&campaign).await.expect("status").admitted,
        10
    );
}

/// A slot released on one shard is granted to an applicant of another.
pub async fn a_release_on_one_shard_serves_another(counter: Arc<dyn CouponCounter>) {
    let campaign = sharded(counter.as_ref(), 4, 4).await;
    let mut held = Vec::new();
    for user in homed_on(1, 4, 4) {
        let Admission::Granted {
            rank,
            slot,
            admitted_at,
            epoch,
        } = counter.try_acquire(&campaign, user).await.expect("admit")
        else {
            panic!("{user:?} not admitted while the cap had room");
        };
        held.push(HeldSlot {
            user,
            slot,
            rank,
            admitted_at: Some(admitted_at),
            epoch,
        });
    }
    let elsewhere = homed_on(3, 4, 2);
    assert_eq!(
        counter
            .try_acquire(&campaign, elsewhere[0])
            .await
            .expect("full"),
        Admission::SoldOut
    );
    assert_eq!(
        counter.release(&campaign, &held[0]).await.expect("release"),
        Release::Released
    );
    assert!(
        matches!(
            counter
                .try_acquire(&campaign, elsewhere[0])
                .await
                .expect("admit"),
            Admission::Granted { .. }
        ),
        "the released slot reached shard 3"
    );
    assert_eq!(
        counter
            .try_acquire(&campaign, elsewhere[1])
            .await
            .expect("full"),
        Admission::SoldOut
    );
}

/// A sharded campaign not built answers `NotReady`; a rebuild holds every sealed slot
/// on its holder's home shard and shares what the cap leaves over all shards: exactly
/// the rest of the cap is granted, at ranks no sealed slot holds, in the sealed epoch.
pub async fn a_sharded_rebuild_keeps_holders_and_shares_the_rest(counter: Arc<dyn CouponCounter>) {
    let campaign = Arc::new(fresh_campaign_from(
        NewCampaign::new("sharded", 30).shards(3),
    ));
    let early = counter.try_acquire(&campaign, UserId(1)).await;
    assert!(matches!(early, Err(Error::NotReady { .. })), "{early:?}");
    // Twelve holders the store knows, at distinct ranks of their home's class, every
    // other rank of each class left as a gap.
    let sealed: Vec<HeldSlot> = (0..12_u64)
        .map(|index| {
            let user = UserId(1_001 + index);
            let home = u64::from(home_shard(user, 3));
            HeldSlot {
                user,
                slot: 1,
                rank: home + 1 + 6 * index,
                admitted_at: None,
                epoch: 0,
            }
        })
        .collect();
    let sealed_ranks: HashSet<u64> = sealed.iter().map(|slot| slot.rank).collect();
    let built = counter
        .rebuild(&campaign, Arc::new(SealedEpoch::new(3, sealed.clone())))
        .await
        .expect("rebuild");
    assert!(matches!(built, Rebuild::Built(_)), "{built:?}");
    let status = counter.status(&campaign).await.expect("status");
    assert_eq!((status.admitted, status.epoch), (12, Some(3)));
    let mut tasks = JoinSet::new();
    for user in 1..=100 {
        let (counter, campaign) = (counter.clone(), campaign.clone());
        tasks.spawn(async move {
            let user = UserId(user);
            (user, counter.try_acquire(&campaign, user).await)
        });
    }
    let mut ranks = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        let (user, answer) = joined.expect("task panicked");
        if let Admission::Granted { rank, epoch, .. } = answer.expect("try_acquire") {
            assert_eq!(epoch, 3);
            assert_rank_in_class(&campaign, user, rank);
            assert!(
                !sealed_ranks.contains(&rank),
                "rank {rank} is a sealed slot's"
            );
            assert!(ranks.insert(rank), "rank {rank} granted twice");
        }
    }
    assert_eq!(ranks.len(), 18, "the cap less the sealed slots");
    for slot in &sealed {
        assert!(
            counter
                .is_admitted(&campaign, slot.user)
                .await
                .expect("read"),
            "{:?} kept",
            slot.user
        );
    }
}
