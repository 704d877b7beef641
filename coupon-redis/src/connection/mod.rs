//! One connection type for a single Redis server and for Redis Cluster, that knows
//! which server it talks to.
//!
//! The counter's fencing rests on that knowledge: a campaign is admitted only on the
//! server its counter was built on, so every script carries the identity of the server
//! the connection reaches: its `run_id` on a single server, `~node` on Cluster (the
//! scripts then take the replication id of the node running them). A single-server
//! connection is therefore re-opened by this module, not by redis-rs: each new
//! connection reads its server's identity before it carries a script, so a restarted
//! server, or another server behind the same address after a failover, is never
//! mistaken for the one that built the counter. On a single server commands are never
//! resent after a dropped connection: a script that may have run is reported as an
//! unknown outcome, not run twice (on Cluster, `session_once` gives the scripts that
//! must not run twice a client that never resends).

mod session;
mod single;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};

use crate::RedisCounterConfig;
use crate::config::SentinelTarget;
use crate::confirm::Confirmer;

/// The server identity given to the scripts on Redis Cluster, where each key's server is
/// chosen per command and the client cannot know which node will answer: the scripts
/// take the replication id of the node running them instead (docs/architecture.md).
pub(crate) const NODE_RUNNING_THE_SCRIPT: &str = "~node";
#[cfg(feature = "cluster")]
const CLUSTER_IDENTITY: &str = NODE_RUNNING_THE_SCRIPT;

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
            let infos: std::collections::HashMap<String, redis::InfoDict> =
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
