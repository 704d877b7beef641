//! The worker through database faults, on a PostgreSQL of the test's own: an outage of
//! a minute drops nothing; a ticket the store refuses for good is dead-lettered alone.
//! The counter lease through a session the database ended.

use crate::support;
use coupon_core::{AdmissionLedger, FailureLedger};

#[path = "outage/keeper.rs"]
mod keeper;
#[path = "outage/lease.rs"]
mod lease;

use std::sync::Arc;
use std::time::Duration;

use coupon_core::memory::MemoryQueue;
use coupon_core::{
    CouponStore, IssueQueue, IssueTicket, IssueWorker, NewCampaign, UserId, WorkerReport,
};
use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig};
use coupon_testkit::services::PrivateService;
use coupon_testkit::wait_for_issued;

async fn publish(queue: &MemoryQueue, tickets: &[IssueTicket]) {
    for ticket in tickets {
        queue.publish(ticket).await.expect("publish");
    }
}

/// PostgreSQL is killed with 2,000 tickets accepted, half of them not yet persisted, and
/// stays away for 60 s while 1,000 more arrive. The worker runs on its defaults. When
/// the database is back, all 3,000 are persisted, none twice, none dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minute_without_the_database_drops_no_ticket() {
    let pg = PrivateService::start("postgres");
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port());
    let store = Arc::new(
        SeaOrmStore::connect(SeaOrmStoreConfig::new(&url))
            .await
            .expect("connect"),
    );
    let campaign = store
        .create_campaign(NewCampaign::new("outage", 5_000))
        .await
        .expect("campaign");
    let tickets: Vec<IssueTicket> = (1..=3_000)
        .map(|user| IssueTicket::new(campaign.id, UserId(user), 1, user))
        .collect();
    let queue = Arc::new(MemoryQueue::new(10_000));
    publish(&queue, &tickets[..1_000]).await;

    let worker = IssueWorker::new(queue.clone(), store.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        worker
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });
    assert_eq!(
        wait_for_issued(store.as_ref(), campaign.id, 1_000, Duration::from_secs(30)).await,
        1_000
    );

    publish(&queue, &tickets[1_000..2_000]).await;
    pg.kill();
    publish(&queue, &tickets[2_000..]).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    pg.restart();

    let issued = wait_for_issued(store.as_ref(), campaign.id, 3_000, Duration::from_secs(60)).await;
    let _ = stop.send(());
    let report: WorkerReport = running.await.expect("worker task").expect("worker");
    assert_eq!(issued, 3_000, "every accepted ticket persisted");
    assert_eq!(report.dead_lettered, 0, "nothing dead-lettered: {report:?}");
    assert!(report.retries > 0, "the worker did wait: {report:?}");
    assert_eq!(
        store.holders(campaign.id).await.expect("holders").len(),
        3_000
    );
    assert!(
        store
            .failures(Some(campaign.id))
            .await
            .expect("failures")
            .is_empty(),
        "no failure recorded"
    );
}

/// One ticket among 500 that no coupon row can hold (a rank past a signed 64-bit
/// column): the batch is split until that ticket is found; 499 coupons, one durable
/// failure record naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_ticket_in_a_batch_of_500_is_dead_lettered_alone() {
    let store = Arc::new(support::postgres().await);
    let campaign = store
        .create_campaign(NewCampaign::new("poison", 1_000))
        .await
        .expect("campaign");
    let mut tickets: Vec<IssueTicket> = (1..=500)
        .map(|user| IssueTicket::new(campaign.id, UserId(user), 1, user))
        .collect();
    tickets[321] = IssueTicket::new(campaign.id, UserId(322), 1, u64::MAX);
    let queue = Arc::new(MemoryQueue::new(1_000));
    publish(&queue, &tickets).await;
    queue.close();

    let report = IssueWorker::new(queue, store.clone())
        .run(std::future::pending())
        .await
        .expect("worker");
    assert_eq!(
        (report.batches, report.issued, report.dead_lettered),
        (1, 499, 1)
    );
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 499);
    let failures = store.failures(Some(campaign.id)).await.expect("failures");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].ticket, tickets[321]);
    assert!(failures[0].error.contains("rank"), "{}", failures[0].error);
    assert!(
        store
            .coupons_of(campaign.id, UserId(322))
            .await
            .expect("coupons_of")
            .is_empty()
    );
}

