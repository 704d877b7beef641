//! A per-process memo of campaigns found sold out, with who holds their slots.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::{CampaignId, UserId};

/// How long a loaded list of holders is used before a new "sold out" reloads it: slots
/// change hands in a sold-out campaign only when a refused hand-off gives one back.
const HOLDERS_RELOAD: Duration = Duration::from_secs(30);

/// Who holds the slots of a sold-out campaign, and how that was learnt.
#[derive(Debug, Clone)]
pub(crate) struct Holders {
    /// Slots (or coupons) per holder.
    pub(crate) count: Arc<HashMap<UserId, u32>>,
    /// Read from the store's coupons (the counter was not ready): the counts are coupons.
    pub(crate) from_store: bool,
}

impl Holders {
    /// Holders from a list with one entry per slot or coupon.
    pub(crate) fn tally(users: impl IntoIterator<Item = UserId>, from_store: bool) -> Self {
        let mut count: HashMap<UserId, u32> = HashMap::new();
        for user in users {
            *count.entry(user).or_default() += 1;
        }
        Self {
            count: Arc::new(count),
            from_store,
        }
    }
}

/// What the memo knows of an applicant now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Memo {
    /// Nothing: ask the counter.
    Unknown,
    /// Sold out, and the applicant holds nothing of it.
    SoldOut,
    /// Sold out, and the applicant holds this many slots (or coupons, `from_store`).
    Holder { count: u32, from_store: bool },
}

/// How long after a failed load of the holders the next may start.
const FAILED_LOAD_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Entry {
    until: Instant,
    holders: Option<Holders>,
    loaded_at: Option<Instant>,
    loading: bool,
    failed_at: Option<Instant>,
}

/// Remembers "sold out" answers for a short time so that the flood of late applicants
/// is answered locally instead of each costing a counter round trip; once it has loaded
/// who holds the campaign's slots, a holder applying again is told so rather than "sold
/// out" (they hold a coupon, or one is on its way).
///
/// The memo expires because a released slot (a failed hand-off, a reconciliation) can
/// reopen a campaign; the TTL bounds how long such a slot waits for takers.
#[derive(Debug)]
pub(crate) struct SoldOutMemo {
    ttl: Duration,
    campaigns: RwLock<HashMap<CampaignId, Entry>>,
}

impl SoldOutMemo {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            campaigns: RwLock::new(HashMap::new()),
        }
    }

    /// What the memo says of `user` in `campaign` at `now`: while it has no list of
    /// holders it knows nobody, so that no holder hears "sold out".
    pub(crate) fn check(&self, campaign: CampaignId, user: UserId, now: Instant) -> Memo {
        if self.ttl.is_zero() {
            return Memo::Unknown;
        }
        // A poisoned lock only means another thread panicked mid-update; the map is valid.
        let campaigns = self.campaigns.read().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = campaigns.get(&campaign) else {
            return Memo::Unknown;
        };
        match &entry.holders {
            Some(holders) if now < entry.until => match holders.count.get(&user) {
                Some(&count) => Memo::Holder {
                    count,
                    from_store: holders.from_store,
                },
                None => Memo::SoldOut,
            },
            _ => Memo::Unknown,
        }
    }

    /// Records a "sold out" at `now`; returns whether the caller should load the holders
    /// (none loaded, or loaded long ago, and no load under way), which it then hands to
    /// [`loaded`](Self::loaded).
    pub(crate) fn mark(&self, campaign: CampaignId, now: Instant) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let mut campaigns = self.campaigns.write().unwrap_or_else(|e| e.into_inner());
        let entry = campaigns.entry(campaign).or_insert(Entry {
            until: now,
            holders: None,
            loaded_at: None,
            loading: false,
            failed_at: None,
        });
        entry.until = now + self.ttl;
        let stale = entry
            .loaded_at
            .is_none_or(|at| now.saturating_duration_since(at) >= HOLDERS_RELOAD);
        let paused = entry
            .failed_at
            .is_some_and(|at| now.saturating_duration_since(at) < FAILED_LOAD_PAUSE);
        if stale && !entry.loading && !paused {
            entry.loading = true;
            return true;
        }
        false
    }

    /// The holders a load found (`None`: it failed, and a later mark tries again).
    pub(crate) fn loaded(&self, campaign: CampaignId, holders: Option<Holders>, now: Instant) {
        let mut campaigns = self.campaigns.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = campaigns.get_mut(&campaign) {
            entry.loading = false;
            match holders {
                Some(holders) => {
                    entry.holders = Some(holders);
                    entry.loaded_at = Some(now);
                    entry.failed_at = None;
                }
                None => entry.failed_at = Some(now),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_nobody_until_the_holders_are_loaded_then_expires() {
        let memo = SoldOutMemo::new(Duration::from_millis(100));
        let (campaign, t0) = (CampaignId(1), Instant::now());
        assert_eq!(memo.check(campaign, UserId(7), t0), Memo::Unknown);
        assert!(
            memo.mark(campaign, t0),
            "the first mark asks for the holders"
        );
        assert!(!memo.mark(campaign, t0), "one load at a time");
        assert_eq!(memo.check(campaign, UserId(7), t0), Memo::Unknown);
        memo.loaded(campaign, Some(Holders::tally([UserId(7)], false)), t0);
        let holder = Memo::Holder {
            count: 1,
            from_store: false,
        };
        assert_eq!(memo.check(campaign, UserId(7), t0), holder);
        assert_eq!(memo.check(campaign, UserId(8), t0), Memo::SoldOut);
        assert_eq!(memo.check(CampaignId(2), UserId(8), t0), Memo::Unknown);
        let later = t0 + Duration::from_millis(100);
        assert_eq!(memo.check(campaign, UserId(8), later), Memo::Unknown);
        assert!(
            !memo.mark(campaign, later),
            "holders loaded recently are kept"
        );
        assert_eq!(memo.check(campaign, UserId(8), later), Memo::SoldOut);
        assert!(
            memo.mark(campaign, t0 + HOLDERS_RELOAD),
            "and reloaded later"
        );
    }

    #[test]
    fn a_failed_load_is_asked_again_after_a_pause() {
        let memo = SoldOutMemo::new(Duration::from_millis(100));
        let (campaign, t0) = (CampaignId(1), Instant::now());
        assert!(memo.mark(campaign, t0));
        memo.loaded(campaign, None, t0);
        assert!(!memo.mark(campaign, t0), "not at once");
        assert!(memo.mark(campaign, t0 + FAILED_LOAD_PAUSE));
    }

    #[test]
    fn zero_ttl_disables_the_memo() {
        let memo = SoldOutMemo::new(Duration::ZERO);
        let t0 = Instant::now();
        assert!(!memo.mark(CampaignId(1), t0));
        assert_eq!(memo.check(CampaignId(1), UserId(1), t0), Memo::Unknown);
    }
}
