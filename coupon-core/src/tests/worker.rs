use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::unavailable;
use crate::{
    Batch, CampaignId, Coupon, Error, IssueOutcome, IssueTicket, IssueWorker, MockCouponStore,
    MockIssueSource, UserId, WorkerConfig,
};

fn tickets(n: u64) -> Vec<IssueTicket> {
    (1..=n)
        .map(|user| IssueTicket::new(CampaignId(1), UserId(user), 1, user))
        .collect()
}

fn issued_all(tickets: &[IssueTicket]) -> Vec<IssueOutcome> {
    tickets
        .iter()
        .map(|t| IssueOutcome::Issued(Coupon::from_ticket(t)))
        .collect()
}

/// A source that hands out `batches` once each, then reports itself closed.
fn source_of(batches: Vec<Vec<IssueTicket>>) -> MockIssueSource {
    let queue = Mutex::new(VecDeque::from(batches));
    let mut source = MockIssueSource::new();
    source.expect_next_batch().returning(move |_| {
        let next = queue.lock().unwrap().pop_front();
        Ok(next.map(|tickets| Batch::new(tickets, ())))
    });
    source.expect_keep_alive().returning(|| Ok(()));
    source
}

fn worker(source: MockIssueSource, store: MockCouponStore) -> IssueWorker {
    let config = WorkerConfig::default()
        .with_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .with_keep_alive_interval(Duration::from_millis(50));
    IssueWorker::with_config(Arc::new(source), Arc::new(store), config)
}

fn broken() -> Error {
    Error::backend("mock", "constraint broken", None)
}

#[tokio::test(start_paused = true)]
async fn retryable_store_error_is_retried_then_acked_once() {
    let mut source = source_of(vec![tickets(3)]);
    source.expect_ack().times(1).returning(|_| Ok(()));
    source.expect_dead_letter().times(0);
    let calls = AtomicU32::new(0);
    let mut store = MockCouponStore::new();
    store.expect_issue_batch().times(3).returning(move |batch| {
        if calls.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(unavailable())
        } else {
            Ok(issued_all(batch))
        }
    });
    store.expect_record_failure().times(0);

    let report = worker(source, store)
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(
        (
            report.batches,
            report.issued,
            report.dead_lettered,
            report.retries
        ),
        (1, 3, 0, 2)
    );
}

