//! Scenarios for [`CouponCounter`] implementations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;

use super::{fresh_campaign, ready_campaign, ready_campaign_from};
use async_trait::async_trait;
use coupon_core::{
    Admission, Campaign, CouponCounter, Error, HeldSlot, NewCampaign, Rebuild, Release, Result,
    SealEpoch, SealedEpoch, UserId,
};

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

/// A counter admits no one in a campaign it has not built (never built, or lost):
/// `NotReady`, and nothing is held. A rebuild makes it admit in the sealed epoch,
/// holding the sealed slots; a second rebuild changes nothing.
pub async fn admits_only_once_built(counter: Arc<dyn CouponCounter>) {
    let campaign = fresh_campaign(10);
    let refused = counter.try_acquire(&campaign, UserId(1)).await;
    assert!(
        matches!(refused, Err(Error::NotReady { campaign: id, .. }) if id == campaign.id),
        "an unbuilt counter answered {refused:?}"
    );
    let held = counter.held_slots(campaign.id).await.expect("held_slots");
    assert!(held.is_empty(), "a refused apply holds {held:?}");
    let status = counter.status(campaign.id).await.expect("status");
    assert_eq!(status.epoch, None, "not built: no epoch");
    let built = counter
        .rebuild(&campaign, Arc::new(SealedEpoch::new(4, vec![stored(7, 1)])))
        .await
        .expect("rebuild");
    assert!(
        matches!(built, Rebuild::Built(report) if report.admitted == 1),
        "{built:?}"
    );
    let next = granted(counter.as_ref(), &campaign, UserId(1)).await;
    assert_eq!(
        (next.rank, next.epoch),
        (2, 4),
        "the stored rank 1 is not granted again"
    );
    let again = counter
        .rebuild(&campaign, Arc::new(SealedEpoch::new(5, Vec::new())))
        .await
        .expect("rebuild");
    assert_eq!(again, Rebuild::AlreadyReady);
    let status = counter.status(campaign.id).await.expect("status");
    assert_eq!((status.admitted, status.epoch), (2, Some(4)));
}

/// Every admission, held slot and status carries the epoch the counter was built in;
/// the counter confirms that epoch and no other, and a slot of another epoch is not
/// given back whatever its numbers.
pub async fn admissions_carry_the_epoch_they_were_made_in(counter: Arc<dyn CouponCounter>) {
    let campaign = fresh_campaign(10);
    let built = counter
        .rebuild(&campaign, Arc::new(SealedEpoch::new(3, Vec::new())))
        .await
        .expect("rebuild");
    assert!(matches!(built, Rebuild::Built(_)), "{built:?}");
    let held = granted(counter.as_ref(), &campaign, UserId(9)).await;
    assert_eq!(held.epoch, 3, "{held:?}");
    let listed = counter.held_slots(campaign.id).await.expect("held_slots");
    assert_eq!(
        listed.iter().map(|slot| slot.epoch).collect::<Vec<_>>(),
        vec![3]
    );
    let of_user = counter
        .slots_of(&campaign, UserId(9))
        .await
        .expect("slots_of");
    assert_eq!(
        of_user.iter().map(|slot| slot.epoch).collect::<Vec<_>>(),
        vec![3]
    );
    assert!(
        counter
            .confirm_epoch(campaign.id, 3)
            .await
            .expect("confirm")
    );
    assert!(
        !counter
            .confirm_epoch(campaign.id, 2)
            .await
            .expect("confirm")
    );
    assert!(
        !counter
            .confirm_epoch(fresh_campaign(1).id, 3)
            .await
            .expect("confirm"),
        "a campaign never built confirms nothing"
    );
    let older = HeldSlot { epoch: 2, ..held };
    assert_eq!(
        release(counter.as_ref(), &campaign, &older).await,
        Release::NotHeld,
        "a slot of another epoch"
    );
    assert_eq!(
        release(counter.as_ref(), &campaign, &held).await,
        Release::Released
    );
}

/// A seal that answers slowly, counting its calls.
struct SlowSeal {
    calls: std::sync::atomic::AtomicUsize,
    epoch: u64,
}

#[async_trait]
impl SealEpoch for SlowSeal {
    async fn seal(&self, counted: Vec<HeldSlot>) -> Result<SealedEpoch> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        SealedEpoch::new(self.epoch, vec![stored(1, 1)])
            .seal(counted)
            .await
    }
}

