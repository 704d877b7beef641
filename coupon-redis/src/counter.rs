//! [`CouponCounter`] on Redis: one Lua script per operation, one round trip per apply.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coupon_core::{
    Admission, Campaign, CampaignId, CounterStatus, CouponCounter, Error, RestoreReport, Result,
    UserId,
};
use redis::{AsyncCommands, Script};

use crate::connection::Connection;
use crate::error::{BACKEND, classify, unexpected_reply};
use crate::{CampaignKeys, RedisCounterConfig};

static TRY_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/try_acquire.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/release.lua")));
static RESTORE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/restore.lua")));

/// Holders restored per script call: each call is atomic, and small enough not to
/// stall the server for other clients.
const RESTORE_CHUNK: usize = 1_000;

/// An exact admission counter shared by every process that points at one Redis.
///
/// Each `try_acquire` is one `EVALSHA` of an atomic script (reloaded on `NOSCRIPT`, e.g.
/// after `SCRIPT FLUSH` or a restart), on one multiplexed, self-reconnecting connection,
/// so concurrent applies are pipelined. The count never passes the cap. Admission times
/// come from the Redis clock (`TIME`), the same for every app instance.
///
/// Per-user limits above 1 are supported: a third key counts slots per user, touched
/// only by such campaigns.
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
    connection: Connection,
    prefix: String,
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
        let mut connection = Connection::open(&config)
            .await
            .map_err(|e| classify(e, || format!("connecting to {config:?}")))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(|e| classify(e, || "PING".to_owned()))?;
        Ok(Self {
            connection,
            prefix: config.key_prefix,
        })
    }

    /// The keys this counter uses for `campaign`.
    pub fn keys(&self, campaign: CampaignId) -> CampaignKeys {
        CampaignKeys::new(&self.prefix, campaign)
    }

    /// Admitted users of `campaign` with their admission times (by the Redis clock),
    /// read incrementally with `HSCAN` so a large campaign does not block the server.
    pub async fn admissions(&self, campaign: CampaignId) -> Result<Vec<(UserId, DateTime<Utc>)>> {
        let keys = self.keys(campaign);
        let mut connection = self.connection.clone();
        let mut admissions = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<(String, i64)>) = redis::cmd("HSCAN")
                .arg(&keys.users)
                .arg(cursor)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut connection)
                .await
                .map_err(|e| classify(e, || format!("HSCAN {}", keys.users)))?;
            for (user, millis) in page {
                let user = user.parse::<u64>().map_err(|_| {
                    unexpected_reply(format!("{} holds a non-numeric user {user:?}", keys.users))
                })?;
                let at = DateTime::from_timestamp_millis(millis).ok_or_else(|| {
                    unexpected_reply(format!("{} holds a bad time {millis}", keys.users))
                })?;
                admissions.push((UserId(user), at));
            }
            if next == 0 {
                return Ok(admissions);
            }
            cursor = next;
        }
    }

    /// Deletes every key of `campaign` (for tests and for retiring a finished campaign).
    pub async fn forget(&self, campaign: CampaignId) -> Result<()> {
        let keys = self.keys(campaign);
        let mut connection = self.connection.clone();
        let _: i64 = connection
            .del(&keys.as_array()[..])
            .await
            .map_err(|e| classify(e, || format!("DEL {keys:?}")))?;
        Ok(())
    }
}

#[async_trait]
impl CouponCounter for RedisCounter {
    async fn try_acquire(&self, campaign: &Campaign, user: UserId) -> Result<Admission> {
        let keys = self.keys(campaign.id);
        let reply: i64 = TRY_ACQUIRE
            .key(&keys.count)
            .key(&keys.users)
            .key(&keys.slots)
            .arg(user.get())
            .arg(campaign.cap)
            .arg(campaign.per_user_limit)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| classify(e, || format!("try_acquire on {keys:?}")))?;
        match reply {
            -1 => Ok(Admission::AlreadyApplied),
            0 => Ok(Admission::SoldOut),
            rank if rank > 0 => Ok(Admission::Granted { rank: rank as u64 }),
            other => Err(unexpected_reply(format!(
                "try_acquire on {keys:?} answered {other}"
            ))),
        }
    }

    async fn release(&self, campaign: CampaignId, user: UserId) -> Result<bool> {
        let keys = self.keys(campaign);
        let released: i64 = RELEASE
            .key(&keys.count)
            .key(&keys.users)
            .key(&keys.slots)
            .arg(user.get())
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| classify(e, || format!("release on {keys:?}")))?;
        Ok(released == 1)
    }

    async fn is_admitted(&self, campaign: CampaignId, user: UserId) -> Result<bool> {
        let keys = self.keys(campaign);
        self.connection
            .clone()
            .hexists(&keys.users, user.get())
            .await
            .map_err(|e| classify(e, || format!("HEXISTS {}", keys.users)))
    }

    async fn status(&self, campaign: CampaignId) -> Result<CounterStatus> {
        let keys = self.keys(campaign);
        let count: Option<i64> = self
            .connection
            .clone()
            .get(&keys.count)
            .await
            .map_err(|e| classify(e, || format!("GET {}", keys.count)))?;
        let admitted = u64::try_from(count.unwrap_or(0))
            .map_err(|_| unexpected_reply(format!("{} holds a negative count", keys.count)))?;
        Ok(CounterStatus::new(admitted))
    }

    async fn admitted_before(
        &self,
        campaign: CampaignId,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<UserId>> {
        let mut users: Vec<UserId> = self
            .admissions(campaign)
            .await?
            .into_iter()
            .filter(|&(_, at)| at < cutoff)
            .map(|(user, _)| user)
            .collect();
        users.sort_unstable();
        Ok(users)
    }

    async fn restore(&self, campaign: &Campaign, holders: &[UserId]) -> Result<RestoreReport> {
        let keys = self.keys(campaign.id);
        let mut per_user = std::collections::BTreeMap::<UserId, u64>::new();
        for &user in holders {
            *per_user.entry(user).or_default() += 1;
        }
        let pairs: Vec<(UserId, u64)> = per_user.into_iter().collect();
        let mut added = 0;
        let mut admitted = self.status(campaign.id).await?.admitted;
        for chunk in pairs.chunks(RESTORE_CHUNK) {
            let mut invocation = RESTORE.key(&keys.count);
            invocation
                .key(&keys.users)
                .key(&keys.slots)
                .arg(campaign.per_user_limit);
            for &(user, coupons) in chunk {
                invocation.arg(user.get()).arg(coupons);
            }
            let (chunk_added, count): (u64, u64) = invocation
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(|e| classify(e, || format!("restore on {keys:?}")))?;
            added += chunk_added;
            admitted = count;
        }
        tracing::info!(campaign = %campaign.id, added, admitted, backend = BACKEND, "counter restored from the store");
        Ok(RestoreReport::new(added, admitted))
    }
}
