//! Settings of a [`RedisCounter`](crate::RedisCounter).

use std::fmt;
use std::time::Duration;

/// How to reach Redis and where to keep the keys.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisCounterConfig {
    /// `redis://[:password@]host:port[/db]` (or `rediss://`). With the `cluster`
    /// feature, several comma-separated node URLs select Redis Cluster.
    /// `redis+sentinel://[:password@]host:port,host:port/<master name>[/db]` asks those
    /// Sentinels for the primary of `<master name>` at every (re)connection, so the
    /// counter follows a failover; the password, if any, is the primary's.
    pub url: String,
    /// Prefix of every key (default `coupon`): keys are `{<prefix>:<campaign>}:...`.
    pub key_prefix: String,
    /// How long one command may take before it fails as retryable (default 1 s).
    pub response_timeout: Duration,
    /// How long one connection attempt may take (default 1 s).
    pub connection_timeout: Duration,
    /// Whether an admission waits for replicas to acknowledge it before it counts
    /// (default [`Confirm::Auto`]).
    pub confirm: Confirm,
    /// How long an admission waits for that acknowledgement (default 100 ms); an
    /// admission not acknowledged in time is an unknown outcome.
    pub confirm_timeout: Duration,
    /// Most applies to one campaign that leave as one call of the admission script
    /// (default 256): the applies that wait while a call is in flight go together. 1
    /// sends every apply as a call of its own, with no bound on calls in flight (the
    /// path before gathering, kept for comparison in the benchmarks).
    pub max_gathered: usize,
    /// Calls of the admission script in flight per campaign and process when applies
    /// are gathered (default 4, at least 1): fewer gather more applies per call (less
    /// work for Redis per admission), more keep a call's round trip from holding the
    /// next group back.
    pub calls_in_flight: usize,
}

/// Whether admissions wait for replicas (`WAIT`) before they count.
///
/// Replication is asynchronous: a primary that dies can take admissions its replicas
/// never received. A confirmed admission is on a replica before its applicant hears
/// anything; one that no replica acknowledged in time is reported as an unknown
/// outcome ([`Error::OutcomeUnknown`](coupon_core::Error::OutcomeUnknown)): the slot
/// may be held, and settlement resolves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// One replica, when the primary had replicas attached as the connection opened.
    Auto,
    /// Never wait.
    Off,
    /// Wait for this many replicas (none attached: every admission is unconfirmed).
    Replicas(u32),
}

impl RedisCounterConfig {
    /// Settings for `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "coupon".to_owned(),
            response_timeout: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(1),
            confirm: Confirm::Auto,
            confirm_timeout: Duration::from_millis(100),
            max_gathered: crate::gather::MAX_GATHERED,
            calls_in_flight: crate::gather::CALLS_IN_FLIGHT,
        }
    }

    /// Sets [`RedisCounterConfig::calls_in_flight`] (at least 1, at most 1,024).
    ///
    /// ```
    /// use coupon_redis::RedisCounterConfig;
    /// let one_at_a_time = RedisCounterConfig::new("redis://127.0.0.1/").with_calls_in_flight(1);
    /// assert_eq!(one_at_a_time.calls_in_flight, 1);
    /// assert_eq!(RedisCounterConfig::new("redis://127.0.0.1/").with_calls_in_flight(0).calls_in_flight, 1);
    /// ```
    pub fn with_calls_in_flight(mut self, calls: usize) -> Self {
        self.calls_in_flight = calls.clamp(1, crate::gather::MOST_CALLS_IN_FLIGHT);
        self
    }

    /// Sets [`RedisCounterConfig::max_gathered`] (at least 1, at most 256).
    ///
    /// ```
    /// use coupon_redis::RedisCounterConfig;
    /// let one_by_one = RedisCounterConfig::new("redis://127.0.0.1/").with_max_gathered(1);
    /// assert_eq!(one_by_one.max_gathered, 1);
    /// assert_eq!(RedisCounterConfig::new("redis://127.0.0.1/").with_max_gathered(10_000).max_gathered, 256);
    /// ```
    pub fn with_max_gathered(mut self, most: usize) -> Self {
        self.max_gathered = most.clamp(1, crate::gather::MAX_GATHERED);
        self
    }

    /// Sets [`RedisCounterConfig::confirm`] and [`RedisCounterConfig::confirm_timeout`].
    pub fn with_confirm(mut self, confirm: Confirm, timeout: Duration) -> Self {
        self.confirm = confirm;
        self.confirm_timeout = timeout;
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

    /// The Sentinels and the primary's name, when the URL is a `redis+sentinel://` one.
    pub(crate) fn sentinel(&self) -> Option<Result<SentinelTarget, String>> {
        let rest = self.url.trim().strip_prefix("redis+sentinel://")?;
        Some(SentinelTarget::parse(rest))
    }

    /// The node URLs: one, or several separated by commas (Redis Cluster). A comma
    /// starts another node only before another URL (`redis://`, `rediss://`,
    /// `valkey://`: a scheme and `://`) or at the end; anywhere else it belongs to the
    /// URL, a password's comma for one.
    pub(crate) fn nodes(&self) -> Vec<&str> {
        let url = self.url.as_str();
        let mut nodes = Vec::new();
        let mut start = 0;
        for (comma, _) in url.match_indices(',') {
            let next = url[comma + 1..].trim_start();
            if next.is_empty() || starts_with_a_scheme(next) {
                nodes.push(url[start..comma].trim());
                start = comma + 1;
            }
        }
        nodes.push(url[start..].trim());
        nodes.retain(|node| !node.is_empty());
        nodes
    }
}

