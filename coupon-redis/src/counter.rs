//! [`CouponCounter`] on Redis: one Lua script per operation, one round trip per apply.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use coupon_core::{
    Admission, Campaign, CampaignId, CounterStatus, CouponCounter, Error, HeldSlot, Rebuild,
    Release, Result, SealEpoch, UserId,
};
use redis::{AsyncCommands, Script};

use crate::connection::{Connection, ServerFacts, Session};
use crate::error::{BACKEND, classify, unexpected_reply};
use crate::probe::{Probes, Reading};
use crate::{CampaignKeys, Confirm, RedisCounterConfig};

static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/release.lua")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/claim.lua")));

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
/// the epoch its rebuild sealed. [`CouponCounter::rebuild`] writes that server's
/// `run_id` and the epoch into the campaign's state; every admission compares the
/// marker with the `run_id` of the server the connection reaches, read whenever a
/// connection opens, and returns the epoch with the grant. A restart (empty or not), a
/// failover to a replica, or a lost key leaves no matching marker, so the counter
/// answers [`Error::NotReady`] until it is rebuilt. On Redis Cluster the marker's
/// presence is checked, not the server's identity (docs/architecture.md).
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
            lanes: Arc::new(crate::gather::Lanes::new(config.max_gathered)),
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
        let ((built, epoch), count): ((Option<String>, Option<u64>), Option<i64>) = redis::pipe()
            .cmd("HMGET")
            .arg(&keys.users)
            .arg("~built")
            .arg("~epoch")
            .get(&keys.count)
            .query_async(&mut session)
            .await
            .map_err(|e| classify(e, || format!("reading the marker of {keys:?}")))?;
        let built = built.as_deref() == Some(session.identity()) && count.is_some();
        Ok((built, epoch))
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
    /// Through the campaign's lane ([`crate::gather`]): one script call for the applies
    /// that wait for it.
    async fn try_acquire(&self, campaign: &Campaign, user: UserId) -> Result<Admission> {
        crate::gather::admit(self, campaign, user).await
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
            .arg(held.epoch)
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
        let mut session = self.session().await?;
        let ((built, epoch), count): ((Option<String>, Option<u64>), Option<i64>) = redis::pipe()
            .cmd("HMGET")
            .arg(&keys.users)
            .arg("~built")
            .arg("~epoch")
            .get(&keys.count)
            .query_async(&mut session)
            .await
            .map_err(|e| classify(e, || format!("reading the status of {keys:?}")))?;
        let admitted = u64::try_from(count.unwrap_or(0))
            .map_err(|_| unexpected_reply(format!("{} holds a negative count", keys.count)))?;
        let ready = built.as_deref() == Some(session.identity()) && count.is_some();
        Ok(CounterStatus::new(admitted, epoch.filter(|_| ready)))
    }

    async fn held_slots(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>> {
        let epoch = self.marker(campaign).await?.1.unwrap_or(0);
        let mut held = crate::rebuild::scan_held(self, campaign).await?;
        // A rebuild between the two reads would tag these slots with an epoch they are
        // no longer held in (their republished tickets then refused): ask again later.
        if self.marker(campaign).await?.1.unwrap_or(0) != epoch {
            return Err(Error::unavailable(
                BACKEND,
                format!("campaign {campaign}: rebuilt while its slots were listed"),
                None,
            ));
        }
        for slot in &mut held {
            slot.epoch = epoch;
        }
        Ok(held)
    }

    async fn slots_of(&self, campaign: &Campaign, user: UserId) -> Result<Vec<HeldSlot>> {
        let keys = self.keys(campaign.id);
        // Slot 1 is the field "<user>", slot k above it "<user>:<k>"; the epoch they are
        // held in is "~epoch", read in the same call.
        let mut fields: Vec<String> = vec!["~epoch".to_owned()];
        fields.extend((1..=campaign.per_user_limit.max(1)).map(|slot| match slot {
            1 => user.get().to_string(),
            slot => format!("{user}:{slot}", user = user.get()),
        }));
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&keys.users)
            .arg(&fields)
            .query_async(&mut self.session().await?)
            .await
            .map_err(|e| classify(e, || format!("HMGET {} for user {user}", keys.users)))?;
        let epoch = values
            .first()
            .and_then(|value| value.as_deref())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        let mut held = Vec::new();
        for (field, value) in fields.iter().zip(values).skip(1) {
            if let Some(value) = value {
                let mut slot = parse_held(field, &value).ok_or_else(|| {
                    unexpected_reply(format!("{} holds {field:?} = {value:?}", keys.users))
                })?;
                slot.epoch = epoch;
                held.push(slot);
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

    /// A read of the campaign's marker, sent after this call began and shared by the
    /// calls about the same campaign made meanwhile ([`crate::probe`]).
    async fn confirm_epoch(&self, campaign: CampaignId, epoch: u64) -> Result<bool> {
        let reading: Reading = self
            .probes
            .ask(campaign, || async { self.marker(campaign).await.ok() })
            .await;
        match reading {
            Some((built, current)) => Ok(built && current == Some(epoch)),
            None => Err(Error::unavailable(
                BACKEND,
                format!("confirming epoch {epoch} of campaign {campaign}: the read failed"),
                None,
            )),
        }
    }

    async fn rebuild(&self, campaign: &Campaign, seal: Arc<dyn SealEpoch>) -> Result<Rebuild> {
        crate::rebuild::rebuild(self, campaign, seal.as_ref()).await
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

/// A field and value of the `users` hash as a held slot: `<user>` or `<user>:<slot>`,
/// and `<rank>:<ms>[:<token>]` (or a bare `<ms>` written before ranks were kept: rank 0).
pub(crate) fn parse_held(field: &str, value: &str) -> Option<HeldSlot> {
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
        epoch: 0,
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
}
