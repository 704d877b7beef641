//! [`CouponCounter`](coupon_core::CouponCounter) on Redis: one Lua script per operation,
//! one round trip per apply.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use coupon_core::{CampaignId, Error, Result};
use redis::AsyncCommands;

use crate::connection::{Connection, ServerFacts, Session};
use crate::error::{BACKEND, classify};
use crate::probe::Probes;
use crate::{CampaignKeys, Confirm, RedisCounterConfig};

mod coupon_counter;
mod held;

pub(crate) use held::parse_held;

/// Holders restored, or slots claimed, per script call: each call is atomic, and small
/// enough not to stall the server for other clients.
pub(crate) const CHUNK: usize = 1_000;

/// An exact admission counter shared by every process that points at one Redis.
///
/// Each `try_acquire` is one `EVALSHA` of an atomic script (reloaded on `NOSCRIPT`, e.g.
/// after `SCRIPT FLUSH` or a restart), on one multiplexed, self-reconnecting connection,
/// so concurrent applies are pipelined. The count never passes the cap. Admission times
/// come from the Redis clock (`TIME`), the same for every app instance.
///
/// Each held slot is a field of the campaign's `users` hash holding its rank and
/// admission time, so the settler can rebuild its ticket. Per-user limits above 1 are
/// supported: another hash counts slots per user, touched only by such campaigns.
///
/// Fencing: a campaign admits only on the server process its counter was built on, in
/// the epoch its rebuild sealed.
/// [`CouponCounter::rebuild`](coupon_core::CouponCounter::rebuild) writes that server's
/// `run_id` and the epoch into the campaign's state; every admission compares the
/// marker with the `run_id` of the server the connection reaches, read whenever a
/// connection opens, and returns the epoch with the grant. A restart (empty or not), a
/// failover to a replica, or a lost key leaves no matching marker, so the counter
/// answers [`Error::NotReady`] until it is rebuilt. On Redis Cluster, where the
/// client cannot know which node will run a script, the scripts compare the marker
/// with the replication id of the node running them, which every restart and every
/// promotion changes (docs/architecture.md).
///
/// `connect` refuses a server whose `maxmemory-policy` could evict the campaign's keys
/// (an `allkeys-*` policy): the keys carry no expiry, so `noeviction` and the
/// `volatile-*` policies never evict them.
///
/// The work of one admission is bounded whatever the campaign's per-user limit (at
/// most [`NewCampaign::MAX_PER_USER_LIMIT`](coupon_core::NewCampaign::MAX_PER_USER_LIMIT)):
/// a returning user costs two hash reads, not one per slot.
///
/// ```no_run
/// # async fn demo() -> coupon_core::Result<()> {
/// use coupon_redis::{RedisCounter, RedisCounterConfig};
/// let counter = RedisCounter::connect(
///     RedisCounterConfig::new("redis://127.0.0.1:6379/").with_key_prefix("shop:coupon"),
/// )
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisCounter {
    pub(crate) connection: Connection,
    prefix: String,
    confirm: Confirm,
    confirm_timeout: Duration,
    probes: Arc<Probes>,
    pub(crate) lanes: Arc<crate::gather::Lanes>,
}

impl std::fmt::Debug for RedisCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCounter {
    /// Connects and checks the server answers; the connection then reconnects by itself.
    pub async fn connect(config: RedisCounterConfig) -> Result<Self> {
        if config.key_prefix.contains(['{', '}']) {
            return Err(Error::InvalidCampaign {
                field: "key_prefix",
                reason: "must not contain '{' or '}': they delimit the hash tag".into(),
            });
        }
        let (connection, facts) = Connection::open(&config)
            .await
            .map_err(|e| classify(e, || format!("connecting to {config:?}")))?;
        check_eviction(&facts)?;
        check_confirm(&config, &facts)?;
        Ok(Self {
            connection,
            prefix: config.key_prefix,
            confirm: config.confirm,
            confirm_timeout: config.confirm_timeout,
            probes: Arc::default(),
            lanes: Arc::new(crate::gather::Lanes::new(
                config.max_gathered,
                config.calls_in_flight,
            )),
        })
    }

