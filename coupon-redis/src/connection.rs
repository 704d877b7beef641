//! One connection type for a single Redis server and for Redis Cluster.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::RedisCounterConfig;

/// A multiplexed connection that reconnects by itself: concurrent commands from any
/// number of tasks share it and are pipelined on the wire automatically.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Connection {
    pub(crate) async fn open(config: &RedisCounterConfig) -> RedisResult<Self> {
        let nodes = config.nodes();
        #[cfg(feature = "cluster")]
        if nodes.len() > 1 {
            let client = redis::cluster::ClusterClient::builder(nodes)
                .response_timeout(config.response_timeout)
                .connection_timeout(config.connection_timeout)
                .build()?;
            return Ok(Self::Cluster(client.get_async_connection().await?));
        }
        let url = match nodes.as_slice() {
            [url] => *url,
            _ => config.url.as_str(),
        };
        let client = redis::Client::open(url)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connection_timeout))
            .set_number_of_retries(3);
        let manager = client
            .get_connection_manager_with_config(manager_config)
            .await?;
        Ok(Self::Single(manager))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            #[cfg(feature = "cluster")]
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}
