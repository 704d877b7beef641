//! A producer that replaces itself when a broker restart leaves its idempotence state
//! broken; shared by the ticket queue and the dead-letter topic.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{OwnedHeaders, ToBytes};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

/// Least time between two replacements.
const RESET_INTERVAL: Duration = Duration::from_secs(1);

/// An idempotent producer can be left unusable by a broker restart or failover: every
/// later send fails or times out. When a send fails that way, the producer is replaced
/// by a new one (new producer id, sequences from zero), at most once a second; messages
/// still in the old one are purged and fail.
pub(crate) struct ReplaceableProducer {
    producer: RwLock<Arc<FutureProducer>>,
    settings: ClientConfig,
    /// What it produces to, for its log lines.
    topic: String,
    last_reset: Mutex<Instant>,
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

impl ReplaceableProducer {
    pub(crate) fn new(settings: ClientConfig, topic: &str) -> Result<Self, KafkaError> {
        let producer: FutureProducer = settings.create()?;
        Ok(Self {
            producer: RwLock::new(Arc::new(producer)),
            settings,
            topic: topic.to_owned(),
            last_reset: Mutex::new(Instant::now()),
        })
    }

    /// The current producer.
    pub(crate) fn current(&self) -> Arc<FutureProducer> {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends one record to the topic and awaits its delivery report; replaces the
    /// producer when the failure says its state broke.
    pub(crate) async fn send<K, P>(
        &self,
        key: Option<&K>,
        payload: Option<&P>,
        headers: Option<OwnedHeaders>,
        queue_timeout: Timeout,
    ) -> Result<(), KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let mut record: FutureRecord<'_, K, P> = FutureRecord::to(&self.topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        let producer = self.current();
        match producer.send(record, queue_timeout).await {
            Ok(_) => Ok(()),
            Err((error, _)) => {
                self.failed(&producer, &error);
                Err(error)
            }
        }
    }

    /// Queues one record for `partition` without waiting (a full local queue is an
    /// error at once) and returns the wait for its delivery report. Records queued by
    /// successive calls reach their partition in that order.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        partition: i32,
        payload: &[u8],
    ) -> Result<impl Future<Output = Result<(), KafkaError>> + Send + 'static, KafkaError> {
        let record = FutureRecord::<'_, [u8], [u8]>::to(&self.topic)
            .partition(partition)
            .payload(payload);
        let producer = self.current();
        match producer.send_result(record) {
            Ok(delivery) => {
                let this = self.clone();
                Ok(async move {
                    let result = match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((error, _))) => Err(error),
                        // The producer dropped the report: nothing says whether it was stored.
                        Err(_) => Err(KafkaError::Canceled),
                    };
                    if let Err(error) = &result {
                        this.failed(&producer, error);
                    }
                    result
                })
            }
            Err((error, _)) => {
                self.failed(&producer, &error);
                Err(error)
            }
        }
    }

    /// Replaces `producer` when `error` says its state broke.
    fn failed(&self, producer: &Arc<FutureProducer>, error: &KafkaError) {
        if producer_state_broken(error) || producer.client().fatal_error().is_some() {
            self.replace(producer);
        }
    }

    /// Replaces `failed` with a fresh producer unless another call already did, or did
    /// less than [`RESET_INTERVAL`] ago.
    fn replace(&self, failed: &Arc<FutureProducer>) {
        let mut last_reset = self.last_reset.lock().unwrap_or_else(|e| e.into_inner());
        if last_reset.elapsed() < RESET_INTERVAL {
            return;
        }
        let mut current = self.producer.write().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&current, failed) {
            return;
        }
        match self.settings.create::<FutureProducer>() {
            Ok(fresh) => {
                let old = std::mem::replace(&mut *current, Arc::new(fresh));
                *last_reset = Instant::now();
                tracing::warn!(topic = %self.topic, "replaced a producer whose idempotence state broke");
                // Dropping a producer purges and flushes for up to 500 ms: not on a runtime thread.
                drop(current);
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(error) => tracing::error!(%error, "could not create a replacement producer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_fencing_break_the_producer_but_a_full_queue_does_not() {
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
            RDKafkaErrorCode::ProducerFenced,
        ] {
            assert!(producer_state_broken(&KafkaError::MessageProduction(code)));
        }
        assert!(!producer_state_broken(&KafkaError::MessageProduction(
            RDKafkaErrorCode::QueueFull
        )));
    }
}
