//! The marker that says a campaign's counter is built on the server answering: read
//! by one script on Redis Cluster, so that the node that runs it compares its own
//! replication id (a client cannot know which node will answer a command).

use std::sync::LazyLock;

use coupon_core::Result;
use redis::Script;

use crate::connection::Session;
use crate::error::classify;
use crate::keys::CampaignKeys;

static MARKER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/marker.lua")));

/// A campaign's marker as its server holds it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    /// Built on the server that answered, with a count: it may admit.
    pub(crate) built_here: bool,
    /// The epoch its last rebuild sealed, if any is recorded.
    pub(crate) epoch: Option<u64>,
    /// The slots taken, if the count exists.
    pub(crate) count: Option<i64>,
}

/// Reads `keys`' marker through `session`: two reads in one round trip on a single
/// server, whose identity the client knows (cheaper for Redis than a script: this read
/// runs for every group of tickets a queue acknowledges), the script on Cluster.
pub(crate) async fn read(session: &mut Session, keys: &CampaignKeys) -> Result<Marker> {
    let identity = session.identity().to_owned();
    if identity != crate::connection::NODE_RUNNING_THE_SCRIPT {
        let ((built, epoch), count): ((Option<String>, Option<u64>), Option<i64>) = redis::pipe()
            .cmd("HMGET")
            .arg(&keys.users)
            .arg("~built")
            .arg("~epoch")
            .get(&keys.count)
            .query_async(session)
            .await
            .map_err(|e| classify(e, || format!("reading the marker of {keys:?}")))?;
        return Ok(Marker {
            built_here: built.as_deref() == Some(identity.as_str()) && count.is_some(),
            epoch,
            count,
        });
    }
    let (built, epoch, exists, count): (i64, i64, i64, i64) = MARKER
        .key(&keys.count)
        .key(&keys.users)
        .arg(identity)
        .invoke_async(session)
        .await
        .map_err(|e| classify(e, || format!("reading the marker of {keys:?}")))?;
    Ok(Marker {
        built_here: built == 1,
        epoch: u64::try_from(epoch).ok(),
        count: (exists == 1).then_some(count),
    })
}
