//! The dead-letter topic: tickets past the retry budget and unreadable messages.

use std::sync::Arc;

use coupon_core::{IssueTicket, Result};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::util::Timeout;

use crate::error::classify;
use crate::producer::ReplaceableProducer;
use crate::{KafkaConfig, codec};

/// Header naming why a message was dead-lettered.
pub const REASON_HEADER: &str = "firstcome-reason";
/// Header saying what the payload is: `ticket` (a readable ticket that could not be
/// persisted) or `malformed` (the original bytes, unreadable).
pub const KIND_HEADER: &str = "firstcome-kind";
/// Header with the `topic/partition/offset` a malformed message came from.
pub const ORIGIN_HEADER: &str = "firstcome-origin";

/// The dead-letter producer, replaced like the ticket producer when a broker restart
/// breaks it: otherwise one unreadable message after a restart would stall the consumer.
#[derive(Clone)]
pub(crate) struct DeadLetters {
    producer: Arc<ReplaceableProducer>,
    topic: String,
}

impl DeadLetters {
    pub(crate) fn new(config: &KafkaConfig) -> Result<Self> {
        let producer = ReplaceableProducer::new(config.producer(), &config.dead_letter_topic)
            .map_err(|e| classify(e, || "creating the dead-letter producer".into()))?;
        Ok(Self {
            producer: Arc::new(producer),
            topic: config.dead_letter_topic.clone(),
        })
    }

    pub(crate) async fn ticket(&self, ticket: &IssueTicket, reason: &str) -> Result<()> {
        let key = codec::key(ticket);
        self.send(
            Some(key.as_bytes()),
            Some(&codec::encode(ticket)),
            "ticket",
            reason,
            None,
        )
        .await
    }

    pub(crate) async fn malformed(
        &self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        reason: &str,
        origin: &str,
    ) -> Result<()> {
        self.send(key, payload, "malformed", reason, Some(origin))
            .await
    }

    async fn send(
        &self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        kind: &str,
        reason: &str,
        origin: Option<&str>,
    ) -> Result<()> {
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: KIND_HEADER,
                value: Some(kind),
            })
            .insert(Header {
                key: REASON_HEADER,
                value: Some(reason),
            });
        if let Some(origin) = origin {
            headers = headers.insert(Header {
                key: ORIGIN_HEADER,
                value: Some(origin),
            });
        }
        self.producer
            .send(key, payload, Some(headers), Timeout::Never)
            .await
            .map_err(|error| classify(error, || format!("dead-lettering to {:?}", self.topic)))
    }
}
