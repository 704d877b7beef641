//! The Kafka hand-off: acknowledged publishes per second from concurrent publishers,
//! beside a plain producer (no idempotence, `acks=1`) on the same broker; and tickets
//! per second consumed and persisted by one worker into PostgreSQL, beside
//! `issue_batch` fed directly from memory with the same batch size.
//!
//! ```sh
//! scripts/services.sh start /tmp/fc && source /tmp/fc/env
//! cargo bench -p firstcome-benches --bench kafka_pipeline
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use coupon_core::{
    CampaignId, CouponStore, IssueQueue, IssueTicket, IssueWorker, NewCampaign, UserId,
    WorkerConfig,
};
use coupon_kafka::{KafkaConfig, KafkaIssueQueue, KafkaIssueSource, codec};
use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig, testkit};
use coupon_testkit::service_url;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::JoinSet;
use uuid::Uuid;

const TICKETS: u64 = 50_000;
const PUBLISHERS: [usize; 3] = [64, 512, 4096];
const BATCH: usize = 500;

fn config(brokers: &str) -> KafkaConfig {
    let id = Uuid::new_v4().simple().to_string();
    KafkaConfig::new(brokers)
        .with_topics(format!("bench-{id}"), format!("bench-{id}-dlq"))
        .with_group_id(format!("bench-{id}"))
        .with_partitions(3)
        .with_create_topics(true)
}

fn tickets(campaign: CampaignId) -> Vec<IssueTicket> {
    (1..=TICKETS)
        .map(|user| IssueTicket::new(campaign, UserId(user), 1, user))
        .collect()
}

/// Acked publishes per second through `queue` from `publishers` concurrent tasks.
async fn publish_rate(
    queue: Arc<dyn IssueQueue>,
    tickets: &[IssueTicket],
    publishers: usize,
) -> f64 {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for chunk in tickets.chunks(tickets.len().div_ceil(publishers)) {
        let (queue, chunk) = (queue.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for ticket in &chunk {
                queue.publish(ticket).await.expect("publish");
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("publisher");
    }
    tickets.len() as f64 / started.elapsed().as_secs_f64()
}

/// The same through a producer with neither idempotence nor `acks=all`.
async fn plain_publish_rate(
    brokers: &str,
    topic: &str,
    tickets: &[IssueTicket],
    publishers: usize,
) -> f64 {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "1")
        // The queue's own linger, so the two differ only in idempotence and acks.
        .set(
            "linger.ms",
            KafkaConfig::new(brokers).linger.as_millis().to_string(),
        )
        .create()
        .expect("plain producer");
    let producer = Arc::new(producer);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for chunk in tickets.chunks(tickets.len().div_ceil(publishers)) {
        let (producer, chunk, topic) = (producer.clone(), chunk.to_vec(), topic.to_owned());
        tasks.spawn(async move {
            for ticket in &chunk {
                let (key, payload) = (codec::key(ticket), codec::encode(ticket));
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(&payload),
                        Duration::ZERO,
                    )
                    .await
                    .map_err(|(e, _)| e)
                    .expect("plain send");
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("publisher");
    }
    tickets.len() as f64 / started.elapsed().as_secs_f64()
}

async fn postgres_store() -> SeaOrmStore {
    SeaOrmStore::connect(SeaOrmStoreConfig::new(testkit::fresh_postgres().await))
        .await
        .expect("PostgreSQL store")
}

async fn campaign(store: &SeaOrmStore) -> CampaignId {
    store
        .create_campaign(NewCampaign::new("bench", TICKETS))
        .await
        .expect("campaign")
        .id
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let brokers = service_url("KAFKA_BROKERS");
        let store = Arc::new(postgres_store().await);

        println!("\npublish ({TICKETS} tickets, acked)");
        for publishers in PUBLISHERS {
            let config = config(&brokers);
            let queue = Arc::new(KafkaIssueQueue::connect(config.clone()).await.expect("producer"));
            let ours = publish_rate(queue, &tickets(CampaignId(1)), publishers).await;
            let plain = plain_publish_rate(&brokers, &config.topic, &tickets(CampaignId(1)), publishers).await;
            println!(
                "  {publishers:>4} publishers: KafkaIssueQueue (idempotent, acks=all) {ours:>8.0}/s, \
                 baseline plain producer (acks=1) {plain:>8.0}/s, ratio {:.2}",
                ours / plain
            );
        }

        println!("\nconsume -> persist into PostgreSQL ({TICKETS} tickets, batch {BATCH})");
        let direct_campaign = campaign(&store).await;
        firstcome_benches::analyze(&store).await;
        let started = Instant::now();
        for batch in tickets(direct_campaign).chunks(BATCH) {
            store.issue_batch(batch).await.expect("issue_batch");
        }
        let direct = TICKETS as f64 / started.elapsed().as_secs_f64();

        let config = config(&brokers);
        let topic = config.topic.clone();
        let queue = Arc::new(KafkaIssueQueue::connect(config.clone()).await.expect("producer"));
        let campaign = campaign(&store).await;
        publish_rate(queue, &tickets(campaign), 512).await;
        firstcome_benches::analyze(&store).await;
        let source = KafkaIssueSource::connect(config).await.expect("consumer");
        let worker = IssueWorker::with_config(
            Arc::new(source),
            store.clone(),
            WorkerConfig::default().with_batch_size(BATCH),
        );
        let started = Instant::now();
        let running = tokio::spawn(async move { worker.run(std::future::pending()).await });
        while store.issued_count(campaign).await.expect("count") < TICKETS {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let consumed = TICKETS as f64 / started.elapsed().as_secs_f64();
        running.abort();

        // How fast the broker hands the same topic to a consumer that does nothing.
        let reader: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("{}-drain", Uuid::new_v4().simple()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("plain consumer");
        reader.subscribe(&[&topic]).expect("subscribe");
        let started = Instant::now();
        for _ in 0..TICKETS {
            reader.recv().await.expect("a message");
        }
        let drained = TICKETS as f64 / started.elapsed().as_secs_f64();
        println!(
            "  worker from Kafka {consumed:>8.0}/s; baselines: issue_batch from memory {direct:>8.0}/s \
             (ratio {:.2}), plain consumer reading the topic {drained:>8.0}/s (ratio {:.2})",
            consumed / direct,
            consumed / drained
        );
    });
}
