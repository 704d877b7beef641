//! A per-process memo of admissions whose applicant heard no yes: the apply that took
//! the slot ended in an error, or its caller went away mid-apply. Such a slot rolls
//! forward into a coupon, so the applicant must not hear "sold out" when trying again
//! (the sold-out flag answers before the counter would say "already applied").

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::{CampaignId, UserId};

/// Entries kept before the memo starts over: it fills only through failures (an
/// outage, clients hanging up), one entry per applicant who has not heard yes yet.
const LIMIT: usize = 1_000_000;

/// The memo; empty, it costs the sold-out path one atomic load, else a shared read.
#[derive(Debug, Default)]
pub(crate) struct Unanswered {
    any: AtomicBool,
    users: RwLock<HashSet<(CampaignId, UserId)>>,
}

impl Unanswered {
    /// `user` holds a slot of `campaign` but was not told so.
    pub(crate) fn note(&self, campaign: CampaignId, user: UserId) {
        let mut users = self.write();
        if users.len() >= LIMIT {
            users.clear();
        }
        users.insert((campaign, user));
        self.any.store(true, Ordering::Release);
    }

    /// Whether `user` may hold a slot of `campaign` without having been told.
    pub(crate) fn contains(&self, campaign: CampaignId, user: UserId) -> bool {
        self.any.load(Ordering::Acquire) && self.read().contains(&(campaign, user))
    }

    /// `user` heard where their slot stands (pending, or already applied).
    pub(crate) fn answered(&self, campaign: CampaignId, user: UserId) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut users = self.write();
        users.remove(&(campaign, user));
        if users.is_empty() {
            self.any.store(false, Ordering::Release);
        }
    }
}

impl Unanswered {
    // A poisoned lock only means a thread panicked mid-insert; the set is still valid.
    fn read(&self) -> RwLockReadGuard<'_, HashSet<(CampaignId, UserId)>> {
        self.users.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashSet<(CampaignId, UserId)>> {
        self.users.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_answered() {
        let memo = Unanswered::default();
        assert!(!memo.contains(CampaignId(1), UserId(7)));
        memo.note(CampaignId(1), UserId(7));
        assert!(memo.contains(CampaignId(1), UserId(7)));
        assert!(!memo.contains(CampaignId(2), UserId(7)));
        memo.answered(CampaignId(1), UserId(7));
        assert!(!memo.contains(CampaignId(1), UserId(7)));
    }
}
