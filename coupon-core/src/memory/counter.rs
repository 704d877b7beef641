use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::lock;
use crate::{
    Admission, Campaign, CampaignId, CounterStatus, CouponCounter, Error, HeldSlot, Rebuild,
    Release, RestoreReport, Result, UserId,
};

/// An exact admission counter in process memory.
///
/// Each campaign has its own mutex, so campaigns never contend with each other and the
/// check-and-increment of one campaign is a few nanoseconds under its lock.
///
/// Like every counter it admits only in campaigns it built ([`CouponCounter::rebuild`]):
/// a new process starts with none, and rebuilds each from the store before admitting.
#[derive(Debug, Default)]
pub struct MemoryCounter {
    campaigns: RwLock<HashMap<CampaignId, Arc<Mutex<Slots>>>>,
}

#[derive(Debug, Default)]
struct Slots {
    /// Built from the store ([`CouponCounter::rebuild`]): admits only then.
    built: bool,
    admitted: u64,
    /// The highest rank granted (or restored); new ranks continue from it.
    top_rank: u64,
    /// Ranks at or below `top_rank` that no slot holds (given back by releases, or gaps
    /// a restore found), granted again (lowest first) before new ones, so that the ranks
    /// held stay distinct and within 1..=cap.
    free_ranks: BTreeSet<u64>,
    /// Each holder's slots.
    holders: HashMap<UserId, Holding>,
    /// When the settler last claimed a slot (user, slot, rank), in ms since the epoch.
    /// Apart from `holders`: claims are rare, and every admission pays for its size.
    claims: HashMap<(UserId, u32, u64), i64>,
}

/// One granted slot: its number, rank and admission time in milliseconds since the
/// epoch (kept small: a rush holds one per admitted user).
#[derive(Debug, Clone, Copy)]
struct Granted {
    slot: u32,
    rank: u64,
    at_ms: i64,
}

/// The slots of one holder: almost always one, kept inline so that admitting a user
/// allocates nothing besides the map entry.
#[derive(Debug)]
enum Holding {
    One(Granted),
    Many(Vec<Granted>),
}

impl Holding {
    fn slots(&self) -> &[Granted] {
        match self {
            Holding::One(granted) => std::slice::from_ref(granted),
            Holding::Many(slots) => slots,
        }
    }

    fn push(&mut self, granted: Granted) {
        match self {
            Holding::One(first) => *self = Holding::Many(vec![*first, granted]),
            Holding::Many(slots) => slots.push(granted),
        }
    }

    /// The lowest slot number (from 1) this holder does not hold.
    fn lowest_free(&self) -> u32 {
        lowest_free(self.slots())
    }
}

