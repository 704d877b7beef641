//! Scenarios for [`CouponStore`] implementations.

mod epochs;

pub use epochs::{
    a_dead_letter_of_a_superseded_ticket_is_not_counted,
    a_dead_lettered_ticket_is_not_recorded_as_pending,
    a_seal_counts_every_admission_the_store_knows, a_seal_from_a_replaced_epoch_changes_nothing,
    tickets_of_a_superseded_epoch_are_refused_unless_counted,
};

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use tokio::task::JoinSet;

use coupon_core::{
    CampaignId, CouponStore, Error, IssueFailure, IssueOutcome, IssueTicket, NewCampaign, UserId,
};

/// An id no store assigns in a test run (SQL stores use signed 64-bit ids).
const UNKNOWN: CampaignId = CampaignId(i64::MAX as u64);

async fn create(store: &dyn CouponStore, cap: u64) -> coupon_core::Campaign {
    store
        .create_campaign(NewCampaign::new("conformance", cap))
        .await
        .expect("create_campaign failed")
}

fn issued(outcomes: &[IssueOutcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, IssueOutcome::Issued(_)))
        .count()
}

/// Invalid definitions are refused with the offending field named, and nothing is stored.
pub async fn rejects_invalid_campaigns(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    // The limits themselves are accepted.
    let longest = NewCampaign::new("é".repeat(NewCampaign::MAX_NAME_CHARS), 10)
        .opens_at(NewCampaign::EARLIEST)
        .closes_at(NewCampaign::LATEST);
    store
        .create_campaign(longest)
        .await
        .expect("a name of 255 characters and the widest window");
    let now = Utc::now();
    let cases = [
        (NewCampaign::new("zero", 0), "cap"),
        (NewCampaign::new("huge", u64::MAX), "cap"),
        (
            NewCampaign::new("limit", 10).per_user_limit(0),
            "per_user_limit",
        ),
        (
            NewCampaign::new("limit", 10).per_user_limit(NewCampaign::MAX_PER_USER_LIMIT + 1),
            "per_user_limit",
        ),
        (NewCampaign::new("  ", 10), "name"),
        (NewCampaign::new("x".repeat(256), 10), "name"),
        (NewCampaign::new("nul\u{0}inside", 10), "name"),
        (
            NewCampaign::new("ancient", 10).opens_at(NewCampaign::EARLIEST - Duration::seconds(1)),
            "opens_at",
        ),
        (
            NewCampaign::new("far", 10).closes_at(NewCampaign::LATEST + Duration::seconds(1)),
            "closes_at",
        ),
        (
            NewCampaign::new("window", 10)
                .opens_at(now)
                .closes_at(now - Duration::seconds(1)),
            "closes_at",
        ),
    ];
    for (new, expected) in cases {
        match store.create_campaign(new).await {
            Err(Error::InvalidCampaign { field, .. }) => assert_eq!(field, expected),
            other => panic!("expected InvalidCampaign({expected}), got {other:?}"),
        }
    }
}

/// An unknown campaign is `UnknownCampaign` for reads, and a per-ticket outcome in a
/// batch that does not fail the batch's other tickets.
pub async fn unknown_campaign_is_a_typed_error(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let read = store.campaign(UNKNOWN).await;
    assert!(
        matches!(read, Err(Error::UnknownCampaign { campaign: UNKNOWN })),
        "campaign: {read:?}"
    );
    let count = store.issued_count(UNKNOWN).await;
    assert!(
        matches!(count, Err(Error::UnknownCampaign { campaign: UNKNOWN })),
        "issued_count: {count:?}"
    );
    // The ledgers too: a pending record of a campaign the store does not know would
    // hold a slot nothing can ever issue.
    let stray = store
        .record_pending(&IssueTicket::new(UNKNOWN, UserId(1), 1, 1))
        .await;
    assert!(
        matches!(stray, Err(Error::UnknownCampaign { campaign: UNKNOWN })),
        "record_pending: {stray:?}"
    );
    let pending = store.pending_tickets(UNKNOWN).await;
    assert!(
        matches!(pending, Err(Error::UnknownCampaign { campaign: UNKNOWN })),
        "pending_tickets: {pending:?}"
    );
    let campaign = create(store, 10).await;
    let batch = [
        IssueTicket::new(UNKNOWN, UserId(1), 1, 1),
        IssueTicket::new(campaign.id, UserId(1), 1, 1),
    ];
    let outcomes = store.issue_batch(&batch).await.expect("issue_batch failed");
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0], IssueOutcome::UnknownCampaign);
    assert!(
        matches!(outcomes[1], IssueOutcome::Issued(_)),
        "{outcomes:?}"
    );
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 1);
}

