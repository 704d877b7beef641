//! The dead-letter topic: tickets past the retry budget and unreadable messages.

use coupon_core::{IssueTicket, Result};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::error::kafka;
use crate::{KafkaConfig, codec};

/// Header naming why a message was dead-lettered.
pub const REASON_HEADER: &str = "firstcome-reason";
/// Header saying what the payload is: `ticket` (a readable ticket that could not be
/// persisted) or `malformed` (the original bytes, unreadable).
pub const KIND_HEADER: &str = "firstcome-kind";
/// Header with the `topic/partition/offset` a malformed message came from.
pub const ORIGIN_HEADER: &str = "firstcome-origin";

#[derive(Clone)]
pub(crate) struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetters {
    pub(crate) fn new(config: &KafkaConfig) -> Result<Self> {
        Ok(Self {
            producer: config
                .producer()
                .create()
                .map_err(|e| kafka(e, || "creating the dead-letter producer".into()))?,
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
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        self.producer
            .send(record, Timeout::Never)
            .await
            .map(|_| ())
            .map_err(|(error, _)| kafka(error, || format!("dead-lettering to {:?}", self.topic)))
    }
}
