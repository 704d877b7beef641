//! A per-process memo of campaigns the counter recently called sold out.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::CampaignId;

/// Remembers "sold out" answers for a short time so that the flood of late applicants
/// is answered locally instead of each costing a counter round trip.
///
/// The memo expires because a released slot (a failed hand-off, a reconciliation) can
/// reopen a campaign; the TTL bounds how long such a slot waits for takers.
#[derive(Debug)]
pub(crate) struct SoldOutMemo {
    ttl: Duration,
    until: RwLock<HashMap<CampaignId, Instant>>,
}

impl SoldOutMemo {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            until: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn is_sold_out(&self, campaign: CampaignId, now: Instant) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        // A poisoned lock only means another thread panicked mid-insert of an Instant;
        // the map is still valid.
        let until = self.until.read().unwrap_or_else(|e| e.into_inner());
        until.get(&campaign).is_some_and(|&deadline| now < deadline)
    }

    pub(crate) fn mark(&self, campaign: CampaignId, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut until = self.until.write().unwrap_or_else(|e| e.into_inner());
        until.insert(campaign, now + self.ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_after_ttl() {
        let memo = SoldOutMemo::new(Duration::from_millis(100));
        let t0 = Instant::now();
        assert!(!memo.is_sold_out(CampaignId(1), t0));
        memo.mark(CampaignId(1), t0);
        assert!(memo.is_sold_out(CampaignId(1), t0 + Duration::from_millis(99)));
        assert!(!memo.is_sold_out(CampaignId(2), t0));
        assert!(!memo.is_sold_out(CampaignId(1), t0 + Duration::from_millis(100)));
    }

    #[test]
    fn zero_ttl_disables_the_memo() {
        let memo = SoldOutMemo::new(Duration::ZERO);
        let t0 = Instant::now();
        memo.mark(CampaignId(1), t0);
        assert!(!memo.is_sold_out(CampaignId(1), t0));
    }
}
