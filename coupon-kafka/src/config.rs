//! Settings shared by the producer and the consumer.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

/// The consumer's `max.poll.interval.ms`: a worker that does not poll for this long
/// leaves its group and its partitions go to the others. A waiting worker polls every
/// [`WorkerConfig::keep_alive_interval`](coupon_core::WorkerConfig), which must be
/// shorter.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// How to reach the brokers and which topics to use. Its `Debug` shows the keys of
/// [`KafkaConfig::extra`], not their values (they may hold passwords).
#[derive(Clone)]
#[non_exhaustive]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The ticket topic (default `coupon-issue`).
    pub topic: String,
    /// Where tickets that cannot be persisted, and messages that cannot be read, go
    /// (default `coupon-issue-dlq`).
    pub dead_letter_topic: String,
    /// Consumer group of the workers (default `firstcome-issuer`).
    pub group_id: String,
    /// Partitions the ticket topic must have (default 3); also used when creating it.
    pub partitions: i32,
    /// Create missing topics at start-up (default false: a missing topic is an error,
    /// so that a misspelt name fails loudly instead of writing where nobody reads).
    pub create_topics: bool,
    /// Producer `linger.ms` (default 10 ms): how long to wait to fill a broker batch.
    /// Each accepted apply waits up to this for its delivery report; a shorter linger
    /// sends more, smaller requests, and below the broker's answer time librdkafka's
    /// broker thread spins on `poll` while its in-flight requests are outstanding: at
    /// 2 ms the API process spent 144 µs of CPU per accepted apply against 109 µs at
    /// 10 ms (docs/benchmarks.md).
    pub linger: Duration,
    /// Producer `batch.num.messages` (default 10,000).
    pub batch_num_messages: u32,
    /// Producer `message.timeout.ms` (default 10 s): after it, a publish's outcome is
    /// unknown and the slot stays reserved for reconciliation.
    pub delivery_timeout: Duration,
    /// Longest the consumer waits to fill a batch once it has one ticket (default 20 ms).
    pub batch_linger: Duration,
    /// Extra librdkafka settings, applied last (security, client.id, tuning); none of
    /// [`RESERVED_SETTINGS`], which `connect` refuses.
    pub extra: BTreeMap<String, String>,
}

/// librdkafka settings the promises rest on, set by this crate and never from
/// [`KafkaConfig::extra`]: the producer's idempotence and `acks=all` (a delivery report
/// means the ticket is stored, a retry never duplicates it), the consumer committing
/// only what the store persisted and a new group starting from the earliest ticket, and
/// the fields that have a name of their own in [`KafkaConfig`].
/// librdkafka's aliases of them are refused too, with or without the `topic.` prefix
/// librdkafka accepts on topic settings; so is `partitioner`, which keeps one user's
/// tickets on one partition.
pub const RESERVED_SETTINGS: [&str; 10] = [
    "bootstrap.servers",
    "group.id",
    "message.timeout.ms",
    "enable.idempotence",
    "acks",
    "transactional.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "partitioner",
];

/// librdkafka's other names of [`RESERVED_SETTINGS`].
const ALIASES: [(&str, &str); 4] = [
    ("metadata.broker.list", "bootstrap.servers"),
    ("delivery.timeout.ms", "message.timeout.ms"),
    ("request.required.acks", "acks"),
    ("auto.commit.enable", "enable.auto.commit"),
];

