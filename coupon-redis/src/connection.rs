//! One connection type for a single Redis server and for Redis Cluster, that knows
//! which server it talks to.
//!
//! The counter's fencing rests on that knowledge: a campaign is admitted only on the
//! server its counter was built on, so every script carries the identity (`run_id`)
//! of the server the connection reaches. A single-server connection is therefore
//! re-opened by this module, not by redis-rs: each new connection reads its server's
//! identity before it carries a script, so a restarted server, or another server behind
//! the same address after a failover, is never mistaken for the one that built the
//! counter. Commands are never resent after a dropped connection: a script that may
//! have run is reported as an unknown outcome, not run twice.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, InfoDict, Pipeline, RedisFuture, RedisResult, Value};

use crate::RedisCounterConfig;
use crate::config::SentinelTarget;
use crate::confirm::Confirmer;

/// After a failed connection attempt, callers fail at once for this long instead of
/// queueing behind attempts that would fail the same way.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// The server identity reported for Redis Cluster, where each key's server is chosen
/// per command: fencing there rests on the built marker alone (docs/architecture.md).
#[cfg(feature = "cluster")]
const CLUSTER_IDENTITY: &str = "cluster";

/// A multiplexed connection that reconnects by itself: concurrent commands from any
/// number of tasks share it and are pipelined on the wire automatically.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(Arc<Single>),
    #[cfg(feature = "cluster")]
    Cluster {
        /// Follows redirections and resends after a dropped connection.
        retrying: redis::cluster_async::ClusterConnection,
        /// Never resends: for the scripts that must not run twice (`release`).
        once: redis::cluster_async::ClusterConnection,
    },
}

/// What the counter learns about a server when it connects.
#[derive(Debug, Clone)]
pub(crate) struct ServerFacts {
    /// `run_id`: new at every start of a server process.
    pub(crate) identity: Arc<str>,
    /// `maxmemory_policy`, when the server reports it.
    pub(crate) maxmemory_policy: Option<String>,
    /// `connected_slaves`: replicas attached when the connection opened.
    pub(crate) replicas: u64,
    /// Whether this is Redis Cluster.
    pub(crate) is_cluster: bool,
}

/// A live connection to one server process.
#[derive(Clone)]
struct Live {
    connection: MultiplexedConnection,
    identity: Arc<str>,
    generation: u64,
    replicas: Arc<Replicas>,
    confirmer: Arc<Confirmer>,
}

/// How often the replicas attached to the primary are counted again: a failover, a
/// replica lost or added changes whether admissions can be confirmed.
const REPLICAS_REFRESH: Duration = Duration::from_secs(5);

/// The replicas attached to a connection's server, as last read.
struct Replicas {
    count: std::sync::atomic::AtomicU64,
    read_at: Mutex<Instant>,
}

/// Where a single-server connection goes.
enum Target {
    /// One address.
    Direct(redis::Client),
    /// Whatever primary the Sentinels name at the time of connecting.
    Sentinel(SentinelTarget),
}

pub(crate) struct Single {
    target: Target,
    options: AsyncConnectionConfig,
    live: Mutex<Option<Live>>,
    /// Held while a connection is being opened, so that one attempt serves everyone.
    opening: tokio::sync::Mutex<()>,
    last_failure: Mutex<Option<(Instant, redis::RedisError)>>,
    generation: Mutex<u64>,
}

/// A connection to one server, and that server's identity, for one operation.
pub(crate) struct Session {
    kind: SessionKind,
    identity: Arc<str>,
}