fn lowest_free(held: &[Granted]) -> u32 {
    (1..)
        .find(|&slot| held.iter().all(|granted| granted.slot != slot))
        .unwrap_or(1)
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Slots {
    fn holds(&self, held: &HeldSlot) -> bool {
        self.holders.get(&held.user).is_some_and(|holding| {
            holding
                .slots()
                .iter()
                .any(|granted| granted.slot == held.slot && granted.rank == held.rank)
        })
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
        if !slots.built {
            return Err(Error::NotReady {
                campaign: campaign.id,
                backend: "memory",
            });
        }
        let Slots {
            admitted,
            top_rank,
            free_ranks,
            holders,
            ..
        } = &mut *slots;
        // One lookup of the user, whatever the answer.
        let entry = holders.entry(user);
        let held = match &entry {
            Entry::Occupied(holding) => holding.get().slots().len(),
            Entry::Vacant(_) => 0,
        };
        if held >= campaign.per_user_limit as usize {
            return Ok(Admission::AlreadyApplied);
        }
        if *admitted >= campaign.cap {
            return Ok(Admission::SoldOut);
        }
        let rank = match free_ranks.pop_first() {
            Some(rank) => rank,
            None => {
                *top_rank += 1;
                *top_rank
            }
        };
        *admitted += 1;
        let admitted_at = Utc::now();
        let mut granted = Granted {
            slot: 1,
            rank,
            at_ms: admitted_at.timestamp_millis(),
        };
        match entry {
            Entry::Vacant(vacant) => {
                vacant.insert(Holding::One(granted));
            }
            Entry::Occupied(mut holding) => {
                granted.slot = holding.get().lowest_free();
                holding.get_mut().push(granted);
            }
        }
        Ok(Admission::Granted {
            rank,
            slot: granted.slot,
            // The time as kept (to the millisecond), so that the ticket and the held slot
            // agree exactly.
            admitted_at: DateTime::from_timestamp_millis(granted.at_ms).unwrap_or(admitted_at),
        })
    }

    async fn release(&self, campaign: CampaignId, held: &HeldSlot) -> Result<Release> {
        let slots = self.slots(campaign);
        let mut slots = lock(&slots);
        if !slots.holds(held) {
            return Ok(Release::NotHeld);
        }
        if slots
            .claims
            .contains_key(&(held.user, held.slot, held.rank))
        {
            return Ok(Release::Settling);
        }
        let now_empty = match slots.holders.get_mut(&held.user) {
            Some(Holding::Many(kept)) => {
                kept.retain(|granted| granted.slot != held.slot);
                kept.is_empty()
            }
            _ => true,
        };
        if now_empty {
            slots.holders.remove(&held.user);
        }
        slots.admitted -= 1;
        if held.rank > 0 {
            slots.free_ranks.insert(held.rank);
        }
        Ok(Release::Released)
    }

    /// Always: the counter is this process's memory.
    async fn ready(&self) -> Result<()> {
        Ok(())
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

    async fn slots_of(&self, campaign: &Campaign, user: UserId) -> Result<Vec<HeldSlot>> {
        let slots = self.slots(campaign.id);
        let slots = lock(&slots);
        let mut held: Vec<HeldSlot> = slots
            .holders
            .get(&user)
            .map(|holding| {
                holding
                    .slots()
                    .iter()
                    .map(|granted| HeldSlot {
                        user,
                        slot: granted.slot,
                        rank: granted.rank,
                        admitted_at: DateTime::from_timestamp_millis(granted.at_ms),
                    })
                    .collect()
            })
            .unwrap_or_default();
        held.sort_by_key(|slot| slot.slot);
        Ok(held)
    }

    async fn held_slots(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>> {
        let slots = self.slots(campaign);
        let slots = lock(&slots);
        Ok(slots
            .holders
            .iter()
            .flat_map(|(&user, holding)| {
                holding.slots().iter().map(move |granted| HeldSlot {
                    user,
                    slot: granted.slot,
                    rank: granted.rank,
                    admitted_at: DateTime::from_timestamp_millis(granted.at_ms),
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
        let now = now_ms();
        let reclaim_after = i64::try_from(reclaim_after.as_millis()).unwrap_or(i64::MAX);
        let slots = self.slots(campaign);
        let mut slots = lock(&slots);
        let mut claimed = Vec::new();
        for held in candidates {
            if !slots.holds(held) {
                continue;
            }
            let claim = slots
                .claims
                .entry((held.user, held.slot, held.rank))
                .or_insert(i64::MIN);
            if now.saturating_sub(*claim) >= reclaim_after {
                *claim = now;
                claimed.push(*held);
            }
        }
        Ok(claimed)
    }

    async fn restore(&self, campaign: &Campaign, held: &[HeldSlot]) -> Result<RestoreReport> {
        let slots = self.slots(campaign.id);
        let mut slots = lock(&slots);
        Ok(slots.restore(held))
    }

    async fn rebuild(&self, campaign: &Campaign, held: &[HeldSlot]) -> Result<Rebuild> {
        let slots = self.slots(campaign.id);
        let mut slots = lock(&slots);
        if slots.built {
            return Ok(Rebuild::AlreadyReady);
        }
        let report = slots.restore(held);
        slots.built = true;
        Ok(Rebuild::Built(report))
    }
}

impl Slots {
    /// Adds the slots of `held` that are missing and frees the gaps between ranks.
    fn restore(&mut self, held: &[HeldSlot]) -> RestoreReport {
        let slots = self;
        let mut added = 0;
        let now = now_ms();
        for restored in held {
            let granted = Granted {
                slot: restored.slot,
                rank: restored.rank,
                at_ms: restored.admitted_at.map_or(now, |at| at.timestamp_millis()),
            };
            // Only ever add: a slot held already (admitted since the loss, perhaps at
            // another rank) stays as it is.
            match slots.holders.get_mut(&restored.user) {
                None => {
                    slots.holders.insert(restored.user, Holding::One(granted));
                }
                Some(holding) if holding.slots().iter().all(|g| g.slot != restored.slot) => {
                    holding.push(granted);
                }
                Some(_) => continue,
            }
            added += 1;
        }
        slots.admitted += added;
        // Ranks held and free must again make up 1..=top: free every gap below the
        // highest rank held.
        let held_ranks: BTreeSet<u64> = slots
            .holders
            .values()
            .flat_map(|holding| holding.slots().iter().map(|g| g.rank))
            .filter(|&rank| rank > 0)
            .collect();
        let top = held_ranks.last().copied().unwrap_or(0).max(slots.top_rank);
        slots.top_rank = top;
        slots.free_ranks = (1..=top)
            .filter(|rank| !held_ranks.contains(rank))
            .collect();
        RestoreReport::new(added, slots.admitted)
    }
}
