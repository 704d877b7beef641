//! The Kafka hand-off through faults: a store outage longer than the consumer's poll
//! interval, a ticket the store refuses, a broker restart before an unreadable message,
//! a delivery report lost after the broker stored the ticket.

use crate::support;
use coupon_core::FailureLedger;

use std::sync::Arc;
use std::time::{Duration, Instant};

use coupon_core::memory::MemoryCounter;
use coupon_core::{
    ApplyOutcome, CouponCounter, CouponService, CouponStore, IssueQueue, IssueTicket, NewCampaign,
    SealedEpoch, Settler, SettlerConfig, UserId, WorkerConfig,
};
use coupon_kafka::{KafkaIssueQueue, KafkaIssueSource, codec};
use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig};
use coupon_testkit::proxy::{FaultProxy, ProxyMode};
use coupon_testkit::services::PrivateService;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::RunningWorker;

/// The store (a PostgreSQL of the test's own) is away for 25 s, four times the
/// consumer's `max.poll.interval.ms` of 6 s. The worker keeps its group membership
/// meanwhile (no partition is ever revoked): afterwards every ticket is persisted once,
/// and none came twice. Without the keep-alive, tansu evicts the member in about half
/// the runs of this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_outage_past_the_poll_interval_keeps_the_group() {
    let pg = PrivateService::start("postgres");
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port());
    let store = Arc::new(
        SeaOrmStore::connect(SeaOrmStoreConfig::new(&url))
            .await
            .expect("PostgreSQL store"),
    );
    let campaign = store
        .create_campaign(NewCampaign::new("membership", 2_000))
        .await
        .expect("campaign")
        .id;
    let config = support::config(1)
        .with("session.timeout.ms", "6000")
        .with("max.poll.interval.ms", "6000");
    let queue: Arc<dyn IssueQueue> = Arc::new(
        KafkaIssueQueue::connect(config.clone())
            .await
            .expect("producer"),
    );
    let source = Arc::new(KafkaIssueSource::connect(config).await.expect("consumer"));
    let worker = RunningWorker::start(
        source.clone(),
        store.clone(),
        WorkerConfig::default().with_batch_size(500),
    );
    let tickets = support::tickets(campaign, 1_000);
    support::publish_all(queue.clone(), &tickets[..500]).await;
    support::wait_for(store.as_ref(), campaign, 500).await;

    pg.kill();
    support::publish_all(queue, &tickets[500..]).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    pg.restart();

    support::wait_for(store.as_ref(), campaign, 1_000).await;
    let report = worker.stop().await;
    support::assert_exactly(store.as_ref(), campaign, 1_000).await;
    assert_eq!(
        (report.issued, report.duplicates, report.dead_lettered),
        (1_000, 0, 0),
        "{report:?}"
    );
    assert_eq!(
        source.revoked_partitions(),
        0,
        "never evicted from the group"
    );
}

/// One ticket the store refuses for good among 500: 499 coupons, one durable failure
/// record, and the ticket mirrored to the dead-letter topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_ticket_is_dead_lettered_alone_and_mirrored_to_the_topic() {
    let config = support::config(1);
    let (store, campaign) = support::store_with_campaign(1_000).await;
    let queue: Arc<dyn IssueQueue> = Arc::new(
        KafkaIssueQueue::connect(config.clone())
            .await
            .expect("producer"),
    );
    let source = Arc::new(
        KafkaIssueSource::connect(config.clone())
            .await
            .expect("consumer"),
    );
    let mut tickets = support::tickets(campaign, 500);
    tickets[250] = IssueTicket::new(campaign, UserId(251), 1, u64::MAX);
    support::publish_all(queue, &tickets).await;

    let worker = RunningWorker::start(
        source,
        store.clone(),
        WorkerConfig::default().with_batch_size(500),
    );
    support::wait_for(store.as_ref(), campaign, 499).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let failures = loop {
        let failures = store.failures(Some(campaign)).await.expect("failures");
        if !failures.is_empty() || Instant::now() > deadline {
            break failures;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let report = worker.stop().await;
    assert_eq!(
        (report.issued, report.dead_lettered),
        (499, 1),
        "{report:?}"
    );
    assert_eq!(store.issued_count(campaign).await.expect("count"), 499);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].ticket, tickets[250]);
    let mirrored = support::dead_letters(&config, 1).await;
    assert_eq!(mirrored[0].0, "ticket");
    assert!(mirrored[0].1.contains("rank"), "{mirrored:?}");
}

async fn send_raw(producer: &FutureProducer, topic: &str, payload: &[u8]) {
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(topic).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("raw send");
}

