use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::lock;
use crate::{
    Admission, Campaign, CampaignId, CounterStatus, CouponCounter, Error, HeldSlot, Rebuild,
    Release, RestoreReport, Result, SealEpoch, UserId,
};

/// An exact admission counter in process memory.
///
/// Each campaign has its own mutex, so campaigns never contend with each other and the
/// check-and-increment of one campaign is a few nanoseconds under its lock.
///
/// Like every counter it admits only in campaigns it built ([`CouponCounter::rebuild`]):
/// a new process starts with none, and rebuilds each from the store before admitting.
///
/// A counter in one process's memory must be the only one admitting for its store: a
/// deployment that may start a second process on the same database makes the counter
/// [`suspended`](MemoryCounter::suspended) and resumes it only while the process holds
/// the database's lease (`coupon_seaorm::CounterLease`); [`suspend`](MemoryCounter::suspend)
/// forgets every campaign when the lease is lost.
#[derive(Debug, Default)]
pub struct MemoryCounter {
    campaigns: RwLock<HashMap<CampaignId, Arc<Mutex<Slots>>>>,
    /// While set, nothing is admitted and nothing rebuilt.
    suspended: AtomicBool,
    /// Suspensions so far: a rebuild that saw another number when it began must not
    /// admit on what it sealed.
    suspensions: AtomicU64,
    /// What tells, at the moment it is asked, that this process still holds the lease
    /// (set by the lease's keeper): an epoch is confirmed only then.
    lease: std::sync::OnceLock<Arc<dyn LeaseCheck>>,
}

/// Tells whether this process holds the lease that lets its in-memory counter admit,
/// asking the database at the moment of the call (so that a process that stalled while
/// another took the lease learns it before it answers yes).
#[async_trait]
pub trait LeaseCheck: Send + Sync + std::fmt::Debug {
    /// Whether the lease is this process's now.
    async fn still_held(&self) -> bool;
}

#[derive(Debug, Default)]
struct Slots {
    /// The epoch it admits in, once built from the store ([`CouponCounter::rebuild`]):
    /// admits only then.
    epoch: Option<u64>,
    /// A rebuild is between closing and sealing.
    rebuilding: bool,
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

    /// An empty counter that neither admits nor rebuilds until [`resume`](Self::resume)d.
    pub fn suspended() -> Self {
        let counter = Self::default();
        counter.suspended.store(true, Ordering::SeqCst);
        counter
    }

    /// Stops admitting and forgets every campaign (each answers
    /// [`Error::NotReady`] until rebuilt after [`resume`](Self::resume)): this process
    /// may no longer be the only one admitting.
    pub fn suspend(&self) {
        self.suspended.store(true, Ordering::SeqCst);
        self.suspensions.fetch_add(1, Ordering::SeqCst);
        let campaigns = self.campaigns.read().unwrap_or_else(|e| e.into_inner());
        for slots in campaigns.values() {
            let mut slots = lock(slots);
            // A rebuild under way keeps its mark until it ends (and then fails, the
            // suspension seen): two rebuilds of a campaign never overlap.
            let rebuilding = slots.rebuilding;
            *slots = Slots {
                rebuilding,
                ..Slots::default()
            };
        }
    }

    /// Allows rebuilds again (and with them admissions).
    pub fn resume(&self) {
        self.suspended.store(false, Ordering::SeqCst);
    }

    /// Makes [`CouponCounter::confirm_epoch`] ask `check` too: the keeper of the
    /// database's counter lease sets it once. Later calls change nothing.
    pub fn confirm_with(&self, check: Arc<dyn LeaseCheck>) {
        let _ = self.lease.set(check);
    }