/// An operator's window change is stored and read back; an invalid one is refused with
/// the field named and changes nothing; an unknown campaign is a typed error.
pub async fn windows_change_and_invalid_ones_change_nothing(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = create(store, 3).await;
    let now = Utc::now();
    // Stores keep microseconds at best.
    let closes = chrono::DateTime::from_timestamp(now.timestamp(), 0).expect("in range");
    let opens = closes - Duration::hours(1);
    let changed = store
        .set_window(campaign.id, Some(opens), Some(closes))
        .await
        .expect("set_window failed");
    assert_eq!(
        (changed.opens_at, changed.closes_at),
        (Some(opens), Some(closes))
    );
    let read = store.campaign(campaign.id).await.expect("campaign");
    assert_eq!(read, changed);
    for (opens_at, closes_at, field) in [
        (Some(closes), Some(opens), "closes_at"),
        (
            None,
            Some(coupon_core::NewCampaign::LATEST + Duration::seconds(1)),
            "closes_at",
        ),
    ] {
        match store.set_window(campaign.id, opens_at, closes_at).await {
            Err(Error::InvalidCampaign { field: named, .. }) => assert_eq!(named, field),
            other => panic!("an invalid window was not refused: {other:?}"),
        }
    }
    assert_eq!(store.campaign(campaign.id).await.expect("campaign"), read);
    let reopened = store
        .set_window(campaign.id, None, None)
        .await
        .expect("set_window failed");
    assert_eq!((reopened.opens_at, reopened.closes_at), (None, None));
    let set = store.set_window(UNKNOWN, None, None).await;
    assert!(
        matches!(set, Err(Error::UnknownCampaign { campaign: UNKNOWN })),
        "set_window: {set:?}"
    );
}

/// The same ticket in one batch, and again in a later batch, gives one coupon, also
/// where its holder may hold more than one: what makes a ticket delivered again harmless
/// is its id, not the per-user limit.
pub async fn same_ticket_twice_gives_one_coupon(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = store
        .create_campaign(NewCampaign::new("conformance", 10).per_user_limit(3))
        .await
        .expect("create_campaign failed");
    assert_eq!(
        store.campaign(campaign.id).await.expect("campaign"),
        campaign
    );
    let ticket = IssueTicket::new(campaign.id, UserId(7), 1, 1);
    let outcomes = store
        .issue_batch(&[ticket.clone(), ticket.clone()])
        .await
        .expect("issue_batch failed");
    let IssueOutcome::Issued(coupon) = &outcomes[0] else {
        panic!("first copy not issued: {outcomes:?}");
    };
    assert_eq!(outcomes[1], IssueOutcome::Duplicate);
    assert_eq!(
        (coupon.campaign, coupon.user, coupon.rank, coupon.ticket_id),
        (campaign.id, UserId(7), 1, ticket.ticket_id)
    );
    let replay = store
        .issue_batch(&[ticket])
        .await
        .expect("issue_batch failed");
    assert_eq!(replay, vec![IssueOutcome::Duplicate]);
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 1);
    let held = store
        .coupons_of(campaign.id, UserId(7))
        .await
        .expect("coupons_of");
    assert_eq!(held.len(), 1, "one ticket delivered three times: {held:?}");
    assert_eq!(held[0].code, coupon.code, "the first code is kept");
    // The user's next admission is a coupon of its own, and delivered again, nothing.
    let second = IssueTicket::new(campaign.id, UserId(7), 2, 2);
    let outcomes = store
        .issue_batch(&[second.clone(), second])
        .await
        .expect("issue_batch failed");
    assert!(
        matches!(
            outcomes.as_slice(),
            [IssueOutcome::Issued(_), IssueOutcome::Duplicate]
        ),
        "the second slot's ticket, then a copy of it: {outcomes:?}"
    );
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 2);
    assert!(
        store
            .coupons_of(campaign.id, UserId(8))
            .await
            .expect("coupons_of")
            .is_empty()
    );
}

/// A holder's coupons are listed by rank, whatever order their tickets were stored in.
pub async fn coupons_of_lists_a_holders_coupons_by_rank(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = store
        .create_campaign(NewCampaign::new("conformance", 10).per_user_limit(3))
        .await
        .expect("create_campaign failed");
    // The third slot's ticket (rank 7) stored first, then the first (rank 2), then the
    // second (rank 5), in separate batches.
    for (slot, rank) in [(3, 7), (1, 2), (2, 5)] {
        let outcomes = store
            .issue_batch(&[IssueTicket::new(campaign.id, UserId(7), slot, rank)])
            .await
            .expect("issue_batch failed");
        assert_eq!(issued(&outcomes), 1, "slot {slot}: {outcomes:?}");
    }
    let held = store
        .coupons_of(campaign.id, UserId(7))
        .await
        .expect("coupons_of");
    let ranks: Vec<u64> = held.iter().map(|coupon| coupon.rank).collect();
    assert_eq!(ranks, [2, 5, 7], "by rank: {held:?}");
}

