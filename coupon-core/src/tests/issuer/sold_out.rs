//! A campaign that cannot admit: the counter's errors, a full store, the sold-out memo,
//! a counter that lost its memory and is rebuilt.

use std::sync::{Arc, Mutex};

use super::{USER, earlier_slot, holding, issuer, store_with};
use crate::tests::{campaign, unavailable};
use crate::{
    Admission, ApplyOutcome, CampaignId, Coupon, CouponIssuer, Error, HeldSlot, IssueTicket,
    MockCouponCounter, MockIssueQueue, SealedEpoch, UserId,
};

#[tokio::test]
async fn counter_error_publishes_nothing() {
    let mut counter = MockCouponCounter::new();
    counter
        .expect_try_acquire()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    counter.expect_release().times(0);
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(0);
    // The store is asked whether the campaign is full: it is not, so the error stands.
    let mut store = store_with(campaign(10));
    store.expect_issued_count().times(1).returning(|_| Ok(3));
    let issuer = issuer(counter, queue, store);

    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(matches!(
        error,
        Error::Unavailable {
            backend: "mock",
            ..
        }
    ));
}

/// A counter that does not answer, on a campaign whose store holds its cap: sold out
/// for a newcomer, already applied for a holder, and no counter needed.
#[tokio::test]
async fn a_full_campaign_answers_without_its_counter() {
    let mut counter = MockCouponCounter::new();
    counter
        .expect_try_acquire()
        .times(2)
        .returning(|_, _| Err(unavailable()));
    let mut store = store_with(campaign(10));
    store.expect_issued_count().times(1).returning(|_| Ok(10));
    store.expect_holders().returning(|_| Ok(vec![USER]));
    store.expect_coupons_of().returning(|campaign, user| {
        Ok(if user == USER {
            vec![Coupon::from_ticket(&IssueTicket::new(campaign, user, 1, 1))]
        } else {
            Vec::new()
        })
    });
    let issuer = issuer(counter, MockIssueQueue::new(), store);
    assert_eq!(
        issuer.apply(CampaignId(1), UserId(5)).await.unwrap(),
        ApplyOutcome::SoldOut
    );
    assert_eq!(
        issuer.apply(CampaignId(1), USER).await.unwrap(),
        ApplyOutcome::AlreadyApplied
    );
}

