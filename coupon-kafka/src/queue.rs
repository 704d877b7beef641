//! [`IssueQueue`] on Kafka: the producing side, on the apply path.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coupon_core::{IssueQueue, IssueTicket, Result};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::error::{kafka, publish_failed};
use crate::{KafkaConfig, codec, topics};

/// Least time between two producer replacements.
const RESET_INTERVAL: Duration = Duration::from_secs(1);

/// Publishes tickets to the ticket topic with an idempotent, `acks=all` producer.
///
/// `publish` returns once the delivery report says every in-sync replica stored the
/// ticket. A failure is [`Error::PublishRefused`](coupon_core::Error::PublishRefused)
/// only when the ticket certainly never reached a broker (local queue full, message too
/// large, topic unknown); a delivery timeout and everything else are
/// [`Error::PublishUnknown`](coupon_core::Error::PublishUnknown), so the issuer keeps the
/// slot for reconciliation. Messages are keyed `campaign:user`.
///
/// An idempotent producer can be left unusable by a broker restart or failover: every
/// later send fails or times out. When a send fails that way, the producer is replaced
/// by a new one (new producer id, sequences from zero), at most once a second; messages
/// still in the old one are purged and answer [`Error::PublishUnknown`](coupon_core::Error::PublishUnknown).
///
/// ```no_run
/// # async fn demo() -> coupon_core::Result<()> {
/// use coupon_kafka::{KafkaConfig, KafkaIssueQueue};
/// let queue = KafkaIssueQueue::connect(KafkaConfig::new("127.0.0.1:9092")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KafkaIssueQueue {
    shared: Arc<Shared>,
}

struct Shared {
    producer: RwLock<Arc<FutureProducer>>,
    settings: ClientConfig,
    topic: String,
    last_reset: Mutex<Instant>,
}

impl std::fmt::Debug for KafkaIssueQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaIssueQueue")
            .field("topic", &self.shared.topic)
            .finish_non_exhaustive()
    }
}

/// Errors after which an idempotent producer may be stuck, not just the message: its
/// state is broken, or a message timed out (the producer then has to bump its epoch,
/// which brokers without KIP-360 never grant, and every later message times out too).
fn producer_state_broken(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::Unknown
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::ProducerFenced
        )
    )
}

impl KafkaIssueQueue {
    /// Checks (or creates) the topics, then builds the producer.
    pub async fn connect(config: KafkaConfig) -> Result<Self> {
        topics::ensure_topics(&config).await?;
        let settings = config.producer();
        let producer: FutureProducer = settings
            .create()
            .map_err(|e| kafka(e, || "creating the producer".into()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                producer: RwLock::new(Arc::new(producer)),
                settings,
                topic: config.topic,
                last_reset: Mutex::new(Instant::now()),
            }),
        })
    }

    fn producer(&self) -> Arc<FutureProducer> {
        self.shared
            .producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces `failed` with a fresh producer unless another call already did, or did
    /// less than [`RESET_INTERVAL`] ago.
    fn replace(&self, failed: &Arc<FutureProducer>) {
        let mut last_reset = self
            .shared
            .last_reset
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last_reset.elapsed() < RESET_INTERVAL {
            return;
        }
        let mut current = self
            .shared
            .producer
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&current, failed) {
            return;
        }
        match self.shared.settings.create::<FutureProducer>() {
            Ok(fresh) => {
                let old = std::mem::replace(&mut *current, Arc::new(fresh));
                *last_reset = Instant::now();
                tracing::warn!(topic = %self.shared.topic, "replaced a producer whose idempotence state broke");
                // Dropping a producer purges and flushes for up to 500 ms: not on a runtime thread.
                drop(current);
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(error) => tracing::error!(%error, "could not create a replacement producer"),
        }
    }
}

#[async_trait]
impl IssueQueue for KafkaIssueQueue {
    /// The cluster answers a metadata request for the ticket topic within 2 s.
    async fn ready(&self) -> Result<()> {
        let producer = self.producer();
        let topic = self.shared.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .map(|_| ())
                .map_err(|e| kafka(e, || format!("reading metadata of {topic:?}")))
        })
        .await
        .map_err(|e| {
            coupon_core::Error::backend(
                crate::error::BACKEND,
                "metadata task failed",
                Some(e.into()),
            )
        })?
    }

    async fn publish(&self, ticket: &IssueTicket) -> Result<()> {
        let key = codec::key(ticket);
        let payload = codec::encode(ticket);
        let record = FutureRecord::to(&self.shared.topic)
            .key(&key)
            .payload(&payload);
        let producer = self.producer();
        // Never wait on a full local queue: that would stall the apply path; refusing
        // lets the issuer release the slot at once.
        match producer.send(record, Timeout::After(Duration::ZERO)).await {
            Ok(_) => Ok(()),
            Err((error, _)) => {
                if producer_state_broken(&error) || producer.client().fatal_error().is_some() {
                    self.replace(&producer);
                }
                Err(publish_failed(error))
            }
        }
    }
}
