//! Store scenarios of counter epochs: what a seal counts, that seals never cross, and
//! which tickets of an older epoch the store refuses.

use std::collections::BTreeSet;
use std::sync::Arc;

use coupon_core::{
    CouponStore, Error, HeldSlot, IssueFailure, IssueOutcome, IssueTicket, TicketId, UserId,
};

use super::create;

/// A slot the counter still held when it was closed for a rebuild.
fn held(user: u64, rank: u64) -> HeldSlot {
    HeldSlot {
        user: UserId(user),
        slot: 1,
        rank,
        admitted_at: None,
        epoch: 0,
    }
}

/// Seals the next epoch of `campaign` over `counted`, as a rebuild does.
async fn seal(
    store: &dyn CouponStore,
    campaign: coupon_core::CampaignId,
    counted: &[HeldSlot],
) -> coupon_core::SealedEpoch {
    let after = store.sealed_epoch(campaign).await.expect("sealed_epoch");
    store
        .seal_epoch(campaign, after, counted)
        .await
        .expect("seal_epoch")
}

/// A seal counts every admission the store knows of, once each: the coupons, the
/// pending tickets without a coupon, every failure record without a coupon (open or
/// replayed: a replay may still be on its way), and what the counter still held.
pub async fn a_seal_counts_every_admission_the_store_knows(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = create(store, 10).await;
    assert_eq!(store.sealed_epoch(campaign.id).await.expect("epoch"), 0);
    let stored = IssueTicket::new(campaign.id, UserId(1), 1, 1);
    store
        .issue_batch(std::slice::from_ref(&stored))
        .await
        .expect("issue");
    store
        .record_pending(&IssueTicket::new(campaign.id, UserId(2), 1, 2))
        .await
        .expect("pending");
    // A pending record whose coupon exists counts once, as the coupon.
    store.record_pending(&stored).await.expect("pending");
    let dead = IssueFailure::new(IssueTicket::new(campaign.id, UserId(3), 1, 3), "bug", 1);
    store.record_failure(&dead).await.expect("failure");
    let replayed = IssueFailure::new(IssueTicket::new(campaign.id, UserId(4), 1, 4), "bug", 1);
    store.record_failure(&replayed).await.expect("failure");
    store
        .mark_replayed(&[replayed.ticket.ticket_id], chrono::Utc::now())
        .await
        .expect("replayed");

    let sealed = seal(store, campaign.id, &[held(5, 5), held(1, 1)]).await;
    assert_eq!(sealed.epoch, 1);
    let users: Vec<u64> = sealed.slots.iter().map(|slot| slot.user.get()).collect();
    assert_eq!(
        users.iter().copied().collect::<BTreeSet<_>>(),
        (1..=5).collect(),
        "every admission: {users:?}"
    );
    assert_eq!(users.len(), 5, "each once: {users:?}");
    assert_eq!(store.sealed_epoch(campaign.id).await.expect("epoch"), 1);
}

/// Seals never cross: a seal from an epoch another seal replaced changes nothing and is
/// a retryable error.
pub async fn a_seal_from_a_replaced_epoch_changes_nothing(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = create(store, 10).await;
    let first = store
        .seal_epoch(campaign.id, 0, &[])
        .await
        .expect("the first seal");
    assert_eq!(first.epoch, 1);
    let late = store.seal_epoch(campaign.id, 0, &[held(9, 1)]).await;
    match late {
        Err(error) => assert!(error.is_retryable(), "{error:?}"),
        Ok(sealed) => panic!("a second seal from epoch 0 went through: {sealed:?}"),
    }
    assert_eq!(store.sealed_epoch(campaign.id).await.expect("epoch"), 1);
    // The refused seal left nothing behind: the next one counts only what the store knows.
    let next = seal(store, campaign.id, &[]).await;
    assert_eq!((next.epoch, next.slots.len()), (2, 0));
}

