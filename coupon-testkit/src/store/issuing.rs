//! Store scenarios of issuing: a ticket becomes at most one coupon, a user holds at
//! most the per-user limit, and a campaign never more than its cap.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::task::JoinSet;

use coupon_core::{CouponStore, IssueOutcome, IssueTicket, NewCampaign, UserId};

use super::create;

fn issued(outcomes: &[IssueOutcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, IssueOutcome::Issued(_)))
        .count()
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
