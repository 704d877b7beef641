//! The libraries' settings, built from the flags, and the check of those that cannot
//! work.

use std::time::Duration;

use coupon_core::{IssuerConfig, SettlerConfig, WorkerConfig};
use coupon_kafka::KafkaConfig;
use coupon_redis::RedisCounterConfig;
use coupon_seaorm::{SeaOrmStoreConfig, SqlQueueConfig};

use super::{Config, QueueKind};

impl Config {
    /// The issuer's settings.
    pub fn issuer(&self) -> IssuerConfig {
        IssuerConfig::default()
            .with_sold_out_ttl(Duration::from_millis(self.sold_out_ttl_ms))
            .with_publish_timeout(Duration::from_millis(self.publish_timeout_ms))
            .with_campaign_refresh(Duration::from_millis(self.campaign_refresh_ms))
            .with_drain_fallback(Duration::from_millis(self.drain_fallback_ms))
    }

    /// The settler's settings: its republishes are bounded like the issuer's publishes
    /// (`--publish-timeout-ms`).
    pub fn settler(&self) -> SettlerConfig {
        SettlerConfig::default()
            .with_grace(Duration::from_millis(self.settle_grace_ms))
            .with_interval(Duration::from_millis(self.settle_interval_ms))
            .with_publish_timeout(Duration::from_millis(self.publish_timeout_ms))
    }

    /// The worker's settings.
    pub fn worker(&self) -> WorkerConfig {
        WorkerConfig::default()
            .with_batch_size(self.worker_batch_size)
            .with_backoff(
                Duration::from_millis(self.worker_initial_backoff_ms),
                Duration::from_millis(self.worker_max_backoff_ms),
            )
            .with_keep_alive_interval(Duration::from_millis(self.worker_keep_alive_ms))
    }

    /// The store's settings.
    pub fn store(&self) -> SeaOrmStoreConfig {
        let mut store = SeaOrmStoreConfig::new(&self.database_url)
            .with_max_connections(self.database_max_connections)
            .with_operation_timeout(Duration::from_millis(self.database_operation_timeout_ms));
        store.acquire_timeout = Duration::from_millis(self.database_acquire_timeout_ms);
        store
    }

    /// The settings of the database's queue.
    pub fn sql_queue(&self) -> SqlQueueConfig {
        SqlQueueConfig::default()
            .with_lease(Duration::from_millis(self.sql_queue_lease_ms))
            .with_poll_interval(Duration::from_millis(self.sql_queue_poll_interval_ms))
            .with_concurrent_commits(self.sql_queue_concurrent_commits)
            .with_max_group(self.sql_queue_max_group)
    }

    /// The Redis counter's settings for `url`.
    pub fn redis(&self, url: &str) -> RedisCounterConfig {
        RedisCounterConfig::new(url)
            .with_key_prefix(&self.redis_key_prefix)
            .with_confirm(
                self.redis_confirm,
                Duration::from_millis(self.redis_confirm_timeout_ms),
            )
            .with_timeouts(
                Duration::from_millis(self.redis_response_timeout_ms),
                Duration::from_millis(self.redis_connection_timeout_ms),
            )
    }

    /// The Kafka settings for `brokers`, `--kafka-option`s applied last.
    pub fn kafka(&self, brokers: &str) -> KafkaConfig {
        let mut kafka = KafkaConfig::new(brokers)
            .with_topics(&self.kafka_topic, &self.kafka_dlq_topic)
            .with_group_id(&self.kafka_group)
            .with_partitions(self.kafka_partitions)
            .with_create_topics(self.kafka_create_topics)
            .with_linger(Duration::from_millis(self.kafka_linger_ms))
            .with_delivery_timeout(Duration::from_millis(self.kafka_delivery_timeout_ms))
            .with_max_group(self.kafka_max_group);
        kafka.batch_num_messages = self.kafka_batch_num_messages;
        kafka.batch_linger = Duration::from_millis(self.kafka_batch_linger_ms);
        self.kafka_options
            .iter()
            .fold(kafka, |kafka, (key, value)| kafka.with(key, value))
    }

    /// Refuses settings that cannot work: a zero timeout or backoff (a publish that
    /// can never succeed, a worker retrying in a tight loop), a Kafka delivery timeout
    /// above the publish timeout (the rebuild grace counts on the bound), a worker
    /// keep-alive so slow that Kafka takes a waiting worker's partitions away.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("--publish-timeout-ms", self.publish_timeout_ms),
            (
                "--worker-initial-backoff-ms",
                self.worker_initial_backoff_ms,
            ),
            (
                "--database-acquire-timeout-ms",
                self.database_acquire_timeout_ms,
            ),
            (
                "--database-operation-timeout-ms",
                self.database_operation_timeout_ms,
            ),
            (
                "--redis-response-timeout-ms",
                self.redis_response_timeout_ms,
            ),
            (
                "--redis-connection-timeout-ms",
                self.redis_connection_timeout_ms,
            ),
            (
                "--kafka-delivery-timeout-ms",
                self.kafka_delivery_timeout_ms,
            ),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{flag} must be above 0"));
        }
        if self.worker_max_backoff_ms < self.worker_initial_backoff_ms {
            return Err(format!(
                "--worker-max-backoff-ms ({}) is below --worker-initial-backoff-ms ({})",
                self.worker_max_backoff_ms, self.worker_initial_backoff_ms
            ));
        }
        if self.queue_kind() == QueueKind::Kafka {
            // A message the broker may still store after the issuer answered `pending`
            // must be stored within the rebuild grace, which counts on this bound.
            if self.kafka_delivery_timeout_ms > self.publish_timeout_ms {
                return Err(format!(
                    "--kafka-delivery-timeout-ms ({}) may not exceed --publish-timeout-ms ({})",
                    self.kafka_delivery_timeout_ms, self.publish_timeout_ms
                ));
            }
            if self.worker_keep_alive_ms >= coupon_kafka::MAX_POLL_INTERVAL.as_millis() as u64 {
                return Err(format!(
                    "--worker-keep-alive-ms ({}) must stay below the consumer's poll \
                     interval ({:?}), or a waiting worker loses its partitions",
                    self.worker_keep_alive_ms,
                    coupon_kafka::MAX_POLL_INTERVAL
                ));
            }
        }
        Ok(())
    }
}