/// After a seal, a ticket of an older epoch is taken only if the seal counted its slot
/// or its coupon exists; otherwise `issue_batch` answers `Superseded` and
/// `record_pending` refuses it. Epoch 0 (tickets from before epochs) is never checked,
/// and a copy of a superseded ticket of the current epoch later in the same batch is
/// judged on its own.
pub async fn tickets_of_a_superseded_epoch_are_refused_unless_counted(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = create(store, 10).await;
    let ticket = |user: u64, epoch: u64| {
        IssueTicket::new(campaign.id, UserId(user), 1, user).in_epoch(epoch)
    };
    seal(store, campaign.id, &[]).await;
    store.issue_batch(&[ticket(8, 1)]).await.expect("issue");
    // The counter lost its memory; its rebuild counted user 1's slot only.
    let sealed = seal(store, campaign.id, &[held(1, 1)]).await;
    assert_eq!(sealed.epoch, 2);

    // User 1's slot was counted at rank 1: the same slot at another rank is another
    // admission, which the seal did not count.
    let other_rank = IssueTicket::new(campaign.id, UserId(1), 1, 9).in_epoch(1);
    let refused = store.issue_batch(&[other_rank]).await.expect("issue");
    assert_eq!(
        refused,
        vec![IssueOutcome::Superseded],
        "another rank of a counted slot"
    );
    let outcomes = store
        .issue_batch(&[
            ticket(1, 1),
            ticket(2, 1),
            ticket(3, 2),
            ticket(4, 0),
            ticket(7, 1),
            ticket(7, 2),
        ])
        .await
        .expect("issue");
    let shapes: Vec<&str> = outcomes
        .iter()
        .map(|outcome| match outcome {
            IssueOutcome::Issued(_) => "issued",
            IssueOutcome::Superseded => "superseded",
            IssueOutcome::Duplicate => "duplicate",
            IssueOutcome::OverCap => "over cap",
            IssueOutcome::UnknownCampaign => "unknown campaign",
        })
        .collect();
    assert_eq!(
        shapes,
        [
            "issued",
            "superseded",
            "issued",
            "issued",
            "superseded",
            "issued"
        ],
        "counted, not counted, current epoch, no epoch, and a newer copy behind a superseded one"
    );

    let refused = store.record_pending(&ticket(5, 1)).await;
    assert!(
        matches!(refused, Err(Error::Superseded { epoch: 1, .. })),
        "{refused:?}"
    );
    store
        .record_pending(&ticket(6, 2))
        .await
        .expect("a ticket of the sealed epoch");
    store
        .record_pending(&ticket(8, 1))
        .await
        .expect("a ticket whose coupon exists is never superseded");
    let pending: Vec<TicketId> = store
        .pending_tickets(campaign.id)
        .await
        .expect("pending")
        .iter()
        .map(|ticket| ticket.ticket_id)
        .collect();
    assert_eq!(pending, vec![ticket(6, 2).ticket_id]);
}

/// A ticket the store refused for good (an open failure record) is not recorded as
/// pending: no `Pending` answer may promise it. Once replayed, it may be again. A later
/// epoch's admission of the same slot (the same ticket id) is recorded all the same:
/// the open record is of an admission a seal superseded.
pub async fn a_dead_lettered_ticket_is_not_recorded_as_pending(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = create(store, 10).await;
    let earlier = IssueTicket::new(campaign.id, UserId(2), 1, 2).in_epoch(1);
    store
        .record_failure(&IssueFailure::new(earlier.clone(), "refused", 1))
        .await
        .expect("failure");
    let again = IssueTicket::new(campaign.id, UserId(2), 1, 9).in_epoch(3);
    store
        .record_pending(&again)
        .await
        .expect("a later admission of the slot is not the failed one");
    let refused = store.record_pending(&earlier).await;
    assert!(
        matches!(&refused, Err(Error::TicketRefused { .. })),
        "{refused:?}"
    );
    let ticket = IssueTicket::new(campaign.id, UserId(1), 1, 1);
    let failure = IssueFailure::new(ticket.clone(), "unknown campaign", 1);
    store.record_failure(&failure).await.expect("failure");
    let refused = store.record_pending(&ticket).await;
    assert!(
        matches!(&refused, Err(Error::TicketRefused { reason, .. }) if reason == "unknown campaign"),
        "{refused:?}"
    );
    assert!(!refused.expect_err("refused").is_retryable());
    let pending: Vec<IssueTicket> = store.pending_tickets(campaign.id).await.expect("pending");
    assert_eq!(pending, [again], "only the later admission of user 2");
    store
        .mark_replayed(&[ticket.ticket_id], chrono::Utc::now())
        .await
        .expect("replayed");
    store
        .record_pending(&ticket)
        .await
        .expect("replayed: pending again");
}

/// A failure record counts in a seal only if its ticket was admissible under the seal
/// before: one refused for good after a seal had superseded it was never promised, and
/// counting it would give the counter a slot nobody holds.
pub async fn a_dead_letter_of_a_superseded_ticket_is_not_counted(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = create(store, 10).await;
    let ticket = |user: u64, epoch: u64| {
        IssueTicket::new(campaign.id, UserId(user), 1, user).in_epoch(epoch)
    };
    seal(store, campaign.id, &[]).await;
    seal(store, campaign.id, &[]).await;
    for (user, epoch) in [(3, 1), (4, 2)] {
        let failure = IssueFailure::new(ticket(user, epoch), "refused for good", 1);
        store.record_failure(&failure).await.expect("failure");
    }
    let sealed = seal(store, campaign.id, &[]).await;
    let users: Vec<u64> = sealed.slots.iter().map(|slot| slot.user.get()).collect();
    assert_eq!(
        users,
        vec![4],
        "the dead letter of epoch 2 counts, the one epoch 2 had superseded does not"
    );
}
