//! Store scenarios of the ledgers: failure records (listed, replayed, reopened) and
//! pending tickets.

use std::sync::Arc;

use chrono::{Duration, Utc};

use coupon_core::{CouponStore, IssueFailure, IssueTicket, UserId};

use super::create;

/// A failure recorded twice for one ticket is one record with the attempts summed, and
/// holding the ticket of the latest epoch.
pub async fn records_failures_once_per_ticket(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = create(store, 10).await;
    let ticket = IssueTicket::new(campaign.id, UserId(1), 1, 1);
    store
        .record_failure(&IssueFailure::new(ticket.clone(), "first", 3))
        .await
        .expect("record_failure failed");
    store
        .record_failure(&IssueFailure::new(ticket.clone(), "second", 2))
        .await
        .expect("record_failure failed");
    let failures = store.failures(Some(campaign.id)).await.expect("failures");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].ticket, ticket);
    assert_eq!(
        (failures[0].attempts, failures[0].error.as_str()),
        (5, "second")
    );
    assert!(failures[0].is_open(), "{failures:?}");
    let all = store.failures(None).await.expect("failures");
    assert!(
        all.iter().any(|failure| failure.ticket == ticket),
        "listed among every campaign's failures"
    );
    // The same slot admitted again in a later epoch (the first admission superseded),
    // and that ticket failing too: the record takes it, since a replay of the earlier
    // one would be refused as superseded and the later one, told "yes", would be lost.
    let later = IssueTicket::new(campaign.id, UserId(1), 1, 13).in_epoch(3);
    assert_eq!(later.ticket_id, ticket.ticket_id, "one id per (user, slot)");
    store
        .record_failure(&IssueFailure::new(later.clone(), "third", 1))
        .await
        .expect("record_failure failed");
    // A late failure of the earlier ticket changes the ticket no more.
    store
        .record_failure(&IssueFailure::new(ticket.in_epoch(0), "late", 1))
        .await
        .expect("record_failure failed");
    let failures = store.failures(Some(campaign.id)).await.expect("failures");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        (&failures[0].ticket, failures[0].attempts),
        (&later, 7),
        "the record holds the latest epoch's ticket"
    );
}

