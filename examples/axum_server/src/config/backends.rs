//! The settings of the backends: Redis, Kafka, the database.

use clap::Args;

#[allow(clippy::wildcard_imports)]
use super::*;

/// The shared counter (Redis); without it the counter lives in this process.
#[derive(Clone, Args)]
#[command(next_help_heading = "Redis")]
pub struct RedisSettings {
    /// Redis for admission (`redis://host:port/`); in-memory when unset.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Key prefix in Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value_t = redis_defaults().key_prefix)]
    pub redis_key_prefix: String,
    /// How long (ms) a Redis command may wait for its answer.
    #[arg(long, env = "REDIS_RESPONSE_TIMEOUT_MS", default_value_t = ms(redis_defaults().response_timeout))]
    pub redis_response_timeout_ms: u64,
    /// How long (ms) opening a Redis connection may take.
    #[arg(long, env = "REDIS_CONNECTION_TIMEOUT_MS", default_value_t = ms(redis_defaults().connection_timeout))]
    pub redis_connection_timeout_ms: u64,
    /// Whether an admission waits for Redis replicas to acknowledge it (`WAIT`) before
    /// it counts: `auto` (one replica, when the primary has any), `off`, or a number.
    #[arg(long, env = "REDIS_CONFIRM", default_value = "auto", value_parser = parse_confirm)]
    pub redis_confirm: Confirm,
    /// How long (ms) an admission waits for that acknowledgement; one not acknowledged
    /// in time answers 503 and is settled later.
    #[arg(long, env = "REDIS_CONFIRM_TIMEOUT_MS", default_value_t = ms(redis_defaults().confirm_timeout))]
    pub redis_confirm_timeout_ms: u64,
    /// Most applies for one campaign that leave together in one call of the admission
    /// script: the ones that arrive while a call for that campaign is in flight (1 to
    /// 256; 1: one call per apply, as before gathering).
    #[arg(long, env = "REDIS_MAX_GATHERED", default_value_t = redis_defaults().max_gathered)]
    pub redis_max_gathered: usize,
    /// Calls of the admission script in flight per campaign when applies are gathered
    /// (at least 1): fewer gather more applies per call, more keep one call's round trip
    /// from holding the next group back.
    #[arg(long, env = "REDIS_CALLS_IN_FLIGHT", default_value_t = redis_defaults().calls_in_flight)]
    pub redis_calls_in_flight: usize,
}

