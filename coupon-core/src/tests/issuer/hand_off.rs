//! The hand-off: `Accepted` only once the queue acknowledged the ticket, and what each
//! kind of publish failure answers.

use std::sync::{Arc, Mutex};

use super::{USER, granting, issuer, recording_pending, refused, store_with};
use crate::tests::{campaign, unavailable};
use crate::{
    ApplyOutcome, CampaignId, Error, HeldSlot, IssueTicket, MockIssueQueue, Release, TicketId,
};

#[tokio::test]
async fn accepted_only_after_the_publish_is_acknowledged() {
    let published = Arc::new(Mutex::new(Vec::<IssueTicket>::new()));
    let mut queue = MockIssueQueue::new();
    let sink = published.clone();
    queue.expect_publish().times(1).returning(move |ticket| {
        sink.lock().unwrap().push(ticket.clone());
        Ok(())
    });
    // Not a queue in the store: the counter confirms the epoch before `Accepted`.
    queue.expect_in_store().return_const(false);
    let mut counter = granting(7);
    counter
        .expect_confirm_epoch()
        .times(1)
        .withf(|campaign, epoch| campaign.id == CampaignId(1) && *epoch == 3)
        .returning(|_, _| Ok(true));
    let issuer = issuer(counter, queue, store_with(campaign(10)));

    let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
    let tickets = published.lock().unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(
        (
            tickets[0].campaign,
            tickets[0].user,
            tickets[0].slot,
            tickets[0].rank,
            tickets[0].epoch
        ),
        (CampaignId(1), USER, 1, 7, 3)
    );
    assert_eq!(
        tickets[0].ticket_id,
        TicketId::for_admission(CampaignId(1), USER, 1),
        "the ticket id follows from the admission"
    );
    assert_eq!(
        outcome,
        ApplyOutcome::Accepted {
            rank: 7,
            ticket_id: tickets[0].ticket_id
        }
    );
}

/// An acknowledged ticket whose epoch the counter no longer confirms (a rebuild closed
/// it meanwhile) is not `Accepted`: it is recorded as pending, which the store allows
/// only while no seal superseded it; when one did, the applicant hears a retryable
/// error, and no one was promised anything.
#[tokio::test]
async fn an_acknowledged_ticket_of_an_unconfirmed_epoch_is_pending_or_refused() {
    for superseded in [false, true] {
        let mut queue = MockIssueQueue::new();
        queue.expect_publish().times(1).returning(|_| Ok(()));
        queue.expect_in_store().return_const(false);
        let mut counter = granting(7);
        counter.expect_confirm_epoch().returning(|_, _| Ok(false));
        let mut store = store_with(campaign(10));
        store
            .expect_record_pending()
            .times(1)
            .returning(move |ticket| {
                if superseded {
                    Err(Error::Superseded {
                        campaign: ticket.campaign,
                        user: ticket.user,
                        epoch: ticket.epoch,
                    })
                } else {
                    Ok(())
                }
            });
        let issuer = issuer(counter, queue, store);
        let outcome = issuer.apply(CampaignId(1), USER).await;
        if superseded {
            let error = outcome.unwrap_err();
            assert!(
                matches!(error, Error::Superseded { epoch: 3, .. }) && error.is_retryable(),
                "{error:?}"
            );
        } else {
            assert_eq!(outcome.unwrap(), ApplyOutcome::Pending);
        }
    }
}

/// A queue kept in the store refuses superseded tickets itself: its acknowledgement is
/// `Accepted` without asking the counter.
#[tokio::test]
async fn a_queue_in_the_store_needs_no_epoch_confirmation() {
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(1).returning(|_| Ok(()));
    queue.expect_in_store().return_const(true);
    let mut counter = granting(7);
    counter.expect_confirm_epoch().never();
    let issuer = issuer(counter, queue, store_with(campaign(10)));
    let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
    assert!(
        matches!(outcome, ApplyOutcome::Accepted { rank: 7, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn definite_publish_failure_releases_the_slot_once() {
    let mut counter = granting(3);
    counter
        .expect_release()
        .withf(|campaign, held: &HeldSlot| {
            (campaign.id, held.user, held.slot, held.rank) == (CampaignId(1), USER, 1, 3)
        })
        .times(1)
        .returning(|_, _| Ok(Release::Released));
    let mut queue = MockIssueQueue::new();
    queue
        .expect_publish()
        .times(1)
        .returning(|_| Err(refused()));
    let issuer = issuer(counter, queue, store_with(campaign(10)));

    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(error.is_retryable());
    match error {
        Error::NotHandedOff { source, user, .. } => {
            assert_eq!(user, USER);
            assert!(matches!(*source, Error::PublishRefused { .. }));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn refused_publish_of_a_claimed_slot_is_pending() {
    let mut counter = granting(3);
    counter
        .expect_release()
        .times(1)
        .returning(|_, _| Ok(Release::Settling));
    let mut queue = MockIssueQueue::new();
    queue
        .expect_publish()
        .times(1)
        .returning(|_| Err(refused()));
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let mut store = store_with(campaign(10));
    recording_pending(&mut store, recorded.clone());
    let issuer = issuer(counter, queue, store);

    let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Pending);
    let recorded = recorded.lock().unwrap();
    assert_eq!(
        recorded.len(),
        1,
        "a claimed slot's ticket is recorded before Pending"
    );
    assert_eq!((recorded[0].user, recorded[0].rank), (USER, 3));
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
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let mut store = store_with(campaign(10));
    recording_pending(&mut store, recorded.clone());
    let issuer = issuer(counter, queue, store);

    let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
    assert_eq!(
        outcome,
        ApplyOutcome::Pending,
        "the settler rolls it forward"
    );
    let recorded = recorded.lock().unwrap();
    assert_eq!(
        recorded.iter().map(|t| t.ticket_id).collect::<Vec<_>>(),
        vec![TicketId::for_admission(CampaignId(1), USER, 1)],
        "recorded in the store before the answer"
    );
}

/// Pending is a promise only once the ticket is durable: with the store refusing the
/// record too, the caller hears the publish's error (retryable) and the slot stays
/// held for the settler, never released.
#[tokio::test]
async fn unknown_publish_outcome_without_a_record_is_a_retryable_error() {
    let mut counter = granting(3);
    counter.expect_release().times(0);
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(1).returning(|_| {
        Err(Error::PublishUnknown {
            backend: "mock",
            source: "timed out".into(),
        })
    });
    let mut store = store_with(campaign(10));
    store
        .expect_record_pending()
        .times(1)
        .returning(|_| Err(unavailable()));
    let issuer = issuer(counter, queue, store);

    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(matches!(error, Error::PublishUnknown { .. }), "{error:?}");
    assert!(error.is_retryable());
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
    let mut store = store_with(campaign(10));
    recording_pending(&mut store, Arc::default());
    let issuer = issuer(counter, queue, store);

    let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Pending);
}

#[tokio::test]
async fn a_failed_release_is_a_retryable_error_not_a_promise() {
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

    // The release may have run: the slot may be free, so "pending" could be a promise
    // nobody keeps. Applying again tells.
    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}
