//! [`IssueQueue`] on Kafka: the producing side, on the apply path.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coupon_core::{Error, IssueQueue, IssueTicket, QueueMark, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::error::{classify, publish_failed};
use crate::group::Lanes;
use crate::producer::ReplaceableProducer;
use crate::{KafkaConfig, topics};

/// Publishes tickets to the ticket topic with an idempotent, `acks=all` producer.
///
/// `publish` returns once the delivery report says every in-sync replica stored the
/// ticket. A failure is [`Error::PublishRefused`](coupon_core::Error::PublishRefused)
/// only when the ticket certainly never reached a broker (local queue full, message too
/// large, topic unknown); a delivery timeout and everything else are
/// [`Error::PublishUnknown`](coupon_core::Error::PublishUnknown), and the settler rolls
/// the admission forward.
///
/// Tickets travel in groups: those waiting for one partition while its earlier records
/// are in flight leave together as one record (a JSON array, or the ticket alone when
/// it is one), at most [`KafkaConfig::max_group`] of them; each publish still returns
/// only with its record's delivery report. A user's tickets all go to one partition
/// ([`codec::partition`](crate::codec::partition)), in order.
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
    /// One lane per partition, gathering tickets into records.
    lanes: Arc<Lanes>,
    /// A client of the workers' group that never joins it: it reads the end of each
    /// partition and the offsets the group committed, for [`IssueQueue::drained`].
    offsets: Arc<BaseConsumer>,
    /// The settings of a consumer that reads without joining the group, for
    /// [`IssueQueue::unacked`].
    reader: ClientConfig,
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
        config.check()?;
        topics::ensure_topics(&config).await?;
        let producer = ReplaceableProducer::new(config.producer(), &config.topic)
            .map_err(|e| classify(e, || "creating the producer".into()))?;
        let offsets: BaseConsumer = config
            .consumer()
            .create()
            .map_err(|e| classify(e, || "creating the offsets client".into()))?;
        let producer = Arc::new(producer);
        let lanes = Arc::new(Lanes::start(&producer, config.partitions, config.max_group));
        Ok(Self {
            lanes,
            producer,
            offsets: Arc::new(offsets),
            reader: config.reader(),
            topic: config.topic,
        })
    }

    /// Runs a blocking call of the offsets client off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&BaseConsumer, &str) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (offsets, topic) = (self.offsets.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || call(&offsets, &topic))
            .await
            .map_err(|e| {
                Error::backend(crate::error::BACKEND, "offsets task failed", Some(e.into()))
            })?
    }
}

/// How long one metadata or offsets request may take.
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long reading the unacked tickets may take: past it the rebuild waits for the
/// drain instead.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the workers' group stands in each partition of `topic` (`mark.len()` of them):
/// its committed offset, or the partition's start when it committed nothing.
fn group_positions(client: &BaseConsumer, topic: &str, partitions: usize) -> Result<Vec<i64>> {
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        let partition = i32::try_from(partition).unwrap_or(i32::MAX);
        wanted
            .add_partition_offset(topic, partition, Offset::Invalid)
            .map_err(|e| classify(e, || "listing partitions".into()))?;
    }
    let committed = client
        .committed_offsets(wanted, OFFSETS_TIMEOUT)
        .map_err(|e| classify(e, || format!("reading the group's offsets on {topic:?}")))?;
    (0..partitions)
        .map(|partition| {
            let partition = i32::try_from(partition).unwrap_or(i32::MAX);
            let (low, high) = client
                .fetch_watermarks(topic, partition, OFFSETS_TIMEOUT)
                .map_err(|e| classify(e, || format!("reading watermarks of {topic:?}")))?;
            Ok(
                match committed
                    .find_partition(topic, partition)
                    .map(|e| e.offset())
                {
                    // Where the group resumes: what retention removed below the
                    // partition's start is not waiting for anyone.
                    Some(Offset::Offset(offset)) if offset <= high => offset.max(low),
                    // Nothing committed yet, or past the end (a topic recreated): the
                    // group starts at what is still there.
                    _ => low,
                },
            )
        })
        .collect()
}

