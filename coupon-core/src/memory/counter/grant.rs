//! The steps on one campaign's (or one shard's) [`Slots`]: admit, release, claim and
//! read, each under the caller's lock. The whole-campaign counter and the shards of a
//! sharded campaign share them.

use std::collections::hash_map::Entry;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::slots::now_ms;
use super::{Granted, Holding, Slots};
use crate::{Admission, HeldSlot, Release, UserId};

impl Slots {
    /// Slots that grant ranks `offset + 1`, then every `step`-th after.
    pub(super) fn with_ranks(step: u64, offset: u64) -> Self {
        Self {
            rank_step: step,
            rank_offset: offset,
            ..Self::default()
        }
    }

    pub(super) fn rank_step(&self) -> u64 {
        self.rank_step.max(1)
    }

    pub(super) fn first_rank(&self) -> u64 {
        self.rank_offset + 1
    }

    /// Whether this campaign (or shard) grants `rank`.
    pub(super) fn grants(&self, rank: u64) -> bool {
        rank >= self.first_rank() && (rank - self.first_rank()).is_multiple_of(self.rank_step())
    }

    /// Admits `user` in `epoch` unless they hold `limit` slots (`AlreadyApplied`) or
    /// `bound` slots are held (`SoldOut`): a released rank first, else the next new one.
    pub(super) fn admit(&mut self, user: UserId, limit: u32, bound: u64, epoch: u64) -> Admission {
        let first = self.first_rank();
        let step = self.rank_step();
        let Slots {
            admitted,
            top_rank,
            free_ranks,
            holders,
            ..
        } = self;
        // One lookup of the user, whatever the answer.
        let entry = holders.entry(user);
        let held = match &entry {
            Entry::Occupied(holding) => holding.get().slots().len(),
            Entry::Vacant(_) => 0,
        };
        if held >= limit as usize {
            return Admission::AlreadyApplied;
        }
        if *admitted >= bound {
            return Admission::SoldOut;
        }
        let rank = match free_ranks.pop_first() {
            Some(rank) => rank,
            None => {
                *top_rank = if *top_rank < first {
                    first
                } else {
                    *top_rank + step
                };
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
        Admission::Granted {
            rank,
            slot: granted.slot,
            // The time as kept (to the millisecond), so that the ticket and the held slot
            // agree exactly.
            admitted_at: DateTime::from_timestamp_millis(granted.at_ms).unwrap_or(admitted_at),
            epoch,
        }
    }

    /// Frees exactly `held` (of this epoch, where it has one), unless claimed.
    pub(super) fn release(&mut self, held: &HeldSlot) -> Release {
        // A slot of another epoch is another admission, whatever its numbers.
        if !self.holds(held) || (held.epoch != 0 && self.epoch != Some(held.epoch)) {
            return Release::NotHeld;
        }
        if self.claims.contains_key(&(held.user, held.slot, held.rank)) {
            return Release::Settling;
        }
        let now_empty = match self.holders.get_mut(&held.user) {
            Some(Holding::Many(kept)) => {
                kept.retain(|granted| granted.slot != held.slot);
                kept.is_empty()
            }
            _ => true,
        };
        if now_empty {
            self.holders.remove(&held.user);
        }
        self.admitted -= 1;
        if held.rank > 0 {
            self.free_ranks.insert(held.rank);
        }
        Release::Released
    }

    /// `user`'s slots, by slot number, in the epoch admitted in (the last one while
    /// closed; 0 when never built).
    pub(super) fn slots_of(&self, user: UserId) -> Vec<HeldSlot> {
        let epoch = self.epoch.unwrap_or(self.last_epoch);
        let mut held: Vec<HeldSlot> = self
            .holders
            .get(&user)
            .map(|holding| {
                holding
                    .slots()
                    .iter()
                    .map(|granted| granted.held(user, epoch))
                    .collect()
            })
            .unwrap_or_default();
        held.sort_by_key(|slot| slot.slot);
        held
    }

    /// Every slot held, in the epoch admitted in (the last one while closed; 0 when
    /// never built).
    pub(super) fn held_slots(&self) -> Vec<HeldSlot> {
        self.slots_in(self.epoch.unwrap_or(self.last_epoch))
    }

    /// Every slot held, each marked of `epoch`.
    pub(super) fn slots_in(&self, epoch: u64) -> Vec<HeldSlot> {
        self.holders
            .iter()
            .flat_map(|(&user, holding)| {
                holding
                    .slots()
                    .iter()
                    .map(move |granted| granted.held(user, epoch))
            })
            .collect()
    }

    /// Claims the candidates still held whose last claim is `reclaim_after` old.
    pub(super) fn claim(
        &mut self,
        candidates: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Vec<HeldSlot> {
        let now = now_ms();
        let reclaim_after = i64::try_from(reclaim_after.as_millis()).unwrap_or(i64::MAX);
        let mut claimed = Vec::new();
        for held in candidates {
            if !self.holds(held) {
                continue;
            }
            let claim = self
                .claims
                .entry((held.user, held.slot, held.rank))
                .or_insert(i64::MIN);
            if now.saturating_sub(*claim) >= reclaim_after {
                *claim = now;
                claimed.push(*held);
            }
        }
        claimed
    }
}

impl Granted {
    pub(super) fn held(&self, user: UserId, epoch: u64) -> HeldSlot {
        HeldSlot {
            user,
            slot: self.slot,
            rank: self.rank,
            admitted_at: DateTime::from_timestamp_millis(self.at_ms),
            epoch,
        }
    }
}