enum SessionKind {
    Single {
        live: Live,
        owner: Arc<Single>,
    },
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Connection {
    /// Opens the connection and reads the facts of the server it reaches.
    pub(crate) async fn open(config: &RedisCounterConfig) -> RedisResult<(Self, ServerFacts)> {
        let nodes = config.nodes();
        #[cfg(feature = "cluster")]
        if nodes.len() > 1 && config.sentinel().is_none() {
            let client = |retries: Option<u32>| {
                let builder = redis::cluster::ClusterClient::builder(nodes.clone())
                    .response_timeout(config.response_timeout)
                    .connection_timeout(config.connection_timeout);
                match retries {
                    Some(retries) => builder.retries(retries).build(),
                    None => builder.build(),
                }
            };
            let once = client(Some(0))?.get_async_connection().await?;
            let mut connection = client(None)?.get_async_connection().await?;
            // INFO goes to every primary; the policy that may evict, if any, wins.
            let infos: std::collections::HashMap<String, InfoDict> =
                redis::cmd("INFO").query_async(&mut connection).await?;
            let policies = infos
                .values()
                .filter_map(|info| info.get::<String>("maxmemory_policy"));
            let facts = ServerFacts {
                identity: Arc::from(CLUSTER_IDENTITY),
                maxmemory_policy: policies.max_by_key(|policy| policy != "noeviction"),
                replicas: 0,
                is_cluster: true,
            };
            return Ok((
                Self::Cluster {
                    retrying: connection,
                    once,
                },
                facts,
            ));
        }
        let url = match nodes.as_slice() {
            [url] => *url,
            _ => config.url.as_str(),
        };
        let target = match config.sentinel() {
            Some(Ok(sentinel)) => Target::Sentinel(sentinel),
            Some(Err(reason)) => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "invalid Sentinel URL",
                    reason,
                )));
            }
            None => Target::Direct(redis::Client::open(url)?),
        };
        let single = Arc::new(Single {
            target,
            options: AsyncConnectionConfig::new()
                .set_response_timeout(Some(config.response_timeout))
                .set_connection_timeout(Some(config.connection_timeout)),
            live: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            last_failure: Mutex::new(None),
            generation: Mutex::new(0),
        });
        let (_, facts) = single.connect().await?;
        Ok((Self::Single(single), facts))
    }

    /// A connection for one operation, with the identity of the server it reaches.
    pub(crate) async fn session(&self) -> RedisResult<Session> {
        self.session_with(false).await
    }

    /// A connection that never resends a command (on Cluster, redirections fail too
    /// and the caller tries again): for scripts that must not run twice.
    pub(crate) async fn session_once(&self) -> RedisResult<Session> {
        self.session_with(true).await
    }

    async fn session_with(&self, once: bool) -> RedisResult<Session> {
        let _ = once;
        match self {
            Self::Single(single) => {
                let live = single.live().await?;
                Ok(Session {
                    identity: live.identity.clone(),
                    kind: SessionKind::Single {
                        live,
                        owner: single.clone(),
                    },
                })
            }
            #[cfg(feature = "cluster")]
            Self::Cluster {
                retrying,
                once: no_resend,
            } => Ok(Session {
                identity: Arc::from(CLUSTER_IDENTITY),
                kind: SessionKind::Cluster(if once {
                    no_resend.clone()
                } else {
                    retrying.clone()
                }),
            }),
        }
    }
}

impl Single {
    async fn live(&self) -> RedisResult<Live> {
        if let Some(live) = lock(&self.live).clone() {
            return Ok(live);
        }
        let _opening = self.opening.lock().await;
        // Someone else may have connected while we waited.
        if let Some(live) = lock(&self.live).clone() {
            return Ok(live);
        }
        if let Some((at, error)) = lock(&self.last_failure).as_ref()
            && at.elapsed() < RECONNECT_PAUSE
        {
            return Err(error.clone());
        }
        match self.connect().await {
            Ok((live, facts)) => {
                tracing::info!(server = %facts.identity, "connected to Redis");
                Ok(live)
            }
            Err(error) => {
                *lock(&self.last_failure) = Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }

    /// Opens a connection, reads the server's facts on it, and makes it the live one.
    async fn connect(&self) -> RedisResult<(Live, ServerFacts)> {
        let client = match &self.target {
            Target::Direct(client) => client.clone(),
            Target::Sentinel(sentinel) => self.primary_of(sentinel).await?,
        };
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&self.options)
            .await?;
        let info: InfoDict = redis::cmd("INFO").query_async(&mut connection).await?;
        if matches!(self.target, Target::Sentinel(_))
            && info.get::<String>("role").as_deref() != Some("master")
        {
            // Named by a Sentinel that has not yet seen a failover end: try again.
            return Err(redis::RedisError::from((
                redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain),
                "the server the Sentinels named is not a primary (yet)",
            )));
        }
        let identity: Arc<str> = info.get::<String>("run_id").map(Arc::from).ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "INFO reported no run_id",
            ))
        })?;
        let facts = ServerFacts {
            identity: identity.clone(),
            maxmemory_policy: info.get("maxmemory_policy"),
            replicas: info.get("connected_slaves").unwrap_or(0),
            is_cluster: false,
        };
        let generation = {
            let mut generation = lock(&self.generation);
            *generation += 1;
            *generation
        };
        let live = Live {
            connection,
            identity,
            generation,
            replicas: Arc::new(Replicas {
                count: std::sync::atomic::AtomicU64::new(facts.replicas),
                read_at: Mutex::new(Instant::now()),
            }),
            confirmer: Arc::new(Confirmer::new()),
        };
        *lock(&self.live) = Some(live.clone());
        *lock(&self.last_failure) = None;
        Ok((live, facts))
    }

    /// A client for the primary the first answering Sentinel names.
    async fn primary_of(&self, sentinel: &SentinelTarget) -> RedisResult<redis::Client> {
        let mut last_error = None;
        for address in &sentinel.sentinels {
            let asked = async {
                let client = redis::Client::open(format!("redis://{address}/"))?;
                let mut connection = client
                    .get_multiplexed_async_connection_with_config(&self.options)
                    .await?;
                let (host, port): (String, u16) = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&sentinel.master)
                    .query_async(&mut connection)
                    .await?;
                let password = sentinel
                    .password
                    .as_deref()
                    .map(|password| format!(":{password}@"))
                    .unwrap_or_default();
                redis::Client::open(format!("redis://{password}{host}:{port}/{}", sentinel.db))
            };
            match asked.await {
                Ok(client) => return Ok(client),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no Sentinel given"))
        }))
    }

    /// Forgets the live connection after an error that broke it, so that the next
    /// operation opens a new one (and learns which server it reaches).
    fn report(&self, generation: u64, error: &redis::RedisError) {
        let broken = error.is_connection_dropped()
            || error.is_io_error()
            || error.is_unrecoverable_error()
            || error.code() == Some("READONLY");
        if !broken {
            return;
        }
        let mut live = lock(&self.live);
        if live.as_ref().is_some_and(|l| l.generation == generation) {
            tracing::warn!(%error, "Redis connection lost; the next call reconnects");
            *live = None;
        }
    }
}

