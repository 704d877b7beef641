//! Kafka between the issuer side and a worker persisting into SQLite, on the harness
//! broker; and the pipeline scenario on the shared deployment: Redis admits, Kafka hands
//! off, PostgreSQL persists.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use coupon_core::{IssueWorker, WorkerConfig};
use coupon_kafka::{KafkaIssueQueue, KafkaIssueSource, codec};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn worker(source: KafkaIssueSource, store: Arc<coupon_seaorm::SeaOrmStore>) -> IssueWorker {
    IssueWorker::with_config(
        Arc::new(source),
        store,
        WorkerConfig::default().with_batch_size(500),
    )
}

/// 10,000 tickets published -> a worker -> exactly 10,000 coupons.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_tickets_become_ten_thousand_coupons() {
    let config = support::config(3);
    let (store, campaign) = support::store_with_campaign(10_000).await;
    let queue = Arc::new(
        KafkaIssueQueue::connect(config.clone())
            .await
            .expect("producer"),
    );
    let source = KafkaIssueSource::connect(config).await.expect("consumer");
    let running = tokio::spawn({
        let worker = worker(source, store.clone());
        async move { worker.run(std::future::pending()).await }
    });

    support::publish_all(queue, &support::tickets(campaign, 10_000)).await;
    support::wait_for(store.as_ref(), campaign, 10_000).await;
    running.abort();
    support::assert_exactly(store.as_ref(), campaign, 10_000).await;
}

/// A worker aborted mid-stream (its batch maybe persisted, maybe not, not committed);
/// a new worker in the same group finishes: every ticket persisted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_killed_mid_stream_loses_and_duplicates_nothing() {
    let config = support::config(3);
    let (store, campaign) = support::store_with_campaign(5_000).await;
    let queue = Arc::new(
        KafkaIssueQueue::connect(config.clone())
            .await
            .expect("producer"),
    );
    support::publish_all(queue, &support::tickets(campaign, 5_000)).await;

    let first = KafkaIssueSource::connect(config.clone())
        .await
        .expect("consumer");
    let killed = tokio::spawn({
        let worker = IssueWorker::with_config(
            Arc::new(first),
            store.clone(),
            WorkerConfig::default().with_batch_size(100),
        );
        async move { worker.run(std::future::pending()).await }
    });
    support::wait_for(store.as_ref(), campaign, 1_000).await;
    killed.abort();
    let _ = killed.await;
    let issued_at_kill = store_count(&store, campaign).await;
    assert!(
        issued_at_kill < 5_000,
        "the kill came mid-stream ({issued_at_kill})"
    );

    let second = KafkaIssueSource::connect(config).await.expect("consumer");
    let running = tokio::spawn({
        let worker = worker(second, store.clone());
        async move { worker.run(std::future::pending()).await }
    });
    support::wait_for(store.as_ref(), campaign, 5_000).await;
    running.abort();
    support::assert_exactly(store.as_ref(), campaign, 5_000).await;
}

async fn store_count(store: &coupon_seaorm::SeaOrmStore, campaign: coupon_core::CampaignId) -> u64 {
    use coupon_core::CouponStore;
    store.issued_count(campaign).await.expect("count")
}

/// Unreadable messages between valid tickets go to the dead-letter topic with their
/// reason; every valid ticket is persisted and the worker keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_messages_are_dead_lettered_and_the_rest_persisted() {
    let config = support::config(1);
    let (store, campaign) = support::store_with_campaign(100).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .expect("raw producer");
    // Creates the topics.
    let source = KafkaIssueSource::connect(config.clone())
        .await
        .expect("consumer");

    let tickets = support::tickets(campaign, 100);
    let junk: [&[u8]; 3] = [b"not json at all", br#"{"version": 99}"#, b""];
    for (i, ticket) in tickets.iter().enumerate() {
        let payload = codec::encode(ticket);
        let key = codec::key(ticket);
        send(&producer, &config.topic, Some(key.as_bytes()), &payload).await;
        if i % 30 == 15 {
            send(&producer, &config.topic, Some(b"junk"), junk[i / 30]).await;
        }
    }

    let running = tokio::spawn({
        let worker = worker(source, store.clone());
        async move { worker.run(std::future::pending()).await }
    });
    support::wait_for(store.as_ref(), campaign, 100).await;
    running.abort();
    support::assert_exactly(store.as_ref(), campaign, 100).await;

    let found = support::dead_letters(&config, 3).await;
    assert!(
        found.iter().all(|(kind, _)| kind == "malformed"),
        "{found:?}"
    );
    let reasons: Vec<String> = found.into_iter().map(|(_, reason)| reason).collect();
    assert!(reasons[0].starts_with("not a JSON object"), "{reasons:?}");
    assert!(
        reasons[1].starts_with("unknown ticket version 99"),
        "{reasons:?}"
    );
    assert_eq!(reasons[2], "empty payload");
}

