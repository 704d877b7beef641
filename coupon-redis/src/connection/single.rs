//! Opening, re-opening and forgetting the connection to a single server (directly or
//! through Sentinel), reading the server's facts each time it opens.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::{InfoDict, RedisResult};

use super::{Live, Replicas, ServerFacts, Single, Target, lock};
use crate::config::SentinelTarget;
use crate::confirm::Confirmer;

/// After a failed connection attempt, callers fail at once for this long instead of
/// queueing behind attempts that would fail the same way.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

impl Single {
    pub(super) async fn live(&self) -> RedisResult<Live> {
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
    pub(super) async fn connect(&self) -> RedisResult<(Live, ServerFacts)> {
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
    pub(super) fn report(&self, generation: u64, error: &redis::RedisError) {
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