impl Session {
    /// The identity of the server this session reaches (its `run_id`).
    pub(crate) fn identity(&self) -> &str {
        &self.identity
    }

    /// Replicas attached to this session's server, read again every few seconds (0 on
    /// Cluster, where confirmation is not offered).
    pub(crate) async fn replicas(&self) -> u64 {
        use std::sync::atomic::Ordering;
        let live = match &self.kind {
            SessionKind::Single { live, .. } => live,
            #[cfg(feature = "cluster")]
            SessionKind::Cluster(_) => return 0,
        };
        let stale = {
            let mut read_at = lock(&live.replicas.read_at);
            let stale = read_at.elapsed() >= REPLICAS_REFRESH;
            if stale {
                // One caller reads; the others go on with the last count.
                *read_at = Instant::now();
            }
            stale
        };
        if stale {
            let info: RedisResult<InfoDict> = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut live.connection.clone())
                .await;
            if let Some(count) = info
                .ok()
                .and_then(|info| info.get::<u64>("connected_slaves"))
            {
                live.replicas.count.store(count, Ordering::Relaxed);
            }
        }
        live.replicas.count.load(Ordering::Relaxed)
    }

    /// Whether `replicas` replicas acknowledged every write this session's connection
    /// carried so far, within `timeout` (one `WAIT` shared with concurrent callers).
    pub(crate) async fn confirm(&self, replicas: u64, timeout: Duration) -> bool {
        match &self.kind {
            SessionKind::Single { live, .. } => {
                live.confirmer
                    .confirm(&live.connection, replicas, timeout)
                    .await
            }
            #[cfg(feature = "cluster")]
            SessionKind::Cluster(_) => true,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConnectionLike for Session {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.kind {
            SessionKind::Single { live, owner } => Box::pin(async move {
                let result = live.connection.req_packed_command(cmd).await;
                if let Err(error) = &result {
                    owner.report(live.generation, error);
                }
                result
            }),
            #[cfg(feature = "cluster")]
            SessionKind::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.kind {
            SessionKind::Single { live, owner } => Box::pin(async move {
                let result = live
                    .connection
                    .req_packed_commands(pipeline, offset, count)
                    .await;
                if let Err(error) = &result {
                    owner.report(live.generation, error);
                }
                result
            }),
            #[cfg(feature = "cluster")]
            SessionKind::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.kind {
            SessionKind::Single { live, .. } => live.connection.get_db(),
            #[cfg(feature = "cluster")]
            SessionKind::Cluster(connection) => connection.get_db(),
        }
    }
}
