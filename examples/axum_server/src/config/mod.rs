//! Command-line flags and environment variables.

mod access;
mod command;
mod libraries;
mod reading;

pub use access::{FILES_RESERVED, hs256_verifier};
pub use command::Command;
pub use reading::MIN_ADMIN_TOKEN_LEN;
use reading::{parse_admin_token, parse_confirm, parse_kafka_option};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use coupon_core::{IssuerConfig, SettlerConfig, WorkerConfig};
use coupon_kafka::KafkaConfig;
use coupon_redis::{Confirm, RedisCounterConfig};
use coupon_seaorm::{SeaOrmStoreConfig, SqlQueueConfig};

use crate::secrets::QuietParser;

/// Which parts of the service this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The HTTP API (admission and hand-off).
    Api,
    /// The issuing worker (hand-off to the store).
    Worker,
    /// Both, in one process.
    All,
}

/// How the service learns which user a request acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IdentityKind {
    /// A JWT bearer token whose `sub` is the user id (`--jwt-secret`, `--jwt-public-key`
    /// or `--jwt-jwks`; with none set, on a loopback address only, a secret is generated
    /// into the file `firstcome-jwt-secret`).
    Jwt,
    /// The header `--user-header`, set by a gateway that authenticated the user: only
    /// where clients cannot reach the service except through that gateway.
    Header,
    /// The body's `user_id`, unchecked, and no rate limit: demos and load tests only.
    TrustedClients,
}

/// The algorithm of `--jwt-public-key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublicKeyAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-256.
    #[value(name = "RS256", alias = "rs256")]
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    #[value(name = "ES256", alias = "es256")]
    Es256,
}

/// Where admitted tickets wait for the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueKind {
    /// Kafka when `KAFKA_BROKERS` is set, else the database's table.
    Auto,
    /// The `issue_queue` table of the database: durable, no broker to run.
    Sql,
    /// Kafka (`KAFKA_BROKERS`).
    Kafka,
    /// A tokio channel in this process: fastest, but tickets accepted and not yet
    /// persisted are lost if the process is killed (not stopped).
    Memory,
}

