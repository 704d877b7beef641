use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::lock;
use crate::{
    Admission, Campaign, CampaignId, CounterStatus, CouponCounter, HeldSlot, Release,
    RestoreReport, Result, UserId,
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
    /// Ranks given back by releases, granted again (lowest first) before new ones, so
    /// that the ranks held stay distinct and within 1..=cap.
    free_ranks: BTreeSet<u64>,
    /// Each holder's slots, by slot number.
    holders: HashMap<UserId, Vec<(u32, Granted)>>,
}

#[derive(Debug, Clone, Copy)]
struct Granted {
    rank: u64,
    at: DateTime<Utc>,
    claimed_at: Option<DateTime<Utc>>,
}

impl Granted {
    fn new(rank: u64, at: DateTime<Utc>) -> Self {
        Self {
            rank,
            at,
            claimed_at: None,
        }
    }
}

/// The lowest slot number (from 1) not in `held`.
fn lowest_free(held: &[(u32, Granted)]) -> u32 {
    (1..)
        .find(|slot| held.iter().all(|(s, _)| s != slot))
        .unwrap_or(1)
}

impl Slots {
    fn granted_mut(&mut self, user: UserId, slot: u32, rank: u64) -> Option<&mut Granted> {
        self.holders
            .get_mut(&user)?
            .iter_mut()
            .find(|(s, granted)| *s == slot && granted.rank == rank)
            .map(|(_, granted)| granted)
    }
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
        let held = slots.holders.get(&user).map_or(0, Vec::len);
        if held >= campaign.per_user_limit as usize {
            return Ok(Admission::AlreadyApplied);
        }
        if slots.admitted >= campaign.cap {
            return Ok(Admission::SoldOut);
        }
        let rank = slots.free_ranks.pop_first().unwrap_or(slots.admitted + 1);
        slots.admitted += 1;
        let held = slots.holders.entry(user).or_default();
        let slot = lowest_free(held);
        held.push((slot, Granted::new(rank, Utc::now())));
        Ok(Admission::Granted { rank, slot })
    }

    async fn release(&self, campaign: CampaignId, held: &HeldSlot) -> Result<Release> {
        let slots = self.slots(campaign);
        let mut slots = lock(&slots);
        let Some(granted) = slots.granted_mut(held.user, held.slot, held.rank) else {
            return Ok(Release::NotHeld);
        };
        if granted.claimed_at.is_some() {
            return Ok(Release::Settling);
        }
        if let Some(user_slots) = slots.holders.get_mut(&held.user) {
            user_slots.retain(|(slot, _)| *slot != held.slot);
            if user_slots.is_empty() {
                slots.holders.remove(&held.user);
            }
        }
        slots.admitted -= 1;
        if held.rank > 0 {
            slots.free_ranks.insert(held.rank);
        }
        Ok(Release::Released)
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

    async fn held_slots(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>> {
        let slots = self.slots(campaign);
        let slots = lock(&slots);
        Ok(slots
            .holders
            .iter()
            .flat_map(|(&user, held)| {
                held.iter().map(move |&(slot, granted)| HeldSlot {
                    user,
                    slot,
                    rank: granted.rank,
                    admitted_at: granted.at,
                })
            })
            .collect())
    }

    async fn claim(
        &self,
        campaign: CampaignId,
        candidates: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Result<Vec<HeldSlot>> {
        let now = Utc::now();
        let reclaim_after =
            chrono::Duration::from_std(reclaim_after).unwrap_or(chrono::Duration::MAX);
        let slots = self.slots(campaign);
        let mut slots = lock(&slots);
        let mut claimed = Vec::new();
        for held in candidates {
            let Some(granted) = slots.granted_mut(held.user, held.slot, held.rank) else {
                continue;
            };
            if granted
                .claimed_at
                .is_none_or(|at| now - at >= reclaim_after)
            {
                granted.claimed_at = Some(now);
                claimed.push(*held);
            }
        }
        Ok(claimed)
    }

    async fn restore(&self, campaign: &Campaign, holders: &[UserId]) -> Result<RestoreReport> {
        let mut in_store: HashMap<UserId, usize> = HashMap::new();
        for &user in holders {
            *in_store.entry(user).or_default() += 1;
        }
        let slots = self.slots(campaign.id);
        let mut slots = lock(&slots);
        let mut added = 0;
        let now = Utc::now();
        for (user, stored) in in_store {
            let held = slots.holders.entry(user).or_default();
            // Only ever add: a slot held beyond the store's count is an admission still
            // on its way to the store.
            while held.len() < stored {
                let slot = lowest_free(held);
                held.push((slot, Granted::new(0, now)));
                added += 1;
            }
        }
        slots.admitted += added;
        Ok(RestoreReport::new(added, slots.admitted))
    }
}