/// An outage far longer than any retry budget: every attempt fails for ten minutes of
/// (virtual) time, the source is kept alive meanwhile, and nothing is dead-lettered.
#[tokio::test(start_paused = true)]
async fn a_long_outage_drops_nothing_and_keeps_the_source_alive() {
    let mut source = MockIssueSource::new();
    let kept_alive = Arc::new(AtomicU32::new(0));
    let counted = kept_alive.clone();
    let batches = Mutex::new(VecDeque::from(vec![tickets(4)]));
    source.expect_next_batch().returning(move |_| {
        let next = batches.lock().unwrap().pop_front();
        Ok(next.map(|tickets| Batch::new(tickets, ())))
    });
    source.expect_keep_alive().returning(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    source.expect_ack().times(1).returning(|_| Ok(()));
    source.expect_dead_letter().times(0);
    let back_at = tokio::time::Instant::now() + Duration::from_secs(600);
    let mut store = MockCouponStore::new();
    store.expect_issue_batch().returning(move |batch| {
        if tokio::time::Instant::now() < back_at {
            Err(unavailable())
        } else {
            Ok(issued_all(batch))
        }
    });
    store.expect_record_failure().times(0);

    let report = worker(source, store)
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!((report.issued, report.dead_lettered), (4, 0));
    assert!(
        report.retries > 100,
        "retried all along: {}",
        report.retries
    );
    // One keep-alive per 50 ms of waiting, give or take the backoff's rounding.
    assert!(
        kept_alive.load(Ordering::SeqCst) >= 10_000,
        "kept alive {} times in 600 s",
        kept_alive.load(Ordering::SeqCst)
    );
}

/// A permanent error is about one ticket of eight: halving finds it, and only it is
/// recorded and dead-lettered; the other seven are persisted.
#[tokio::test(start_paused = true)]
async fn a_permanent_error_splits_the_batch_down_to_the_culprit() {
    let mut source = source_of(vec![tickets(8)]);
    let dead = Arc::new(Mutex::new(Vec::new()));
    let sink = dead.clone();
    source
        .expect_dead_letter()
        .times(1)
        .returning(move |ticket, reason| {
            sink.lock().unwrap().push((ticket.user, reason.to_owned()));
            Ok(())
        });
    source.expect_ack().times(1).returning(|batch| {
        assert_eq!(batch.len(), 8, "the whole batch is acked");
        Ok(())
    });
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = sizes.clone();
    let mut store = MockCouponStore::new();
    store.expect_issue_batch().returning(move |batch| {
        seen.lock().unwrap().push(batch.len());
        if batch.iter().any(|t| t.user == UserId(6)) {
            Err(broken())
        } else {
            Ok(issued_all(batch))
        }
    });
    store
        .expect_record_failure()
        .times(1)
        .withf(|failure| {
            failure.ticket.user == UserId(6) && failure.error.contains("constraint broken")
        })
        .returning(|_| Ok(()));

    let report = worker(source, store)
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!((report.issued, report.dead_lettered), (7, 1));
    // 8 fails -> 4 (1..=4) ok, 4 (5..=8) fails -> 2 (5, 6) fails -> 1 (5) ok, 1 (6)
    // fails -> 2 (7, 8) ok.
    assert_eq!(*sizes.lock().unwrap(), vec![8, 4, 4, 2, 1, 1, 2]);
    assert_eq!(dead.lock().unwrap()[0].0, UserId(6));
}

#[tokio::test(start_paused = true)]
async fn unknown_campaign_ticket_is_dead_lettered_alone() {
    let mut source = source_of(vec![tickets(3)]);
    source
        .expect_dead_letter()
        .times(1)
        .withf(|ticket, reason| ticket.user == UserId(2) && reason == "unknown campaign")
        .returning(|_, _| Ok(()));
    source.expect_ack().times(1).returning(|_| Ok(()));
    let mut store = MockCouponStore::new();
    store.expect_issue_batch().times(1).returning(|batch| {
        let mut outcomes = issued_all(batch);
        outcomes[1] = IssueOutcome::UnknownCampaign;
        Ok(outcomes)
    });
    store.expect_record_failure().times(1).returning(|_| Ok(()));

    let report = worker(source, store)
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!((report.issued, report.dead_lettered), (2, 1));
}

/// The failure record must be durable before the ticket is acked: recording is retried
/// until it succeeds, and so is the dead-letter mirror.
#[tokio::test(start_paused = true)]
async fn failure_records_and_dead_letters_are_retried_before_the_ack() {
    let mut source = source_of(vec![tickets(1)]);
    let mirrored = AtomicU32::new(0);
    source.expect_dead_letter().times(2).returning(move |_, _| {
        if mirrored.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(unavailable())
        } else {
            Ok(())
        }
    });
    source.expect_ack().times(1).returning(|_| Ok(()));
    let mut store = MockCouponStore::new();
    store
        .expect_issue_batch()
        .times(1)
        .returning(|_| Err(broken()));
    let recorded = AtomicU32::new(0);
    store.expect_record_failure().times(3).returning(move |_| {
        if recorded.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(unavailable())
        } else {
            Ok(())
        }
    });

    let report = worker(source, store)
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!((report.dead_lettered, report.retries), (1, 3));
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_an_outage_leaves_the_batch_unacked() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut source = source_of(vec![tickets(2)]);
    source.expect_ack().times(0);
    source.expect_dead_letter().times(0);
    let mut store = MockCouponStore::new();
    let stop = Mutex::new(Some(stop));
    store.expect_issue_batch().returning(move |_| {
        if let Some(stop) = stop.lock().unwrap().take() {
            stop.send(()).unwrap();
        }
        Err(unavailable())
    });

    let shutdown = async move {
        let _ = stopped.await;
    };
    let report = worker(source, store).run(shutdown).await.unwrap();
    assert_eq!(report.batches, 0, "nothing acked");
}

#[tokio::test(start_paused = true)]
async fn shutdown_mid_batch_finishes_and_acks_it_and_takes_no_more() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stop = Mutex::new(Some(stop));
    let mut source = MockIssueSource::new();
    source
        .expect_next_batch()
        .times(1)
        .returning(|_| Ok(Some(Batch::new(tickets(4), ()))));
    source.expect_ack().times(1).returning(|batch| {
        assert_eq!(batch.len(), 4);
        Ok(())
    });
    let mut store = MockCouponStore::new();
    store.expect_issue_batch().times(1).returning(move |batch| {
        // Shutdown arrives while the batch is being persisted.
        if let Some(stop) = stop.lock().unwrap().take() {
            stop.send(()).unwrap();
        }
        Ok(issued_all(batch))
    });

    let shutdown = async move {
        let _ = stopped.await;
    };
    let report = worker(source, store).run(shutdown).await.unwrap();
    assert_eq!((report.batches, report.issued), (1, 4));
}

#[tokio::test(start_paused = true)]
async fn over_cap_tickets_are_recorded_not_dropped_silently() {
    let mut source = source_of(vec![tickets(2)]);
    source.expect_ack().times(1).returning(|_| Ok(()));
    source.expect_dead_letter().times(0);
    let mut store = MockCouponStore::new();
    store.expect_issue_batch().times(1).returning(|batch| {
        let mut outcomes = issued_all(batch);
        outcomes[1] = IssueOutcome::OverCap;
        Ok(outcomes)
    });
    store
        .expect_record_failure()
        .times(1)
        .withf(|failure| failure.ticket.user == UserId(2))
        .returning(|_| Ok(()));

    let worker = worker(source, store);
    let totals = worker.totals();
    let report = worker.run(std::future::pending()).await.unwrap();
    assert_eq!((report.issued, report.over_cap), (1, 1));
    // Counted as it happens, for metrics: a promise broken.
    assert_eq!(totals.report(), report);
}