/// The firstcome HTTP service. With no backend configured it runs whole on the embedded
/// default: an in-memory counter, the hand-off as a table, and the coupons, all in one
/// SQLite file.
#[derive(Clone, Parser)]
#[command(name = "firstcome-server", version)]
pub struct Config {
    /// An operator task to run once instead of the service; it uses the same settings.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Bearer token that `POST /campaigns` and the admin routes require, at least 16
    /// characters; when unset, a random one is written to the file
    /// `firstcome-admin-token` (mode 0600) in the working directory.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, value_parser = QuietParser::new(parse_admin_token))]
    pub admin_token: Option<String>,
    /// A file holding the admin token (instead of `--admin-token`).
    #[arg(long, env = "ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
    /// How the service learns who applies and who reads a coupon.
    #[arg(long, env = "IDENTITY", value_enum, default_value = "jwt")]
    pub identity: IdentityKind,
    /// HS256 secret of the users' JWTs, at least 32 bytes. With no key at all the
    /// service starts only on a loopback address, with a random secret written to the
    /// file `firstcome-jwt-secret` (mode 0600) in the working directory.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// A file holding the HS256 secret (instead of `--jwt-secret`).
    #[arg(long, env = "JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM file of the public key that verifies the users' JWTs (`--jwt-algorithm`).
    #[arg(long, env = "JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// Algorithm of `--jwt-public-key`.
    #[arg(long, env = "JWT_ALGORITHM", value_enum, default_value = "RS256")]
    pub jwt_algorithm: PublicKeyAlgorithm,
    /// JWKS file (RSA and P-256 keys) that verifies the users' JWTs.
    #[arg(long, env = "JWT_JWKS")]
    pub jwt_jwks: Option<PathBuf>,
    /// The `iss` every JWT must carry.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` every JWT must carry.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew (seconds) tolerated on a JWT's `exp` and `nbf`.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
    /// The longest a JWT may still be valid (its `exp` at most this many seconds
    /// ahead, plus the leeway); 0: no maximum.
    #[arg(long, env = "JWT_MAX_LIFETIME_SECS", default_value_t = 86_400)]
    pub jwt_max_lifetime_secs: u64,
    /// The header that names the user with `--identity header`.
    #[arg(long, env = "USER_HEADER", default_value = "x-user-id")]
    pub user_header: String,
    /// Applies and coupon reads per second one user may make (0: no limit).
    #[arg(long, env = "RATE_LIMIT_USER_PER_SEC", default_value_t = 5)]
    pub rate_limit_user_per_sec: u32,
    /// Burst above the per-user rate.
    #[arg(long, env = "RATE_LIMIT_USER_BURST", default_value_t = 10)]
    pub rate_limit_user_burst: u32,
    /// Requests per second one client address may make (0: no limit).
    #[arg(long, env = "RATE_LIMIT_ADDRESS_PER_SEC", default_value_t = 200)]
    pub rate_limit_address_per_sec: u32,
    /// Burst above the per-address rate.
    #[arg(long, env = "RATE_LIMIT_ADDRESS_BURST", default_value_t = 400)]
    pub rate_limit_address_burst: u32,
    /// How long (ms) a client may take to send a request's headers.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 5_000)]
    pub header_read_timeout_ms: u64,
    /// How long (ms) a request may take, body included, before it is answered 503.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// How long (ms) a graceful shutdown waits for requests in flight before it closes
    /// their connections (the worker then finishes its batch).
    #[arg(long, env = "SHUTDOWN_DEADLINE_MS", default_value_t = 30_000)]
    pub shutdown_deadline_ms: u64,
    /// Bearer token `GET /metrics` requires (the admin token opens it too), at least 16
    /// characters; unset: the metrics are public.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true, value_parser = QuietParser::new(parse_admin_token))]
    pub metrics_token: Option<String>,
    /// Host names the service answers to (comma-separated, any port); a request for
    /// another is 421, but for `/healthz`, `/readyz` (and `/metrics` with
    /// `--metrics-token`), which orchestrators send to a pod's address. Unset: any.
    #[arg(long, env = "ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Most connections open at once; lowered at start to the open-files limit minus
    /// 128 (the service's own files) when that is less. Past it new clients wait.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most connections one client address (an IPv6 /64) may hold open (0: no cap);
    /// at most half the cap on all connections; none with trusted clients.
    #[arg(long, env = "MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256)]
    pub max_connections_per_address: usize,
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
    /// Kafka brokers for the hand-off (`host:port,...`).
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// The hand-off: `auto` is Kafka when KAFKA_BROKERS is set, else the database's
    /// `issue_queue` table.
    #[arg(long, env = "QUEUE", value_enum, default_value = "auto")]
    pub queue: QueueKind,
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
    /// Which parts to run.
    #[arg(long, env = "ROLE", value_enum, default_value = "all")]
    pub role: Role,
    /// Tickets per store transaction in the worker.
    #[arg(long, env = "WORKER_BATCH_SIZE", default_value_t = WorkerConfig::default().batch_size)]
    pub worker_batch_size: usize,
    /// The worker's first wait (ms) after a store or queue error; it doubles up to
    /// `--worker-max-backoff-ms`.
    #[arg(long, env = "WORKER_INITIAL_BACKOFF_MS", default_value_t = ms(WorkerConfig::default().initial_backoff))]
    pub worker_initial_backoff_ms: u64,
    /// The worker's longest wait (ms) between retries; it retries without end.
    #[arg(long, env = "WORKER_MAX_BACKOFF_MS", default_value_t = ms(WorkerConfig::default().max_backoff))]
    pub worker_max_backoff_ms: u64,
    /// How often (ms) a waiting worker keeps its source alive (Kafka: polls, so the
    /// group keeps its partitions).
    #[arg(long, env = "WORKER_KEEP_ALIVE_MS", default_value_t = ms(WorkerConfig::default().keep_alive_interval))]
    pub worker_keep_alive_ms: u64,
    /// How old (ms) an admission without a coupon must be before the settler publishes
    /// its ticket again.
    #[arg(long, env = "SETTLE_GRACE_MS", default_value_t = ms(SettlerConfig::default().grace))]
    pub settle_grace_ms: u64,
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
    /// Tickets the in-process queue (`--queue memory`) holds before an apply waits.
    #[arg(long, env = "MEMORY_QUEUE_CAPACITY", default_value_t = 100_000)]
    pub memory_queue_capacity: usize,
    /// How long (ms) a "sold out" answer from the counter is reused in this process
    /// (0: ask the counter every time).
    #[arg(long, env = "SOLD_OUT_TTL_MS", default_value_t = ms(IssuerConfig::default().sold_out_ttl))]
    pub sold_out_ttl_ms: u64,
    /// Longest wait (ms) for the queue to take an admitted ticket; after it the apply
    /// answers `pending` and settlement rolls it forward. Also bounds each settlement
    /// pass's republishes.
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = ms(IssuerConfig::default().publish_timeout))]
    pub publish_timeout_ms: u64,
    /// How long (ms) a campaign's definition is cached before it is read again (how
    /// soon a close or reopen by another process takes effect here).
    #[arg(long, env = "CAMPAIGN_REFRESH_MS", default_value_t = ms(IssuerConfig::default().campaign_refresh))]
    pub campaign_refresh_ms: u64,
    /// How long (ms) a counter rebuild waits for the queue to drain when the queue
    /// cannot tell its position (every queue this service runs on can: Kafka, the
    /// database's and the in-process one; it is for queues built on the library).
    #[arg(long, env = "DRAIN_FALLBACK_MS", default_value_t = ms(IssuerConfig::default().drain_fallback))]
    pub drain_fallback_ms: u64,
    /// Whether an admission waits for Redis replicas to acknowledge it (`WAIT`) before
    /// it counts: `auto` (one replica, when the primary has any), `off`, or a number.
    #[arg(long, env = "REDIS_CONFIRM", default_value = "auto", value_parser = parse_confirm)]
    pub redis_confirm: Confirm,
    /// How long (ms) an admission waits for that acknowledgement; one not acknowledged
    /// in time answers 503 and is settled later.
    #[arg(long, env = "REDIS_CONFIRM_TIMEOUT_MS", default_value_t = ms(redis_defaults().confirm_timeout))]
    pub redis_confirm_timeout_ms: u64,
    /// How often (ms) the settler passes over every campaign.
    #[arg(long, env = "SETTLE_INTERVAL_MS", default_value_t = ms(SettlerConfig::default().interval))]
    pub settle_interval_ms: u64,
    /// How long (ms) start-up keeps trying to reach a backend that does not answer yet
    /// (restarting, or started after this process) before giving up. Errors a backend
    /// reports as permanent, and a missing setting, fail at once; a failed connection
    /// (including a wrong password or an unknown database) is retried, each try logged.
    #[arg(long, env = "STARTUP_PATIENCE_MS", default_value_t = 60_000)]
    pub startup_patience_ms: u64,
    /// Threads that run requests and the worker (the async runtime's); 0 is one per
    /// core. On a machine shared with the backends, fewer threads spend less CPU per
    /// request waking one another (1 on 2 cores: 0.87x the API's CPU per accepted
    /// apply at the same requests/s, docs/benchmarks.md).
    #[arg(long, env = "RUNTIME_THREADS", default_value_t = 0)]
    pub runtime_threads: usize,
}

impl Config {
    /// The hand-off this configuration runs on (never [`QueueKind::Auto`]).
    pub fn queue_kind(&self) -> QueueKind {
        match (self.queue, &self.kafka_brokers) {
            (QueueKind::Auto, Some(_)) => QueueKind::Kafka,
            (QueueKind::Auto, None) => QueueKind::Sql,
            (kind, _) => kind,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("identity", &self.identity)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// `duration` in whole milliseconds, as the `_MS` settings take it.
fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

// The defaults of the libraries' settings, which the flags' defaults are read from so
// that each is declared once, in the library that uses it.
fn redis_defaults() -> RedisCounterConfig {
    RedisCounterConfig::new("")
}

fn kafka_defaults() -> KafkaConfig {
    KafkaConfig::new("")
}

fn store_defaults() -> SeaOrmStoreConfig {
    SeaOrmStoreConfig::new("")
}

#[cfg(test)]
mod tests;
