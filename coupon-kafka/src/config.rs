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
    /// Producer `linger.ms` (default 1 ms): how long librdkafka waits to fill a request.
    /// Tickets already gather into records while earlier ones are in flight
    /// ([`KafkaConfig::max_group`]), so a long linger only adds to every apply's wait: at
    /// 1 ms the API served 1.2x the requests/s of 10 ms for the same CPU per accepted
    /// apply (docs/benchmarks.md). With `max_group` 1 (a record per ticket) keep 10 ms
    /// or more: below the broker's answer time librdkafka's broker thread then polls in
    /// a loop (144 µs of API CPU per accepted apply at 2 ms against 109 µs at 10 ms).
    pub linger: Duration,
    /// Producer `batch.num.messages` (default 10,000).
    pub batch_num_messages: u32,
    /// Most tickets in one record (default 250, at most [`MAX_GROUP`]): tickets waiting
    /// for one partition leave together, so the producer, the broker and the workers
    /// handle one record where they would handle hundreds. 1 sends every ticket in a
    /// record of its own, the format workers before groups read.
    pub max_group: usize,
    /// Producer `message.timeout.ms` (default 10 s): after it, a publish's outcome is
    /// unknown and the slot stays reserved for reconciliation.
    pub delivery_timeout: Duration,
    /// Longest the consumer waits to fill a batch once it has one ticket (default 20 ms).
    pub batch_linger: Duration,
    /// Extra librdkafka settings, applied last (security, client.id, tuning); none of
    /// [`RESERVED_SETTINGS`], which `connect` refuses.
    pub extra: BTreeMap<String, String>,
}

/// Most tickets [`KafkaConfig::max_group`] allows in one record: about 200 KB of JSON,
/// well inside a broker's default message size limit (1 MB).
pub const MAX_GROUP: usize = 1_000;

/// Room for one ticket's JSON in a record (about 190 bytes, with margin): `check` refuses
/// a `message.max.bytes` below `max_group` times this.
const TICKET_BYTES: usize = 256;

/// librdkafka settings the promises rest on, set by this crate and never from
/// [`KafkaConfig::extra`]: the producer's idempotence and `acks=all` (a delivery report
/// means the ticket is stored, a retry never duplicates it), the consumer committing
/// only what the store persisted and a new group starting from the earliest ticket, and
/// the fields that have a name of their own in [`KafkaConfig`].
/// librdkafka's aliases of them are refused too, with or without the `topic.` prefix
/// librdkafka accepts on topic settings; so is `partitioner`, which keeps one user's
/// dead letters on one partition (tickets choose theirs with
/// [`codec::partition`](crate::codec::partition)).
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
            .field("max_group", &self.max_group)
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
            linger: Duration::from_millis(1),
            batch_num_messages: 10_000,
            max_group: 250,
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

    /// Sets [`KafkaConfig::max_group`].
    pub fn with_max_group(mut self, max_group: usize) -> Self {
        self.max_group = max_group;
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

    /// Refuses extra settings that would override one of [`RESERVED_SETTINGS`], a
    /// [`KafkaConfig::max_group`] outside 1 to [`MAX_GROUP`], and a `message.max.bytes`
    /// too small for a full group: a permanent error naming it.
    ///
    /// ```
    /// use coupon_kafka::KafkaConfig;
    /// let config = KafkaConfig::new("127.0.0.1:9092");
    /// assert!(config.clone().with_max_group(0).check().is_err());
    /// assert!(config.clone().with_max_group(1_001).check().is_err());
    /// assert!(config.clone().with("message.max.bytes", "10000").check().is_err());
    /// assert!(config.with_max_group(10).with("message.max.bytes", "10000").check().is_ok());
    /// ```
    pub fn check(&self) -> coupon_core::Result<()> {
        if !(1..=MAX_GROUP).contains(&self.max_group) {
            return Err(coupon_core::Error::backend(
                crate::error::BACKEND,
                format!(
                    "max_group {} is not between 1 and {MAX_GROUP} tickets per record",
                    self.max_group
                ),
                None,
            ));
        }
        let largest_record = self.max_group.saturating_mul(TICKET_BYTES);
        if let Some(limit) = self.extra.get("message.max.bytes")
            && limit
                .parse::<usize>()
                .is_ok_and(|limit| limit < largest_record)
        {
            return Err(coupon_core::Error::backend(
                crate::error::BACKEND,
                format!(
                    "message.max.bytes {limit} is too small for groups of {} tickets \
                     (up to {largest_record} bytes): lower max_group",
                    self.max_group
                ),
                None,
            ));
        }
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

    /// A consumer that joins no group and commits nothing: it reads partitions it is
    /// given ([`IssueQueue::unacked`](coupon_core::IssueQueue::unacked)), leaving the
    /// workers' offsets alone.
    pub(crate) fn reader(&self) -> ClientConfig {
        let mut config = self.client();
        config
            // librdkafka wants a group id for a consumer; this one is never joined.
            .set("group.id", format!("{}-reader", self.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false");
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
            .set("queued.max.messages.kbytes", "16384")
            // A request whose answer the network lost fails after this and is retried.
            // At the default (60 s) an offset commit lost to a blackholed broker left
            // the group's offsets behind for a minute, and a counter rebuild, which
            // waits for them, with it (the chaos tool's seed 2).
            .set("socket.timeout.ms", CONSUMER_SOCKET_TIMEOUT_MS);
        self.apply_extra(&mut config);
        config
    }
}

/// How long a worker's request to the broker may go unanswered (librdkafka's
/// `socket.timeout.ms`): above the session timeout's heartbeats, well under a minute.
const CONSUMER_SOCKET_TIMEOUT_MS: &str = "10000";