    /// A connection for one operation and the identity of the server it reaches.
    pub(crate) async fn session(&self) -> Result<Session> {
        self.connection
            .session()
            .await
            .map_err(|e| classify(e, || "connecting".to_owned()))
    }

    /// Waits for the replicas [`Confirm`] asks for; an admission they did not
    /// acknowledge in time is an unknown outcome (the slot may be held).
    pub(crate) async fn confirmed(&self, session: &Session, keys: &CampaignKeys) -> Result<()> {
        let replicas = match self.confirm {
            Confirm::Off => return Ok(()),
            Confirm::Auto if session.replicas().await == 0 => return Ok(()),
            Confirm::Auto => 1,
            Confirm::Replicas(replicas) => u64::from(replicas),
        };
        if replicas == 0 || session.confirm(replicas, self.confirm_timeout).await {
            return Ok(());
        }
        Err(Error::outcome_unknown(
            BACKEND,
            format!(
                "try_acquire on {keys:?}: admitted, but not acknowledged by {replicas} replica(s) within {:?}",
                self.confirm_timeout
            ),
            None,
        ))
    }

    /// The keys this counter uses for `campaign`.
    pub fn keys(&self, campaign: CampaignId) -> CampaignKeys {
        CampaignKeys::new(&self.prefix, campaign)
    }

    /// Whether `campaign` is built on the server a session reaches now, and its epoch
    /// there.
    async fn marker(&self, campaign: CampaignId) -> Result<(bool, Option<u64>)> {
        let keys = self.keys(campaign);
        let mut session = self.session().await?;
        let marker = crate::marker::read(&mut session, &keys).await?;
        Ok((marker.built_here, marker.epoch))
    }
    /// Deletes every key of `campaign` (for tests and for retiring a finished campaign).
    pub async fn forget(&self, campaign: CampaignId) -> Result<()> {
        let keys = self.keys(campaign);
        let mut connection = self.session().await?;
        let _: i64 = connection
            .del(&keys.as_array()[..])
            .await
            .map_err(|e| classify(e, || format!("DEL {keys:?}")))?;
        Ok(())
    }
}

/// A token unique to one `try_acquire` call (a random start, then a counter), that
/// lets the script tell a resent request from a new one.
pub(crate) fn request_token() -> String {
    static NEXT: LazyLock<AtomicU64> =
        LazyLock::new(|| AtomicU64::new(uuid::Uuid::new_v4().as_u64_pair().0));
    format!("{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Refuses confirmation settings that cannot work: a `WAIT` holds up every command
/// pipelined behind it, so it must end before the response timeout; and Cluster
/// offers no confirmation.
fn check_confirm(config: &RedisCounterConfig, facts: &ServerFacts) -> Result<()> {
    if config.confirm == Confirm::Off {
        return Ok(());
    }
    if config.confirm_timeout >= config.response_timeout {
        return Err(Error::backend(
            BACKEND,
            format!(
                "invalid settings: the confirm timeout ({:?}) must be below the response \
                 timeout ({:?}): a WAIT holds up the commands behind it",
                config.confirm_timeout, config.response_timeout
            ),
            None,
        ));
    }
    if matches!(config.confirm, Confirm::Replicas(_)) && facts.is_cluster {
        return Err(Error::backend(
            BACKEND,
            "invalid settings: replica confirmation is not offered on Redis Cluster",
            None,
        ));
    }
    Ok(())
}

/// Refuses a server that may evict a campaign's keys: an evicted count or holder list
/// would be a counter that forgot. The keys carry no expiry, so only the `allkeys-*`
/// policies can evict them.
fn check_eviction(facts: &ServerFacts) -> Result<()> {
    match facts.maxmemory_policy.as_deref() {
        Some(policy) if policy.starts_with("allkeys-") => Err(Error::Backend {
            backend: BACKEND,
            message: format!(
                "maxmemory-policy is {policy}: Redis may evict a live campaign's keys, and a \
                 counter that forgets admissions must stop admitting until rebuilt. Set \
                 `maxmemory-policy noeviction` (or a volatile-* policy, which never evicts \
                 keys without an expiry, as the counter's are)"
            ),
            source: None,
        }),
        _ => Ok(()),
    }
}
