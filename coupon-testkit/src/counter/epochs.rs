//! Counter scenarios of building and rebuilding: a counter admits only once built, in
//! the epoch its seal gives, one rebuild at a time, and never grants a stored rank.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinSet;

use coupon_core::{
    Admission, CouponCounter, Error, HeldSlot, Rebuild, Release, Result, SealEpoch, SealedEpoch,
    UserId,
};

use super::{granted, release};
use crate::fresh_campaign;

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
    let held = counter.held_slots(&campaign).await.expect("held_slots");
    assert!(held.is_empty(), "a refused apply holds {held:?}");
    let status = counter.status(&campaign).await.expect("status");
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
    let status = counter.status(&campaign).await.expect("status");
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
    let listed = counter.held_slots(&campaign).await.expect("held_slots");
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
    assert!(counter.confirm_epoch(&campaign, 3).await.expect("confirm"));
    assert!(!counter.confirm_epoch(&campaign, 2).await.expect("confirm"));
    assert!(
        !counter
            .confirm_epoch(&fresh_campaign(1), 3)
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
