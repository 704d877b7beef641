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
        .map(|user| IssueTicket::new(CampaignId(1), UserId(user), user))
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
    source
}

fn worker(source: MockIssueSource, store: MockCouponStore, max_attempts: u32) -> IssueWorker {
    let config = WorkerConfig::default()
        .with_max_attempts(max_attempts)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(100));
    IssueWorker::with_config(Arc::new(source), Arc::new(store), config)
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

    let report = worker(source, store, 5)
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(
        (report.batches, report.issued, report.dead_lettered),
        (1, 3, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_error_records_dead_letters_and_acks() {
    let mut source = source_of(vec![tickets(2)]);
    let dead = Arc::new(Mutex::new(Vec::new()));
    let sink = dead.clone();
    source
        .expect_dead_letter()
        .times(2)
        .returning(move |ticket, reason| {
            sink.lock().unwrap().push((ticket.user, reason.to_owned()));
            Ok(())
        });
    source.expect_ack().times(1).returning(|_| Ok(()));
    let mut store = MockCouponStore::new();
    store
        .expect_issue_batch()
        .times(1)
        .returning(|_| Err(Error::backend("mock", "constraint broken", None)));
    store
        .expect_record_failure()
        .times(2)
        .withf(|failure| failure.attempts == 1 && failure.error.contains("constraint broken"))
        .returning(|_| Ok(()));

    let report = worker(source, store, 5)
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!((report.issued, report.dead_lettered), (0, 2));
    let dead = dead.lock().unwrap();
    assert_eq!(
        dead.iter().map(|(user, _)| *user).collect::<Vec<_>>(),
        vec![UserId(1), UserId(2)]
    );
}

#[tokio::test(start_paused = true)]
async fn spent_retry_budget_dead_letters_with_the_attempt_count() {
    let mut source = source_of(vec![tickets(1)]);
    source
        .expect_dead_letter()
        .times(1)
        .returning(|_, _| Ok(()));
    source.expect_ack().times(1).returning(|_| Ok(()));
    let mut store = MockCouponStore::new();
    store
        .expect_issue_batch()
        .times(3)
        .returning(|_| Err(unavailable()));
    store
        .expect_record_failure()
        .times(1)
        .withf(|failure| failure.attempts == 3)
        .returning(|_| Ok(()));

    let report = worker(source, store, 3)
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.dead_lettered, 1);
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

    let report = worker(source, store, 3)
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!((report.issued, report.dead_lettered), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn failed_dead_letter_leaves_the_batch_unacked() {
    let mut source = MockIssueSource::new();
    source
        .expect_dead_letter()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    source.expect_ack().times(0);
    let mut store = MockCouponStore::new();
    store
        .expect_issue_batch()
        .times(1)
        .returning(|_| Err(Error::backend("mock", "broken", None)));
    store.expect_record_failure().times(1).returning(|_| Ok(()));

    let worker = worker(source, store, 1);
    let error = worker
        .process(Batch::new(tickets(2), ()))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }));
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
    let report = worker(source, store, 3).run(shutdown).await.unwrap();
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

    let report = worker(source, store, 3)
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!((report.issued, report.over_cap), (1, 1));
}
