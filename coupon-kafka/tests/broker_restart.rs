//! The broker killed with kill -9 and restarted on the same storage mid-stream, on a
//! tansu of the test's own (scripts/services.sh start-one kafka).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use coupon_core::{IssueQueue, IssueTicket, IssueWorker, WorkerConfig};
use coupon_kafka::{KafkaIssueQueue, KafkaIssueSource};
use coupon_testkit::services::PrivateService;
use tokio::task::JoinSet;

/// Publishes each ticket once; returns the ones whose publish failed.
async fn publish_each(queue: &Arc<KafkaIssueQueue>, tickets: &[IssueTicket]) -> Vec<IssueTicket> {
    let mut tasks = JoinSet::new();
    for ticket in tickets {
        let (queue, ticket) = (queue.clone(), ticket.clone());
        tasks.spawn(async move { (queue.publish(&ticket).await, ticket) });
    }
    let mut failed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (result, ticket) = joined.expect("publish task");
        if let Err(error) = result {
            assert!(
                error.is_retryable(),
                "a broker outage must be retryable: {error:?}"
            );
            failed.push(ticket);
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_killed_and_restarted_mid_stream_loses_and_duplicates_nothing() {
    let broker = PrivateService::start("kafka");
    let brokers = format!("127.0.0.1:{}", broker.port());
    let config = support::config_on(&brokers, 3).with_delivery_timeout(Duration::from_secs(3));
    let (store, campaign) = support::store_with_campaign(2_000).await;
    let queue = Arc::new(
        KafkaIssueQueue::connect(config.clone())
            .await
            .expect("producer"),
    );
    let source = KafkaIssueSource::connect(config).await.expect("consumer");
    let running = tokio::spawn({
        let worker = IssueWorker::with_config(
            Arc::new(source),
            store.clone(),
            WorkerConfig::default()
                .with_batch_size(200)
                .with_backoff(Duration::from_millis(100), Duration::from_secs(1)),
        );
        async move { worker.run(std::future::pending()).await }
    });

    let tickets = support::tickets(campaign, 2_000);
    assert!(publish_each(&queue, &tickets[..800]).await.is_empty());

    broker.kill();
    let during = publish_each(&queue, &tickets[800..1_000]).await;
    assert!(
        !during.is_empty(),
        "publishing with the broker down cannot all succeed"
    );

    broker.restart();
    // The issuer would have answered these callers with a retryable error; they retry
    // with the same ticket, which the store turns into one coupon at most.
    let mut pending: Vec<IssueTicket> = during
        .into_iter()
        .chain(tickets[1_000..].to_vec())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} tickets still unpublished",
            pending.len()
        );
        pending = publish_each(&queue, &pending).await;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    support::wait_for(store.as_ref(), campaign, 2_000).await;
    running.abort();
    support::assert_exactly(store.as_ref(), campaign, 2_000).await;
}
