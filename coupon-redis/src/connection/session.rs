//! What one operation's [`Session`] offers: the identity of its server, replica
//! confirmation, and the commands themselves ([`ConnectionLike`]), reporting the
//! errors that break a single-server connection.

use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::{Cmd, InfoDict, Pipeline, RedisFuture, RedisResult, Value};

use super::{Session, SessionKind, lock};

/// How often the replicas attached to the primary are counted again: a failover, a
/// replica lost or added changes whether admissions can be confirmed.
const REPLICAS_REFRESH: Duration = Duration::from_secs(5);

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
