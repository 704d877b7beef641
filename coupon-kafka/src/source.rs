//! [`IssueSource`] on Kafka: a consumer group that commits only what the store persisted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use coupon_core::{Batch, Error, IssueSource, IssueTicket, Result};
use rdkafka::Offset;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use tokio::sync::Notify;

use crate::commit::Committer;
use crate::context::{Context, Pending, SharedState, State, lock};
use crate::dead_letter::DeadLetters;
use crate::error::{BACKEND, classify};
use crate::{KafkaConfig, codec, topics};

/// Consumes tickets as a member of the configured consumer group.
///
/// - Offsets are committed after [`IssueSource::ack`] (and after an unreadable message
///   is dead-lettered), only up to the first message not yet done, so a commit never
///   passes a ticket that is not persisted, whatever order batches are acked in.
/// - A thread of the source sends the commits, one at a time, reads each answer, and
///   sends a failed commit again a second later, whether or not anything more arrives:
///   once every message of a partition is done, the group's offset reaches its end,
///   which [`IssueQueue::drained`](coupon_core::IssueQueue::drained) waits for.
/// - A batch dropped without an ack (a worker task aborted mid-batch) is handed out
///   again; a crashed process's uncommitted messages go to the group's next owner.
/// - Partitions revoked by a rebalance are forgotten: nothing is committed for them.
/// - A message holds one ticket or a group of them; its offset is committed once every
///   ticket of it is done, whichever batches they were handed out in.
/// - An unreadable message (not JSON, unknown version, bad shape, in any ticket of a
///   group) is parked whole on the dead-letter topic with its reason and origin, and its
///   offset counts as done.
/// - Back-pressure: messages are fetched only while the worker asks, and librdkafka's
///   prefetch is bounded (`queued.max.messages.kbytes`), so a slow store slows fetching.
/// - While the worker waits out an unavailable store, [`IssueSource::keep_alive`] pauses
///   the assigned partitions and polls, so the consumer stays in its group past
///   `max.poll.interval.ms` without fetching anything new; the next `next_batch`
///   resumes them.
pub struct KafkaIssueSource {
    consumer: Arc<StreamConsumer<Context>>,
    paused: AtomicBool,
    revoked: Arc<std::sync::atomic::AtomicU64>,
    state: SharedState,
    redelivered: Arc<Notify>,
    committer: Committer,
    receiving: tokio::sync::Mutex<()>,
    dead_letters: DeadLetters,
    topic: String,
    linger: Duration,
}

impl std::fmt::Debug for KafkaIssueSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaIssueSource")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Travels inside a [`Batch`]; gives its tickets back unless acked.
struct Receipt {
    state: SharedState,
    redelivered: Arc<Notify>,
    pending: Vec<Pending>,
    acked: bool,
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if !self.acked && !self.pending.is_empty() {
            let mut state = lock(&self.state);
            for pending in self.pending.drain(..).rev() {
                state.redelivery.push_front(pending);
            }
            drop(state);
            self.redelivered.notify_one();
        }
    }
}

impl KafkaIssueSource {
    /// Checks (or creates) the topics, joins the group and subscribes.
    pub async fn connect(config: KafkaConfig) -> Result<Self> {
        config.check()?;
        topics::ensure_topics(&config).await?;
        let state = SharedState::default();
        let revoked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let consumer: StreamConsumer<Context> = config
            .consumer()
            .create_with_context(Context {
                state: state.clone(),
                revoked: revoked.clone(),
            })
            .map_err(|e| classify(e, || "creating the consumer".into()))?;
        consumer
            .subscribe(&[&config.topic])
            .map_err(|e| classify(e, || format!("subscribing to {:?}", config.topic)))?;
        let consumer = Arc::new(consumer);
        Ok(Self {
            committer: Committer::start(
                Arc::downgrade(&consumer),
                config.topic.clone(),
                state.clone(),
            )
            .map_err(|e| Error::backend(BACKEND, "starting the commit thread", Some(e.into())))?,
            consumer,
            paused: AtomicBool::new(false),
            revoked,
            state,
            redelivered: Arc::new(Notify::new()),
            receiving: tokio::sync::Mutex::new(()),
            dead_letters: DeadLetters::new(&config)?,
            topic: config.topic,
            linger: config.batch_linger,
        })
    }

