//! [`CouponCounter`] for [`RedisCounter`]: each operation one script call or read.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use coupon_core::{
    Admission, Campaign, CounterStatus, CouponCounter, Error, HeldSlot, Rebuild, Release, Result,
    SealEpoch, UserId,
};
use redis::Script;

use super::{CHUNK, RedisCounter, parse_held};
use crate::error::{BACKEND, classify, unexpected_reply};
use crate::probe::Reading;

static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/release.lua")));
static ADMITTED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/admitted.lua")));
static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/claim.lua")));

#[async_trait]
impl CouponCounter for RedisCounter {
    /// Through the campaign's lane (the `gather` module): one script call for the applies
    /// that wait for it.
    async fn try_acquire(&self, campaign: &Campaign, user: UserId) -> Result<Admission> {
        crate::gather::admit(self, campaign, user).await
    }

    async fn release(&self, campaign: &Campaign, held: &HeldSlot) -> Result<Release> {
        let campaign = campaign.id;
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

    /// Asked of the server the counter was built on only: one that lost its memory
    /// cannot tell who holds a slot (an applicant told `Pending` would read "none"), so
    /// it answers [`Error::NotReady`] until the campaign is rebuilt.
    async fn is_admitted(&self, campaign: &Campaign, user: UserId) -> Result<bool> {
        let campaign = campaign.id;
        let keys = self.keys(campaign);
        let mut session = self.session().await?;
        let held: i64 = ADMITTED
            .key(&keys.count)
            .key(&keys.users)
            .key(&keys.slots)
            .arg(session.identity())
            .arg(user.get())
            .invoke_async(&mut session)
            .await
            .map_err(|e| classify(e, || format!("is_admitted on {keys:?}")))?;
        match held {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(Error::NotReady {
                campaign,
                backend: BACKEND,
            }),
        }
    }

    async fn status(&self, campaign: &Campaign) -> Result<CounterStatus> {
        let campaign = campaign.id;
        let keys = self.keys(campaign);
        let mut session = self.session().await?;
        let marker = crate::marker::read(&mut session, &keys).await?;
        let admitted = u64::try_from(marker.count.unwrap_or(0))
            .map_err(|_| unexpected_reply(format!("{} holds a negative count", keys.count)))?;
        Ok(CounterStatus::new(
            admitted,
            marker.epoch.filter(|_| marker.built_here),
        ))
    }

    async fn held_slots(&self, campaign: &Campaign) -> Result<Vec<HeldSlot>> {
        let campaign = campaign.id;
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
        campaign: &Campaign,
        slots: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Result<Vec<HeldSlot>> {
        let campaign = campaign.id;
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
    /// calls about the same campaign made meanwhile (the `probe` module).
    async fn confirm_epoch(&self, campaign: &Campaign, epoch: u64) -> Result<bool> {
        let campaign = campaign.id;
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
