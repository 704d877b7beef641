//! Counter scenarios of held slots: release, the listing of held slots, claims, and
//! per-user limits above one.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;

use coupon_core::{Admission, Campaign, CouponCounter, HeldSlot, NewCampaign, Release, UserId};

use super::{granted, release};
use crate::{ready_campaign, ready_campaign_from};

async fn admitted(counter: &dyn CouponCounter, campaign: &Campaign) -> u64 {
    let status = counter.status(campaign).await.expect("status failed");
    status.admitted
}

async fn holds(counter: &dyn CouponCounter, campaign: &Campaign, user: UserId) -> bool {
    counter
        .is_admitted(campaign, user)
        .await
        .expect("is_admitted failed")
}

/// Release frees exactly the slot it names, only while held with that rank, and never
/// goes below zero. A released rank is the next one granted, so the ranks held are
/// always distinct and within 1..=cap.
pub async fn release_returns_exactly_one_slot(counter: Arc<dyn CouponCounter>) {
    let counter = counter.as_ref();
    let campaign = ready_campaign(counter, 2).await;
    let (a, b, c) = (UserId(1), UserId(2), UserId(3));

    let held_a = granted(counter, &campaign, a).await;
    let held_b = granted(counter, &campaign, b).await;
    assert_eq!((held_a.rank, held_b.rank), (1, 2));
    assert_eq!(
        counter
            .try_acquire(&campaign, c)
            .await
            .expect("try_acquire"),
        Admission::SoldOut
    );
    assert!(holds(counter, &campaign, a).await && holds(counter, &campaign, b).await);
    assert!(!holds(counter, &campaign, c).await);

    assert_eq!(
        release(counter, &campaign, &held_a).await,
        Release::Released
    );
    assert!(!holds(counter, &campaign, a).await, "released");
    assert_eq!(admitted(counter, &campaign).await, 1);
    assert_eq!(
        release(counter, &campaign, &held_a).await,
        Release::NotHeld,
        "a double release frees nothing"
    );
    let never = HeldSlot { user: c, ..held_a };
    assert_eq!(release(counter, &campaign, &never).await, Release::NotHeld);
    assert_eq!(admitted(counter, &campaign).await, 1);

    let held_c = granted(counter, &campaign, c).await;
    assert_eq!(held_c.rank, 1, "a released rank is granted again first");
    // A again, after its slot 1 at rank 1 was released: the same slot at a new rank.
    assert_eq!(
        counter
            .try_acquire(&campaign, a)
            .await
            .expect("try_acquire"),
        Admission::SoldOut
    );
    assert_eq!(
        release(counter, &campaign, &held_b).await,
        Release::Released
    );
    let held_a2 = granted(counter, &campaign, a).await;
    assert_eq!((held_a2.slot, held_a2.rank), (1, 2));
    assert_eq!(
        release(counter, &campaign, &held_a).await,
        Release::NotHeld,
        "the release of an earlier admission never frees a later one of the same slot"
    );
    assert_eq!(admitted(counter, &campaign).await, 2);
    for held in [held_a2, held_c] {
        assert_eq!(release(counter, &campaign, &held).await, Release::Released);
    }
    assert_eq!(admitted(counter, &campaign).await, 0, "never below zero");
    assert_eq!(granted(counter, &campaign, b).await.rank, 1);
}

/// Every granted slot is listed with its user, slot and rank (and, where the counter
/// keeps it, an admission time close to the caller's clock).
pub async fn held_slots_list_every_admission(counter: Arc<dyn CouponCounter>) {
    let counter = counter.as_ref();
    let campaign = ready_campaign(counter, 10).await;
    let before = Utc::now();
    let mut granted_slots = Vec::new();
    for user in 1..=3 {
        granted_slots.push(granted(counter, &campaign, UserId(user)).await);
    }
    let released = granted_slots.remove(1);
    assert_eq!(
        release(counter, &campaign, &released).await,
        Release::Released
    );

    let mut held = counter
        .held_slots(&campaign)
        .await
        .expect("held_slots failed");
    held.sort_by_key(|slot| slot.rank);
    let listed: Vec<(UserId, u32, u64)> = held.iter().map(|s| (s.user, s.slot, s.rank)).collect();
    assert_eq!(listed, vec![(UserId(1), 1, 1), (UserId(3), 1, 3)]);
    // A counter that keeps admission times keeps the right ones (within a margin for
    // another clock).
    let margin = chrono::Duration::seconds(5);
    for at in held.iter().filter_map(|slot| slot.admitted_at) {
        assert!(
            at >= before - margin && at <= Utc::now() + margin,
            "admission time {at} far from now"
        );
    }
}

