//! Scenarios for [`CouponStore`] implementations.

mod epochs;
mod issuing;
mod ledgers;

pub use epochs::{
    a_dead_letter_of_a_superseded_ticket_is_not_counted,
    a_dead_lettered_ticket_is_not_recorded_as_pending,
    a_seal_counts_every_admission_the_store_knows, a_seal_from_a_replaced_epoch_changes_nothing,
    tickets_of_a_superseded_epoch_are_refused_unless_counted,
};
pub use issuing::{
    batch_over_cap_persists_exactly_cap, concurrent_batches_never_pass_the_cap,
    coupons_of_lists_a_holders_coupons_by_rank, one_coupon_per_user,
    same_ticket_twice_gives_one_coupon,
};
pub use ledgers::{
    failures_are_listed_per_campaign_in_the_order_first_seen,
    pending_tickets_are_kept_until_their_coupon_exists, records_failures_once_per_ticket,
    replayed_failures_close_and_reopen,
};

use std::sync::Arc;

use chrono::{Duration, Utc};

use coupon_core::{CampaignId, CouponStore, Error, IssueOutcome, IssueTicket, NewCampaign, UserId};

/// An id no store assigns in a test run (SQL stores use signed 64-bit ids).
const UNKNOWN: CampaignId = CampaignId(i64::MAX as u64);

async fn create(store: &dyn CouponStore, cap: u64) -> coupon_core::Campaign {
    store
        .create_campaign(NewCampaign::new("conformance", cap))
        .await
        .expect("create_campaign failed")
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
        (NewCampaign::new("split", 10).shards(0), "shards"),
        (
            NewCampaign::new("split", 10).shards(NewCampaign::MAX_SHARDS + 1),
            "shards",
        ),
        (
            NewCampaign::new("wide", i64::MAX as u64).shards(2),
            "shards",
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

/// An operator's window change is stored and read back, keeping the rest of the
/// definition (per-user limit, shards); an invalid one is refused with the field named
/// and changes nothing; an unknown campaign is a typed error.
pub async fn windows_change_and_invalid_ones_change_nothing(store: Arc<dyn CouponStore>) {
    let store = store.as_ref();
    let campaign = store
        .create_campaign(
            NewCampaign::new("conformance", 3)
                .per_user_limit(2)
                .shards(4),
        )
        .await
        .expect("create_campaign failed");
    assert_eq!(
        (campaign.per_user_limit, campaign.shards),
        (2, 4),
        "{campaign:?}"
    );
    assert_eq!(
        store.campaign(campaign.id).await.expect("campaign"),
        campaign
    );
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
    assert_eq!(
        (reopened.per_user_limit, reopened.shards),
        (2, 4),
        "a window change keeps the definition: {reopened:?}"
    );
    let set = store.set_window(UNKNOWN, None, None).await;
    assert!(
        matches!(set, Err(Error::UnknownCampaign { campaign: UNKNOWN })),
        "set_window: {set:?}"
    );
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
