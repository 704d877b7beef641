//! Builds each part from the configuration: Redis or memory for admission; Kafka, the
//! database or an in-process channel for the hand-off; a database (SQLite by default).

use std::collections::HashSet;
use std::sync::Arc;

use coupon_core::memory::{MemoryCounter, MemoryQueue};
use coupon_core::{CouponCounter, CouponStore, IssueQueue, IssueSource, redact_url};
use coupon_kafka::{KafkaConfig, KafkaIssueQueue, KafkaIssueSource};
use coupon_redis::{RedisCounter, RedisCounterConfig};
use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig, SqlIssueQueue, SqlQueueConfig};

use crate::config::{Config, QueueKind, Role};

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

/// Why the parts could not be connected, and whether trying again may help (a backend
/// not answering yet) or not (a setting that cannot work).
#[derive(Debug)]
pub struct StartError {
    /// What failed.
    pub message: String,
    /// Whether the same settings may work later.
    pub retryable: bool,
}

impl From<String> for StartError {
    fn from(message: String) -> Self {
        Self {
            message,
            retryable: false,
        }
    }
}

impl From<&str> for StartError {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

/// Turns a backend's error into a [`StartError`] prefixed with `what`, retryable as the
/// error says.
fn failed(what: impl std::fmt::Display) -> impl FnOnce(coupon_core::Error) -> StartError {
    move |error| StartError {
        message: format!("{what}: {error}"),
        retryable: error.is_retryable(),
    }
}

/// The hand-off of this process.
struct HandOff {
    queue: Option<Arc<dyn IssueQueue>>,
    source: Option<Arc<dyn IssueSource>>,
    memory: Option<Arc<MemoryQueue>>,
    sql: Option<SqlIssueQueue>,
}

/// Connects every part `config` asks for.
pub async fn build(config: &Config) -> Result<Backends, StartError> {
    let kind = config.queue_kind();
    if config.role != Role::All && kind == QueueKind::Memory {
        return Err(format!(
            "--role {:?} needs a queue other processes share (the database's, or Kafka): the in-process queue cannot link two processes",
            config.role
        )
        .to_lowercase()
        .into());
    }
    let mut description = Vec::new();

    let store = SeaOrmStore::connect(SeaOrmStoreConfig::new(&config.database_url))
        .await
        .map_err(failed(format!(
            "database {}",
            redact_url(&config.database_url)
        )))?;
    description.push((
        "store",
        format!("SeaORM on {}", redact_url(&config.database_url)),
    ));

    let hand_off = hand_off(config, kind, &store, &mut description).await?;

    let counter: Arc<dyn CouponCounter> = match &config.redis_url {
        Some(url) => {
            let counter = RedisCounter::connect(
                RedisCounterConfig::new(url)
                    .with_key_prefix(&config.redis_key_prefix)
                    .with_allow_eviction(config.redis_allow_eviction)
                    .with_confirm(
                        config.redis_confirm,
                        std::time::Duration::from_millis(config.redis_confirm_timeout_ms),
                    ),
            )
            .await
            .map_err(failed(format!("redis {}", redact_url(url))))?;
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
            let restored = restore_from_store(&counter, &store, &hand_off).await?;
            let scope = if config.role == Role::All {
                ""
            } else {
                "; only this process may admit: run one API process"
            };
            description.push((
                "counter",
                format!("in memory (restored {restored} campaigns from the database{scope})"),
            ));
            Arc::new(counter)
        }
    };

    Ok(Backends {
        counter,
        queue: hand_off.queue,
        source: hand_off.source,
        store: Arc::new(store),
        memory_queue: hand_off.memory,
        description,
    })
}

async fn hand_off(
    config: &Config,
    kind: QueueKind,
    store: &SeaOrmStore,
    description: &mut Vec<(&'static str, String)>,
) -> Result<HandOff, StartError> {
    let runs_api = config.role != Role::Worker;
    let runs_worker = config.role != Role::Api;
    match kind {
        QueueKind::Kafka => {
            let brokers = config
                .kafka_brokers
                .as_deref()
                .ok_or("--queue kafka needs KAFKA_BROKERS")?;
            let kafka = KafkaConfig::new(brokers)
                .with_topics(&config.kafka_topic, &config.kafka_dlq_topic)
                .with_group_id(&config.kafka_group)
                .with_partitions(config.kafka_partitions)
                .with_create_topics(config.kafka_create_topics);
            let kafka = config
                .kafka_options
                .iter()
                .fold(kafka, |kafka, (key, value)| kafka.with(key, value));
            let queue: Option<Arc<dyn IssueQueue>> = if runs_api {
                let queue = KafkaIssueQueue::connect(kafka.clone())
                    .await
                    .map_err(failed("kafka"))?;
                Some(Arc::new(queue))
            } else {
                None
            };
            let source: Option<Arc<dyn IssueSource>> = if runs_worker {
                let source = KafkaIssueSource::connect(kafka)
                    .await
                    .map_err(failed("kafka"))?;
                Some(Arc::new(source))
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
            Ok(HandOff {
                queue,
                source,
                memory: None,
                sql: None,
            })
        }
        // `Auto` is resolved by `Config::queue_kind`; the database's queue is its
        // fallback anyway.
        QueueKind::Sql | QueueKind::Auto => {
            let sql = SqlIssueQueue::new(
                store,
                SqlQueueConfig::default()
                    .with_lease(std::time::Duration::from_millis(config.sql_queue_lease_ms)),
            );
            description.push((
                "queue",
                "the database's issue_queue table (durable at commit)".to_owned(),
            ));
            Ok(HandOff {
                queue: runs_api.then(|| Arc::new(sql.clone()) as Arc<dyn IssueQueue>),
                source: runs_worker.then(|| Arc::new(sql.source()) as Arc<dyn IssueSource>),
                memory: None,
                sql: Some(sql),
            })
        }
        QueueKind::Memory => {
            let queue = Arc::new(MemoryQueue::new(100_000));
            description.push((
                "queue",
                "in process (tokio channel, 100,000 tickets; lost if the process is killed)"
                    .to_owned(),
            ));
            Ok(HandOff {
                queue: Some(queue.clone()),
                source: Some(queue.clone()),
                memory: Some(queue),
                sql: None,
            })
        }
    }
}

/// An in-memory counter starts with no campaign built. With the database's queue (or
/// the in-process one, empty at start) every campaign is rebuilt now from the tickets
/// still queued and the coupons and pending tickets the database holds, read in that order so that a ticket
/// a worker elsewhere moves from one to the other meanwhile is counted. With Kafka the
/// queued tickets cannot be read: each campaign is left to the fence, which rebuilds it
/// at its first apply once the workers drained the topic.
async fn restore_from_store(
    counter: &MemoryCounter,
    store: &SeaOrmStore,
    hand_off: &HandOff,
) -> Result<usize, StartError> {
    if hand_off.sql.is_none() && hand_off.memory.is_none() {
        return Ok(0);
    }
    let campaigns = store
        .campaigns()
        .await
        .map_err(failed("listing campaigns"))?;
    for summary in &campaigns {
        let id = summary.campaign.id;
        let queued = match &hand_off.sql {
            Some(queue) => queue
                .queued_slots(id)
                .await
                .map_err(failed("reading the queue"))?,
            None => Vec::new(),
        };
        let mut held = coupon_core::admitted_slots(store, id)
            .await
            .map_err(failed("reading the coupons"))?;
        // A queued ticket whose coupon exists (a duplicate) is one slot, not two.
        let stored: HashSet<_> = held.iter().map(|slot| (slot.user, slot.slot)).collect();
        held.extend(
            queued
                .into_iter()
                .filter(|slot| !stored.contains(&(slot.user, slot.slot))),
        );
        counter
            .rebuild(&summary.campaign, &held)
            .await
            .map_err(failed("restoring the counter"))?;
    }
    Ok(campaigns.len())
}
