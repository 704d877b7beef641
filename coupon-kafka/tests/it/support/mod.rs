//! Test support: topics and groups of each test's own on the harness broker.
#![allow(dead_code, unreachable_pub)]

use coupon_kafka::KafkaConfig;
use coupon_testkit::service_url;
use uuid::Uuid;

/// Settings on `KAFKA_BROKERS` with fresh topics (created) and a fresh group.
pub fn config(partitions: i32) -> KafkaConfig {
    config_on(&service_url("KAFKA_BROKERS"), partitions)
}

/// Settings on `brokers` with fresh topics (created) and a fresh group.
pub fn config_on(brokers: &str, partitions: i32) -> KafkaConfig {
    let id = Uuid::new_v4().simple().to_string();
    KafkaConfig::new(brokers)
        .with_topics(format!("test-{id}"), format!("test-{id}-dlq"))
        .with_group_id(format!("group-{id}"))
        .with_partitions(partitions)
        .with_create_topics(true)
}

use std::sync::Arc;
use std::time::Duration;

use coupon_core::{CampaignId, CouponStore, IssueQueue, IssueTicket, NewCampaign, UserId};
use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig};

/// A store on a fresh SQLite file, with a campaign of `cap` coupons.
pub async fn store_with_campaign(cap: u64) -> (Arc<SeaOrmStore>, CampaignId) {
    let path = std::env::temp_dir().join(format!("firstcome-kafka-{}.db", Uuid::new_v4().simple()));
    let store = SeaOrmStore::connect(SeaOrmStoreConfig::new(format!(
        "sqlite://{}?mode=rwc",
        path.display()
    )))
    .await
    .expect("SQLite store");
    let campaign = store
        .create_campaign(NewCampaign::new("kafka", cap))
        .await
        .expect("campaign");
    (Arc::new(store), campaign.id)
}

/// Tickets for users 1..=count of `campaign`.
pub fn tickets(campaign: CampaignId, count: u64) -> Vec<IssueTicket> {
    (1..=count)
        .map(|user| IssueTicket::new(campaign, UserId(user), 1, user))
        .collect()
}

/// Publishes every ticket from 32 concurrent tasks; panics on any failure.
pub async fn publish_all(queue: Arc<dyn IssueQueue>, tickets: &[IssueTicket]) {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in tickets.chunks(tickets.len().div_ceil(32).max(1)) {
        let (queue, chunk) = (queue.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for ticket in &chunk {
                queue.publish(ticket).await.expect("publish");
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("publisher task");
    }
}

/// Waits until the store holds `count` coupons of `campaign` (panics after 120 s).
pub async fn wait_for(store: &dyn CouponStore, campaign: CampaignId, count: u64) {
    let issued =
        coupon_testkit::wait_for_issued(store, campaign, count, Duration::from_secs(120)).await;
    assert!(
        issued >= count,
        "only {issued} of {count} coupons after 120 s"
    );
}

/// Exactly `count` coupons, for `count` distinct users.
pub async fn assert_exactly(store: &dyn CouponStore, campaign: CampaignId, count: u64) {
    assert_eq!(store.issued_count(campaign).await.expect("count"), count);
    let holders = store.holders(campaign).await.expect("holders");
    let distinct: std::collections::HashSet<UserId> = holders.iter().copied().collect();
    assert_eq!(
        (holders.len() as u64, distinct.len() as u64),
        (count, count)
    );
}

use coupon_core::{IssueSource, IssueWorker, WorkerConfig, WorkerReport};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};

/// A worker running on `source`, and the means to stop it and read its report.
pub struct RunningWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<coupon_core::Result<WorkerReport>>,
}

impl RunningWorker {
    /// Starts a worker with `config` on `source` into `store`.
    pub fn start(
        source: Arc<dyn IssueSource>,
        store: Arc<dyn CouponStore>,
        config: WorkerConfig,
    ) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = IssueWorker::with_config(source, store, config);
        let task = tokio::spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Self { stop, task }
    }

    /// Stops it gracefully and returns what it did.
    pub async fn stop(self) -> WorkerReport {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("worker task")
            .expect("worker failed")
    }
}

/// Reads `count` messages of the dead-letter topic: (kind header, reason header).
pub async fn dead_letters(config: &KafkaConfig, count: usize) -> Vec<(String, String)> {
    let reader: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("{}-reader", config.group_id))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("dead-letter reader");
    reader
        .subscribe(&[&config.dead_letter_topic])
        .expect("subscribe");
    let mut found = Vec::new();
    while found.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .unwrap_or_else(|_| panic!("{count} dead letters within 30 s, got {found:?}"))
            .expect("a message");
        let headers = message.headers().expect("headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        found.push((
            header(coupon_kafka::KIND_HEADER),
            header(coupon_kafka::REASON_HEADER),
        ));
    }
    found
}

/// The offset the group of `config` committed on each partition of its ticket topic
/// (`None`: nothing committed), read by a client that never joins the group.
pub async fn committed_offsets(config: &KafkaConfig, partitions: i32) -> Vec<Option<i64>> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    let (brokers, group, topic) = (
        config.brokers.clone(),
        config.group_id.clone(),
        config.topic.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .create()
            .expect("offsets client");
        let mut wanted = TopicPartitionList::new();
        for partition in 0..partitions {
            wanted
                .add_partition_offset(&topic, partition, Offset::Invalid)
                .expect("list a partition");
        }
        let committed = client
            .committed_offsets(wanted, Duration::from_secs(10))
            .expect("the group's committed offsets");
        (0..partitions)
            .map(
                |partition| match committed.find_partition(&topic, partition) {
                    Some(element) => match element.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    },
                    None => None,
                },
            )
            .collect()
    })
    .await
    .expect("offsets task")
}

/// Waits until `queue` says the group committed up to `mark` on every partition;
/// panics after `within`, with what the group had committed against the mark.
pub async fn wait_drained(
    queue: &coupon_kafka::KafkaIssueQueue,
    mark: &coupon_core::QueueMark,
    config: &KafkaConfig,
    within: Duration,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        // An error (the broker still coming back) is an answer of "not yet".
        if let Ok(true) = queue.drained(mark).await {
            return;
        }
        if std::time::Instant::now() > deadline {
            let partitions = i32::try_from(mark.positions.len()).expect("partition count");
            let committed = committed_offsets(config, partitions).await;
            panic!(
                "not drained after {within:?}: the group committed {committed:?}, the mark is {:?}",
                mark.positions
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
