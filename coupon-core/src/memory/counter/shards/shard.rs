//! One shard's state: its slots, budget, version and moves, and the checks its steps
//! share.

use std::collections::{HashMap, HashSet};

use super::super::Slots;
use crate::shards::{MoveId, OpenMove, RebuildToken};
use crate::{Campaign, Error, Result};

#[derive(Debug, Default)]
pub(super) struct Shard {
    pub(super) slots: Slots,
    pub(super) budget: u64,
    pub(super) version: u64,
    /// Moves taken from this shard and not complete (read by every collect, so kept
    /// apart from the rest).
    pub(super) open: HashMap<MoveId, OpenMove>,
    /// Moves taken from this shard and complete, or that took nothing: how many slots
    /// each took, answered to a copy of its take.
    pub(super) done: HashMap<MoveId, u64>,
    /// Moves given to this shard.
    pub(super) given: HashSet<MoveId>,
    /// The rebuild holding the shard, and the suspensions it began under.
    pub(super) lock: Option<(RebuildToken, u64)>,
}

impl Shard {
    pub(super) fn new(shards: u64, index: u64) -> Self {
        Self {
            slots: Slots::with_ranks(shards, index),
            ..Self::default()
        }
    }

    /// The shard's epoch, if it is `epoch`.
    pub(super) fn admits_in(&self, campaign: &Campaign, epoch: u64) -> Result<()> {
        if self.slots.epoch == Some(epoch) {
            Ok(())
        } else {
            Err(not_ready(campaign))
        }
    }

    pub(super) fn locked_by(&self, campaign: &Campaign, token: RebuildToken) -> Result<u64> {
        match self.lock {
            Some((held, suspensions)) if held == token => Ok(suspensions),
            _ => Err(not_ready(campaign)),
        }
    }
}

pub(super) fn not_ready(campaign: &Campaign) -> Error {
    Error::NotReady {
        campaign: campaign.id,
        backend: "memory",
    }
}
