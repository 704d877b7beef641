//! Builds each part from the configuration: Redis or memory, Kafka or in-process,
//! a database (SQLite by default).

use std::sync::Arc;

use coupon_core::memory::{MemoryCounter, MemoryQueue};
use coupon_core::{CouponCounter, CouponStore, IssueQueue, IssueSource, redact_url};
use coupon_kafka::{KafkaConfig, KafkaIssueQueue, KafkaIssueSource};
use coupon_redis::{RedisCounter, RedisCounterConfig};
use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig};

use crate::config::{Config, Role};

/// The producing side, the consuming side, and the in-process queue behind both when
/// there is no broker.
type HandOff = (
    Option<Arc<dyn IssueQueue>>,
    Option<Arc<dyn IssueSource>>,
    Option<Arc<MemoryQueue>>,
);

/// The parts a process runs on.
pub struct Backends {
    /// Admission.
    pub counter: Arc<dyn CouponCounter>,
    /// Hand-off, producing side (API role).
    pub queue: Option<Arc<dyn IssueQueue>>,
    /// Hand-off, consuming side (worker role).
    pub source: Option<Arc<dyn IssueSource>>,
    /// Persistence.
    pub store: Arc<dyn CouponStore>,
    /// The in-process queue, when that is the hand-off (for its lag and for shutdown).
    pub memory_queue: Option<Arc<MemoryQueue>>,
    /// What runs where, for the start-up banner.
    pub description: Vec<(&'static str, String)>,
}

/// Connects every part `config` asks for.
pub async fn build(config: &Config) -> Result<Backends, String> {
    let runs_api = config.role != Role::Worker;
    let runs_worker = config.role != Role::Api;
    if config.role != Role::All && config.kafka_brokers.is_none() {
        return Err(format!(
            "--role {:?} needs KAFKA_BROKERS: the in-process queue cannot link two processes",
            config.role
        )
        .to_lowercase());
    }
    let mut description = Vec::new();

    let store = SeaOrmStore::connect(SeaOrmStoreConfig::new(&config.database_url))
        .await
        .map_err(|e| format!("database {}: {e}", redact_url(&config.database_url)))?;
    description.push((
        "store",
        format!("SeaORM on {}", redact_url(&config.database_url)),
    ));

    let counter: Arc<dyn CouponCounter> = match &config.redis_url {
        Some(url) => {
            let counter = RedisCounter::connect(
                RedisCounterConfig::new(url).with_key_prefix(&config.redis_key_prefix),
            )
            .await
            .map_err(|e| format!("redis {}: {e}", redact_url(url)))?;
            description.push((
                "counter",
                format!(
                    "Redis at {} (prefix {})",
                    redact_url(url),
                    config.redis_key_prefix
                ),
            ));
            Arc::new(counter)
        }
        None => {
            let counter = MemoryCounter::new();
            let restored = restore_from_store(&counter, &store).await?;
            description.push((
                "counter",
                format!("in memory (restored {restored} campaigns from the store)"),
            ));
            Arc::new(counter)
        }
    };

    let (queue, source, memory_queue): HandOff = match &config.kafka_brokers {
        Some(brokers) => {
            let kafka = KafkaConfig::new(brokers)
                .with_topics(&config.kafka_topic, &config.kafka_dlq_topic)
                .with_group_id(&config.kafka_group)
                .with_partitions(config.kafka_partitions)
                .with_create_topics(config.kafka_create_topics);
            let queue: Option<Arc<dyn IssueQueue>> = if runs_api {
                Some(Arc::new(
                    KafkaIssueQueue::connect(kafka.clone())
                        .await
                        .map_err(|e| format!("kafka: {e}"))?,
                ))
            } else {
                None
            };
            let source: Option<Arc<dyn IssueSource>> = if runs_worker {
                Some(Arc::new(
                    KafkaIssueSource::connect(kafka)
                        .await
                        .map_err(|e| format!("kafka: {e}"))?,
                ))
            } else {
                None
            };
            description.push((
                "queue",
                format!(
                    "Kafka at {brokers}, topic {} (group {})",
                    config.kafka_topic, config.kafka_group
                ),
            ));
            (queue, source, None)
        }
        None => {
            let queue = Arc::new(MemoryQueue::new(100_000));
            description.push((
                "queue",
                "in process (tokio channel, 100,000 tickets)".to_owned(),
            ));
            (
                Some(queue.clone() as Arc<dyn IssueQueue>),
                Some(queue.clone() as Arc<dyn IssueSource>),
                Some(queue),
            )
        }
    };

    Ok(Backends {
        counter,
        queue,
        source,
        store: Arc::new(store),
        memory_queue,
        description,
    })
}

/// An in-memory counter starts empty: rebuild every campaign's admissions from the
/// coupons the database holds, so a restart cannot admit past a cap.
async fn restore_from_store(counter: &MemoryCounter, store: &SeaOrmStore) -> Result<usize, String> {
    let campaigns = store
        .campaigns()
        .await
        .map_err(|e| format!("listing campaigns: {e}"))?;
    for summary in &campaigns {
        let held = store
            .coupon_slots(summary.campaign.id)
            .await
            .map_err(|e| e.to_string())?;
        counter
            .restore(&summary.campaign, &held)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(campaigns.len())
}
