//! [`CouponCounter`] on Redis: one Lua script per operation, one round trip per apply.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coupon_core::{
    Admission, Campaign, CampaignId, CounterStatus, CouponCounter, Error, HeldSlot, Rebuild,
    Release, RestoreReport, Result, UserId,
};
use redis::{AsyncCommands, Script, Value};

use crate::connection::{Connection, ServerFacts, Session};
use crate::error::{BACKEND, classify, unexpected_reply};
use crate::{CampaignKeys, Confirm, RedisCounterConfig};

static TRY_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/try_acquire.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/release.lua")));
static RESTORE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/restore.lua")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/claim.lua")));
static SEAL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/seal.lua")));
static UNLOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/unlock.lua")));

/// How long a rebuild may hold a campaign's lock; a rebuild that dies leaves it to
/// another process after this.
const REBUILD_LOCK_MS: u64 = 60_000;

/// Holders restored, or slots claimed, per script call: each call is atomic, and small
/// enough not to stall the server for other clients.
const CHUNK: usize = 1_000;

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
/// Fencing: a campaign admits only on the server process its counter was built on.
/// [`CouponCounter::rebuild`] writes that server's `run_id` into the campaign's state,
/// and every admission compares it with the `run_id` of the server the connection
/// reaches, read whenever a connection opens. A restart (empty or not), a failover to
/// a replica, or a lost key leaves no matching marker, so the counter answers
/// [`Error::NotReady`] until it is rebuilt from the store. On Redis Cluster the marker's
/// presence is checked, not the server's identity (docs/architecture.md).
///
/// `connect` refuses a server whose `maxmemory-policy` could evict keys, unless
/// [`RedisCounterConfig::allow_eviction`] says otherwise.
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
    confirm: Confirm,
    confirm_timeout: Duration,
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
        check_eviction(&facts, config.allow_eviction)?;
        check_confirm(&config, &facts)?;
        Ok(Self {
            connection,
            prefix: config.key_prefix,
            confirm: config.confirm,
            confirm_timeout: config.confirm_timeout,
        })
    }

    /// A connection for one operation and the identity of the server it reaches.
    async fn session(&self) -> Result<Session> {
        self.connection
            .session()
            .await
            .map_err(|e| classify(e, || "connecting".to_owned()))
    }

    /// Waits for the replicas [`Confirm`] asks for; an admission they did not
    /// acknowledge in time is an unknown outcome (the slot may be held).
    async fn confirmed(&self, session: &Session, keys: &CampaignKeys) -> Result<()> {
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

    /// Every slot held in `campaign`, read incrementally with `HSCAN` so a large
    /// campaign does not block the server.
    async fn scan_held(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>> {
        let keys = self.keys(campaign);
        let mut connection = self.session().await?;
        let mut held = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(&keys.users)
                .arg(cursor)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut connection)
                .await
                .map_err(|e| classify(e, || format!("HSCAN {}", keys.users)))?;
            for (field, value) in page {
                // `~free` and other bookkeeping fields are not slots.
                if field.starts_with('~') {
                    continue;
                }
                held.push(parse_held(&field, &value).ok_or_else(|| {
                    unexpected_reply(format!("{} holds {field:?} = {value:?}", keys.users))
                })?);
            }
            if next == 0 {
                return Ok(held);
            }
            cursor = next;
        }
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

#[async_trait]
impl CouponCounter for RedisCounter {
    async fn try_acquire(&self, campaign: &Campaign, user: UserId) -> Result<Admission> {
        let keys = self.keys(campaign.id);
        let mut session = self.session().await?;
        let reply: Value = TRY_ACQUIRE
            .key(&keys.count)
            .key(&keys.users)
            .key(&keys.slots)
            .key(&keys.free)
            .arg(user.get())
            .arg(campaign.cap)
            .arg(campaign.per_user_limit)
            .arg(session.identity())
            .arg(request_token())
            .invoke_async(&mut session)
            .await
            .map_err(|e| classify(e, || format!("try_acquire on {keys:?}")))?;
        let granted =
            matches!(reply, Value::Array(_)) || matches!(reply, Value::Int(rank) if rank > 0);
        if granted {
            self.confirmed(&session, &keys).await?;
        }
        match reply {
            Value::Int(-1) => Ok(Admission::AlreadyApplied),
            Value::Int(-2) => Err(Error::NotReady {
                campaign: campaign.id,
                backend: BACKEND,
            }),
            Value::Int(0) => Ok(Admission::SoldOut),
            // Slot 1, the common case: a bare rank, the cheapest reply.
            Value::Int(rank) if rank > 0 => Ok(Admission::Granted {
                rank: rank as u64,
                slot: 1,
                admitted_at: Utc::now(),
            }),
            Value::Array(ref granted) => match granted.as_slice() {
                [Value::Int(rank), Value::Int(slot)] if *rank > 0 && *slot > 0 => {
                    Ok(Admission::Granted {
                        rank: *rank as u64,
                        slot: u32::try_from(*slot).unwrap_or(u32::MAX),
                        admitted_at: Utc::now(),
                    })
                }
                _ => Err(unexpected_reply(format!(
                    "try_acquire on {keys:?} answered {reply:?}"
                ))),
            },
            other => Err(unexpected_reply(format!(
                "try_acquire on {keys:?} answered {other:?}"
            ))),
        }
    }

    async fn release(&self, campaign: CampaignId, held: &HeldSlot) -> Result<Release> {
        let keys = self.keys(campaign);
        // Never resent: a release run twice could free a slot its user took again.
        let mut session = self
            .connection
            .session_once()
            .await
            .map_err(|e| classify(e, || "connecting".to_owned()))?;
        let released: i64 = RELEASE
            .key(&keys.count)
            .key(&keys.users)
            .key(&keys.slots)
            .key(&keys.claims)
            .key(&keys.free)
            .arg(held.user.get())
            .arg(held.slot)
            .arg(held.rank)
            .arg(session.identity())
            .invoke_async(&mut session)
            .await
            .map_err(|e| classify(e, || format!("release on {keys:?}")))?;
        match released {
            1 => Ok(Release::Released),
            0 => Ok(Release::NotHeld),
            2 => Ok(Release::Settling),
            3 => Err(Error::NotReady {
                campaign,
                backend: BACKEND,
            }),
            other => Err(unexpected_reply(format!(
                "release on {keys:?} answered {other}"
            ))),
        }
    }

    /// A `PING` answers.
    async fn ready(&self) -> Result<()> {
        let mut session = self.session().await?;
        redis::cmd("PING")
            .query_async::<()>(&mut session)
            .await
            .map_err(|e| classify(e, || "PING".to_owned()))
    }

    async fn is_admitted(&self, campaign: CampaignId, user: UserId) -> Result<bool> {
        let keys = self.keys(campaign);
        self.session()
            .await?
            .hexists(&keys.users, user.get())
            .await
            .map_err(|e| classify(e, || format!("HEXISTS {}", keys.users)))
    }

    async fn status(&self, campaign: CampaignId) -> Result<CounterStatus> {
        let keys = self.keys(campaign);
        let count: Option<i64> = self
            .session()
            .await?
            .get(&keys.count)
            .await
            .map_err(|e| classify(e, || format!("GET {}", keys.count)))?;
        let admitted = u64::try_from(count.unwrap_or(0))
            .map_err(|_| unexpected_reply(format!("{} holds a negative count", keys.count)))?;
        Ok(CounterStatus::new(admitted))
    }

    async fn held_slots(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>> {
        self.scan_held(campaign).await
    }

    async fn slots_of(&self, campaign: &Campaign, user: UserId) -> Result<Vec<HeldSlot>> {
        let keys = self.keys(campaign.id);
        // Slot 1 is the field "<user>", slot k above it "<user>:<k>".
        let fields: Vec<String> = (1..=campaign.per_user_limit.max(1))
            .map(|slot| match slot {
                1 => user.get().to_string(),
                slot => format!("{user}:{slot}", user = user.get()),
            })
            .collect();
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&keys.users)
            .arg(&fields)
            .query_async(&mut self.session().await?)
            .await
            .map_err(|e| classify(e, || format!("HMGET {} for user {user}", keys.users)))?;
        let mut held = Vec::new();
        for (field, value) in fields.iter().zip(values) {
            if let Some(value) = value {
                held.push(parse_held(field, &value).ok_or_else(|| {
                    unexpected_reply(format!("{} holds {field:?} = {value:?}", keys.users))
                })?);
            }
        }
        Ok(held)
    }

    async fn claim(
        &self,
        campaign: CampaignId,
        slots: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Result<Vec<HeldSlot>> {
        let keys = self.keys(campaign);
        let reclaim_ms = u64::try_from(reclaim_after.as_millis()).unwrap_or(u64::MAX);
        let mut claimed = Vec::new();
        for chunk in slots.chunks(CHUNK) {
            let mut invocation = CLAIM.key(&keys.users);
            invocation.key(&keys.claims).arg(reclaim_ms);
            for held in chunk {
                invocation
                    .arg(held.user.get())
                    .arg(held.slot)
                    .arg(held.rank);
            }
            let indexes: Vec<usize> = invocation
                .invoke_async(&mut self.session().await?)
                .await
                .map_err(|e| classify(e, || format!("claim on {keys:?}")))?;
            for index in indexes {
                let held = chunk.get(index).ok_or_else(|| {
                    unexpected_reply(format!("claim on {keys:?} answered index {index}"))
                })?;
                claimed.push(*held);
            }
        }
        Ok(claimed)
    }

    /// Records the store's slots with their ranks. It does not rebuild the list of
    /// released ranks (a [`rebuild`](CouponCounter::rebuild) does): new admissions
    /// continue at the count plus one, which can repeat a stored rank when ranks were
    /// released before the loss.
    async fn restore(&self, campaign: &Campaign, held: &[HeldSlot]) -> Result<RestoreReport> {
        let keys = self.keys(campaign.id);
        let mut added = 0;
        let mut admitted = self.status(campaign.id).await?.admitted;
        for chunk in held.chunks(CHUNK) {
            let mut invocation = RESTORE.key(&keys.count);
            invocation
                .key(&keys.users)
                .key(&keys.slots)
                .arg(campaign.per_user_limit);
            for slot in chunk {
                invocation
                    .arg(slot.user.get())
                    .arg(slot.slot)
                    .arg(slot.rank);
            }
            let (chunk_added, count): (u64, u64) = invocation
                .invoke_async(&mut self.session().await?)
                .await
                .map_err(|e| classify(e, || format!("restore on {keys:?}")))?;
            added += chunk_added;
            admitted = count;
        }
        tracing::info!(campaign = %campaign.id, added, admitted, backend = BACKEND, "counter restored from the store");
        Ok(RestoreReport::new(added, admitted))
    }

    /// Under the campaign's rebuild lock: records the store's slots (keeping those
    /// held), recounts the slots, frees every rank below the highest held that no slot
    /// holds, and seals the state with the identity of the server the rebuild began
    /// on. Should the connection reach another server meanwhile, the marker does not
    /// match it and the next apply asks for another rebuild.
    async fn rebuild(&self, campaign: &Campaign, held: &[HeldSlot]) -> Result<Rebuild> {
        let keys = self.keys(campaign.id);
        let mut session = self.session().await?;
        let identity = session.identity().to_owned();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let locked: Option<String> = redis::cmd("SET")
            .arg(&keys.rebuild)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(REBUILD_LOCK_MS)
            .query_async(&mut session)
            .await
            .map_err(|e| classify(e, || format!("locking {}", keys.rebuild)))?;
        if locked.is_none() {
            return Ok(Rebuild::Busy);
        }
        let built = self.build_locked(campaign, held, &identity, &token).await;
        if !matches!(built, Ok(Rebuild::Built(_))) {
            // Sealing releases the lock; anything else gives it back here.
            // On a session of its own: the first one may be what broke.
            let unlocked = match self.session().await {
                Ok(mut fresh) => UNLOCK
                    .key(&keys.rebuild)
                    .arg(&token)
                    .invoke_async::<i64>(&mut fresh)
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(e, || format!("unlocking {}", keys.rebuild))),
                Err(error) => Err(error),
            };
            if let Err(error) = unlocked {
                tracing::warn!(%error, "giving back the rebuild lock failed; it expires by itself");
            }
        }
        built
    }
}

impl RedisCounter {
    async fn build_locked(
        &self,
        campaign: &Campaign,
        held: &[HeldSlot],
        identity: &str,
        token: &str,
    ) -> Result<Rebuild> {
        let keys = self.keys(campaign.id);
        let mut session = self.session().await?;
        let (built, count): (Option<String>, Option<i64>) = redis::pipe()
            .hget(&keys.users, "~built")
            .get(&keys.count)
            .query_async(&mut session)
            .await
            .map_err(|e| classify(e, || format!("reading the marker of {keys:?}")))?;
        if built.as_deref() == Some(identity) && count.is_some() {
            return Ok(Rebuild::AlreadyReady);
        }
        // Closed for the whole rebuild: with only the count lost the marker would still
        // match, and the count the restore writes back would reopen admissions on a
        // partial state before the seal.
        let _: i64 = redis::cmd("HDEL")
            .arg(&keys.users)
            .arg("~built")
            .query_async(&mut session)
            .await
            .map_err(|e| classify(e, || format!("closing {}", keys.users)))?;
        let added = self.restore(campaign, held).await?.added;
        let slots = self.scan_held(campaign.id).await?;
        let ranks: std::collections::BTreeSet<u64> = slots
            .iter()
            .map(|slot| slot.rank)
            .filter(|&rank| rank > 0)
            .collect();
        let top = ranks.last().copied().unwrap_or(0);
        let free: Vec<u64> = (1..=top).filter(|rank| !ranks.contains(rank)).collect();
        let _: () = redis::cmd("DEL")
            .arg(&keys.free)
            .query_async(&mut session)
            .await
            .map_err(|e| classify(e, || format!("DEL {}", keys.free)))?;
        for chunk in free.chunks(CHUNK) {
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(&keys.free);
            for rank in chunk {
                zadd.arg(rank).arg(rank);
            }
            let _: i64 = zadd
                .query_async(&mut session)
                .await
                .map_err(|e| classify(e, || format!("ZADD {}", keys.free)))?;
        }
        let sealed: i64 = SEAL
            .key(&keys.count)
            .key(&keys.users)
            .key(&keys.free)
            .key(&keys.rebuild)
            .arg(token)
            .arg(identity)
            .arg(slots.len())
            .invoke_async(&mut session)
            .await
            .map_err(|e| classify(e, || format!("sealing {keys:?}")))?;
        if sealed != 1 {
            return Err(Error::unavailable(
                BACKEND,
                format!("rebuilding {keys:?}: the lock expired before the end"),
                None,
            ));
        }
        tracing::info!(campaign = %campaign.id, added, admitted = slots.len(), free = free.len(), server = identity, "counter rebuilt from the store");
        Ok(Rebuild::Built(RestoreReport::new(
            added,
            slots.len() as u64,
        )))
    }
}

/// A token unique to one `try_acquire` call (a random start, then a counter), that
/// lets the script tell a resent request from a new one.
fn request_token() -> String {
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
/// would be a counter that forgot, fenced but unavailable until rebuilt.
fn check_eviction(facts: &ServerFacts, allow_eviction: bool) -> Result<()> {
    match facts.maxmemory_policy.as_deref() {
        Some("noeviction") | None => Ok(()),
        Some(_) if allow_eviction => Ok(()),
        Some(policy) => Err(Error::Backend {
            backend: BACKEND,
            message: format!(
                "maxmemory-policy is {policy}: Redis may evict a live campaign's keys, and a \
                 counter that forgets admissions must stop admitting until rebuilt. Set \
                 `maxmemory-policy noeviction` on the server, or accept the risk with \
                 RedisCounterConfig::with_allow_eviction (--redis-allow-eviction)"
            ),
            source: None,
        }),
    }
}

/// A field and value of the `users` hash as a held slot: `<user>` or `<user>:<slot>`,
/// and `<rank>:<ms>[:<token>]` (or a bare `<ms>` written before ranks were kept: rank 0).
fn parse_held(field: &str, value: &str) -> Option<HeldSlot> {
    let (user, slot) = match field.split_once(':') {
        Some((user, slot)) => (user.parse().ok()?, slot.parse().ok()?),
        None => (field.parse().ok()?, 1),
    };
    let mut parts = value.splitn(3, ':');
    let (rank, millis) = match (parts.next(), parts.next()) {
        // The third part, when present, is the token of the request that took it.
        (Some(rank), Some(millis)) => (rank.parse().ok()?, millis.parse().ok()?),
        (Some(millis), None) => (0, millis.parse().ok()?),
        _ => return None,
    };
    Some(HeldSlot {
        user: UserId(user),
        slot,
        rank,
        admitted_at: Some(DateTime::from_timestamp_millis(millis)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape_of_held_slot() {
        let held = parse_held("42", "7:1764000000000").unwrap();
        assert_eq!((held.user, held.slot, held.rank), (UserId(42), 1, 7));
        assert_eq!(
            held.admitted_at.map(|at| at.timestamp_millis()),
            Some(1_764_000_000_000)
        );
        let second = parse_held("42:2", "9:1764000000000").unwrap();
        assert_eq!((second.slot, second.rank), (2, 9));
        let tokened = parse_held("42", "7:1764000000000:9f3a").unwrap();
        assert_eq!((tokened.slot, tokened.rank), (1, 7));
        let legacy = parse_held("42", "1764000000000").unwrap();
        assert_eq!((legacy.slot, legacy.rank), (1, 0));
        for (field, value) in [("x", "1:1"), ("1", "x:1"), ("1:", "1:1"), ("1", "")] {
            assert!(parse_held(field, value).is_none(), "{field:?} = {value:?}");
        }
    }

    /// Runs the admission script as a client that resends a request would.
    async fn run_script(
        counter: &RedisCounter,
        campaign: &Campaign,
        user: u64,
        token: &str,
    ) -> Value {
        let keys = counter.keys(campaign.id);
        let mut session = counter.session().await.expect("session");
        TRY_ACQUIRE
            .key(&keys.count)
            .key(&keys.users)
            .key(&keys.slots)
            .key(&keys.free)
            .arg(user)
            .arg(campaign.cap)
            .arg(campaign.per_user_limit)
            .arg(session.identity())
            .arg(token)
            .invoke_async(&mut session)
            .await
            .expect("the script")
    }

    /// The same request run twice answers its grant twice and takes one slot; another
    /// request of the same user is a new one (already applied at limit 1, the next
    /// slot at limit 3).
    #[tokio::test]
    async fn a_request_run_twice_takes_one_slot() {
        use coupon_core::NewCampaign;
        use coupon_testkit::{ready_campaign_from, service_url};

        let counter = RedisCounter::connect(
            RedisCounterConfig::new(service_url("REDIS_URL"))
                .with_key_prefix(format!("test-{}", uuid::Uuid::new_v4().simple())),
        )
        .await
        .expect("connect to REDIS_URL");
        for limit in [1, 3] {
            let new = NewCampaign::new("twice", 10).per_user_limit(limit);
            let campaign = ready_campaign_from(&counter, new).await;
            let first = run_script(&counter, &campaign, 7, "a1").await;
            let again = run_script(&counter, &campaign, 7, "a1").await;
            assert_eq!(first, Value::Int(1), "limit {limit}");
            assert_eq!(again, first, "limit {limit}: the resent request");
            assert_eq!(
                counter.status(campaign.id).await.expect("status").admitted,
                1
            );
            let other = run_script(&counter, &campaign, 7, "b2").await;
            let expected = if limit == 1 {
                Value::Int(-1)
            } else {
                Value::Array(vec![Value::Int(2), Value::Int(2)])
            };
            assert_eq!(other, expected, "limit {limit}: a new request");
            let other_again = run_script(&counter, &campaign, 7, "b2").await;
            assert_eq!(other_again, expected, "limit {limit}: the new one resent");
            let held = counter.held_slots(campaign.id).await.expect("held");
            assert_eq!(held.len(), if limit == 1 { 1 } else { 2 });
        }
    }
}