/// A claimed slot is kept by `release`; a claim needs the slot held with the same rank,
/// and is not granted again within `reclaim_after`.
pub async fn claimed_slots_are_never_released(counter: Arc<dyn CouponCounter>) {
    let counter = counter.as_ref();
    let campaign = ready_campaign(counter, 10).await;
    let held = granted(counter, &campaign, UserId(1)).await;
    let other = granted(counter, &campaign, UserId(2)).await;
    let stale = HeldSlot { rank: 99, ..other };

    let claimed = counter
        .claim(&campaign, &[held, stale], Duration::from_secs(60))
        .await
        .expect("claim failed");
    assert_eq!(claimed, vec![held], "a slot at another rank is not claimed");
    assert_eq!(release(counter, &campaign, &held).await, Release::Settling);
    assert!(holds(counter, &campaign, UserId(1)).await);
    assert_eq!(admitted(counter, &campaign).await, 2);

    let again = counter
        .claim(&campaign, &[held], Duration::from_secs(60))
        .await
        .expect("claim failed");
    assert!(again.is_empty(), "claimed a minute ago");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let expired = counter
        .claim(&campaign, &[held], Duration::from_millis(10))
        .await
        .expect("claim failed");
    assert_eq!(
        expired,
        vec![held],
        "a claim older than reclaim_after is renewed"
    );

    assert_eq!(release(counter, &campaign, &other).await, Release::Released);
    let gone = counter
        .claim(&campaign, &[other], Duration::ZERO)
        .await
        .expect("claim failed");
    assert!(gone.is_empty(), "a released slot cannot be claimed");
}

/// 8 concurrent claimers of the same 200 slots: each slot is claimed exactly once.
pub async fn concurrent_claims_take_each_slot_once(counter: Arc<dyn CouponCounter>) {
    let campaign = ready_campaign(counter.as_ref(), 200).await;
    let mut held = Vec::new();
    for user in 1..=200 {
        held.push(granted(counter.as_ref(), &campaign, UserId(user)).await);
    }
    let held = Arc::new(held);
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let (counter, held, campaign) = (counter.clone(), held.clone(), campaign.clone());
        tasks.spawn(async move {
            counter
                .claim(&campaign, &held, Duration::from_secs(60))
                .await
                .expect("claim failed")
        });
    }
    let mut claimed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        claimed.extend(joined.expect("task panicked"));
    }
    claimed.sort_by_key(|slot| slot.rank);
    assert_eq!(claimed.len(), 200, "every slot claimed once");
    claimed.dedup_by_key(|slot| slot.rank);
    assert_eq!(claimed.len(), 200, "no slot claimed twice");
}

/// A per-user limit of 3 grants each user exactly 3 slots (for counters that support it).
pub async fn per_user_limit_above_one(counter: Arc<dyn CouponCounter>) {
    let campaign = ready_campaign_from(
        counter.as_ref(),
        NewCampaign::new("limit", 100).per_user_limit(3),
    )
    .await;
    let mut granted_slots = Vec::new();
    for _ in 0..5 {
        for user in [1, 2] {
            match counter.try_acquire(&campaign, UserId(user)).await {
                Ok(Admission::Granted { rank, slot, .. }) => granted_slots.push((user, slot, rank)),
                Ok(Admission::AlreadyApplied) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(
        granted_slots,
        vec![
            (1, 1, 1),
            (2, 1, 2),
            (1, 2, 3),
            (2, 2, 4),
            (1, 3, 5),
            (2, 3, 6)
        ]
    );
    // Giving back user 1's second slot frees that slot; the next admission takes it.
    let second = HeldSlot {
        user: UserId(1),
        slot: 2,
        rank: 3,
        admitted_at: None,
        epoch: 0,
    };
    assert_eq!(
        release(counter.as_ref(), &campaign, &second).await,
        Release::Released
    );
    assert_eq!(admitted(counter.as_ref(), &campaign).await, 5);
    let again = counter
        .try_acquire(&campaign, UserId(1))
        .await
        .expect("try_acquire");
    assert!(
        matches!(
            again,
            Admission::Granted {
                rank: 3,
                slot: 2,
                ..
            }
        ),
        "the freed slot, at the freed rank: {again:?}"
    );
    let mut held = counter.held_slots(&campaign).await.expect("held_slots");
    held.sort_by_key(|slot| (slot.user, slot.slot));
    let listed: Vec<(u64, u32, u64)> = held
        .iter()
        .map(|s| (s.user.get(), s.slot, s.rank))
        .collect();
    assert_eq!(
        listed,
        vec![
            (1, 1, 1),
            (1, 2, 3),
            (1, 3, 5),
            (2, 1, 2),
            (2, 2, 4),
            (2, 3, 6)
        ]
    );
}