/// The reserved setting `key` names, if any: `key` without a `topic.` prefix, its
/// alias resolved.
pub fn reserved_setting(key: &str) -> Option<&'static str> {
    let key = key.trim();
    let key = key.strip_prefix("topic.").unwrap_or(key);
    let key = ALIASES
        .iter()
        .find(|(alias, _)| *alias == key)
        .map_or(key, |(_, name)| name);
    RESERVED_SETTINGS.iter().copied().find(|name| *name == key)
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .field("group_id", &self.group_id)
            .field("partitions", &self.partitions)
            .field("create_topics", &self.create_topics)
            .field("linger", &self.linger)
            .field("batch_num_messages", &self.batch_num_messages)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("batch_linger", &self.batch_linger)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KafkaConfig {
    /// Settings for `brokers` with every default.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: "coupon-issue".to_owned(),
            dead_letter_topic: "coupon-issue-dlq".to_owned(),
            group_id: "firstcome-issuer".to_owned(),
            partitions: 3,
            create_topics: false,
            linger: Duration::from_millis(10),
            batch_num_messages: 10_000,
            delivery_timeout: Duration::from_secs(10),
            batch_linger: Duration::from_millis(20),
            extra: BTreeMap::new(),
        }
    }

    /// Sets both topic names.
    pub fn with_topics(
        mut self,
        topic: impl Into<String>,
        dead_letter_topic: impl Into<String>,
    ) -> Self {
        self.topic = topic.into();
        self.dead_letter_topic = dead_letter_topic.into();
        self
    }

    /// Sets [`KafkaConfig::group_id`].
    pub fn with_group_id(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = group_id.into();
        self
    }

    /// Sets [`KafkaConfig::partitions`].
    pub fn with_partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Sets [`KafkaConfig::create_topics`].
    pub fn with_create_topics(mut self, create: bool) -> Self {
        self.create_topics = create;
        self
    }

    /// Sets [`KafkaConfig::linger`].
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Sets [`KafkaConfig::delivery_timeout`].
    pub fn with_delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// Adds one librdkafka setting (one of [`RESERVED_SETTINGS`] makes `connect` fail).
    ///
    /// ```
    /// use coupon_kafka::KafkaConfig;
    /// let config = KafkaConfig::new("127.0.0.1:9092").with("compression.codec", "lz4");
    /// assert!(config.check().is_ok());
    /// assert!(config.clone().with("acks", "1").check().is_err());
    /// assert!(config.with("topic.delivery.timeout.ms", "60000").check().is_err());
    /// ```
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Refuses extra settings that would override one of [`RESERVED_SETTINGS`]: a
    /// permanent error naming it.
    pub fn check(&self) -> coupon_core::Result<()> {
        match self
            .extra
            .keys()
            .find_map(|key| Some((key, reserved_setting(key)?)))
        {
            Some((key, name)) => Err(coupon_core::Error::backend(
                crate::error::BACKEND,
                format!(
                    "the librdkafka setting {key:?} ({name}) is set by firstcome (its promises \
                     rest on it) and cannot be overridden; see coupon_kafka::RESERVED_SETTINGS"
                ),
                None,
            )),
            None => Ok(()),
        }
    }

    pub(crate) fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config
    }

    pub(crate) fn apply_extra(&self, config: &mut ClientConfig) {
        for (key, value) in &self.extra {
            config.set(key, value);
        }
    }

    /// An idempotent, `acks=all` producer: a retried send never duplicates, and a
    /// delivery report means every in-sync replica has the ticket.
    pub(crate) fn producer(&self) -> ClientConfig {
        let mut config = self.client();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger.as_millis().to_string())
            .set("batch.num.messages", self.batch_num_messages.to_string())
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            );
        self.apply_extra(&mut config);
        config
    }

    /// A group consumer that never commits on its own: offsets are committed by `ack`,
    /// after the store persisted the batch.
    pub(crate) fn consumer(&self) -> ClientConfig {
        let mut config = self.client();
        config
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false")
            .set("session.timeout.ms", "10000")
            // librdkafka waits this plus 3 s for the answer to a JoinGroup: at the default
            // (300 s) a join whose answer the network lost left the worker idle for five
            // minutes (the chaos tool's seed 15). The worker polls well within it, and
            // keeps polling while it waits out a store outage (`keep_alive`).
            .set(
                "max.poll.interval.ms",
                MAX_POLL_INTERVAL.as_millis().to_string(),
            )
            // Bounds what librdkafka prefetches: when the worker is slow, fetching stops.
            .set("queued.max.messages.kbytes", "16384");
        self.apply_extra(&mut config);
        config
    }
}
