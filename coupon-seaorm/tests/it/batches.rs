//! Batch semantics checked against the rows themselves, on SQLite and PostgreSQL.

use crate::support;

use coupon_core::{CouponStore, IssueOutcome, IssueTicket, NewCampaign, UserId};
use coupon_seaorm::SeaOrmStore;
use sea_orm::{ConnectionTrait, Statement};

async fn rows(store: &SeaOrmStore, table_filter: &str) -> i64 {
    let db = store.connection();
    let sql = format!("SELECT COUNT(*) FROM {table_filter}");
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("count query")
        .expect("a row");
    row.try_get_by_index(0).expect("a count")
}

/// 2,000 distinct tickets on cap 1,000, delivered twice more (at-least-once redelivery):
/// exactly 1,000 rows, `campaign.issued` = 1,000, outcomes say so each time.
async fn replayed_twice_stays_at_the_cap(store: SeaOrmStore) {
    let campaign = store
        .create_campaign(NewCampaign::new("replay", 1_000))
        .await
        .expect("campaign");
    let tickets: Vec<IssueTicket> = (1..=2_000)
        .map(|user| IssueTicket::new(campaign.id, UserId(user), 1, user))
        .collect();
    for (delivery, expected_issued) in [(1, 1_000), (2, 0), (3, 0)] {
        let mut issued = 0;
        let mut over = 0;
        let mut duplicate = 0;
        for batch in tickets.chunks(500) {
            for outcome in store.issue_batch(batch).await.expect("issue_batch") {
                match outcome {
                    IssueOutcome::Issued(_) => issued += 1,
                    IssueOutcome::OverCap => over += 1,
                    IssueOutcome::Duplicate => duplicate += 1,
                    IssueOutcome::UnknownCampaign | IssueOutcome::Superseded => {
                        panic!("{outcome:?}: the campaign exists, and no epoch was sealed")
                    }
                }
            }
        }
        assert_eq!(issued, expected_issued, "delivery {delivery}");
        if delivery == 1 {
            assert_eq!((over, duplicate), (1_000, 0));
        } else {
            // Stored tickets are duplicates; the never-stored half is still over the cap.
            assert_eq!((over, duplicate), (1_000, 1_000), "delivery {delivery}");
        }
    }
    let filter = format!("coupon WHERE campaign_id = {}", campaign.id);
    assert_eq!(rows(&store, &filter).await, 1_000);
    let filter = format!("campaign WHERE id = {} AND issued = 1000", campaign.id);
    assert_eq!(rows(&store, &filter).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_replayed_twice_stays_at_the_cap() {
    replayed_twice_stays_at_the_cap(support::sqlite_file().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replayed_twice_stays_at_the_cap() {
    replayed_twice_stays_at_the_cap(support::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_replayed_twice_stays_at_the_cap() {
    replayed_twice_stays_at_the_cap(support::mysql().await).await;
}

/// Per-user limits above 1 are kept by the database too: each user holds at most 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_per_user_limit_above_one() {
    let store = support::postgres().await;
    let campaign = store
        .create_campaign(NewCampaign::new("three each", 100).per_user_limit(3))
        .await
        .expect("campaign");
    // Five admissions each for two users: slots 1..=5, three of which the limit allows.
    let tickets: Vec<IssueTicket> = (0..10u64)
        .map(|i| IssueTicket::new(campaign.id, UserId(1 + i % 2), 1 + (i / 2) as u32, i + 1))
        .collect();
    let outcomes = store.issue_batch(&tickets).await.expect("issue_batch");
    let issued = outcomes
        .iter()
        .filter(|o| matches!(o, IssueOutcome::Issued(_)))
        .count();
    assert_eq!(issued, 6);
    let held = store
        .coupons_of(campaign.id, UserId(1))
        .await
        .expect("coupons_of");
    assert_eq!(held.len(), 3);
}
