//! A user the counter says already applied: where their slots stand.

use std::sync::{Arc, Mutex};

use super::{USER, already_applied, earlier_slot, holding, issuer, recording_pending, store_with};
use crate::tests::{campaign, unavailable};
use crate::{ApplyOutcome, CampaignId, Coupon, IssueTicket, MockIssueQueue};

#[tokio::test]
async fn already_applied_publishes_nothing_and_is_remembered_once_stored() {
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(0);
    let mut store = store_with(campaign(10));
    store
        .expect_coupons_of()
        .times(1)
        .returning(|campaign, user| {
            Ok(vec![Coupon::from_ticket(&IssueTicket::new(
                campaign, user, 1, 1,
            ))])
        });
    let issuer = issuer(already_applied(3), queue, store);

    for _ in 0..3 {
        let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
        assert_eq!(outcome, ApplyOutcome::AlreadyApplied);
    }
}

/// The earlier apply may have ended in an error, leaving the slot only in the counter:
/// the slot is claimed (never given back from then on) and its ticket recorded before
/// the answer, each time.
#[tokio::test]
async fn applying_again_before_the_coupon_is_stored_records_the_slot_and_is_pending() {
    let mut counter = already_applied(2);
    counter
        .expect_slots_of()
        .times(2)
        .returning(|_, _| Ok(vec![earlier_slot()]));
    counter
        .expect_claim()
        .times(2)
        .returning(|_, slots, reclaim_after| {
            assert_eq!(reclaim_after, std::time::Duration::ZERO);
            Ok(slots.to_vec())
        });
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let mut store = holding(0);
    recording_pending(&mut store, recorded.clone());
    let issuer = issuer(counter, MockIssueQueue::new(), store);
    for _ in 0..2 {
        let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
        assert_eq!(outcome, ApplyOutcome::Pending);
    }
    let recorded = recorded.lock().unwrap();
    assert_eq!(recorded.len(), 2);
    assert!(
        recorded
            .iter()
            .all(|ticket| ticket.rank == 5 && ticket.user == USER)
    );
}

/// A slot given back between the counter's answer and the claim (its hand-off was
/// refused) promises nothing: a retryable error, nothing recorded.
#[tokio::test]
async fn applying_again_while_the_slot_is_given_back_is_a_retryable_error() {
    let mut counter = already_applied(1);
    counter
        .expect_slots_of()
        .returning(|_, _| Ok(vec![earlier_slot()]));
    counter.expect_claim().returning(|_, _, _| Ok(Vec::new()));
    let mut store = holding(0);
    store.expect_record_pending().times(0);
    let issuer = issuer(counter, MockIssueQueue::new(), store);
    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

/// The slot went (released by its own refused hand-off, or lost with the counter)
/// between the counter's "already applied" and the lookup of the user's slots: nothing
/// to record, so no `Pending` either.
#[tokio::test]
async fn applying_again_when_the_slot_is_gone_is_a_retryable_error() {
    let mut counter = already_applied(1);
    counter.expect_slots_of().returning(|_, _| Ok(Vec::new()));
    counter.expect_claim().returning(|_, _, _| Ok(Vec::new()));
    let mut store = holding(0);
    store.expect_record_pending().times(0);
    let issuer = issuer(counter, MockIssueQueue::new(), store);
    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn applying_again_while_the_store_is_down_is_a_retryable_error() {
    let mut store = store_with(campaign(10));
    store
        .expect_coupons_of()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    let issuer = issuer(already_applied(1), MockIssueQueue::new(), store);
    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}