/// Commits that land late, across a counter that lost its memory: commits wait for a
/// standby that does not exist (`synchronous_standby_names`) while three applicants'
/// tickets are being queued (they hear an error: nothing was promised); the process
/// dies, and the rebuild of the next one waits for those commits, whatever the time,
/// admitting no one meanwhile. Once they land, the rebuild counts them, the counter
/// admits exactly the slots left, every applicant told yes holds a coupon, and the
/// store refuses nothing as over the cap. (Before epochs, a rebuild waited a grace
/// period, counted a store without the late tickets and gave their slots away.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_that_land_late_are_counted_by_the_rebuild_they_hold_up() {
    use coupon_core::memory::MemoryCounter;
    use coupon_core::{
        ApplyOutcome, CampaignId, CouponService, Error, IssuerConfig, ServiceConfig, SettlerConfig,
    };
    use coupon_seaorm::{SqlIssueQueue, SqlQueueConfig};
    use sea_orm::ConnectionTrait;

    let pg = PrivateService::start("postgres");
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port());
    let store = Arc::new(
        SeaOrmStore::connect(SeaOrmStoreConfig::new(&url))
            .await
            .expect("store"),
    );
    let queue = Arc::new(SqlIssueQueue::new(&store, SqlQueueConfig::default()));
    let config = ServiceConfig::default()
        .with_issuer(IssuerConfig::default().with_publish_timeout(Duration::from_secs(1)))
        .with_settler(SettlerConfig::default().with_grace(Duration::from_millis(100)));
    let service = |counter: MemoryCounter| {
        CouponService::with_config(
            Arc::new(counter),
            queue.clone(),
            store.clone(),
            config.clone(),
        )
    };
    let first = service(MemoryCounter::new());
    let campaign = first
        .create_campaign(NewCampaign::new("late", 10))
        .await
        .expect("campaign");
    let mut told_yes = Vec::new();
    for user in 1..=5 {
        let outcome = first.apply(campaign.id, UserId(user)).await.expect("apply");
        assert!(
            matches!(outcome, ApplyOutcome::Accepted { .. }),
            "{outcome:?}"
        );
        told_yes.push(user);
    }

    let admin = sea_orm::Database::connect(&url).await.expect("admin");
    let standby = |setting: &'static str| {
        let admin = admin.clone();
        async move {
            admin.execute_unprepared(setting).await.expect(setting);
            admin
                .execute_unprepared("SELECT pg_reload_conf()")
                .await
                .expect("reload");
        }
    };
    admin
        .execute_unprepared("CREATE TABLE probe (n INT)")
        .await
        .expect("probe table");
    standby("ALTER SYSTEM SET synchronous_standby_names = 'nowhere'").await;
    // The setting reaches the backends asynchronously: wait until a commit waits.
    for attempt in 1.. {
        let probe = admin.execute_unprepared("INSERT INTO probe VALUES (1)");
        if tokio::time::timeout(Duration::from_millis(300), probe)
            .await
            .is_err()
        {
            break;
        }
        assert!(
            attempt < 100,
            "commits never started waiting for the standby"
        );
    }
    let (six, seven, eight) = tokio::join!(
        first.apply(campaign.id, UserId(6)),
        first.apply(campaign.id, UserId(7)),
        first.apply(campaign.id, UserId(8)),
    );
    for stalled in [six, seven, eight] {
        let error = stalled.expect_err("a commit that does not land is not a yes");
        assert!(error.is_retryable(), "{error:?}");
    }
    drop(first);

    // The next process: its counter knows nothing, and its rebuild waits for the commits.
    let counter = Arc::new(MemoryCounter::new());
    let second = Arc::new(CouponService::with_config(
        counter.clone(),
        queue.clone(),
        store.clone(),
        config.clone(),
    ));
    let rebuilding = {
        let second = second.clone();
        tokio::spawn(async move { second.rebuild_counters().await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !rebuilding.is_finished(),
        "sealed before the late commits landed"
    );
    let meanwhile = second.apply(campaign.id, UserId(100)).await;
    assert!(
        matches!(meanwhile, Err(Error::NotReady { .. })),
        "admitted during the rebuild: {meanwhile:?}"
    );

    standby("ALTER SYSTEM RESET synchronous_standby_names").await;
    let built = tokio::time::timeout(Duration::from_secs(30), rebuilding)
        .await
        .expect("rebuilt once the commits landed")
        .expect("task")
        .expect("rebuild");
    assert_eq!(built, 1);
    let status = second.status(campaign.id).await.expect("status");
    assert_eq!(status.admitted, 8, "the five and the three late tickets");

    let mut late_yes = Vec::new();
    for user in 101..=112 {
        match second.apply(campaign.id, UserId(user)).await {
            Ok(ApplyOutcome::Accepted { .. }) => late_yes.push(user),
            Ok(ApplyOutcome::SoldOut) => {}
            other => panic!("user {user}: {other:?}"),
        }
    }
    assert_eq!(late_yes, [101, 102], "exactly the two slots left");
    told_yes.extend(late_yes);

    // The stalled applicants' tickets may never have reached the table (a publish that
    // gave up leaves its ticket out of the commit), but they were recorded as pending:
    // the settler rolls them forward.
    let worker = IssueWorker::new(Arc::new(queue.source()), store.clone()).spawn();
    second.settle(Some(campaign.id)).await.expect("settle");
    let issued = wait_for_issued(store.as_ref(), campaign.id, 10, Duration::from_secs(30)).await;
    let report = worker.stop().await.expect("worker");
    let holders = store.holders(campaign.id).await.expect("holders");
    assert_eq!(
        issued, 10,
        "{report:?}, holders {holders:?}, told yes {told_yes:?}"
    );
    assert_eq!((report.over_cap, report.superseded), (0, 0), "{report:?}");
    for user in told_yes {
        let coupons = store
            .coupons_of(CampaignId(campaign.id.get()), UserId(user))
            .await
            .expect("coupons");
        assert_eq!(coupons.len(), 1, "user {user} was told yes");
    }
    assert!(
        store
            .failures(Some(campaign.id))
            .await
            .expect("failures")
            .is_empty()
    );
}

/// A process that stalls inside a transaction of the store (a pause, a partition),
/// holding a campaign's epoch row as a publish does, holds up the seal of a counter
/// rebuild only until PostgreSQL ends its idle transaction: seconds, not for ever (the
/// session, alive to the database, kept its lock as long as it lived).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_transaction_holds_up_a_seal_for_seconds_not_for_ever() {
    use sea_orm::{ConnectionTrait, TransactionTrait};

    let url = support::fresh_database(&coupon_testkit::service_url("DATABASE_URL")).await;
    let connect = || SeaOrmStore::connect(SeaOrmStoreConfig::new(url.clone()));
    let (stalled, sealing) = (
        connect().await.expect("one"),
        connect().await.expect("other"),
    );
    let campaign = sealing
        .create_campaign(NewCampaign::new("stall", 10))
        .await
        .expect("campaign");
    let sealed = sealing.seal_epoch(campaign.id, 0, &[]).await.expect("seal");

    let txn = stalled.connection().begin().await.expect("begin");
    txn.execute_unprepared(&format!(
        "SELECT epoch FROM counter_epoch WHERE campaign_id = {} FOR SHARE",
        campaign.id.get()
    ))
    .await
    .expect("the epoch row, shared");
    // The stalled process does nothing more: it keeps `txn` open and says nothing.
    let started = std::time::Instant::now();
    // As a rebuild does: a seal that gave up (the store's operation timeout) starts over.
    let next = loop {
        match sealing.seal_epoch(campaign.id, sealed.epoch, &[]).await {
            Ok(next) => break next,
            Err(error) if error.class() != coupon_core::ErrorClass::Permanent => {
                assert!(
                    started.elapsed() < Duration::from_secs(40),
                    "the seal waited past 40 s for a stalled transaction: {error}"
                );
            }
            Err(error) => panic!("seal: {error}"),
        }
    };
    let waited = started.elapsed();
    assert_eq!(next.epoch, sealed.epoch + 1);
    assert!(
        waited >= Duration::from_secs(5),
        "the seal did wait for the lock: {waited:?}"
    );
    drop(txn);
}
