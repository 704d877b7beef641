//! One campaign's settlement pass: the slots the counter holds without a coupon,
//! claimed and published again once older than the grace period.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::{SettleReport, Settler, SlotKey, key};
use crate::sync::lock;
use crate::{
    Campaign, CampaignId, CampaignSummary, HeldSlot, IssueTicket, Result, TicketId, UserId,
};

impl Settler {
    pub(super) async fn settle_summary(&self, summary: &CampaignSummary) -> Result<SettleReport> {
        let campaign = &summary.campaign;
        let mut report = SettleReport::default();
        if summary.issued >= campaign.cap {
            // Full: no admission left to settle, whatever the counter holds.
            self.forget(campaign);
            lock(&self.recorded_published).remove(&campaign.id);
            self.store.forget_settled_pending(campaign.id).await?;
            return Ok(report);
        }
        // First the tickets recorded as pending, which need no counter: after a loss of
        // the counter's memory they are the only trace of their admissions.
        let recorded = self.settle_recorded(campaign, &mut report).await?;
        let admitted = self.counter.status(campaign).await?.admitted;
        report.in_flight = admitted.saturating_sub(summary.issued);
        if admitted <= summary.issued {
            // Settled as far as the counter knows; not while a recorded ticket still
            // waits for its coupon (a counter that lost its memory counts nothing, and a
            // campaign forgotten for good would never publish it).
            if recorded.is_empty() {
                self.forget(campaign);
            }
            return Ok(report);
        }
        report.campaigns = 1;

        let now = Utc::now();
        let grace = chrono::Duration::from_std(self.config.grace).unwrap_or(chrono::Duration::MAX);
        let held = self.counter.held_slots(campaign).await?;
        let mut held_per_user: HashMap<UserId, usize> = HashMap::new();
        for slot in &held {
            *held_per_user.entry(slot.user).or_default() += 1;
        }
        let since = self.since(campaign.id, &held, now);
        let age = |slot: &HeldSlot| now - since.get(&key(slot)).copied().unwrap_or(now);
        let stale: Vec<HeldSlot> = {
            let confirmed = lock(&self.confirmed);
            let known = confirmed.get(&campaign.id);
            held.iter()
                .filter(|slot| age(slot) >= grace)
                .filter(|slot| known.is_none_or(|known| !known.contains(&key(slot))))
                .copied()
                .collect()
        };
        if stale.is_empty() {
            return Ok(report);
        }

        let users: Vec<UserId> = stale
            .iter()
            .map(|slot| slot.user)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut coupons_per_user: HashMap<UserId, usize> = HashMap::new();
        let mut stored: HashSet<TicketId> = HashSet::new();
        for coupon in self.store.coupons_of_users(campaign.id, &users).await? {
            *coupons_per_user.entry(coupon.user).or_default() += 1;
            stored.insert(coupon.ticket_id);
        }
        let mut unsettled = Vec::new();
        let mut confirmed_now = Vec::new();
        for slot in stale {
            let coupons = coupons_per_user.get(&slot.user).copied().unwrap_or(0);
            // A user holding as many coupons as slots is settled whatever the tickets'
            // ids (coupons stored before ids were derived carry random ones).
            let held = held_per_user.get(&slot.user).copied().unwrap_or(1);
            let ticket = TicketId::for_admission(campaign.id, slot.user, slot.slot);
            let settled = coupons >= held || stored.contains(&ticket);
            if settled {
                confirmed_now.push(key(&slot));
            } else if !recorded.contains(&ticket) {
                unsettled.push(slot);
            }
        }
        lock(&self.confirmed)
            .entry(campaign.id)
            .or_default()
            .extend(confirmed_now);

        report.unsettled += unsettled.len() as u64;
        report.oldest_unsettled_ms = unsettled
            .iter()
            .filter_map(|slot| age(slot).to_std().ok())
            .max()
            .map(|age| age.as_millis() as u64)
            .max(report.oldest_unsettled_ms);
        if unsettled.is_empty() {
            return Ok(report);
        }
        let claimed = self
            .counter
            .claim(campaign, &unsettled, self.config.grace)
            .await?;
        // Bounded like the issuer's publishes, from the claim on: claims left when time
        // runs out expire, and a later pass takes them again.
        let deadline = tokio::time::Instant::now() + self.config.publish_timeout;
        for slot in claimed {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            let ticket = IssueTicket::for_slot(campaign.id, &slot);
            match crate::queue::publish_by(self.queue.as_ref(), &ticket, deadline, "settler").await
            {
                Ok(()) => {
                    report.republished += 1;
                    self.republished.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(campaign = %campaign.id, user = %slot.user, slot = slot.slot, ticket = %ticket.ticket_id, "published an admission's ticket again");
                }
                // Claimed and not published: the claim expires after the grace period
                // and the next pass tries again.
                Err(error) => {
                    tracing::warn!(campaign = %campaign.id, ticket = %ticket.ticket_id, %error, "could not publish an admission's ticket again");
                }
            }
        }
        Ok(report)
    }

    /// Since when each of `held` counts as admitted: its admission time where the
    /// counter keeps it, else when this settler first saw it (remembered for the slots
    /// still held, forgotten for the others).
    fn since(
        &self,
        campaign: CampaignId,
        held: &[HeldSlot],
        now: DateTime<Utc>,
    ) -> HashMap<SlotKey, DateTime<Utc>> {
        let mut first_seen = lock(&self.first_seen);
        let seen = first_seen.entry(campaign).or_default();
        let mut since = HashMap::with_capacity(held.len());
        let mut still_seen = HashMap::new();
        for slot in held {
            let key = key(slot);
            let at = match slot.admitted_at {
                Some(at) => at,
                None => {
                    let at = seen.get(&key).copied().unwrap_or(now);
                    still_seen.insert(key, at);
                    at
                }
            };
            since.insert(key, at);
        }
        *seen = still_seen;
        since
    }

    /// Drops what is remembered of a fully settled campaign. One closed for longer than
    /// the grace period is skipped from now on: an apply that passed the window check
    /// just before the close has had that long to land.
    fn forget(&self, campaign: &Campaign) {
        lock(&self.confirmed).remove(&campaign.id);
        lock(&self.first_seen).remove(&campaign.id);
        if self.long_closed(campaign) {
            lock(&self.finished).insert(campaign.id);
        }
    }

    /// Whether `campaign` closed longer than the grace period ago (as stored now: an
    /// operator may reopen it).
    pub(super) fn long_closed(&self, campaign: &Campaign) -> bool {
        let grace = chrono::Duration::from_std(self.config.grace).unwrap_or(chrono::Duration::MAX);
        campaign
            .closes_at
            .and_then(|closes| closes.checked_add_signed(grace))
            .is_some_and(|settled_by| Utc::now() >= settled_by)
    }
}
