//! Builds each part from the configuration: Redis or memory for admission; Kafka, the
//! database or an in-process channel for the hand-off; a database (SQLite by default).

use std::sync::Arc;

use coupon_core::memory::{MemoryCounter, MemoryQueue};
use coupon_core::{
    CouponCounter, CouponService, CouponStore, IssueQueue, IssueSource, ServiceConfig, redact_url,
};
use coupon_kafka::{KafkaIssueQueue, KafkaIssueSource};
use coupon_redis::RedisCounter;
use coupon_seaorm::{CounterLease, LeaseKeeper, SeaOrmStore, SqlIssueQueue};

use crate::config::{Config, QueueKind, Role};

/// The parts a process runs on.
pub struct Backends {
    /// The use cases, over the counter, the producing side of the hand-off and the
    /// store, when this process admits (API role); the caller adds the source
    /// ([`CouponService::with_source`]) when the process also runs the worker.
    pub service: Option<CouponService>,
    /// Hand-off, consuming side (worker role).
    pub source: Option<Arc<dyn IssueSource>>,
    /// Persistence, which the worker writes to.
    pub store: Arc<dyn CouponStore>,
    /// The in-process queue, when that is the hand-off (for its lag and for shutdown).
    pub memory_queue: Option<Arc<MemoryQueue>>,
    /// What runs where, for the start-up banner.
    pub description: Vec<(&'static str, String)>,
    /// The keeper of this database's counter lease, when the counter is in memory:
    /// releasing it gives the lease up at once.
    pub lease: Option<LeaseKeeper>,
}

/// The counter lease of an in-memory counter: whether it was held at start, and its
/// keeper.
struct Lease {
    held: bool,
    keeper: LeaseKeeper,
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
    if kind == QueueKind::Memory {
        memory_queue_alone(config)?;
    }
    let mut description = Vec::new();

    let store = SeaOrmStore::connect(config.store())
        .await
        .map_err(failed(format!(
            "database {}",
            redact_url(&config.database.database_url)
        )))?;
    description.push((
        "store",
        format!("SeaORM on {}", redact_url(&config.database.database_url)),
    ));

    let hand_off = hand_off(config, kind, &store, &mut description).await?;

    let store: Arc<dyn CouponStore> = Arc::new(store);
    let mut lease = None;
    let counter: Arc<dyn CouponCounter> = match &config.redis.redis_url {
        Some(url) => {
            let counter = RedisCounter::connect(config.redis(url))
                .await
                .map_err(failed(format!("redis {}", redact_url(url))))?;
            description.push((
                "counter",
                format!(
                    "Redis at {} (prefix {})",
                    redact_url(url),
                    config.redis.redis_key_prefix
                ),
            ));
            Arc::new(counter)
        }
        // A counter in this process's memory admits only while this process holds the
        // database's counter lease: a second copy on the same database waits.
        None if hand_off.queue.is_some() => {
            let counter = Arc::new(MemoryCounter::suspended());
            let (held, keeper) = CounterLease::new(&config.database.database_url)
                .keep(counter.clone())
                .await
                .map_err(failed("the counter lease"))?;
            lease = Some(Lease { held, keeper });
            counter
        }
        None => Arc::new(MemoryCounter::new()),
    };

    let service = match hand_off.queue {
        Some(queue) => {
            let service = CouponService::with_config(
                counter,
                queue,
                store.clone(),
                ServiceConfig::default()
                    .with_issuer(config.issuer())
                    .with_settler(config.settler()),
            );
            match &lease {
                // An in-memory counter starts with no campaign built.
                Some(Lease { held: true, .. }) => {
                    let rebuilt = service
                        .rebuild_counters()
                        .await
                        .map_err(failed("rebuilding the counter"))?;
                    description.push(("counter", memory_counter(Some(rebuilt))));
                }
                Some(Lease { held: false, .. }) => {
                    description.push(("counter", memory_counter(None)));
                }
                None => {}
            }
            Some(service)
        }
        None => None,
    };

    Ok(Backends {
        service,
        source: hand_off.source,
        store,
        memory_queue: hand_off.memory,
        description,
        lease: lease.map(|lease| lease.keeper),
    })
}

/// The in-process queue keeps tickets promised to applicants where only this process
/// sees them, so it runs only where no other process can take admissions over while
/// this one lives: a SQLite database (whose lease file this process holds until its
/// queue is drained at shutdown, or the process is gone) and no Redis. Elsewhere another copy could rebuild the counter (a Redis loss,
/// a lease a server database gave away from a stalled process) without counting the
/// tickets still in this one's queue, and the store would then refuse them.
fn memory_queue_alone(config: &Config) -> Result<(), StartError> {
    let shared = if config.redis.redis_url.is_some() {
        Some("REDIS_URL is set")
    } else if !config.database.database_url.starts_with("sqlite") {
        Some("DATABASE_URL is a database server")
    } else {
        None
    };
    match shared {
        Some(why) => Err(format!(
            "--queue memory runs only with SQLite and without REDIS_URL ({why}): another process could take admissions over and the tickets promised in this one's queue would be refused; use the database's queue (the default) or Kafka"
        )
        .into()),
        None => Ok(()),
    }
}

/// How the start-up banner describes an in-memory counter: the campaigns it rebuilt, or
/// that it waits for the lease.
fn memory_counter(rebuilt: Option<usize>) -> String {
    match rebuilt {
        Some(rebuilt) => format!(
            "in memory, holding this database's counter lease (rebuilt {rebuilt} campaigns from the database)"
        ),
        None => "in memory, WAITING for this database's counter lease: another process admits \
                 with an in-memory counter; this one answers 503 not_ready until that one stops \
                 (set REDIS_URL to admit from several)"
            .to_owned(),
    }
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
                .kafka
                .kafka_brokers
                .as_deref()
                .ok_or("--queue kafka needs KAFKA_BROKERS")?;
            let kafka = config.kafka(brokers);
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
                    config.kafka.kafka_topic, config.kafka.kafka_group
                ),
            ));
            Ok(HandOff {
                queue,
                source,
                memory: None,
            })
        }
        // `Auto` is resolved by `Config::queue_kind`; the database's queue is its
        // fallback anyway.
        QueueKind::Sql | QueueKind::Auto => {
            let sql = SqlIssueQueue::new(store, config.sql_queue());
            let what = match config.issues_at_commit() {
                true => {
                    "the store itself: each ticket becomes its coupon in the commit that makes it durable (the issue_queue table keeps what cannot be issued)"
                }
                false => "the database's issue_queue table (durable at commit)",
            };
            description.push(("queue", what.to_owned()));
            Ok(HandOff {
                queue: runs_api.then(|| Arc::new(sql.clone()) as Arc<dyn IssueQueue>),
                source: runs_worker.then(|| Arc::new(sql.source()) as Arc<dyn IssueSource>),
                memory: None,
            })
        }
        QueueKind::Memory => {
            let queue = Arc::new(MemoryQueue::new(config.issuer.memory_queue_capacity));
            description.push((
                "queue",
                format!(
                    "in process (tokio channel, {} tickets; lost if the process is killed)",
                    config.issuer.memory_queue_capacity
                ),
            ));
            Ok(HandOff {
                queue: Some(queue.clone()),
                source: Some(queue.clone()),
                memory: Some(queue),
            })
        }
    }
}