    fn accept(&self, message: &BorrowedMessage<'_>) {
        let (partition, offset) = (message.partition(), message.offset());
        let mut state = lock(&self.state);
        match codec::decode_group(message.payload()) {
            Ok(tickets) => {
                state.offsets.delivered(partition, offset, tickets.len());
                state
                    .buffer
                    .extend(tickets.into_iter().enumerate().map(|(index, ticket)| {
                        Pending::Ticket {
                            partition,
                            offset,
                            index,
                            ticket,
                        }
                    }));
            }
            Err(error) => {
                state.offsets.delivered(partition, offset, 1);
                state.buffer.push_back(Pending::Malformed {
                    partition,
                    offset,
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec),
                    reason: error.to_string(),
                });
            }
        }
    }

    fn buffered(&self) -> usize {
        let mut state = lock(&self.state);
        let State {
            buffer, redelivery, ..
        } = &mut *state;
        while let Some(pending) = redelivery.pop_back() {
            buffer.push_front(pending);
        }
        buffer.len()
    }

    /// Dead-letters the malformed messages at the front of the buffer and takes up to
    /// `max` tickets. A malformed message leaves the buffer only once the dead-letter
    /// topic has it.
    async fn take(&self, max: usize) -> Result<Vec<Pending>> {
        let mut taken = Vec::new();
        loop {
            let front = lock(&self.state).buffer.front().cloned();
            match front {
                None => return Ok(taken),
                Some(Pending::Malformed {
                    partition,
                    offset,
                    key,
                    payload,
                    reason,
                }) => {
                    if !taken.is_empty() {
                        return Ok(taken); // keep delivery order: tickets before it go first
                    }
                    let origin = format!("{}/{partition}/{offset}", self.topic);
                    tracing::warn!(%origin, %reason, "dead-lettering an unreadable message");
                    self.dead_letters
                        .malformed(key.as_deref(), payload.as_deref(), &reason, &origin)
                        .await?;
                    {
                        let mut state = lock(&self.state);
                        state.buffer.pop_front();
                        state.offsets.done_all(partition, offset);
                    }
                    // No ack will come for it: at a partition's end, nothing else would
                    // commit its offset, and the queue would never count as drained.
                    self.committer.kick();
                }
                Some(Pending::Ticket { .. }) => {
                    let mut state = lock(&self.state);
                    while taken.len() < max
                        && matches!(state.buffer.front(), Some(Pending::Ticket { .. }))
                    {
                        taken.extend(state.buffer.pop_front());
                    }
                    if taken.len() == max {
                        return Ok(taken);
                    }
                }
            }
        }
    }

    /// Partitions taken from this consumer by rebalances since it joined its group: a
    /// member evicted for polling too rarely loses all of its partitions.
    pub fn revoked_partitions(&self) -> u64 {
        self.revoked.load(Ordering::Relaxed)
    }

    /// Resumes the partitions [`IssueSource::keep_alive`] paused.
    fn resume(&self) -> Result<()> {
        if self.paused.swap(false, Ordering::SeqCst) {
            let assignment = self
                .consumer
                .assignment()
                .map_err(|e| classify(e, || "reading the assignment".into()))?;
            self.consumer
                .resume(&assignment)
                .map_err(|e| classify(e, || format!("resuming {assignment:?}")))?;
        }
        Ok(())
    }
}