/// The broker is killed with kill -9 and restarted after the dead-letter producer was
/// used; the next unreadable message must still reach the dead-letter topic (the
/// producer is replaced like the ticket producer), and the tickets after it persist.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dead_letter_producer_survives_a_broker_restart() {
    let broker = PrivateService::start("kafka");
    let brokers = format!("127.0.0.1:{}", broker.port());
    let config = support::config_on(&brokers, 1).with_delivery_timeout(Duration::from_secs(3));
    let (store, campaign) = support::store_with_campaign(100).await;
    let source = Arc::new(
        KafkaIssueSource::connect(config.clone())
            .await
            .expect("consumer"),
    );
    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("raw producer");
    let tickets = support::tickets(campaign, 100);
    send_raw(&raw, &config.topic, b"unreadable before").await;
    for ticket in &tickets[..50] {
        send_raw(&raw, &config.topic, &codec::encode(ticket)).await;
    }
    let worker = RunningWorker::start(
        source,
        store.clone(),
        WorkerConfig::default()
            .with_batch_size(100)
            .with_backoff(Duration::from_millis(100), Duration::from_secs(1)),
    );
    support::wait_for(store.as_ref(), campaign, 50).await;

    broker.kill();
    broker.restart();
    drop(raw);
    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("raw producer");
    send_raw(&raw, &config.topic, b"unreadable after").await;
    for ticket in &tickets[50..] {
        send_raw(&raw, &config.topic, &codec::encode(ticket)).await;
    }

    support::wait_for(store.as_ref(), campaign, 100).await;
    let report = worker.stop().await;
    support::assert_exactly(store.as_ref(), campaign, 100).await;
    assert_eq!(report.issued, 100, "{report:?}");
    let found = support::dead_letters(&config, 2).await;
    assert!(
        found.iter().all(|(kind, _)| kind == "malformed"),
        "{found:?}"
    );
}

/// The broker stores a ticket but its answer never reaches the producer (a proxy
/// swallows it): the delivery report times out. The applicant hears `Pending`, not an
/// error; the settler publishes the same ticket again; the store keeps one coupon.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_delivery_report_is_pending_and_becomes_one_coupon() {
    let proxy = FaultProxy::start("127.0.0.1:1").await;
    let broker = PrivateService::start_kafka_advertising(proxy.port());
    proxy.set_upstream(format!("127.0.0.1:{}", broker.port()));
    let config = support::config_on(&proxy.address(), 1)
        .with_delivery_timeout(Duration::from_secs(3))
        .with("socket.timeout.ms", "4000");
    let (store, campaign) = support::store_with_campaign(10).await;
    let queue = Arc::new(
        KafkaIssueQueue::connect(config.clone())
            .await
            .expect("producer"),
    );
    let source = Arc::new(KafkaIssueSource::connect(config).await.expect("consumer"));
    let counter = Arc::new(MemoryCounter::new());
    let built = store.campaign(campaign).await.expect("campaign");
    counter
        .rebuild(&built, Arc::new(SealedEpoch::new(1, Vec::new())))
        .await
        .expect("build the counter");
    let issuer = CouponService::new(counter.clone(), queue.clone(), store.clone());
    let worker = RunningWorker::start(source, store.clone(), WorkerConfig::default());

    let first = issuer.apply(campaign, UserId(1)).await.expect("apply");
    assert!(
        matches!(first, ApplyOutcome::Accepted { rank: 1, .. }),
        "{first:?}"
    );
    support::wait_for(store.as_ref(), campaign, 1).await;

    proxy.set(ProxyMode::SwallowAnswers);
    let second = issuer.apply(campaign, UserId(2)).await.expect("apply");
    assert_eq!(
        second,
        ApplyOutcome::Pending,
        "the outcome is unknown, not an error"
    );
    proxy.set(ProxyMode::Pass);

    let settler = Settler::new(
        counter,
        queue,
        store.clone(),
        SettlerConfig::default().with_grace(Duration::from_millis(500)),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let issued = store.issued_count(campaign).await.expect("count");
        if issued >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "user 2 never got the coupon");
        if let Err(error) = settler.settle(campaign).await {
            assert!(error.is_retryable(), "{error:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let any further copy arrive before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = worker.stop().await;
    support::assert_exactly(store.as_ref(), campaign, 2).await;
    let coupons = store
        .coupons_of(campaign, UserId(2))
        .await
        .expect("coupons");
    assert_eq!((coupons.len(), coupons[0].rank), (1, 2));
    // Every copy of user 2's ticket reached the worker: the one the broker stored while
    // its answer was lost, and each the settler published again (none, if the stored
    // copy was persisted before the grace period ran out). One coupon in all.
    assert_eq!(
        (report.issued, report.duplicates),
        (2, settler.republished_total()),
        "{report:?}"
    );
}