    /// Whether the counter is suspended.
    pub fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::SeqCst)
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
        let Some(epoch) = slots.epoch else {
            return Err(Error::NotReady {
                campaign: campaign.id,
                backend: "memory",
            });
        };
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
            epoch,
        })
    }

    async fn release(&self, campaign: CampaignId, held: &HeldSlot) -> Result<Release> {
        let slots = self.slots(campaign);
        let mut slots = lock(&slots);
        // A slot of another epoch is another admission, whatever its numbers.
        if !slots.holds(held) || (held.epoch != 0 && slots.epoch != Some(held.epoch)) {
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

    /// Always, unless suspended: the counter is this process's memory, and it admits
    /// only while not suspended (another process may be the one admitting).
    async fn ready(&self) -> Result<()> {
        if self.is_suspended() {
            return Err(Error::unavailable(
                "memory",
                "suspended: this process does not hold the counter lease (another one admits)",
                None,
            ));
        }
        Ok(())
    }

    async fn is_admitted(&self, campaign: CampaignId, user: UserId) -> Result<bool> {
        let slots = self.slots(campaign);
        let held = lock(&slots).holders.contains_key(&user);
        Ok(held)
    }

    async fn status(&self, campaign: CampaignId) -> Result<CounterStatus> {
        let slots = self.slots(campaign);
        let slots = lock(&slots);
        Ok(CounterStatus::new(slots.admitted, slots.epoch))
    }

    async fn slots_of(&self, campaign: &Campaign, user: UserId) -> Result<Vec<HeldSlot>> {
        let slots = self.slots(campaign.id);
        let slots = lock(&slots);
        let epoch = slots.epoch.unwrap_or(0);
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
                        epoch,
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
        let epoch = slots.epoch.unwrap_or(0);
        Ok(slots
            .holders
            .iter()
            .flat_map(|(&user, holding)| {
                holding.slots().iter().map(move |granted| HeldSlot {
                    user,
                    slot: granted.slot,
                    rank: granted.rank,
                    admitted_at: DateTime::from_timestamp_millis(granted.at_ms),
                    epoch,
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

    /// The epoch as this process holds it, and, when a lease guards the counter
    /// ([`MemoryCounter::confirm_with`]), the lease asked now: a process that stalled
    /// while another took the lease must not confirm what it admitted before.
    async fn confirm_epoch(&self, campaign: CampaignId, epoch: u64) -> Result<bool> {
        let slots = self.slots(campaign);
        let current = lock(&slots).epoch;
        if current != Some(epoch) || self.is_suspended() {
            return Ok(false);
        }
        match self.lease.get() {
            Some(lease) => Ok(lease.still_held().await),
            None => Ok(true),
        }
    }

    async fn rebuild(&self, campaign: &Campaign, seal: Arc<dyn SealEpoch>) -> Result<Rebuild> {
        let not_ready = || Error::NotReady {
            campaign: campaign.id,
            backend: "memory",
        };
        let cell = self.slots(campaign.id);
        let suspensions = self.suspensions.load(Ordering::SeqCst);
        let counted = {
            let mut slots = lock(&cell);
            if slots.epoch.is_some() {
                return Ok(Rebuild::AlreadyReady);
            }
            if self.is_suspended() {
                return Err(not_ready());
            }
            if slots.rebuilding {
                return Ok(Rebuild::Busy);
            }
            slots.rebuilding = true;
            slots.held()
        };
        // Clears the mark however this ends, even if the caller drops this future.
        let ending = Ending(Some(&cell));
        let sealed = seal.seal(counted).await;
        let mut slots = lock(&cell);
        // Cleared under the same lock that applies the seal: no other rebuild starts in
        // between.
        slots.rebuilding = false;
        ending.disarm();
        let sealed = sealed?;
        // Suspended while the seal ran (even if resumed since): another process may
        // have sealed a later epoch meanwhile.
        if self.is_suspended() || self.suspensions.load(Ordering::SeqCst) != suspensions {
            return Err(not_ready());
        }
        let report = slots.restore(&sealed.slots);
        slots.epoch = Some(sealed.epoch);
        Ok(Rebuild::Built(report))
    }
}

/// Marks a campaign's rebuild over when dropped, unless disarmed.
struct Ending<'a>(Option<&'a Mutex<Slots>>);

impl Ending<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        if let Some(cell) = self.0 {
            lock(cell).rebuilding = false;
        }
    }
}

impl Slots {
    /// Every slot held, of no epoch (what a rebuild hands to the seal).
    fn held(&self) -> Vec<HeldSlot> {
        self.holders
            .iter()
            .flat_map(|(&user, holding)| {
                holding.slots().iter().map(move |granted| HeldSlot {
                    user,
                    slot: granted.slot,
                    rank: granted.rank,
                    admitted_at: DateTime::from_timestamp_millis(granted.at_ms),
                    epoch: 0,
                })
            })
            .collect()
    }

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