/// A record that is not a ticket, written last to every partition after the tickets, is
/// dead-lettered and its offset committed: the group reaches the queue's mark although
/// nothing more is published, as a counter rebuild waiting for the queue to drain needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_record_ending_each_partition_is_committed() {
    use coupon_core::IssueQueue;
    let config = support::config(3);
    let (store, campaign) = support::store_with_campaign(300).await;
    let queue = Arc::new(
        KafkaIssueQueue::connect(config.clone())
            .await
            .expect("producer"),
    );
    support::publish_all(queue.clone(), &support::tickets(campaign, 300)).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .expect("raw producer");
    for partition in 0..3 {
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(&config.topic)
                    .partition(partition)
                    .payload(b"not a ticket"),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("raw send");
    }

    let source = KafkaIssueSource::connect(config.clone())
        .await
        .expect("consumer");
    let worker = support::RunningWorker::start(
        Arc::new(source),
        store.clone(),
        WorkerConfig::default().with_batch_size(500),
    );
    support::wait_for(store.as_ref(), campaign, 300).await;
    let found = support::dead_letters(&config, 3).await;
    assert!(
        found
            .iter()
            .all(|(kind, reason)| kind == "malformed" && reason.starts_with("not a JSON object")),
        "{found:?}"
    );
    let mark = queue.mark().await.expect("mark").expect("a mark");
    support::wait_drained(&queue, &mark, &config, Duration::from_secs(30)).await;
    let report = worker.stop().await;
    assert_eq!(
        (report.issued, report.duplicates, report.dead_lettered),
        (300, 0, 0),
        "{report:?}"
    );
    support::assert_exactly(store.as_ref(), campaign, 300).await;
}

async fn send(producer: &FutureProducer, topic: &str, key: Option<&[u8]>, payload: &[u8]) {
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(payload);
    if let Some(key) = key {
        record = record.key(key);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("raw send");
}

/// Two workers in one group on a 3-partition topic share the load and together persist
/// each ticket once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_share_three_partitions() {
    let config = support::config(3);
    let (store, campaign) = support::store_with_campaign(6_000).await;
    let first = KafkaIssueSource::connect(config.clone())
        .await
        .expect("consumer");
    let second = KafkaIssueSource::connect(config.clone())
        .await
        .expect("consumer");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let spawn = |source: KafkaIssueSource| {
        let worker = worker(source, store.clone());
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        })
    };
    let (one, two) = (spawn(first), spawn(second));
    // Both members in the group before the tickets arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let queue = Arc::new(KafkaIssueQueue::connect(config).await.expect("producer"));
    support::publish_all(queue, &support::tickets(campaign, 6_000)).await;
    support::wait_for(store.as_ref(), campaign, 6_000).await;
    stop.send(true).expect("workers listening");
    let one = one.await.expect("worker task").expect("worker");
    let two = two.await.expect("worker task").expect("worker");
    support::assert_exactly(store.as_ref(), campaign, 6_000).await;
    // Each persisted a share, and together every ticket exactly once.
    assert!(one.issued > 0 && two.issued > 0, "one {one:?}, two {two:?}");
    assert_eq!(one.issued + two.issued, 6_000);
}