#[tokio::test]
async fn sold_out_is_remembered_without_another_counter_trip() {
    let mut counter = MockCouponCounter::new();
    counter
        .expect_try_acquire()
        .times(1)
        .returning(|_, _| Ok(Admission::SoldOut));
    // The memo loads who holds the slots once, and answers from it from then on.
    counter.expect_held_slots().times(1).returning(|_| {
        Ok(vec![HeldSlot {
            user: UserId(99),
            ..earlier_slot()
        }])
    });
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(0);
    let issuer = issuer(counter, queue, holding(1));

    assert_eq!(
        issuer.apply(CampaignId(1), UserId(1)).await.unwrap(),
        ApplyOutcome::SoldOut
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    for user in 2..=5 {
        let outcome = issuer.apply(CampaignId(1), UserId(user)).await.unwrap();
        assert_eq!(outcome, ApplyOutcome::SoldOut);
    }
    // A winner pressing again holds a coupon: told so, still without a counter trip.
    let winner = issuer.apply(CampaignId(1), UserId(99)).await.unwrap();
    assert_eq!(winner, ApplyOutcome::AlreadyApplied);
}

/// A counter that lost its memory: the apply fails as retryable and grants nothing,
/// and the issuer rebuilds the counter at once, in the epoch the store seals once the
/// queue has drained past the mark it took then, from every slot the seal answers: no
/// grace period is waited out.
#[tokio::test(start_paused = true)]
async fn a_counter_not_ready_is_rebuilt_in_the_epoch_the_store_seals_once_the_queue_drained() {
    use crate::{CouponCounter, QueueMark};
    let stored = HeldSlot {
        user: UserId(9),
        slot: 1,
        rank: 1,
        admitted_at: None,
        epoch: 0,
    };
    // A counter of this process's memory that lost everything: nothing built.
    let counter = Arc::new(crate::memory::MemoryCounter::new());
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().never();
    queue.expect_in_store().return_const(false);
    queue.expect_mark().times(1).returning(|| {
        Ok(Some(QueueMark {
            positions: vec![41],
        }))
    });
    // A queue that cannot read what its consumers have not acked: the rebuild waits
    // for the drain.
    queue.expect_unacked().times(1).returning(|_| Ok(None));
    let polls = Arc::new(Mutex::new(0));
    let seen = polls.clone();
    queue.expect_drained().returning(move |mark| {
        assert_eq!(mark.positions, [41]);
        let mut polls = seen.lock().unwrap();
        *polls += 1;
        Ok(*polls >= 3)
    });
    let mut store = store_with(campaign(10));
    store.expect_issued_count().returning(|_| Ok(1));
    let drained = polls.clone();
    store.expect_sealed_epoch().returning(|_| Ok(5));
    store
        .expect_seal_epoch()
        .times(1)
        .returning(move |_, after, counted| {
            assert_eq!(after, 5, "sealed after the epoch read once closed");
            assert!(counted.is_empty(), "the counter held nothing: {counted:?}");
            assert_eq!(*drained.lock().unwrap(), 3, "sealed only once drained");
            Ok(SealedEpoch::new(6, vec![stored]))
        });
    let issuer = CouponIssuer::new(counter.clone(), Arc::new(queue), Arc::new(store));
    let started = tokio::time::Instant::now();

    for _ in 0..3 {
        let refused = issuer.apply(CampaignId(1), USER).await;
        assert!(
            matches!(refused, Err(Error::NotReady { .. })),
            "{refused:?}"
        );
    }
    while !counter.status(&campaign(10)).await.unwrap().is_ready() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "rebuilt {:?} after the loss was seen: no grace period",
        started.elapsed()
    );
    let status = counter.status(&campaign(10)).await.unwrap();
    assert_eq!((status.admitted, status.epoch), (1, Some(6)));
}

/// An applicant whose apply took a slot and ended in an error (the publish's outcome
/// unknown, its record refused) holds a slot that becomes a coupon: trying again once
/// the campaign is sold out, they hear where it stands, never "sold out" from the flag
/// later applicants raised.
#[tokio::test]
async fn an_applicant_left_with_an_error_is_not_told_sold_out() {
    use crate::CouponCounter;
    let counter = Arc::new(crate::memory::MemoryCounter::new());
    counter
        .rebuild(&campaign(1), Arc::new(SealedEpoch::new(1, Vec::new())))
        .await
        .unwrap();
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(1).returning(|_| {
        Err(Error::PublishUnknown {
            backend: "mock",
            source: "connection reset".into(),
        })
    });
    let mut store = store_with(campaign(1));
    let records = std::sync::atomic::AtomicU32::new(0);
    store.expect_record_pending().returning(move |_| {
        match records.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => Err(unavailable()),
            _ => Ok(()),
        }
    });
    store.expect_coupons_of().returning(|_, _| Ok(Vec::new()));
    let issuer = CouponIssuer::new(counter, Arc::new(queue), Arc::new(store));

    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    for late in 1..=3 {
        let outcome = issuer.apply(CampaignId(1), UserId(late)).await.unwrap();
        assert_eq!(outcome, ApplyOutcome::SoldOut);
    }
    let again = issuer.apply(CampaignId(1), USER).await.unwrap();
    assert_eq!(again, ApplyOutcome::Pending, "their slot rolls forward");
    assert_eq!(
        issuer.apply(CampaignId(1), UserId(4)).await.unwrap(),
        ApplyOutcome::SoldOut
    );
}
