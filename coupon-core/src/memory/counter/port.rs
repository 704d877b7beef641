//! [`CouponCounter`] over the campaigns' [`Slots`].

use std::collections::hash_map::Entry;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::slots::now_ms;
use super::{Granted, Holding, MemoryCounter, Slots, lock};
use crate::{
    Admission, Campaign, CounterStatus, CouponCounter, Error, HeldSlot, Rebuild, Release, Result,
    SealEpoch, UserId,
};

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

    async fn release(&self, campaign: &Campaign, held: &HeldSlot) -> Result<Release> {
        let slots = self.slots(campaign.id);
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

    async fn is_admitted(&self, campaign: &Campaign, user: UserId) -> Result<bool> {
        let slots = self.slots(campaign.id);
        let held = lock(&slots).holders.contains_key(&user);
        Ok(held)
    }

    async fn status(&self, campaign: &Campaign) -> Result<CounterStatus> {
        let slots = self.slots(campaign.id);
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

    async fn held_slots(&self, campaign: &Campaign) -> Result<Vec<HeldSlot>> {
        let slots = self.slots(campaign.id);
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
        campaign: &Campaign,
        candidates: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Result<Vec<HeldSlot>> {
        let now = now_ms();
        let reclaim_after = i64::try_from(reclaim_after.as_millis()).unwrap_or(i64::MAX);
        let slots = self.slots(campaign.id);
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
    async fn confirm_epoch(&self, campaign: &Campaign, epoch: u64) -> Result<bool> {
        let slots = self.slots(campaign.id);
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
