//! The rebuild of a campaign's counter on Redis, under the campaign's lock: close it,
//! hand what it still holds to the seal, record the sealed slots, seal the epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use coupon_core::{
    Campaign, CampaignId, Error, HeldSlot, Rebuild, RestoreReport, Result, SealEpoch,
};
use redis::Script;

use crate::RedisCounter;
use crate::counter::{CHUNK, parse_held};
use crate::error::{BACKEND, classify, unexpected_reply};

static RESTORE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/restore.lua")));
static SEAL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/seal.lua")));
static UNLOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/unlock.lua")));
static CLOSE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/close.lua")));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/renew.lua")));

/// How long a rebuild's lock lives without renewal; a rebuild that dies leaves it to
/// another process after this. A live rebuild renews it every quarter of that, however
/// long its seal waits. Only liveness rests on it: a rebuild that lost its lock writes
/// nothing more (each write checks the lock) and fails.
const REBUILD_LOCK_MS: u64 = 60_000;

/// [`CouponCounter::rebuild`](coupon_core::CouponCounter::rebuild) on Redis.
///
/// Under the campaign's lock: closes the campaign (its `~built` marker removed), scans
/// what it still holds and hands that to `seal`, records the sealed slots (keeping
/// those held), prepares the free ranks and the per-user records under the lock's
/// token, then seals: renames them into place, counts the slots and writes the marker
/// with the server's identity and the epoch. Every write checks the lock, so a
/// rebuild that lost it (it outlived the lock, or the server lost its memory again and
/// the lock with it) changes nothing and fails, and the next one starts over.
pub(crate) async fn rebuild(
    counter: &RedisCounter,
    campaign: &Campaign,
    seal: &dyn SealEpoch,
) -> Result<Rebuild> {
    let keys = counter.keys(campaign.id);
    let mut session = counter.session().await?;
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
    // Renewed while the rebuild runs: a long drain must not hand the lock to another
    // rebuild, which would seal an epoch behind this one's back.
    let renewing = {
        let (counter, lock, token) = (counter.clone(), keys.rebuild.clone(), token.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(REBUILD_LOCK_MS / 4)).await;
                let renewed = match counter.session().await {
                    Ok(mut session) => RENEW
                        .key(&lock)
                        .arg(&token)
                        .arg(REBUILD_LOCK_MS)
                        .invoke_async::<i64>(&mut session)
                        .await
                        .unwrap_or(0),
                    Err(_) => 0,
                };
                if renewed != 1 {
                    return; // lost: the rebuild finds out at its next write
                }
            }
        })
    };
    let built = build_locked(counter, campaign, seal, &identity, &token).await;
    renewing.abort();
    if !matches!(built, Ok(Rebuild::Built(_))) {
        // Sealing releases the lock; anything else gives it back here, on a session of
        // its own: the first one may be what broke.
        let (free, slots) = keys.prepared(&token);
        let unlocked = match counter.session().await {
            Ok(mut fresh) => UNLOCK
                .key(&keys.rebuild)
                .arg(&token)
                .invoke_async::<i64>(&mut fresh)
                .await
                .map_err(|e| classify(e, || format!("unlocking {}", keys.rebuild))),
            Err(error) => Err(error),
        };
        if let Err(error) = unlocked {
            tracing::warn!(%error, "giving back the rebuild lock failed; it expires by itself");
        } else if let Ok(mut fresh) = counter.session().await {
            let _: redis::RedisResult<i64> = redis::cmd("DEL")
                .arg(&free)
                .arg(&slots)
                .query_async(&mut fresh)
                .await;
        }
    }
    built
}

