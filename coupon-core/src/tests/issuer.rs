use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use mockall::predicate::eq;

use super::{campaign, unavailable};
use crate::{
    Admission, ApplyOutcome, Campaign, CampaignId, CouponIssuer, Error, IssueTicket,
    MockCouponCounter, MockCouponStore, MockIssueQueue, NewCampaign, SlotState, UserId,
};

const USER: UserId = UserId(42);

fn store_with(campaign: Campaign) -> MockCouponStore {
    let mut store = MockCouponStore::new();
    store
        .expect_campaign()
        .returning(move |_| Ok(campaign.clone()));
    store
}

fn issuer(
    counter: MockCouponCounter,
    queue: MockIssueQueue,
    store: MockCouponStore,
) -> CouponIssuer {
    CouponIssuer::new(Arc::new(counter), Arc::new(queue), Arc::new(store))
}

fn granting(rank: u64) -> MockCouponCounter {
    let mut counter = MockCouponCounter::new();
    counter
        .expect_try_acquire()
        .times(1)
        .returning(move |_, _| Ok(Admission::Granted { rank }));
    counter
}

fn refused() -> Error {
    Error::PublishRefused {
        backend: "mock",
        source: "refused".into(),
    }
}

#[tokio::test]
async fn accepted_only_after_the_publish_is_acknowledged() {
    let published = Arc::new(Mutex::new(Vec::<IssueTicket>::new()));
    let mut queue = MockIssueQueue::new();
    let sink = published.clone();
    queue.expect_publish().times(1).returning(move |ticket| {
        sink.lock().unwrap().push(ticket.clone());
        Ok(())
    });
    let issuer = issuer(granting(7), queue, store_with(campaign(10)));

    let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
    let tickets = published.lock().unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(
        (tickets[0].campaign, tickets[0].user, tickets[0].rank),
        (CampaignId(1), USER, 7)
    );
    assert_eq!(
        outcome,
        ApplyOutcome::Accepted {
            rank: 7,
            ticket_id: tickets[0].ticket_id
        }
    );
}

#[tokio::test]
async fn definite_publish_failure_releases_the_slot_once() {
    let mut counter = granting(3);
    counter
        .expect_release()
        .with(eq(CampaignId(1)), eq(USER))
        .times(1)
        .returning(|_, _| Ok(true));
    let mut queue = MockIssueQueue::new();
    queue
        .expect_publish()
        .times(1)
        .returning(|_| Err(refused()));
    let issuer = issuer(counter, queue, store_with(campaign(10)));

    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(error.is_retryable());
    match error {
        Error::NotHandedOff {
            slot, source, user, ..
        } => {
            assert_eq!((slot, user), (SlotState::Released, USER));
            assert!(matches!(*source, Error::PublishRefused { .. }));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn unknown_publish_outcome_keeps_the_slot_reserved() {
    let mut counter = granting(3);
    counter.expect_release().times(0);
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(1).returning(|_| {
        Err(Error::PublishUnknown {
            backend: "mock",
            source: "timed out".into(),
        })
    });
    let issuer = issuer(counter, queue, store_with(campaign(10)));

    match issuer.apply(CampaignId(1), USER).await.unwrap_err() {
        Error::NotHandedOff { slot, source, .. } => {
            assert_eq!(slot, SlotState::Reserved);
            assert!(matches!(*source, Error::PublishUnknown { .. }));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn unclassified_publish_error_is_treated_as_unknown() {
    let mut counter = granting(3);
    counter.expect_release().times(0);
    let mut queue = MockIssueQueue::new();
    queue
        .expect_publish()
        .times(1)
        .returning(|_| Err(unavailable()));
    let issuer = issuer(counter, queue, store_with(campaign(10)));

    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(matches!(
        error,
        Error::NotHandedOff {
            slot: SlotState::Reserved,
            ..
        }
    ));
}

#[tokio::test]
async fn failed_release_leaves_the_slot_reserved() {
    let mut counter = granting(3);
    counter
        .expect_release()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    let mut queue = MockIssueQueue::new();
    queue
        .expect_publish()
        .times(1)
        .returning(|_| Err(refused()));
    let issuer = issuer(counter, queue, store_with(campaign(10)));

    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(matches!(
        error,
        Error::NotHandedOff {
            slot: SlotState::Reserved,
            ..
        }
    ));
}

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
    let issuer = issuer(counter, queue, store_with(campaign(10)));

    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(matches!(
        error,
        Error::Unavailable {
            backend: "mock",
            ..
        }
    ));
}

#[tokio::test]
async fn sold_out_is_remembered_without_another_counter_trip() {
    let mut counter = MockCouponCounter::new();
    counter
        .expect_try_acquire()
        .times(1)
        .returning(|_, _| Ok(Admission::SoldOut));
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(0);
    let issuer = issuer(counter, queue, store_with(campaign(10)));

    for user in 1..=5 {
        let outcome = issuer.apply(CampaignId(1), UserId(user)).await.unwrap();
        assert_eq!(outcome, ApplyOutcome::SoldOut);
    }
}

#[tokio::test]
async fn already_applied_publishes_nothing() {
    let mut counter = MockCouponCounter::new();
    counter
        .expect_try_acquire()
        .times(1)
        .returning(|_, _| Ok(Admission::AlreadyApplied));
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(0);
    let issuer = issuer(counter, queue, store_with(campaign(10)));

    let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::AlreadyApplied);
}

#[tokio::test]
async fn outside_the_window_the_counter_is_not_asked() {
    let now = Utc::now();
    for (new, expected) in [
        (
            NewCampaign::new("later", 10).opens_at(now + Duration::hours(1)),
            ApplyOutcome::NotOpen,
        ),
        (
            NewCampaign::new("over", 10).closes_at(now - Duration::hours(1)),
            ApplyOutcome::Closed,
        ),
    ] {
        let mut counter = MockCouponCounter::new();
        counter.expect_try_acquire().times(0);
        let campaign = Campaign::from_new(CampaignId(1), new);
        let issuer = issuer(counter, MockIssueQueue::new(), store_with(campaign));
        assert_eq!(issuer.apply(CampaignId(1), USER).await.unwrap(), expected);
    }
}

#[tokio::test]
async fn unknown_campaign_is_a_typed_error_and_reaches_no_counter() {
    let mut store = MockCouponStore::new();
    store
        .expect_campaign()
        .times(1)
        .returning(|campaign| Err(Error::UnknownCampaign { campaign }));
    let mut counter = MockCouponCounter::new();
    counter.expect_try_acquire().times(0);
    let issuer = issuer(counter, MockIssueQueue::new(), store);

    let error = issuer.apply(CampaignId(9), USER).await.unwrap_err();
    assert!(matches!(
        error,
        Error::UnknownCampaign {
            campaign: CampaignId(9)
        }
    ));
}

#[tokio::test]
async fn campaign_definitions_are_read_from_the_store_once() {
    let mut store = MockCouponStore::new();
    store
        .expect_campaign()
        .times(1)
        .returning(|_| Ok(campaign(10)));
    let mut counter = MockCouponCounter::new();
    counter
        .expect_try_acquire()
        .times(3)
        .returning(|_, _| Ok(Admission::AlreadyApplied));
    let issuer = issuer(counter, MockIssueQueue::new(), store);
    for _ in 0..3 {
        issuer.apply(CampaignId(1), USER).await.unwrap();
    }
}
