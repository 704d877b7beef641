//! Scenarios for a [`CouponStore`] that keeps what it acknowledged across a restart: each
//! takes an `open` function that opens the store on the same storage every time it is
//! called, writes through one opening, drops it, and reads through the next.
//!
//! `durable_store_scenarios!(module, opener)` makes one test of each; `opener` is
//! evaluated once per test and must give a fresh storage to each test, e.g. a closure
//! over a new file path:
//!
//! ```rust,ignore
//! coupon_testkit::durable_store_scenarios!(file_store, {
//!     let path = tempfile();
//!     move || { let path = path.clone(); async move { Arc::new(MyStore::open(&path).await.unwrap()) as Arc<dyn CouponStore> } }
//! });
//! ```

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use coupon_core::{CouponStore, IssueFailure, IssueOutcome, IssueTicket, NewCampaign, UserId};

/// Everything a store acknowledged before it was dropped is there when it is opened
/// again: campaigns and their windows, coupons (same codes, by rank), the per-user and
/// cap checks over them, ticket-id idempotency (the same batch delivered again after the
/// restart issues nothing), recorded pending tickets, failure records and their replay
/// marks, and the sealed epoch with what it counted (a pending admission the last seal
/// counted is still taken, one it did not is still superseded); and a campaign created
/// after the restart gets an id of its own.
pub async fn acknowledged_writes_survive_a_reopen<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn CouponStore>>,
{
    let store = open().await;
    // Whole seconds: what every store keeps (MariaDB's timestamps hold no fraction).
    let now = whole_seconds(Utc::now());
    let closes = now + Duration::days(1);
    let limited = store
        .create_campaign(
            NewCampaign::new("durable", 5)
                .per_user_limit(2)
                .closes_at(closes),
        )
        .await
        .expect("create_campaign");
    let other = store
        .create_campaign(NewCampaign::new("durable-other", 3))
        .await
        .expect("create_campaign");
    let batch = vec![
        IssueTicket::new(limited.id, UserId(1), 1, 1),
        IssueTicket::new(limited.id, UserId(2), 1, 2),
        IssueTicket::new(limited.id, UserId(1), 2, 3),
    ];
    let outcomes = store.issue_batch(&batch).await.expect("issue_batch");
    let codes: Vec<_> = outcomes
        .iter()
        .map(|outcome| match outcome {
            IssueOutcome::Issued(coupon) => coupon.code.clone(),
            other => panic!("a fresh batch must be issued, got {other:?} in {outcomes:?}"),
        })
        .collect();
    // A pending ticket of epoch 1, counted by the seal of epoch 2 (below): what a
    // counter rebuild after the restart must still count, and the store still take.
    let first = store
        .seal_epoch(limited.id, 0, &[])
        .await
        .expect("seal_epoch");
    let pending = IssueTicket::new(limited.id, UserId(3), 1, 4).in_epoch(first.epoch);
    store
        .record_pending(&pending)
        .await
        .expect("record_pending");
    let dead = IssueTicket::new(limited.id, UserId(4), 1, 5);
    store
        .record_failure(&IssueFailure::new(dead.clone(), "refused", 2))
        .await
        .expect("record_failure");
    let replayed = IssueTicket::new(other.id, UserId(9), 1, 1);
    store
        .record_failure(&IssueFailure::new(replayed.clone(), "refused", 1))
        .await
        .expect("record_failure");
    // A second later than the failure: a store that rounds its timestamps up must
    // still find it not newer than the replay.
    store
        .mark_replayed(&[replayed.ticket_id], Utc::now() + Duration::seconds(1))
        .await
        .expect("mark_replayed");
    let sealed = store
        .seal_epoch(limited.id, first.epoch, &[])
        .await
        .expect("seal_epoch");
    let closed = store
        .set_window(other.id, None, Some(now))
        .await
        .expect("set_window");
    drop(store);

    let store = open().await;
    assert_eq!(
        store.campaign(limited.id).await.expect("campaign"),
        limited,
        "a campaign as created"
    );
    assert_eq!(
        store.campaign(other.id).await.expect("campaign"),
        closed,
        "a campaign's window as last set"
    );
    assert_eq!(store.issued_count(limited.id).await.expect("count"), 3);
    let held: Vec<_> = store
        .coupons_of(limited.id, UserId(1))
        .await
        .expect("coupons_of")
        .into_iter()
        .map(|coupon| (coupon.rank, coupon.code))
        .collect();
    assert_eq!(
        held,
        vec![(1, codes[0].clone()), (3, codes[2].clone())],
        "user 1's coupons, by rank, with the codes first issued"
    );
    let again = store.issue_batch(&batch).await.expect("issue_batch");
    assert_eq!(
        again,
        vec![IssueOutcome::Duplicate; 3],
        "a batch delivered again after a restart issues nothing"
    );
    let waiting: Vec<_> = store
        .pending_tickets(limited.id)
        .await
        .expect("pending_tickets")
        .into_iter()
        .map(|ticket| ticket.ticket_id)
        .collect();
    assert_eq!(
        waiting,
        vec![pending.ticket_id],
        "the recorded pending ticket"
    );
    let failures = store.failures(Some(limited.id)).await.expect("failures");
    let kept: Vec<_> = failures
        .iter()
        .map(|failure| {
            (
                failure.ticket.ticket_id,
                failure.attempts,
                failure.is_open(),
            )
        })
        .collect();
    assert_eq!(
        kept,
        vec![(dead.ticket_id, 2, true)],
        "the open failure record: {failures:?}"
    );
    let failures = store.failures(Some(other.id)).await.expect("failures");
    assert!(
        matches!(failures.as_slice(), [failure] if !failure.is_open()),
        "the replayed failure record stays replayed: {failures:?}"
    );
    assert_eq!(
        store.sealed_epoch(limited.id).await.expect("sealed_epoch"),
        sealed.epoch,
        "the sealed epoch"
    );
    // The checks still hold over what was kept: user 1 is at the limit, an admission
    // of epoch 1 the seal did not count is superseded, the pending one it counted is
    // taken, and the cap of 5 has room for it and one more.
    let rest = [
        IssueTicket::new(limited.id, UserId(1), 3, 6).in_epoch(sealed.epoch),
        IssueTicket::new(limited.id, UserId(7), 1, 9).in_epoch(first.epoch),
        pending.clone(),
        IssueTicket::new(limited.id, UserId(5), 1, 7).in_epoch(sealed.epoch),
        IssueTicket::new(limited.id, UserId(6), 1, 8).in_epoch(sealed.epoch),
    ];
    let outcomes = store.issue_batch(&rest).await.expect("issue_batch");
    assert!(
        matches!(
            outcomes.as_slice(),
            [
                IssueOutcome::Duplicate,
                IssueOutcome::Superseded,
                IssueOutcome::Issued(_),
                IssueOutcome::Issued(_),
                IssueOutcome::OverCap
            ]
        ),
        "after a restart: over the per-user limit, superseded, the pending ticket, the \
         last coupon, one past the cap; got {outcomes:?}"
    );
    let newer = store
        .create_campaign(NewCampaign::new("durable-after", 1))
        .await
        .expect("create_campaign");
    assert!(
        newer.id != limited.id && newer.id != other.id,
        "a campaign created after a restart reused id {:?}",
        newer.id
    );
}

fn whole_seconds(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}
