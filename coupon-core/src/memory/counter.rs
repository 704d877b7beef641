use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::lock;
use crate::{
    Admission, Campaign, CampaignId, CounterStatus, CouponCounter, RestoreReport, Result, UserId,
};

/// An exact admission counter in process memory.
///
/// Each campaign has its own mutex, so campaigns never contend with each other and the
/// check-and-increment of one campaign is a few nanoseconds under its lock.
#[derive(Debug, Default)]
pub struct MemoryCounter {
    campaigns: RwLock<HashMap<CampaignId, Arc<Mutex<Slots>>>>,
}

#[derive(Debug, Default)]
struct Slots {
    admitted: u64,
    holders: HashMap<UserId, Held>,
}

#[derive(Debug)]
struct Held {
    slots: u32,
    since: DateTime<Utc>,
}

impl MemoryCounter {
    /// An empty counter.
    pub fn new() -> Self {
        Self::default()
    }

    fn slots(&self, campaign: CampaignId) -> Arc<Mutex<Slots>> {
        if let Some(slots) = self
            .campaigns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&campaign)
        {
            return slots.clone();
        }
        let mut campaigns = self.campaigns.write().unwrap_or_else(|e| e.into_inner());
        campaigns.entry(campaign).or_default().clone()
    }
}

#[async_trait]
impl CouponCounter for MemoryCounter {
    async fn try_acquire(&self, campaign: &Campaign, user: UserId) -> Result<Admission> {
        let slots = self.slots(campaign.id);
        let mut slots = lock(&slots);
        let held = slots.holders.get(&user).map_or(0, |held| held.slots);
        if held >= campaign.per_user_limit {
            return Ok(Admission::AlreadyApplied);
        }
        if slots.admitted >= campaign.cap {
            return Ok(Admission::SoldOut);
        }
        slots.admitted += 1;
        let rank = slots.admitted;
        slots
            .holders
            .entry(user)
            .and_modify(|held| held.slots += 1)
            .or_insert_with(|| Held {
                slots: 1,
                since: Utc::now(),
            });
        Ok(Admission::Granted { rank })
    }

    async fn release(&self, campaign: CampaignId, user: UserId) -> Result<bool> {
        let slots = self.slots(campaign);
        let mut slots = lock(&slots);
        let Entry::Occupied(mut held) = slots.holders.entry(user) else {
            return Ok(false);
        };
        held.get_mut().slots -= 1;
        if held.get().slots == 0 {
            held.remove();
        }
        slots.admitted -= 1;
        Ok(true)
    }

    async fn is_admitted(&self, campaign: CampaignId, user: UserId) -> Result<bool> {
        let slots = self.slots(campaign);
        let held = lock(&slots).holders.contains_key(&user);
        Ok(held)
    }

    async fn status(&self, campaign: CampaignId) -> Result<CounterStatus> {
        let slots = self.slots(campaign);
        let admitted = lock(&slots).admitted;
        Ok(CounterStatus::new(admitted))
    }

    async fn admitted_before(
        &self,
        campaign: CampaignId,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<UserId>> {
        let slots = self.slots(campaign);
        let slots = lock(&slots);
        let mut users: Vec<UserId> = slots
            .holders
            .iter()
            .filter(|(_, held)| held.since < cutoff)
            .map(|(&user, _)| user)
            .collect();
        users.sort_unstable();
        Ok(users)
    }

    async fn restore(&self, campaign: &Campaign, holders: &[UserId]) -> Result<RestoreReport> {
        let mut in_store: HashMap<UserId, u32> = HashMap::new();
        for &user in holders {
            *in_store.entry(user).or_default() += 1;
        }
        let slots = self.slots(campaign.id);
        let mut slots = lock(&slots);
        let mut added = 0;
        let now = Utc::now();
        for (user, stored) in in_store {
            let held = slots.holders.entry(user).or_insert(Held {
                slots: 0,
                since: now,
            });
            // Only ever add: a slot held beyond the store's count is an admission still
            // on its way to the store.
            let missing = stored.saturating_sub(held.slots);
            held.slots += missing;
            added += u64::from(missing);
        }
        slots.admitted += added;
        Ok(RestoreReport::new(added, slots.admitted))
    }
}
