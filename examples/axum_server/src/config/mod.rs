//! Command-line flags and environment variables.

mod command;
mod libraries;

pub use command::Command;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderName;
use clap::{Parser, ValueEnum};
use coupon_core::{IssuerConfig, SettlerConfig, WorkerConfig};
use coupon_kafka::KafkaConfig;
use coupon_redis::{Confirm, RedisCounterConfig};
use coupon_seaorm::{SeaOrmStoreConfig, SqlQueueConfig};
use jsonwebtoken::Algorithm;

use crate::auth::{Identity, JwtRules, JwtVerifier, read_key_file};
use crate::limits::{Rate, RateLimits};
use crate::secrets::{self, QuietParser};

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
    /// answers `pending` and settlement rolls it forward.
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

    /// The settings from the command line and the environment, as the binary reads
    /// them: a variable set to nothing (`SETTLE_GRACE_MS=`, as shells and compose
    /// files write one they mean to leave unset) counts as unset, so the flag's
    /// default applies instead of a value that does not parse. Not for the names of
    /// shared state ([`Config::SHARED_STATE_VARIABLES`]): there an empty value is a
    /// mistake (an unresolved `${...}`), and the default would quietly give this
    /// process a database, key prefix, topic or group of its own; it stays empty and
    /// the start fails. Exits with clap's message on a bad value.
    pub fn from_command_line() -> Self {
        use clap::{CommandFactory, FromArgMatches};

        let command = Self::command().mut_args(|arg| {
            let empty = arg.get_env().is_some_and(|name| {
                !Self::SHARED_STATE_VARIABLES
                    .iter()
                    .any(|shared| name == *shared)
                    && std::env::var_os(name)
                        .is_some_and(|value| value.to_str().is_some_and(|v| v.trim().is_empty()))
            });
            if empty { arg.env(None) } else { arg }
        });
        let matches = command.get_matches();
        for flag in secrets::given_on_the_command_line(&matches) {
            tracing::warn!(
                "{flag}: a secret given as a flag is visible to every user of this machine \
                 (ps, /proc/<pid>/cmdline)"
            );
        }
        Self::from_arg_matches(&matches)
            .map_err(|error| error.format(&mut Self::command()))
            .unwrap_or_else(|error| error.exit())
    }

    /// Variables that name state other processes share; [`Config::from_command_line`]
    /// never replaces an empty one by its default.
    pub const SHARED_STATE_VARIABLES: [&'static str; 5] = [
        "DATABASE_URL",
        "REDIS_KEY_PREFIX",
        "KAFKA_TOPIC",
        "KAFKA_DLQ_TOPIC",
        "KAFKA_GROUP",
    ];

    /// The settings with every empty optional value unset: `REDIS_URL=` (as shells and
    /// compose files write an unset variable) means no Redis, not a URL that does not
    /// parse.
    pub fn without_empty_values(mut self) -> Self {
        for value in [
            &mut self.admin_token,
            &mut self.metrics_token,
            &mut self.redis_url,
            &mut self.kafka_brokers,
            &mut self.jwt_secret,
            &mut self.jwt_issuer,
            &mut self.jwt_audience,
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *value = None;
            }
        }
        for path in [&mut self.jwt_public_key, &mut self.jwt_jwks] {
            if path.as_deref().is_some_and(|p| p.as_os_str().is_empty()) {
                *path = None;
            }
        }
        self
    }

    /// The settings with each secret given as a file (`ADMIN_TOKEN_FILE`,
    /// `JWT_SECRET_FILE`, `DATABASE_URL_FILE`) read into its setting; an error names the
    /// variable and the file, never what it holds.
    pub fn with_secret_files(mut self) -> Result<Self, String> {
        if let Some(path) = self.admin_token_file.take() {
            let token = secrets::read_file("ADMIN_TOKEN_FILE", &path)?;
            let token =
                parse_admin_token(&token).map_err(|why| format!("ADMIN_TOKEN_FILE: {why}"))?;
            self.admin_token = Some(token);
        }
        if let Some(path) = self.jwt_secret_file.take() {
            self.jwt_secret = Some(secrets::read_file("JWT_SECRET_FILE", &path)?);
        }
        if let Some(path) = self.database_url_file.take() {
            self.database_url = secrets::read_file("DATABASE_URL_FILE", &path)?
                .trim()
                .to_owned();
        }
        Ok(self)
    }

    /// Refuses to listen on `address` with JWT identity and no key: the secret the
    /// service would generate is for trying it on one's own machine (anyone who reads
    /// it signs in as any user), so it is allowed on a loopback address only.
    pub fn check_listening(&self, address: SocketAddr) -> Result<(), String> {
        let key_missing = self.identity == IdentityKind::Jwt
            && self.jwt_secret.is_none()
            && self.jwt_public_key.is_none()
            && self.jwt_jwks.is_none();
        if key_missing && !address.ip().is_loopback() {
            return Err(format!(
                "--identity jwt needs a key to listen on {address}: set JWT_SECRET (or \
                 JWT_SECRET_FILE), --jwt-public-key or --jwt-jwks; a generated secret is \
                 only for a loopback address"
            ));
        }
        Ok(())
    }

    /// A warning for listening on `address` with settings that trust every client
    /// (`--identity trusted-clients`: anyone who reaches the port applies as any user,
    /// with no rate or per-address connection limit), when others can reach it.
    pub fn listening_warning(&self, address: SocketAddr) -> Option<String> {
        (self.identity == IdentityKind::TrustedClients && !address.ip().is_loopback()).then(|| {
            format!(
                "--identity trusted-clients on {address}: anyone who reaches this port \
                 applies as any user, with no rate or per-address connection limit; for \
                 demos and load tests on a private network only"
            )
        })
    }

    /// What a JWT must carry besides its signature.
    pub fn jwt_rules(&self) -> JwtRules {
        JwtRules {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway_secs: self.jwt_leeway_secs,
            max_lifetime_secs: (self.jwt_max_lifetime_secs > 0)
                .then_some(self.jwt_max_lifetime_secs),
        }
    }

    /// How the service learns the user, and the HS256 secret it generated when the
    /// JWT mode has no key configured (to be written to a file, so that tokens can be
    /// minted).
    pub fn identity(&self) -> Result<(Identity, Option<String>), String> {
        let rules = self.jwt_rules();
        match self.identity {
            IdentityKind::TrustedClients => Ok((Identity::TrustedClients, None)),
            IdentityKind::Header => {
                let name = HeaderName::try_from(self.user_header.trim())
                    .map_err(|_| format!("{:?} is not a header name", self.user_header))?;
                Ok((Identity::Header(name), None))
            }
            IdentityKind::Jwt => {
                let configured = [
                    self.jwt_secret.is_some(),
                    self.jwt_public_key.is_some(),
                    self.jwt_jwks.is_some(),
                ];
                if configured.iter().filter(|set| **set).count() > 1 {
                    return Err("set one of --jwt-secret, --jwt-public-key and --jwt-jwks".into());
                }
                let verifier = if let Some(secret) = &self.jwt_secret {
                    hs256_verifier(secret, &rules)?
                } else if let Some(path) = &self.jwt_public_key {
                    let algorithm = match self.jwt_algorithm {
                        PublicKeyAlgorithm::Rs256 => Algorithm::RS256,
                        PublicKeyAlgorithm::Es256 => Algorithm::ES256,
                    };
                    JwtVerifier::public_key(&read_key_file(path)?, algorithm, &rules)?
                } else if let Some(path) = &self.jwt_jwks {
                    let json = String::from_utf8(read_key_file(path)?)
                        .map_err(|_| format!("{} is not UTF-8", path.display()))?;
                    JwtVerifier::jwks(&json, &rules)?
                } else {
                    let secret = secrets::generate();
                    let verifier = JwtVerifier::hs256(secret.as_bytes(), &rules)?;
                    return Ok((Identity::Jwt(verifier), Some(secret)));
                };
                Ok((Identity::Jwt(verifier), None))
            }
        }
    }

    /// The rate limits: none for trusted clients (the load tool's mode).
    pub fn rate_limits(&self) -> RateLimits {
        if self.identity == IdentityKind::TrustedClients {
            return RateLimits::default();
        }
        RateLimits {
            per_user: Rate::new(self.rate_limit_user_per_sec, self.rate_limit_user_burst),
            per_address: Rate::new(
                self.rate_limit_address_per_sec,
                self.rate_limit_address_burst,
            ),
        }
    }

    /// The caps on open connections, in all and per client address, given the
    /// process's open-files limit (`None`: unknown). The service's own files (the
    /// database's and brokers' connections, SQLite's files, the runtime's) keep
    /// [`FILES_RESERVED`] of the limit, and one address never gets more than half the
    /// connections, so that it cannot keep every other client out.
    pub fn connection_caps(&self, open_files: Option<u64>) -> (usize, Option<usize>) {
        let mut total = self.max_connections.max(1);
        if let Some(limit) = open_files.and_then(|limit| usize::try_from(limit).ok()) {
            total = total.min(limit.saturating_sub(FILES_RESERVED).max(limit / 2).max(1));
        }
        let per_address = (self.max_connections_per_address > 0
            && self.identity != IdentityKind::TrustedClients)
            .then(|| self.max_connections_per_address.min((total / 2).max(1)));
        (total, per_address)
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

/// Open files kept for the service's own use when the connection cap is lowered to the
/// open-files limit.
pub const FILES_RESERVED: usize = 128;

/// The fewest characters an admin token may have: a short one can be guessed.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// An admin token of at least [`MIN_ADMIN_TOKEN_LEN`] characters, or an empty value
/// (unset, as [`Config::without_empty_values`] reads it).
fn parse_admin_token(value: &str) -> Result<String, String> {
    let length = value.trim().chars().count();
    if length == 0 || length >= MIN_ADMIN_TOKEN_LEN {
        // Trimmed as a bearer token is when it arrives, or it could never match.
        Ok(value.trim().to_owned())
    } else {
        Err(format!(
            "{length} characters: an admin token needs at least {MIN_ADMIN_TOKEN_LEN} \
             (or leave it unset for a generated one)"
        ))
    }
}

/// The HS256 verifier of the `secret` set by `JWT_SECRET` (or `--jwt-secret`,
/// `JWT_SECRET_FILE`); an error names the setting and says how to make a good one.
pub fn hs256_verifier(secret: &str, rules: &JwtRules) -> Result<JwtVerifier, String> {
    JwtVerifier::hs256(secret.as_bytes(), rules).map_err(|why| {
        format!(
            "JWT_SECRET (or --jwt-secret, JWT_SECRET_FILE): {why}; `openssl rand -hex 32` makes one"
        )
    })
}

/// `auto`, `off` or a number of replicas.
fn parse_confirm(value: &str) -> Result<Confirm, String> {
    match value.trim() {
        "auto" => Ok(Confirm::Auto),
        "off" | "0" => Ok(Confirm::Off),
        number => number
            .parse()
            .map(Confirm::Replicas)
            .map_err(|_| format!("{number:?}: expected auto, off or a number of replicas")),
    }
}

/// `KEY=VALUE`, a librdkafka setting that is not one of
/// [`coupon_kafka::RESERVED_SETTINGS`]; the value is kept as given and never echoed in
/// an error (it may be a password).
fn parse_kafka_option(option: &str) -> Result<(String, String), String> {
    let Some((key, value)) = option.split_once('=') else {
        return Err("expected KEY=VALUE".to_owned());
    };
    let key = key.trim();
    if key.is_empty() {
        return Err("expected KEY=VALUE: the key is empty".to_owned());
    }
    if let Some(name) = coupon_kafka::reserved_setting(key) {
        return Err(format!(
            "{key:?} ({name}) is set by firstcome (its promises rest on it) and cannot be overridden"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests;
