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
            .with_sold_out_ttl(Duration::from_millis(self.issuer.sold_out_ttl_ms))
            .with_publish_timeout(Duration::from_millis(self.issuer.publish_timeout_ms))
            .with_campaign_refresh(Duration::from_millis(self.issuer.campaign_refresh_ms))
            .with_drain_fallback(Duration::from_millis(self.issuer.drain_fallback_ms))
    }

    /// The settler's settings: its republishes are bounded like the issuer's publishes
    /// (`--publish-timeout-ms`).
    pub fn settler(&self) -> SettlerConfig {
        SettlerConfig::default()
            .with_grace(Duration::from_millis(self.worker.settle_grace_ms))
            .with_interval(Duration::from_millis(self.worker.settle_interval_ms))
            .with_publish_timeout(Duration::from_millis(self.issuer.publish_timeout_ms))
    }

    /// The worker's settings.
    pub fn worker(&self) -> WorkerConfig {
        WorkerConfig::default()
            .with_batch_size(self.worker.worker_batch_size)
            .with_backoff(
                Duration::from_millis(self.worker.worker_initial_backoff_ms),
                Duration::from_millis(self.worker.worker_max_backoff_ms),
            )
            .with_keep_alive_interval(Duration::from_millis(self.worker.worker_keep_alive_ms))
    }

    /// The store's settings.
    pub fn store(&self) -> SeaOrmStoreConfig {
        let mut store = SeaOrmStoreConfig::new(&self.database.database_url)
            .with_max_connections(self.database.database_max_connections)
            .with_operation_timeout(Duration::from_millis(
                self.database.database_operation_timeout_ms,
            ));
        store.acquire_timeout = Duration::from_millis(self.database.database_acquire_timeout_ms);
        store
    }

    /// The settings of the database's queue.
    pub fn sql_queue(&self) -> SqlQueueConfig {
        SqlQueueConfig::default()
            .with_lease(Duration::from_millis(self.database.sql_queue_lease_ms))
            .with_poll_interval(Duration::from_millis(
                self.database.sql_queue_poll_interval_ms,
            ))
            .with_concurrent_commits(self.database.sql_queue_concurrent_commits)
            .with_max_group(self.database.sql_queue_max_group)
            .with_issue_at_commit(self.issues_at_commit())
    }

    /// Whether admitted tickets become coupons in the commit that makes them durable:
    /// on the embedded default (`--queue auto` on a SQLite database), where the store
    /// is the queue. `--queue sql` keeps the table hand-off.
    pub fn issues_at_commit(&self) -> bool {
        self.issuer.queue == QueueKind::Auto
            && self.kafka.kafka_brokers.is_none()
            && self.database.database_url.starts_with("sqlite")
    }

    /// The Redis counter's settings for `url`.
    pub fn redis(&self, url: &str) -> RedisCounterConfig {
        RedisCounterConfig::new(url)
            .with_key_prefix(&self.redis.redis_key_prefix)
            .with_confirm(
                self.redis.redis_confirm,
                Duration::from_millis(self.redis.redis_confirm_timeout_ms),
            )
            .with_timeouts(
                Duration::from_millis(self.redis.redis_response_timeout_ms),
                Duration::from_millis(self.redis.redis_connection_timeout_ms),
            )
            .with_max_gathered(self.redis.redis_max_gathered)
            .with_calls_in_flight(self.redis.redis_calls_in_flight)
    }

    /// The Kafka settings for `brokers`, `--kafka-option`s applied last.
    pub fn kafka(&self, brokers: &str) -> KafkaConfig {
        let mut kafka = KafkaConfig::new(brokers)
            .with_topics(&self.kafka.kafka_topic, &self.kafka.kafka_dlq_topic)
            .with_group_id(&self.kafka.kafka_group)
            .with_partitions(self.kafka.kafka_partitions)
            .with_create_topics(self.kafka.kafka_create_topics)
            .with_linger(Duration::from_millis(self.kafka.kafka_linger_ms))
            .with_delivery_timeout(Duration::from_millis(self.kafka.kafka_delivery_timeout_ms))
            .with_max_group(self.kafka.kafka_max_group);
        kafka.batch_num_messages = self.kafka.kafka_batch_num_messages;
        kafka.batch_linger = Duration::from_millis(self.kafka.kafka_batch_linger_ms);
        self.kafka
            .kafka_options
            .iter()
            .fold(kafka, |kafka, (key, value)| kafka.with(key, value))
    }

    /// Refuses settings that cannot work: a zero timeout or backoff (a publish that
    /// can never succeed, a worker retrying in a tight loop), a Kafka delivery timeout
    /// above the publish timeout (the rebuild grace counts on the bound), a worker
    /// keep-alive so slow that Kafka takes a waiting worker's partitions away.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=256).contains(&self.redis.redis_max_gathered) {
            return Err(format!(
                "--redis-max-gathered must be 1 to 256, not {}",
                self.redis.redis_max_gathered
            ));
        }
        let positive = [
            ("--publish-timeout-ms", self.issuer.publish_timeout_ms),
            (
                "--worker-initial-backoff-ms",
                self.worker.worker_initial_backoff_ms,
            ),
            (
                "--database-acquire-timeout-ms",
                self.database.database_acquire_timeout_ms,
            ),
            (
                "--database-operation-timeout-ms",
                self.database.database_operation_timeout_ms,
            ),
            (
                "--redis-response-timeout-ms",
                self.redis.redis_response_timeout_ms,
            ),
            (
                "--redis-connection-timeout-ms",
                self.redis.redis_connection_timeout_ms,
            ),
            (
                "--kafka-delivery-timeout-ms",
                self.kafka.kafka_delivery_timeout_ms,
            ),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{flag} must be above 0"));
        }
        if self.worker.worker_max_backoff_ms < self.worker.worker_initial_backoff_ms {
            return Err(format!(
                "--worker-max-backoff-ms ({}) is below --worker-initial-backoff-ms ({})",
                self.worker.worker_max_backoff_ms, self.worker.worker_initial_backoff_ms
            ));
        }
        if self.queue_kind() == QueueKind::Kafka {
            // A message the broker may still store after the issuer answered `pending`
            // must be stored within the rebuild grace, which counts on this bound.
            if self.kafka.kafka_delivery_timeout_ms > self.issuer.publish_timeout_ms {
                return Err(format!(
                    "--kafka-delivery-timeout-ms ({}) may not exceed --publish-timeout-ms ({})",
                    self.kafka.kafka_delivery_timeout_ms, self.issuer.publish_timeout_ms
                ));
            }
            if self.worker.worker_keep_alive_ms
                >= coupon_kafka::MAX_POLL_INTERVAL.as_millis() as u64
            {
                return Err(format!(
                    "--worker-keep-alive-ms ({}) must stay below the consumer's poll \
                     interval ({:?}), or a waiting worker loses its partitions",
                    self.worker.worker_keep_alive_ms,
                    coupon_kafka::MAX_POLL_INTERVAL
                ));
            }
        }
        Ok(())
    }
}
