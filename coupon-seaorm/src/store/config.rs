//! How to reach the database.

use std::fmt;
use std::time::Duration;

/// How to reach the database.
#[derive(Clone)]
#[non_exhaustive]
pub struct SeaOrmStoreConfig {
    /// `sqlite://path/to/file.db?mode=rwc`, `sqlite::memory:`, `postgres://...`,
    /// `mysql://...`; the backend's cargo feature must be on.
    pub url: String,
    /// Pool size (default 16; SQLite uses one connection, its writes are serial anyway).
    pub max_connections: u32,
    /// How long to wait for a pooled connection before a retryable error (default 5 s).
    pub acquire_timeout: Duration,
    /// Run the migrations on connect (default true). Without it, `connect` only checks
    /// that the schema is there.
    pub migrate: bool,
    /// How long one store call may wait for the database's answer (default 10 s): a
    /// call past it fails with a retryable error (a write with
    /// [`Error::OutcomeUnknown`](coupon_core::Error::OutcomeUnknown): it may have committed) and its connection is closed,
    /// so a network that swallows answers cannot hold a caller, or the pool, forever.
    pub operation_timeout: Duration,
}

impl SeaOrmStoreConfig {
    /// Settings for `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            migrate: true,
            operation_timeout: Duration::from_secs(10),
        }
    }

    /// Sets [`SeaOrmStoreConfig::operation_timeout`].
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets [`SeaOrmStoreConfig::migrate`].
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Sets [`SeaOrmStoreConfig::max_connections`].
    pub fn with_max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections.max(1);
        self
    }
}

impl fmt::Debug for SeaOrmStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeaOrmStoreConfig")
            .field("url", &coupon_core::redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("migrate", &self.migrate)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}
