//! Command-line flags and environment variables.

mod access;
mod backends;
mod command;
mod libraries;
mod pipeline;
mod reading;
mod service;

pub use access::{FILES_RESERVED, hs256_verifier};
pub use backends::{DatabaseSettings, KafkaSettings, RedisSettings};
pub use command::Command;
pub use pipeline::{IssuerSettings, WorkerSettings};
pub use reading::MIN_ADMIN_TOKEN_LEN;
use reading::{parse_admin_token, parse_confirm, parse_kafka_option};
pub use service::{HttpSettings, IdentitySettings, LimitSettings};

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
    /// Kafka when `KAFKA_BROKERS` is set, else the database's table; on SQLite the
    /// store is the queue: a ticket becomes its coupon in the commit that makes it
    /// durable, and only one that cannot be issued waits in the table for the worker.
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
    /// Where the service listens, which hosts it answers, how it stops.
    #[command(flatten)]
    pub http: HttpSettings,
    /// Who may call what: the admin token and how a request's user is learned.
    #[command(flatten)]
    pub identity: IdentitySettings,
    /// What one client, one address and the whole process may take: rates, connections, time.
    #[command(flatten)]
    pub limits: LimitSettings,
    /// The shared counter (Redis); without it the counter lives in this process.
    #[command(flatten)]
    pub redis: RedisSettings,
    /// The hand-off on Kafka.
    #[command(flatten)]
    pub kafka: KafkaSettings,
    /// The store of campaigns and coupons, and the hand-off as its table.
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// The worker that persists tickets, and the settler that rolls admissions forward.
    #[command(flatten)]
    pub worker: WorkerSettings,
    /// How an apply is answered: the queue it hands off to and what it caches.
    #[command(flatten)]
    pub issuer: IssuerSettings,
    /// Which parts to run.
    #[arg(
        long,
        env = "ROLE",
        value_enum,
        default_value = "all",
        help_heading = "Process"
    )]
    pub role: Role,
    /// How long (ms) start-up keeps trying to reach a backend that does not answer yet
    /// (restarting, or started after this process) before giving up. Errors a backend
    /// reports as permanent, and a missing setting, fail at once; a failed connection
    /// (including a wrong password or an unknown database) is retried, each try logged.
    #[arg(
        long,
        env = "STARTUP_PATIENCE_MS",
        default_value_t = 60_000,
        help_heading = "Process"
    )]
    pub startup_patience_ms: u64,
    /// Threads that run requests and the worker (the async runtime's); 0 is one per
    /// core. On a machine shared with the backends, fewer threads spend less CPU per
    /// request waking one another (1 on 2 cores: 0.87x the API's CPU per accepted
    /// apply at the same requests/s, docs/benchmarks.md).
    #[arg(
        long,
        env = "RUNTIME_THREADS",
        default_value_t = 0,
        help_heading = "Process"
    )]
    pub runtime_threads: usize,
}

impl Config {
    /// The hand-off this configuration runs on (never [`QueueKind::Auto`]).
    pub fn queue_kind(&self) -> QueueKind {
        match (self.issuer.queue, &self.kafka.kafka_brokers) {
            (QueueKind::Auto, Some(_)) => QueueKind::Kafka,
            (QueueKind::Auto, None) => QueueKind::Sql,
            (kind, _) => kind,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.http.bind)
            .field(
                "admin_token",
                &self.identity.admin_token.as_ref().map(|_| "***"),
            )
            .field("identity", &self.identity.identity)
            .field(
                "jwt_secret",
                &self.identity.jwt_secret.as_ref().map(|_| "***"),
            )
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
