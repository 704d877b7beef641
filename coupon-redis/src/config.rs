//! Settings of a [`RedisCounter`](crate::RedisCounter).

use std::fmt;
use std::time::Duration;

/// How to reach Redis and where to keep the keys.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisCounterConfig {
    /// `redis://[:password@]host:port[/db]` (or `rediss://`). With the `cluster`
    /// feature, several comma-separated node URLs select Redis Cluster.
    pub url: String,
    /// Prefix of every key (default `coupon`): keys are `{<prefix>:<campaign>}:...`.
    pub key_prefix: String,
    /// How long one command may take before it fails as retryable (default 1 s).
    pub response_timeout: Duration,
    /// How long one connection attempt may take (default 1 s).
    pub connection_timeout: Duration,
    /// Accept a server whose `maxmemory-policy` may evict keys (default `false`: such a
    /// server is refused at connect). An evicted key of a live campaign stops its
    /// admissions until the counter is rebuilt from the store.
    pub allow_eviction: bool,
}

impl RedisCounterConfig {
    /// Settings for `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "coupon".to_owned(),
            response_timeout: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(1),
            allow_eviction: false,
        }
    }

    /// Sets [`RedisCounterConfig::allow_eviction`].
    pub fn with_allow_eviction(mut self, allow: bool) -> Self {
        self.allow_eviction = allow;
        self
    }

    /// Sets [`RedisCounterConfig::key_prefix`].
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets both timeouts.
    pub fn with_timeouts(mut self, response: Duration, connection: Duration) -> Self {
        self.response_timeout = response;
        self.connection_timeout = connection;
        self
    }

    /// The node URLs: one, or several separated by commas (Redis Cluster).
    pub(crate) fn nodes(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .collect()
    }
}

impl fmt::Debug for RedisCounterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCounterConfig")
            .field("url", &coupon_core::redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("response_timeout", &self.response_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .field("allow_eviction", &self.allow_eviction)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_passwords() {
        let config = RedisCounterConfig::new("redis://:s3cret@10.0.0.1:6379/0,redis://u:pw@h:1");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("pw@"),
            "{shown}"
        );
        assert!(
            shown.contains("redis://***@10.0.0.1:6379/0,redis://***@h:1"),
            "{shown}"
        );
    }

    #[test]
    fn splits_node_lists() {
        let config = RedisCounterConfig::new(" redis://a:1 , redis://b:2,");
        assert_eq!(config.nodes(), vec!["redis://a:1", "redis://b:2"]);
    }
}