/// The source reports what is still waiting in the partitions it owns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lag_counts_what_this_consumer_has_not_received() {
    use coupon_core::IssueSource;
    let config = support::config(1);
    let (_, campaign) = support::store_with_campaign(300).await;
    let queue = Arc::new(
        KafkaIssueQueue::connect(config.clone())
            .await
            .expect("producer"),
    );
    support::publish_all(queue, &support::tickets(campaign, 300)).await;
    let source = KafkaIssueSource::connect(config).await.expect("consumer");

    let first = source
        .next_batch(100)
        .await
        .expect("a batch")
        .expect("tickets");
    let lag = source.lag().await.expect("lag").expect("a figure");
    assert!(
        lag > 0 && lag <= 300 - first.len() as u64,
        "lag {lag} after {}",
        first.len()
    );
    source.ack(first).await.expect("ack");

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // Drain the rest: the lag falls to zero.
    while source.lag().await.expect("lag") != Some(0) {
        assert!(std::time::Instant::now() < deadline, "lag never reached 0");
        if let Ok(Ok(Some(batch))) =
            tokio::time::timeout(Duration::from_millis(200), source.next_batch(100)).await
        {
            source.ack(batch).await.expect("ack");
        }
    }
}

/// The conformance suite's pipeline scenario on Redis + Kafka + PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_kafka_postgres_pipeline_issues_exactly_cap() {
    use coupon_redis::{RedisCounter, RedisCounterConfig};
    use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig};
    use coupon_testkit::pipeline::{self, Pipeline};
    use coupon_testkit::service_url;

    let config = support::config(3);
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let counter = RedisCounter::connect(
        RedisCounterConfig::new(service_url("REDIS_URL")).with_key_prefix(prefix),
    )
    .await
    .expect("Redis");
    let queue = KafkaIssueQueue::connect(config.clone())
        .await
        .expect("producer");
    let source = KafkaIssueSource::connect(config).await.expect("consumer");
    let store = SeaOrmStore::connect(SeaOrmStoreConfig::new(
        coupon_seaorm::testkit::fresh_postgres().await,
    ))
    .await
    .expect("PostgreSQL");
    pipeline::stampede_issues_exactly_cap(Pipeline {
        counter: Arc::new(counter),
        queue: Arc::new(queue),
        source: Arc::new(source),
        store: Arc::new(store),
    })
    .await;
}

/// Tickets published at once leave in groups (fewer records than tickets), and a worker
/// that acked only the first tickets of a group and stopped leaves the rest of that
/// group to the next one: the committed offset never passes a ticket not done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tickets_travel_in_groups_and_a_half_done_group_is_delivered_again() {
    use coupon_core::{IssueQueue, IssueSource};
    use std::collections::HashSet;
    let config = support::config(1);
    let queue = Arc::new(
        KafkaIssueQueue::connect(config.clone())
            .await
            .expect("producer"),
    );
    let tickets = support::tickets(coupon_core::CampaignId(1), 600);
    let mut publishing = tokio::task::JoinSet::new();
    for ticket in tickets.clone() {
        let queue = queue.clone();
        publishing.spawn(async move { queue.publish(&ticket).await.expect("publish") });
    }
    while let Some(published) = publishing.join_next().await {
        published.expect("publisher task");
    }
    let records = queue.mark().await.expect("mark").expect("a mark").positions[0];
    assert!(
        records <= 300,
        "600 tickets published at once took {records} records"
    );

    let first = KafkaIssueSource::connect(config.clone())
        .await
        .expect("consumer");
    let mut seen = HashSet::new();
    // Small batches, acked, until well into the groups; then one taken and never acked.
    while seen.len() < 100 {
        let batch = first
            .next_batch(7)
            .await
            .expect("a batch")
            .expect("tickets");
        seen.extend(batch.tickets.iter().map(|t| t.ticket_id));
        first.ack(batch).await.expect("ack");
    }
    let unacked = first
        .next_batch(7)
        .await
        .expect("a batch")
        .expect("tickets");
    drop(unacked);
    drop(first);

    let second = KafkaIssueSource::connect(config).await.expect("consumer");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < tickets.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {} tickets ever delivered",
            seen.len(),
            tickets.len()
        );
        if let Ok(Ok(Some(batch))) =
            tokio::time::timeout(Duration::from_millis(500), second.next_batch(100)).await
        {
            seen.extend(batch.tickets.iter().map(|t| t.ticket_id));
            second.ack(batch).await.expect("ack");
        }
    }
    let expected: HashSet<_> = tickets.iter().map(|t| t.ticket_id).collect();
    assert_eq!(seen, expected);
}