/// Whether `text` begins with a URL scheme and `://` (a letter first, then letters,
/// digits, `+`, `-` or `.`).
fn starts_with_a_scheme(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// Where to ask for the primary: Sentinel addresses, the primary's name, and what to
/// connect to it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentinelTarget {
    pub(crate) sentinels: Vec<String>,
    pub(crate) master: String,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
}

impl SentinelTarget {
    /// Parses `[:password@]host:port,host:port/<master>[/db]`.
    fn parse(rest: &str) -> Result<Self, String> {
        let (password, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => {
                let password = credentials.rsplit(':').next().unwrap_or(credentials);
                (Some(password.to_owned()).filter(|p| !p.is_empty()), rest)
            }
            None => (None, rest),
        };
        let mut parts = rest.splitn(3, '/');
        let hosts = parts.next().unwrap_or_default();
        let master = parts.next().unwrap_or_default().trim();
        let db = match parts.next().map(str::trim).filter(|db| !db.is_empty()) {
            Some(db) => db
                .parse()
                .map_err(|_| format!("the database {db:?} is not a number"))?,
            None => 0,
        };
        let sentinels: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .map(str::to_owned)
            .collect();
        if sentinels.is_empty() || master.is_empty() {
            return Err(
                "expected redis+sentinel://host:port[,host:port...]/<master name>[/db]".into(),
            );
        }
        Ok(Self {
            sentinels,
            master: master.to_owned(),
            password,
            db,
        })
    }
}

impl fmt::Debug for RedisCounterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCounterConfig")
            .field("url", &coupon_core::redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("response_timeout", &self.response_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .field("confirm", &self.confirm)
            .field("confirm_timeout", &self.confirm_timeout)
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
    fn parses_sentinel_urls() {
        let config =
            RedisCounterConfig::new("redis+sentinel://:pw@10.0.0.1:26379, 10.0.0.2:26379/shop/2");
        let target = config.sentinel().expect("a sentinel URL").expect("valid");
        assert_eq!(
            target,
            SentinelTarget {
                sentinels: vec!["10.0.0.1:26379".into(), "10.0.0.2:26379".into()],
                master: "shop".into(),
                password: Some("pw".into()),
                db: 2,
            }
        );
        let bare = RedisCounterConfig::new("redis+sentinel://h:1/m").sentinel();
        assert_eq!(bare.expect("sentinel").expect("valid").db, 0);
        for wrong in [
            "redis+sentinel://h:1",
            "redis+sentinel:///m",
            "redis+sentinel://h:1/m/x",
        ] {
            let parsed = RedisCounterConfig::new(wrong).sentinel().expect("sentinel");
            assert!(parsed.is_err(), "{wrong}");
        }
        assert!(RedisCounterConfig::new("redis://h:1/").sentinel().is_none());
    }

    #[test]
    fn splits_node_lists() {
        let config = RedisCounterConfig::new(" redis://a:1 , redis://b:2,");
        assert_eq!(config.nodes(), vec!["redis://a:1", "redis://b:2"]);
        // A password may hold a comma: one server, not two Cluster nodes.
        let config = RedisCounterConfig::new("redis://:pa,ss@redis:6379/0");
        assert_eq!(config.nodes(), vec!["redis://:pa,ss@redis:6379/0"]);
        let config = RedisCounterConfig::new("rediss://:a,b@h:1,rediss://:c@h:2");
        assert_eq!(config.nodes(), vec!["rediss://:a,b@h:1", "rediss://:c@h:2"]);
        let config = RedisCounterConfig::new("valkey://a:7000,VALKEY://b:7001");
        assert_eq!(config.nodes(), vec!["valkey://a:7000", "VALKEY://b:7001"]);
    }
}
