//! The bookkeeping of one campaign's slots: holdings, rank gaps, and what a rebuild
//! hands over and takes back.

use std::collections::BTreeSet;

use chrono::Utc;

use super::{Granted, Holding, Slots};
use crate::{HeldSlot, RestoreReport};

impl Holding {
    pub(super) fn slots(&self) -> &[Granted] {
        match self {
            Holding::One(granted) => std::slice::from_ref(granted),
            Holding::Many(slots) => slots,
        }
    }

    pub(super) fn push(&mut self, granted: Granted) {
        match self {
            Holding::One(first) => *self = Holding::Many(vec![*first, granted]),
            Holding::Many(slots) => slots.push(granted),
        }
    }

    /// The lowest slot number (from 1) this holder does not hold.
    pub(super) fn lowest_free(&self) -> u32 {
        lowest_free(self.slots())
    }
}

fn lowest_free(held: &[Granted]) -> u32 {
    (1..)
        .find(|&slot| held.iter().all(|granted| granted.slot != slot))
        .unwrap_or(1)
}

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Slots {
    pub(super) fn holds(&self, held: &HeldSlot) -> bool {
        self.holders.get(&held.user).is_some_and(|holding| {
            holding
                .slots()
                .iter()
                .any(|granted| granted.slot == held.slot && granted.rank == held.rank)
        })
    }
}

impl Slots {
    /// Every slot held, of no epoch (what a rebuild hands to the seal).
    pub(super) fn held(&self) -> Vec<HeldSlot> {
        self.slots_in(0)
    }

    /// Adds the slots of `held` that are missing and frees the gaps between ranks.
    pub(super) fn restore(&mut self, held: &[HeldSlot]) -> RestoreReport {
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
        // Ranks held and free must again make up every rank it grants up to the top:
        // free every gap below the highest rank held (of its own: a shard never grants
        // another shard's ranks).
        let held_ranks: BTreeSet<u64> = slots
            .holders
            .values()
            .flat_map(|holding| holding.slots().iter().map(|g| g.rank))
            .filter(|&rank| slots.grants(rank))
            .collect();
        let top = held_ranks.last().copied().unwrap_or(0).max(slots.top_rank);
        slots.top_rank = top;
        let (first, step) = (slots.first_rank(), slots.rank_step());
        slots.free_ranks = (first..=top)
            .step_by(usize::try_from(step).unwrap_or(usize::MAX))
            .filter(|rank| !held_ranks.contains(rank))
            .collect();
        RestoreReport::new(added, slots.admitted)
    }
}
