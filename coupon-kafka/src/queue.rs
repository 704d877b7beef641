//! [`IssueQueue`] on Kafka: the producing side, on the apply path.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coupon_core::{IssueQueue, IssueTicket, Result};
use rdkafka::producer::Producer;
use rdkafka::util::Timeout;

use crate::error::{kafka, publish_failed};
use crate::producer::ReplaceableProducer;
use crate::{KafkaConfig, codec, topics};

/// Publishes tickets to the ticket topic with an idempotent, `acks=all` producer.
///
/// `publish` returns once the delivery report says every in-sync replica stored the
/// ticket. A failure is [`Error::PublishRefused`](coupon_core::Error::PublishRefused)
/// only when the ticket certainly never reached a broker (local queue full, message too
/// large, topic unknown); a delivery timeout and everything else are
/// [`Error::PublishUnknown`](coupon_core::Error::PublishUnknown), and the settler rolls
/// the admission forward. Messages are keyed `campaign:user`.
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
    producer: Arc<ReplaceableProducer>,
    topic: String,
}

impl std::fmt::Debug for KafkaIssueQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaIssueQueue")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaIssueQueue {
    /// Checks (or creates) the topics, then builds the producer.
    pub async fn connect(config: KafkaConfig) -> Result<Self> {
        topics::ensure_topics(&config).await?;
        let producer = ReplaceableProducer::new(config.producer(), &config.topic)
            .map_err(|e| kafka(e, || "creating the producer".into()))?;
        Ok(Self {
            producer: Arc::new(producer),
            topic: config.topic,
        })
    }
}

#[async_trait]
impl IssueQueue for KafkaIssueQueue {
    /// The cluster answers a metadata request for the ticket topic within 2 s.
    async fn ready(&self) -> Result<()> {
        let producer = self.producer.current();
        let topic = self.topic.clone();
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
        // Never wait on a full local queue: that would stall the apply path; refusing
        // lets the issuer release the slot at once.
        self.producer
            .send(
                Some(key.as_str()),
                Some(payload.as_slice()),
                None,
                Timeout::After(Duration::ZERO),
            )
            .await
            .map_err(publish_failed)
    }
}