async fn build_locked(
    counter: &RedisCounter,
    campaign: &Campaign,
    seal: &dyn SealEpoch,
    identity: &str,
    token: &str,
) -> Result<Rebuild> {
    let keys = counter.keys(campaign.id);
    let lost = || {
        Error::unavailable(
            BACKEND,
            format!(
                "rebuilding {keys:?}: the lock was lost (taken over, or the server lost its memory again); starting over"
            ),
            None,
        )
    };
    let mut session = counter.session().await?;
    let marker = crate::marker::read(&mut session, &keys).await?;
    if marker.built_here && marker.epoch.is_some() {
        return Ok(Rebuild::AlreadyReady);
    }
    // Closed for the whole rebuild: with only the count lost the marker would still
    // match, and a partial state would admit before the seal.
    let closed: i64 = CLOSE
        .key(&keys.users)
        .key(&keys.rebuild)
        .arg(token)
        .invoke_async(&mut session)
        .await
        .map_err(|e| classify(e, || format!("closing {}", keys.users)))?;
    if closed != 1 {
        return Err(lost());
    }
    let counted = scan_held(counter, campaign.id).await?;
    let sealed = seal.seal(counted).await?;
    let mut added = 0;
    for chunk in sealed.slots.chunks(CHUNK) {
        let mut invocation = RESTORE.key(&keys.users);
        invocation.key(&keys.rebuild).arg(token);
        for slot in chunk {
            invocation
                .arg(slot.user.get())
                .arg(slot.slot)
                .arg(slot.rank);
        }
        let chunk_added: i64 = invocation
            .invoke_async(&mut counter.session().await?)
            .await
            .map_err(|e| classify(e, || format!("restore on {keys:?}")))?;
        if chunk_added < 0 {
            return Err(lost());
        }
        added += chunk_added as u64;
    }
    let held = scan_held(counter, campaign.id).await?;
    let (free_key, slots_key) = keys.prepared(token);
    prepare(
        counter,
        &free_key,
        &slots_key,
        &held,
        campaign.per_user_limit,
    )
    .await?;
    let sealed_count: i64 = SEAL
        .key(&keys.count)
        .key(&keys.users)
        .key(&keys.free)
        .key(&keys.slots)
        .key(&keys.rebuild)
        .key(&free_key)
        .key(&slots_key)
        .key(&keys.claims)
        .arg(token)
        .arg(identity)
        .arg(sealed.epoch)
        .invoke_async(&mut counter.session().await?)
        .await
        .map_err(|e| classify(e, || format!("sealing {keys:?}")))?;
    if sealed_count < 0 {
        return Err(lost());
    }
    tracing::info!(campaign = %campaign.id, added, admitted = sealed_count, epoch = sealed.epoch, server = identity, "counter rebuilt");
    Ok(Rebuild::Built(RestoreReport::new(
        added,
        sealed_count as u64,
    )))
}

/// Writes the free ranks (every rank below the highest held that no slot holds) and,
/// for per-user limits above 1, each holder's record (slots held, the highest as the
/// last granted, the numbers below it not held as released), under the rebuild's
/// token, for the seal to rename into place.
async fn prepare(
    counter: &RedisCounter,
    free_key: &str,
    slots_key: &str,
    held: &[HeldSlot],
    per_user_limit: u32,
) -> Result<()> {
    let mut session = counter.session().await?;
    let ranks: BTreeSet<u64> = held
        .iter()
        .map(|slot| slot.rank)
        .filter(|&r| r > 0)
        .collect();
    let top = ranks.last().copied().unwrap_or(0);
    let free: Vec<u64> = (1..=top).filter(|rank| !ranks.contains(rank)).collect();
    let _: i64 = redis::cmd("DEL")
        .arg(free_key)
        .arg(slots_key)
        .query_async(&mut session)
        .await
        .map_err(|e| classify(e, || format!("DEL {free_key} {slots_key}")))?;
    for chunk in free.chunks(CHUNK) {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(free_key);
        for rank in chunk {
            zadd.arg(rank).arg(rank);
        }
        let _: i64 = zadd
            .query_async(&mut session)
            .await
            .map_err(|e| classify(e, || format!("ZADD {free_key}")))?;
    }
    if per_user_limit <= 1 {
        return Ok(());
    }
    let mut per_user: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    for slot in held {
        per_user
            .entry(slot.user.get())
            .or_default()
            .insert(slot.slot);
    }
    let users: Vec<(u64, BTreeSet<u32>)> = per_user.into_iter().collect();
    for chunk in users.chunks(CHUNK / 3) {
        let mut hset = redis::cmd("HSET");
        hset.arg(slots_key);
        for (user, slots) in chunk {
            let last = slots.last().copied().unwrap_or(1);
            hset.arg(user.to_string()).arg(slots.len());
            hset.arg(format!("{user}:l")).arg(last);
            let holes: Vec<String> = (1..last)
                .filter(|slot| !slots.contains(slot))
                .map(|slot| slot.to_string())
                .collect();
            if !holes.is_empty() {
                hset.arg(format!("{user}:h")).arg(holes.join(" "));
            }
        }
        let _: i64 = hset
            .query_async(&mut session)
            .await
            .map_err(|e| classify(e, || format!("HSET {slots_key}")))?;
    }
    Ok(())
}

/// Every slot held in `campaign` (of no epoch), read incrementally with `HSCAN` so a
/// large campaign does not block the server.
pub(crate) async fn scan_held(
    counter: &RedisCounter,
    campaign: CampaignId,
) -> Result<Vec<HeldSlot>> {
    let keys = counter.keys(campaign);
    let mut connection = counter.session().await?;
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
            // `~free`, `~built`, `~epoch`: bookkeeping, not slots.
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