#[async_trait]
impl IssueSource for KafkaIssueSource {
    async fn next_batch(&self, max: usize) -> Result<Option<Batch>> {
        let max = max.max(1);
        // One caller at a time; every step below leaves what it received in the shared
        // buffer, so a cancelled call loses nothing.
        let _receiving = self.receiving.lock().await;
        self.resume()?;
        loop {
            if self.buffered() == 0 {
                let received = tokio::select! {
                    received = self.consumer.recv() => Some(received),
                    () = self.redelivered.notified() => None,
                };
                match received {
                    Some(Ok(message)) => self.accept(&message),
                    Some(Err(error)) => {
                        return Err(classify(error, || format!("consuming {:?}", self.topic)));
                    }
                    None => continue,
                }
                let deadline = tokio::time::Instant::now() + self.linger;
                while self.buffered() < max {
                    match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                        Ok(Ok(message)) => self.accept(&message),
                        Ok(Err(_)) | Err(_) => break,
                    }
                }
            }
            let taken = self.take(max).await?;
            if taken.is_empty() {
                continue; // only unreadable messages, now dead-lettered
            }
            let tickets = taken
                .iter()
                .filter_map(|pending| match pending {
                    Pending::Ticket { ticket, .. } => Some(ticket.clone()),
                    Pending::Malformed { .. } => None,
                })
                .collect();
            let receipt = Receipt {
                state: self.state.clone(),
                redelivered: self.redelivered.clone(),
                pending: taken,
                acked: false,
            };
            return Ok(Some(Batch::new(tickets, receipt)));
        }
    }

    async fn ack(&self, batch: Batch) -> Result<()> {
        let mut receipt = batch.into_receipt::<Receipt>().map_err(|_| {
            Error::backend(BACKEND, "ack of a batch this source did not deliver", None)
        })?;
        {
            let mut state = lock(&self.state);
            for pending in &receipt.pending {
                if let Pending::Ticket {
                    partition,
                    offset,
                    index,
                    ..
                } = pending
                {
                    state.offsets.done(*partition, *offset, *index);
                }
            }
        }
        receipt.acked = true;
        drop(receipt);
        // Committed by the committer's thread, which sends a failed commit again: the
        // tickets are done whatever becomes of the commit, and the worker need not wait.
        self.committer.kick();
        Ok(())
    }

    async fn dead_letter(&self, ticket: &IssueTicket, reason: &str) -> Result<()> {
        self.dead_letters.ticket(ticket, reason).await
    }

    async fn keep_alive(&self) -> Result<()> {
        // A `next_batch` in progress polls by itself.
        let Ok(_receiving) = self.receiving.try_lock() else {
            return Ok(());
        };
        let assignment = self
            .consumer
            .assignment()
            .map_err(|e| classify(e, || "reading the assignment".into()))?;
        if assignment.count() > 0 {
            self.consumer
                .pause(&assignment)
                .map_err(|e| classify(e, || format!("pausing {assignment:?}")))?;
            self.paused.store(true, Ordering::SeqCst);
        }
        // One poll tells librdkafka the application is alive and serves rebalances. A
        // message fetched before the pause is kept in the buffer, not lost.
        if let Ok(Ok(message)) =
            tokio::time::timeout(Duration::from_millis(10), self.consumer.recv()).await
        {
            self.accept(&message);
        }
        Ok(())
    }

    /// Messages between this consumer's position and the end of each partition it owns:
    /// records, each holding one ticket or a group of up to
    /// [`KafkaConfig::max_group`](crate::KafkaConfig::max_group).
    async fn lag(&self) -> Result<Option<u64>> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let positions = consumer
                .position()
                .map_err(|e| classify(e, || "reading positions".into()))?;
            let mut lag = 0u64;
            for element in positions.elements_for_topic(&topic) {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, element.partition(), Duration::from_secs(5))
                    .map_err(|e| classify(e, || format!("reading watermarks of {topic:?}")))?;
                let position = match element.offset() {
                    Offset::Offset(position) => position,
                    // Nothing consumed yet here: the whole partition is waiting.
                    _ => 0,
                };
                lag += u64::try_from(high - position).unwrap_or(0);
            }
            Ok(Some(lag))
        })
        .await
        .map_err(|e| Error::backend(BACKEND, "lag task failed", Some(e.into())))?
    }
}