/// Reads `topic` from `from` to `to` (exclusive) in every partition where the first is
/// below the second, with a consumer of `reader`'s settings, and decodes the tickets;
/// records that are not tickets hold no admission (the workers dead-letter them).
fn read_between(
    reader: &ClientConfig,
    topic: &str,
    from: &[i64],
    to: &[i64],
) -> Result<Vec<IssueTicket>> {
    let mut assignment = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for (partition, (&start, &end)) in from.iter().zip(to).enumerate() {
        let partition = i32::try_from(partition).unwrap_or(i32::MAX);
        if start < end {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(start))
                .map_err(|e| classify(e, || "listing partitions".into()))?;
            ends.insert(partition, end);
        }
    }
    let mut tickets = Vec::new();
    if ends.is_empty() {
        return Ok(tickets);
    }
    let consumer: BaseConsumer = reader
        .create()
        .map_err(|e| classify(e, || "creating the reader".into()))?;
    consumer
        .assign(&assignment)
        .map_err(|e| classify(e, || format!("assigning {topic:?} to the reader")))?;
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    while !ends.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(Error::unavailable(
                crate::error::BACKEND,
                format!("reading the unacked tickets of {topic:?} took over {READ_TIMEOUT:?}"),
                None,
            ));
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.map_err(|e| classify(e, || format!("reading {topic:?}")))?;
        let Some(&end) = ends.get(&message.partition()) else {
            continue;
        };
        if message.offset() < end {
            match coupon_core::codec::decode_group(message.payload()) {
                Ok(group) => tickets.extend(group),
                // A ticket of a version this build does not read (a newer process's,
                // mid-upgrade) may be a promise: only a worker that reads it can say.
                Err(error @ coupon_core::codec::DecodeError::UnknownVersion(_)) => {
                    return Err(Error::unavailable(
                        crate::error::BACKEND,
                        format!("{topic:?} holds a ticket this build cannot read: {error}"),
                        None,
                    ));
                }
                // Not a ticket at all: no admission; the workers dead-letter it.
                Err(_) => {}
            }
        }
        if message.offset() + 1 >= end {
            ends.remove(&message.partition());
        }
    }
    Ok(tickets)
}

/// The number of partitions of `topic`.
fn partitions(client: &BaseConsumer, topic: &str) -> Result<i32> {
    let metadata = client
        .fetch_metadata(Some(topic), OFFSETS_TIMEOUT)
        .map_err(|e| classify(e, || format!("reading metadata of {topic:?}")))?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    if count == 0 {
        // An empty mark would count as drained at once.
        return Err(Error::unavailable(
            crate::error::BACKEND,
            format!("the metadata of {topic:?} lists no partition"),
            None,
        ));
    }
    i32::try_from(count)
        .map_err(|_| Error::backend(crate::error::BACKEND, "too many partitions", None))
}

#[async_trait]
impl IssueQueue for KafkaIssueQueue {
    /// Every partition's lane runs and the cluster answers a metadata request for the
    /// ticket topic within 2 s.
    async fn ready(&self) -> Result<()> {
        if !self.lanes.running() {
            return Err(Error::backend(
                crate::error::BACKEND,
                "a partition's lane has stopped: this queue refuses its tickets",
                None,
            ));
        }
        let producer = self.producer.current();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .map(|_| ())
                .map_err(|e| classify(e, || format!("reading metadata of {topic:?}")))
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

    /// The end (high watermark) of each partition of the ticket topic.
    async fn mark(&self) -> Result<Option<QueueMark>> {
        self.blocking(|client, topic| {
            let mut positions = Vec::new();
            for partition in 0..partitions(client, topic)? {
                let (_, high) = client
                    .fetch_watermarks(topic, partition, OFFSETS_TIMEOUT)
                    .map_err(|e| classify(e, || format!("reading watermarks of {topic:?}")))?;
                positions.push(high);
            }
            Ok(Some(QueueMark { positions }))
        })
        .await
    }

    /// The workers' group committed, in every partition, at least the mark's offset
    /// (a partition that was empty at the mark needs no commit).
    async fn drained(&self, mark: &QueueMark) -> Result<bool> {
        let mark = mark.positions.clone();
        self.blocking(move |client, topic| {
            let done = group_positions(client, topic, mark.len())?;
            Ok(done.iter().zip(&mark).all(|(done, end)| done >= end))
        })
        .await
    }

    /// Reads each partition from where the workers' group committed up to the mark, with
    /// a consumer that joins no group (the workers' offsets stay theirs), within 5 s.
    async fn unacked(&self, mark: &QueueMark) -> Result<Option<Vec<IssueTicket>>> {
        let (to, reader) = (mark.positions.clone(), self.reader.clone());
        self.blocking(move |client, topic| {
            let from = group_positions(client, topic, to.len())?;
            read_between(&reader, topic, &from, &to).map(Some)
        })
        .await
    }

    /// Hands the ticket to its partition's lane (the `group` module): it leaves in that
    /// partition's next record, with the other tickets waiting there.
    async fn publish(&self, ticket: &IssueTicket) -> Result<()> {
        // A full lane refuses at once rather than stall the apply path; the issuer then
        // gives the slot back.
        self.lanes.publish(ticket).await.map_err(publish_failed)
    }
}
