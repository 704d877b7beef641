//! The SQL hand-off (`issue_queue`) on every backend: the queue conformance suite, group
//! commit, leases, disjoint batches for concurrent workers, and the whole pipeline.

use crate::support;
use coupon_core::AdmissionLedger;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use coupon_core::memory::MemoryCounter;
use coupon_core::{CampaignId, IssueQueue, IssueSource, IssueTicket, TicketId, UserId};
use coupon_seaorm::{SeaOrmStore, SqlIssueQueue, SqlIssueSource, SqlQueueConfig};
use coupon_testkit::pipeline;
use tokio::task::JoinSet;

/// The table's queue and source on `store`'s database.
fn queue_and_source(store: &SeaOrmStore) -> (Arc<SqlIssueQueue>, Arc<SqlIssueSource>) {
    let sql = SqlIssueQueue::new(store, SqlQueueConfig::default());
    (Arc::new(sql.clone()), Arc::new(sql.source()))
}

coupon_testkit::queue_scenarios!(sqlite, queue_and_source(&support::sqlite_file().await));
coupon_testkit::queue_scenarios!(postgres, queue_and_source(&support::postgres().await));
coupon_testkit::queue_scenarios!(mysql, queue_and_source(&support::mysql().await));

/// 2,000 concurrent publishes share far fewer commits, and every ticket is there once.
async fn concurrent_publishes_share_commits(store: SeaOrmStore) {
    let sql = SqlIssueQueue::new(&store, SqlQueueConfig::default());
    let mut tasks = JoinSet::new();
    for user in 1..=2_000u64 {
        let sql = sql.clone();
        tasks.spawn(async move {
            let ticket = IssueTicket::new(CampaignId(9), UserId(user), 1, user);
            sql.publish(&ticket).await.map(|()| ticket.ticket_id)
        });
    }
    let mut published = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        published.insert(joined.expect("task").expect("publish"));
    }
    let commits = sql.commits();
    assert!(
        commits <= 400,
        "2,000 publishes took {commits} commits: not grouped"
    );
    let source = sql.source();
    assert_eq!(source.lag().await.expect("lag"), Some(2_000));
    let mut seen = HashSet::new();
    while seen.len() < 2_000 {
        let batch = source
            .next_batch(500)
            .await
            .expect("next")
            .expect("a batch");
        for ticket in &batch.tickets {
            assert!(seen.insert(ticket.ticket_id), "delivered twice");
        }
        source.ack(batch).await.expect("ack");
    }
    assert_eq!(seen, published);
    assert_eq!(source.lag().await.expect("lag"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_publishes_share_commits() {
    concurrent_publishes_share_commits(support::sqlite_file().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_publishes_share_commits() {
    concurrent_publishes_share_commits(support::postgres().await).await;
}

/// A worker that dies holding a batch (its receipt never dropped: the process is gone)
/// leaves the batch to another worker once the lease ends, not before.
async fn a_dead_workers_batch_comes_back_after_its_lease(store: SeaOrmStore) {
    // Three seconds: MySQL's TIMESTAMP keeps whole seconds, so a lease may end up to one
    // second early there.
    let config = SqlQueueConfig::default().with_lease(Duration::from_secs(3));
    let sql = SqlIssueQueue::new(&store, config);
    for user in 1..=10u64 {
        sql.publish(&IssueTicket::new(CampaignId(3), UserId(user), 1, user))
            .await
            .expect("publish");
    }
    let dead = sql.source();
    let taken = dead.next_batch(100).await.expect("next").expect("a batch");
    assert_eq!(taken.len(), 10);
    std::mem::forget(taken);

    let other = sql.source();
    let early = tokio::time::timeout(Duration::from_millis(1_500), other.next_batch(100)).await;
    assert!(
        early.is_err(),
        "leased rows were handed out again before the lease ended"
    );
    let again = tokio::time::timeout(Duration::from_secs(10), other.next_batch(100))
        .await
        .expect("handed out again once the lease ended")
        .expect("next")
        .expect("a batch");
    let users: HashSet<u64> = again.tickets.iter().map(|t| t.user.get()).collect();
    assert_eq!(users, (1..=10).collect());
    other.ack(again).await.expect("ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_lease_ends() {
    a_dead_workers_batch_comes_back_after_its_lease(support::sqlite_file().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_lease_ends() {
    a_dead_workers_batch_comes_back_after_its_lease(support::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_lease_ends() {
    a_dead_workers_batch_comes_back_after_its_lease(support::mysql().await).await;
}

/// Four sources take batches at once from 4,000 rows: every ticket once, in all.
async fn concurrent_sources_take_disjoint_batches(store: SeaOrmStore) {
    let sql = SqlIssueQueue::new(&store, SqlQueueConfig::default());
    let tickets: Vec<IssueTicket> = (1..=4_000u64)
        .map(|user| IssueTicket::new(CampaignId(4), UserId(user), 1, user))
        .collect();
    let mut publishing = JoinSet::new();
    for chunk in tickets.chunks(100) {
        let (sql, chunk) = (sql.clone(), chunk.to_vec());
        publishing.spawn(async move {
            for ticket in &chunk {
                sql.publish(ticket).await.expect("publish");
            }
        });
    }
    while publishing.join_next().await.is_some() {}

    let mut workers = JoinSet::new();
    for _ in 0..4 {
        let source = sql.source();
        workers.spawn(async move {
            let mut seen = Vec::new();
            loop {
                let next =
                    tokio::time::timeout(Duration::from_millis(500), source.next_batch(97)).await;
                let Ok(next) = next else { return seen };
                let batch = next.expect("next").expect("a batch");
                seen.extend(batch.tickets.iter().map(|t| t.ticket_id));
                source.ack(batch).await.expect("ack");
            }
        });
    }
    let mut all: Vec<TicketId> = Vec::new();
    while let Some(joined) = workers.join_next().await {
        all.extend(joined.expect("worker"));
    }
    let distinct: HashSet<TicketId> = all.iter().copied().collect();
    assert_eq!(
        (all.len(), distinct.len()),
        (4_000, 4_000),
        "each ticket once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_sources_take_disjoint_batches() {
    concurrent_sources_take_disjoint_batches(support::sqlite_file().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_sources_take_disjoint_batches() {
    concurrent_sources_take_disjoint_batches(support::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_sources_take_disjoint_batches() {
    concurrent_sources_take_disjoint_batches(support::mysql().await).await;
}

/// The whole pipeline on one database: 1,000 applicants on cap 100 through the SQL
/// queue into the SQL store.
async fn stampede(store: SeaOrmStore) {
    let sql = SqlIssueQueue::new(&store, SqlQueueConfig::default());
    pipeline::stampede_issues_exactly_cap(pipeline::Pipeline {
        counter: Arc::new(MemoryCounter::new()),
        queue: Arc::new(sql.clone()),
        source: Arc::new(sql.source()),
        store: Arc::new(store),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_pipeline_issues_exactly_cap() {
    stampede(support::sqlite_file().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_pipeline_issues_exactly_cap() {
    stampede(support::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_pipeline_issues_exactly_cap() {
    stampede(support::mysql().await).await;
}

/// A row that is not a readable ticket is parked, never handed out; the tickets around
/// it are.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_row_is_parked() {
    use sea_orm::ConnectionTrait;
    let store = support::sqlite_file().await;
    let sql = SqlIssueQueue::new(&store, SqlQueueConfig::default());
    sql.publish(&IssueTicket::new(CampaignId(5), UserId(1), 1, 1))
        .await
        .expect("publish");
    store
        .connection()
        .execute_unprepared(
            "INSERT INTO issue_queue (ticket_id, campaign_id, user_id, ticket, enqueued_at, available_at, deliveries) \
             VALUES ('junk', 5, 2, 'not json', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 0)",
        )
        .await
        .expect("insert junk");
    sql.publish(&IssueTicket::new(CampaignId(5), UserId(3), 1, 3))
        .await
        .expect("publish");
    let source = sql.source();
    let mut users = Vec::new();
    while users.len() < 2 {
        let batch = source.next_batch(10).await.expect("next").expect("a batch");
        users.extend(batch.tickets.iter().map(|t| t.user.get()));
        source.ack(batch).await.expect("ack");
    }
    assert_eq!(users, vec![1, 3]);
    assert_eq!(
        source.lag().await.expect("lag"),
        Some(0),
        "the junk is parked"
    );
    let parked = store
        .connection()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT dead_reason FROM issue_queue WHERE ticket_id = 'junk'",
        ))
        .await
        .expect("query")
        .expect("the row");
    let reason: String = parked.try_get_by_index(0).expect("a reason");
    assert!(reason.starts_with("not a JSON object"), "{reason}");
}

/// After a seal, a publish of a ticket of an older epoch whose slot the seal did not
/// count is refused (definitely: its applicant hears no yes), while the others of its
/// group commit; a counted one and one of the sealed epoch are taken. A seal counts the
/// tickets waiting in the table. Issuing at commit (the embedded default), the same:
/// the superseded ticket is no coupon, the others are.
async fn superseded_tickets_are_refused_at_publish(store: SeaOrmStore, config: SqlQueueConfig) {
    use coupon_core::{CouponStore, Error, HeldSlot, NewCampaign};
    let campaign = store
        .create_campaign(NewCampaign::new("fenced", 10))
        .await
        .expect("campaign");
    let issuing = config.issue_at_commit;
    let sql = SqlIssueQueue::new(&store, config);
    let ticket = |user: u64, epoch: u64| {
        IssueTicket::new(campaign.id, UserId(user), 1, user).in_epoch(epoch)
    };
    store.seal_epoch(campaign.id, 0, &[]).await.expect("seal 1");
    sql.publish(&ticket(9, 1))
        .await
        .expect("a ticket of epoch 1");
    let counted = HeldSlot {
        user: UserId(1),
        slot: 1,
        rank: 1,
        admitted_at: None,
        epoch: 0,
    };
    let sealed = store
        .seal_epoch(campaign.id, 1, &[counted])
        .await
        .expect("seal 2");
    let users: HashSet<u64> = sealed.slots.iter().map(|slot| slot.user.get()).collect();
    assert_eq!(users, HashSet::from([1, 9]), "the queued ticket is counted");

    // Published together: one group commit.
    let tickets = [ticket(1, 1), ticket(2, 1), ticket(3, 2), ticket(9, 1)];
    let (counted, superseded, current, queued_before) = tokio::join!(
        sql.publish(&tickets[0]),
        sql.publish(&tickets[1]),
        sql.publish(&tickets[2]),
        sql.publish(&tickets[3]),
    );
    counted.expect("counted by the seal");
    current.expect("of the sealed epoch");
    queued_before.expect("its slot was waiting in the table when the seal ran");
    match superseded {
        Err(Error::PublishRefused { source, .. }) => {
            assert!(source.to_string().contains("superseded"), "{source}")
        }
        other => panic!("a superseded ticket was not refused: {other:?}"),
    }
    if issuing {
        let mut holders = Vec::new();
        for user in [1, 2, 3, 9] {
            let coupons = store
                .coupons_of(campaign.id, UserId(user))
                .await
                .expect("coupons");
            holders.extend(coupons.iter().map(|coupon| coupon.user.get()));
        }
        assert_eq!(
            holders,
            [1, 3, 9],
            "issued at commit, all but the superseded"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_refuses_superseded_tickets_at_publish() {
    superseded_tickets_are_refused_at_publish(support::sqlite_file().await, Default::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_issuing_at_commit_refuses_superseded_tickets_at_publish() {
    let config = SqlQueueConfig::default().with_issue_at_commit(true);
    superseded_tickets_are_refused_at_publish(support::sqlite_file().await, config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_refuses_superseded_tickets_at_publish() {
    superseded_tickets_are_refused_at_publish(support::postgres().await, Default::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_refuses_superseded_tickets_at_publish() {
    superseded_tickets_are_refused_at_publish(support::mysql().await, Default::default()).await;
}