/// The hand-off on Kafka.
#[derive(Clone, Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaSettings {
    /// Kafka brokers for the hand-off (`host:port,...`).
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Ticket topic.
    #[arg(long, env = "KAFKA_TOPIC", default_value_t = kafka_defaults().topic)]
    pub kafka_topic: String,
    /// Dead-letter topic.
    #[arg(long, env = "KAFKA_DLQ_TOPIC", default_value_t = kafka_defaults().dead_letter_topic)]
    pub kafka_dlq_topic: String,
    /// Consumer group of the workers.
    #[arg(long, env = "KAFKA_GROUP", default_value_t = kafka_defaults().group_id)]
    pub kafka_group: String,
    /// Partitions the ticket topic must have (and gets, when created).
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = kafka_defaults().partitions)]
    pub kafka_partitions: i32,
    /// Create missing topics at start-up.
    #[arg(long, env = "KAFKA_CREATE_TOPICS", default_value_t = kafka_defaults().create_topics)]
    pub kafka_create_topics: bool,
    /// How long (ms) the producer waits to fill a batch (`linger.ms`).
    #[arg(long, env = "KAFKA_LINGER_MS", default_value_t = ms(kafka_defaults().linger))]
    pub kafka_linger_ms: u64,
    /// Most tickets in one producer batch (`batch.num.messages`).
    #[arg(long, env = "KAFKA_BATCH_NUM_MESSAGES", default_value_t = kafka_defaults().batch_num_messages)]
    pub kafka_batch_num_messages: u32,
    /// Most tickets in one record on the ticket topic (1 to 1000): tickets waiting for
    /// one partition leave together. 1 writes one record per ticket, the format workers
    /// older than groups read: start workers of this version first.
    #[arg(long, env = "KAFKA_MAX_GROUP", default_value_t = kafka_defaults().max_group)]
    pub kafka_max_group: usize,
    /// How long (ms) a publish may wait for the broker's acknowledgement
    /// (`message.timeout.ms`); after it the outcome is unknown and settlement resolves
    /// it. At most `--publish-timeout-ms` (enforced at start).
    #[arg(long, env = "KAFKA_DELIVERY_TIMEOUT_MS", default_value_t = ms(kafka_defaults().delivery_timeout))]
    pub kafka_delivery_timeout_ms: u64,
    /// How long (ms) the worker's consumer waits to fill a batch once it has a ticket.
    #[arg(long, env = "KAFKA_BATCH_LINGER_MS", default_value_t = ms(kafka_defaults().batch_linger))]
    pub kafka_batch_linger_ms: u64,
    /// A librdkafka setting for the producers and the consumer, `KEY=VALUE`, applied
    /// last: security (`security.protocol=SASL_SSL`, `sasl.username=...`), `client.id`,
    /// tuning (`linger.ms=5`, `compression.codec=lz4`). Repeat the flag, or put one per
    /// line in the variable (a value may hold commas and spaces). The settings the
    /// promises rest on (`coupon_kafka::RESERVED_SETTINGS`: idempotence, acks,
    /// commits...) are refused.
    #[arg(long = "kafka-option", env = "KAFKA_OPTIONS", hide_env_values = true, value_delimiter = '\n', value_parser = QuietParser::new(parse_kafka_option))]
    pub kafka_options: Vec<(String, String)>,
}

/// The store of campaigns and coupons, and the hand-off as its table.
#[derive(Clone, Args)]
#[command(next_help_heading = "Database")]
pub struct DatabaseSettings {
    /// Database of campaigns and coupons: `sqlite://...`, `postgres://...`, `mysql://...`.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://firstcome.db?mode=rwc"
    )]
    pub database_url: String,
    /// A file holding the database URL (instead of `--database-url`).
    #[arg(long, env = "DATABASE_URL_FILE", conflicts_with = "database_url")]
    pub database_url_file: Option<PathBuf>,
    /// Most connections the store's pool opens.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = store_defaults().max_connections)]
    pub database_max_connections: u32,
    /// How long (ms) a store call waits for a free connection.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = ms(store_defaults().acquire_timeout))]
    pub database_acquire_timeout_ms: u64,
    /// How long (ms) one store call may wait for the database's answer; a write past
    /// it has an unknown outcome (settlement resolves it).
    #[arg(long, env = "DATABASE_OPERATION_TIMEOUT_MS", default_value_t = ms(store_defaults().operation_timeout))]
    pub database_operation_timeout_ms: u64,
    /// How long (ms) a worker owns a batch it took from the database's queue: a worker
    /// that dies mid-batch leaves it to the others this long after taking it.
    #[arg(long, env = "SQL_QUEUE_LEASE_MS", default_value_t = ms(SqlQueueConfig::default().lease))]
    pub sql_queue_lease_ms: u64,
    /// How often (ms) an idle worker looks for tickets other processes put in the
    /// database's queue.
    #[arg(long, env = "SQL_QUEUE_POLL_INTERVAL_MS", default_value_t = ms(SqlQueueConfig::default().poll_interval))]
    pub sql_queue_poll_interval_ms: u64,
    /// Most tickets committed to the database's queue together.
    #[arg(long, env = "SQL_QUEUE_MAX_GROUP", default_value_t = SqlQueueConfig::default().max_group)]
    pub sql_queue_max_group: usize,
    /// Groups committed to the database's queue at once.
    #[arg(long, env = "SQL_QUEUE_CONCURRENT_COMMITS", default_value_t = SqlQueueConfig::default().concurrent_commits)]
    pub sql_queue_concurrent_commits: usize,
}