/// Rebuilds of one campaign started together: exactly one seals and builds; the others
/// answer `Busy` (or `AlreadyReady`, once it is built), and no admission happens before
/// the seal's slots are in.
pub async fn one_rebuild_at_a_time(counter: Arc<dyn CouponCounter>) {
    let campaign = Arc::new(fresh_campaign(10));
    let seal = Arc::new(SlowSeal {
        calls: std::sync::atomic::AtomicUsize::new(0),
        epoch: 7,
    });
    let mut rebuilds = JoinSet::new();
    for _ in 0..4 {
        let (counter, campaign, seal) = (counter.clone(), campaign.clone(), seal.clone());
        rebuilds.spawn(async move { counter.rebuild(&campaign, seal).await });
    }
    let early = counter.try_acquire(&campaign, UserId(2)).await;
    assert!(
        matches!(early, Err(Error::NotReady { .. })),
        "admitted during a rebuild: {early:?}"
    );
    let mut answers = Vec::new();
    while let Some(answer) = rebuilds.join_next().await {
        answers.push(answer.expect("rebuild task").expect("rebuild"));
    }
    let built = answers
        .iter()
        .filter(|answer| matches!(answer, Rebuild::Built(_)))
        .count();
    assert_eq!(built, 1, "{answers:?}");
    assert_eq!(seal.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let next = granted(counter.as_ref(), &campaign, UserId(2)).await;
    assert_eq!((next.rank, next.epoch), (2, 7));
}

/// A seal that fails.
struct FailingSeal;

#[async_trait]
impl SealEpoch for FailingSeal {
    async fn seal(&self, _counted: Vec<HeldSlot>) -> Result<SealedEpoch> {
        Err(Error::unavailable("test", "the store is away", None))
    }
}

/// A rebuild whose seal fails changes nothing: the counter stays closed (`NotReady`),
/// and the next rebuild builds it.
pub async fn a_failed_seal_leaves_the_counter_closed(counter: Arc<dyn CouponCounter>) {
    let campaign = fresh_campaign(10);
    let failed = counter.rebuild(&campaign, Arc::new(FailingSeal)).await;
    assert!(failed.is_err(), "{failed:?}");
    let refused = counter.try_acquire(&campaign, UserId(1)).await;
    assert!(
        matches!(refused, Err(Error::NotReady { .. })),
        "{refused:?}"
    );
    let built = counter
        .rebuild(&campaign, Arc::new(SealedEpoch::new(2, Vec::new())))
        .await
        .expect("rebuild");
    assert!(matches!(built, Rebuild::Built(_)), "{built:?}");
    let held = granted(counter.as_ref(), &campaign, UserId(1)).await;
    assert_eq!((held.rank, held.epoch), (1, 2));
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
    let status = counter.status(campaign.id).await.expect("status failed");
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
    let status = counter.status(campaign.id).await.expect("status failed");
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

async fn admitted(counter: &dyn CouponCounter, campaign: &Campaign) -> u64 {
    let status = counter.status(campaign.id).await.expect("status failed");
    status.admitted
}

async fn release(counter: &dyn CouponCounter, campaign: &Campaign, held: &HeldSlot) -> Release {
    counter
        .release(campaign.id, held)
        .await
        .expect("release failed")
}

async fn holds(counter: &dyn CouponCounter, campaign: &Campaign, user: UserId) -> bool {
    counter
        .is_admitted(campaign.id, user)
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
        .held_slots(campaign.id)
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
        .claim(campaign.id, &[held, stale], Duration::from_secs(60))
        .await
        .expect("claim failed");
    assert_eq!(claimed, vec![held], "a slot at another rank is not claimed");
    assert_eq!(release(counter, &campaign, &held).await, Release::Settling);
    assert!(holds(counter, &campaign, UserId(1)).await);
    assert_eq!(admitted(counter, &campaign).await, 2);

    let again = counter
        .claim(campaign.id, &[held], Duration::from_secs(60))
        .await
        .expect("claim failed");
    assert!(again.is_empty(), "claimed a minute ago");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let expired = counter
        .claim(campaign.id, &[held], Duration::from_millis(10))
        .await
        .expect("claim failed");
    assert_eq!(
        expired,
        vec![held],
        "a claim older than reclaim_after is renewed"
    );

    assert_eq!(release(counter, &campaign, &other).await, Release::Released);
    let gone = counter
        .claim(campaign.id, &[other], Duration::ZERO)
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
        let (counter, held) = (counter.clone(), held.clone());
        tasks.spawn(async move {
            counter
                .claim(campaign.id, &held, Duration::from_secs(60))
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

/// A slot as the store reports it for a rebuild.
fn stored(user: u64, rank: u64) -> HeldSlot {
    HeldSlot {
        user: UserId(user),
        slot: 1,
        rank,
        admitted_at: None,
        epoch: 0,
    }
}

/// After a rebuild, new admissions take no rank the store holds: the gaps below the
/// highest stored rank are granted first, then ranks above it (for counters that reuse
/// released ranks).
pub async fn rebuild_frees_the_gaps_between_stored_ranks(counter: Arc<dyn CouponCounter>) {
    let campaign = fresh_campaign(5);
    // The store holds ranks 1 and 3 (rank 2 was released before the loss).
    let built = counter
        .rebuild(
            &campaign,
            Arc::new(SealedEpoch::new(1, vec![stored(10, 1), stored(30, 3)])),
        )
        .await
        .expect("rebuild failed");
    let Rebuild::Built(report) = built else {
        panic!("rebuild answered {built:?}");
    };
    assert_eq!((report.added, report.admitted), (2, 2));
    let mut ranks = Vec::new();
    for user in [40, 50, 60] {
        let held = granted(counter.as_ref(), &campaign, UserId(user)).await;
        ranks.push(held.rank);
    }
    assert_eq!(ranks, [2, 4, 5], "the gap first, then above the highest");
    let late = counter.try_acquire(&campaign, UserId(70)).await;
    assert_eq!(late.expect("try_acquire"), Admission::SoldOut);
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
    let mut held = counter.held_slots(campaign.id).await.expect("held_slots");
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