/// Two different tickets of one user (per-user limit 1) give one coupon.
pub async fn one_coupon_per_user(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = create(store, 10).await;
    let first = IssueTicket::new(campaign.id, UserId(1), 1, 1);
    let second = IssueTicket::new(campaign.id, UserId(1), 2, 2);
    let outcomes = store
        .issue_batch(&[first])
        .await
        .expect("issue_batch failed");
    assert_eq!(issued(&outcomes), 1);
    let outcomes = store
        .issue_batch(&[second])
        .await
        .expect("issue_batch failed");
    assert_eq!(outcomes, vec![IssueOutcome::Duplicate]);
    assert_eq!(
        store.holders(campaign.id).await.expect("holders"),
        vec![UserId(1)]
    );
}

/// A batch of cap + 10 distinct tickets persists exactly cap, each with a distinct code.
pub async fn batch_over_cap_persists_exactly_cap(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = create(store, 100).await;
    let batch: Vec<IssueTicket> = (1..=110)
        .map(|user| IssueTicket::new(campaign.id, UserId(user), 1, user))
        .collect();
    let outcomes = store.issue_batch(&batch).await.expect("issue_batch failed");
    assert_eq!(issued(&outcomes), 100);
    let over = outcomes
        .iter()
        .filter(|o| **o == IssueOutcome::OverCap)
        .count();
    assert_eq!(over, 10);
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 100);

    let holders: HashSet<UserId> = store
        .holders(campaign.id)
        .await
        .expect("holders")
        .into_iter()
        .collect();
    assert_eq!(holders.len(), 100);
    let codes: HashSet<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            IssueOutcome::Issued(coupon) => Some(coupon.code.as_str().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(codes.len(), 100, "codes are unique");
}

/// A failure recorded twice for one ticket is one record with the attempts summed.
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

/// Campaigns are listed with their issued counts; the coupons of a set of users are
/// those users' coupons in that campaign only.
pub async fn lists_campaigns_and_coupons_of_users(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let first = create(store, 10).await;
    let second = create(store, 10).await;
    let batch: Vec<IssueTicket> = (1..=3)
        .map(|user| IssueTicket::new(first.id, UserId(user), 1, user))
        .chain([IssueTicket::new(second.id, UserId(1), 1, 1)])
        .collect();
    store.issue_batch(&batch).await.expect("issue_batch failed");

    let summaries = store.campaigns().await.expect("campaigns");
    let issued = |id| {
        summaries
            .iter()
            .find(|summary| summary.campaign.id == id)
            .map(|summary| summary.issued)
    };
    assert_eq!((issued(first.id), issued(second.id)), (Some(3), Some(1)));
    let ids: Vec<CampaignId> = summaries.iter().map(|s| s.campaign.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "listed by id");

    let mut coupons = store
        .coupons_of_users(first.id, &[UserId(1), UserId(3), UserId(9)])
        .await
        .expect("coupons_of_users");
    coupons.sort_by_key(|coupon| coupon.user);
    let got: Vec<(UserId, u64)> = coupons.iter().map(|c| (c.user, c.rank)).collect();
    assert_eq!(got, vec![(UserId(1), 1), (UserId(3), 3)]);
    assert_eq!(
        coupons[0].ticket_id,
        coupon_core::TicketId::for_admission(first.id, UserId(1), 1)
    );
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

/// 8 concurrent callers with 500 distinct tickets each on cap 1,000: exactly 1,000
/// coupons; replaying all 4,000 changes nothing.
pub async fn concurrent_batches_never_pass_the_cap(store: Arc<dyn CouponStore>) {
    let campaign = create(store.as_ref(), 1_000).await;
    let batches: Vec<Vec<IssueTicket>> = (0..8u64)
        .map(|caller| {
            (0..500u64)
                .map(|i| IssueTicket::new(campaign.id, UserId(caller * 500 + i), 1, i + 1))
                .collect()
        })
        .collect();
    let run = |batches: Vec<Vec<IssueTicket>>| {
        let store = store.clone();
        async move {
            let mut tasks = JoinSet::new();
            for batch in batches {
                let store = store.clone();
                tasks.spawn(async move { store.issue_batch(&batch).await });
            }
            let mut issued_now = 0;
            while let Some(joined) = tasks.join_next().await {
                let outcomes = joined.expect("task panicked").expect("issue_batch failed");
                issued_now += issued(&outcomes);
            }
            issued_now
        }
    };
    assert_eq!(run(batches.clone()).await, 1_000);
    assert_eq!(run(batches).await, 0, "a replay issues nothing");
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 1_000);
    let holders = store.holders(campaign.id).await.expect("holders");
    let distinct: HashSet<UserId> = holders.iter().copied().collect();
    assert_eq!((holders.len(), distinct.len()), (1_000, 1_000));
}