/// `failures(Some(campaign))` lists that campaign's failures only, in the order they
/// were first seen; `failures(None)` every campaign's.
pub async fn failures_are_listed_per_campaign_in_the_order_first_seen(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let (campaign, other) = (create(store, 10).await, create(store, 10).await);
    let tickets: Vec<IssueTicket> = [
        (campaign.id, 3),
        (other.id, 1),
        (campaign.id, 1),
        (campaign.id, 2),
    ]
    .into_iter()
    .map(|(id, user)| IssueTicket::new(id, UserId(user), 1, user))
    .collect();
    for ticket in &tickets {
        store
            .record_failure(&IssueFailure::new(ticket.clone(), "refused", 1))
            .await
            .expect("record_failure failed");
        // Distinct first-seen times even on a store that keeps milliseconds.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let listed = store.failures(Some(campaign.id)).await.expect("failures");
    let users: Vec<u64> = listed.iter().map(|failure| failure.ticket.user.0).collect();
    assert_eq!(
        users,
        [3, 1, 2],
        "this campaign's, first seen first: {listed:?}"
    );
    let others = store.failures(Some(other.id)).await.expect("failures");
    assert_eq!(others.len(), 1, "{others:?}");
    assert_eq!(others[0].ticket, tickets[1]);
    let all = store.failures(None).await.expect("failures");
    for ticket in &tickets {
        assert!(
            all.iter().any(|failure| failure.ticket == *ticket),
            "every campaign's failures: {ticket:?} missing"
        );
    }
}

/// A replayed failure is closed; failing again reopens it.
pub async fn replayed_failures_close_and_reopen(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = create(store, 10).await;
    let (a, b) = (
        IssueTicket::new(campaign.id, UserId(1), 1, 1),
        IssueTicket::new(campaign.id, UserId(2), 1, 2),
    );
    for ticket in [&a, &b] {
        store
            .record_failure(&IssueFailure::new(ticket.clone(), "broken", 1))
            .await
            .expect("record_failure failed");
    }
    let at = Utc::now();
    let changed = store
        .mark_replayed(&[a.ticket_id], at)
        .await
        .expect("mark_replayed failed");
    assert_eq!(changed, 1);
    let open = |failures: Vec<IssueFailure>| -> Vec<UserId> {
        failures
            .into_iter()
            .filter(IssueFailure::is_open)
            .map(|failure| failure.ticket.user)
            .collect()
    };
    let failures = store.failures(Some(campaign.id)).await.expect("failures");
    assert_eq!(open(failures), vec![UserId(2)]);
    // A failure newer than the replay's start stays open.
    let earlier = at - Duration::seconds(60);
    let changed = store
        .mark_replayed(&[b.ticket_id], earlier)
        .await
        .expect("mark_replayed failed");
    assert_eq!(changed, 0, "b failed after the replay began");

    store
        .record_failure(&IssueFailure::new(a.clone(), "broken again", 1))
        .await
        .expect("record_failure failed");
    let mut reopened = open(store.failures(Some(campaign.id)).await.expect("failures"));
    reopened.sort_unstable();
    assert_eq!(reopened, vec![UserId(1), UserId(2)]);
}

/// A ticket recorded as pending is listed (once, however often recorded, and only in
/// its campaign) until its coupon exists, counts among the campaign's admitted slots
/// beside the coupons without being counted twice, and is forgotten once settled.
pub async fn pending_tickets_are_kept_until_their_coupon_exists(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = create(store, 10).await;
    let other = create(store, 10).await;
    let early = IssueTicket::new(campaign.id, UserId(1), 1, 1);
    let mut late = IssueTicket::new(campaign.id, UserId(2), 1, 2);
    late.admitted_at = early.admitted_at + Duration::milliseconds(5);
    let elsewhere = IssueTicket::new(other.id, UserId(1), 1, 1);
    for ticket in [&late, &early, &late, &elsewhere] {
        store.record_pending(ticket).await.expect("record_pending");
    }
    store
        .issue_batch(&[IssueTicket::new(campaign.id, UserId(3), 1, 3)])
        .await
        .expect("issue_batch");

    let ids = |tickets: Vec<IssueTicket>| -> Vec<coupon_core::TicketId> {
        tickets.into_iter().map(|ticket| ticket.ticket_id).collect()
    };
    let pending = store.pending_tickets(campaign.id).await.expect("pending");
    assert_eq!(pending[0], early, "the ticket as recorded");
    assert_eq!(
        ids(pending),
        vec![early.ticket_id, late.ticket_id],
        "oldest first, once each"
    );
    let mut slots: Vec<(UserId, u64)> = coupon_core::admitted_slots(store, campaign.id)
        .await
        .expect("admitted_slots")
        .iter()
        .map(|slot| (slot.user, slot.rank))
        .collect();
    slots.sort_unstable();
    assert_eq!(slots, vec![(UserId(1), 1), (UserId(2), 2), (UserId(3), 3)]);

    // The first one's coupon arrives: it is listed no more, counted once, then forgotten.
    store
        .issue_batch(std::slice::from_ref(&early))
        .await
        .expect("issue_batch");
    assert_eq!(
        ids(store.pending_tickets(campaign.id).await.expect("pending")),
        vec![late.ticket_id]
    );
    let slots = coupon_core::admitted_slots(store, campaign.id)
        .await
        .expect("slots");
    assert_eq!(
        slots.len(),
        3,
        "a pending ticket with its coupon is one slot"
    );
    assert_eq!(
        store
            .forget_settled_pending(campaign.id)
            .await
            .expect("forget"),
        1
    );
    assert_eq!(
        store
            .forget_settled_pending(campaign.id)
            .await
            .expect("forget"),
        0
    );
    assert_eq!(
        ids(store.pending_tickets(other.id).await.expect("pending")),
        vec![elsewhere.ticket_id],
        "other campaigns keep theirs"
    );
}
