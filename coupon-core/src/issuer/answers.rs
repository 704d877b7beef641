//! Answers to an apply that admits no one new: a holder applying again, a campaign
//! sold out, a counter that cannot admit while the store can tell.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::CouponIssuer;
use crate::sold_out::{Holders, Memo};
use crate::sync::lock;
use crate::{ApplyOutcome, Campaign, Error, HeldSlot, IssueTicket, Result, TicketId, UserId};

/// Users known to hold every coupon they may (per process, bounded): a repeated apply
/// of theirs is `AlreadyApplied` without asking the store again. Holding coupons is
/// forever, so the memo never goes stale.
const HOLDERS_MEMO_LIMIT: usize = 1_000_000;

impl CouponIssuer {
    /// A user who holds slots applied again: where their slots stand.
    pub(super) async fn answer_holder(
        &self,
        campaign: &Campaign,
        user: UserId,
    ) -> Result<ApplyOutcome> {
        let answer = self.already_applied(campaign, user).await;
        if answer.is_ok() {
            self.hand_off.unanswered.answered(campaign.id, user);
        }
        answer
    }

    /// Records that `campaign` is sold out now and, when the memo asks for it, loads who
    /// holds its slots on a task of its own: from the counter, or from the store's
    /// coupons when the counter is not ready.
    pub(super) fn sold_out_now(&self, campaign: &Campaign, from_store: bool) {
        if !self.sold_out.mark(campaign.id, Instant::now()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sold_out.loaded(campaign.id, None, Instant::now());
            return;
        };
        let (memo, id, campaign) = (self.sold_out.clone(), campaign.id, campaign.clone());
        let (counter, store) = (self.hand_off.counter.clone(), self.store.clone());
        runtime.spawn(async move {
            let holders = if from_store {
                store
                    .holders(id)
                    .await
                    .map(|users| Holders::tally(users, true))
            } else {
                counter
                    .held_slots(&campaign)
                    .await
                    .map(|slots| Holders::tally(slots.into_iter().map(|slot| slot.user), false))
            };
            if let Err(error) = &holders {
                tracing::debug!(campaign = %id, %error, "loading the holders of a sold-out campaign failed");
            }
            memo.loaded(id, holders.ok(), Instant::now());
        });
    }

    /// The answer to `user` while the counter cannot admit (being rebuilt, or away),
    /// when the store can give one: a campaign whose store holds `cap` coupons is sold
    /// out whatever the counter says (`AlreadyApplied` to a holder of as many coupons as
    /// the limit allows). `None` otherwise: the caller hears the counter's retryable
    /// error.
    pub(super) async fn while_rebuilding(
        &self,
        campaign: &Campaign,
        user: UserId,
    ) -> Option<ApplyOutcome> {
        if !self.store_is_full(campaign).await {
            return None;
        }
        self.sold_out_now(campaign, true);
        match self.sold_out.check(campaign.id, user, Instant::now()) {
            Memo::SoldOut => Some(ApplyOutcome::SoldOut),
            Memo::Holder { count, .. } if count >= campaign.per_user_limit => {
                Some(ApplyOutcome::AlreadyApplied)
            }
            Memo::Holder { .. } => Some(ApplyOutcome::SoldOut),
            // The holders are loading: the store answers this one.
            Memo::Unknown => {
                let coupons = self.store.coupons_of(campaign.id, user).await.ok()?;
                Some(if coupons.len() >= campaign.per_user_limit as usize {
                    ApplyOutcome::AlreadyApplied
                } else {
                    ApplyOutcome::SoldOut
                })
            }
        }
    }

    /// Whether the store holds `campaign`'s cap of coupons, read at most once a second.
    async fn store_is_full(&self, campaign: &Campaign) -> bool {
        let now = Instant::now();
        if let Some(&(at, full)) = lock(&self.full).get(&campaign.id)
            && now.saturating_duration_since(at) < Duration::from_secs(1)
        {
            return full;
        }
        let full = match self.store.issued_count(campaign.id).await {
            Ok(issued) => issued >= campaign.cap,
            Err(_) => false,
        };
        lock(&self.full).insert(campaign.id, (now, full));
        full
    }

    /// The counter says the user holds every slot they may: `AlreadyApplied` once the
    /// store holds that many coupons, `Pending` until then, once the tickets of the
    /// slots without a coupon are recorded in the store (the earlier apply that took
    /// them may have ended in an error, a timeout or a client gone away, leaving them
    /// only in the counter). A store that cannot tell now is a retryable error.
    async fn already_applied(&self, campaign: &Campaign, user: UserId) -> Result<ApplyOutcome> {
        let key = (campaign.id, user);
        if lock(&self.holders).contains(&key) {
            return Ok(ApplyOutcome::AlreadyApplied);
        }
        let coupons = self.store.coupons_of(campaign.id, user).await?;
        if coupons.len() >= campaign.per_user_limit as usize {
            let mut holders = lock(&self.holders);
            if holders.len() >= HOLDERS_MEMO_LIMIT {
                holders.clear();
            }
            holders.insert(key);
            return Ok(ApplyOutcome::AlreadyApplied);
        }
        let changed = || {
            // A slot was given back since the counter answered (its hand-off was
            // refused), or the counter lost it: nothing to promise; applying again
            // tells what holds now.
            Error::unavailable(
                "issuer",
                format!(
                    "user {user}'s admission to campaign {} changed while answering",
                    campaign.id
                ),
                None,
            )
        };
        let held = self.hand_off.counter.slots_of(campaign, user).await?;
        let stored: HashSet<TicketId> = coupons.iter().map(|coupon| coupon.ticket_id).collect();
        let waiting: Vec<HeldSlot> = held
            .iter()
            .filter(|slot| !stored.contains(&TicketId::for_admission(campaign.id, user, slot.slot)))
            .copied()
            .collect();
        // Claimed, a slot is never given back (a hand-off of it refused at this very
        // moment keeps it): its ticket may be published from the store from now on.
        let claimed = self
            .hand_off
            .counter
            .claim(campaign, &waiting, Duration::ZERO)
            .await?;
        // Every slot the user may hold must be a coupon or claimed now; one missing was
        // released or lost since the counter answered, and `Pending` would promise it.
        if claimed.len() < waiting.len()
            || coupons.len() + claimed.len() < campaign.per_user_limit as usize
        {
            return Err(changed());
        }
        let tickets: Vec<IssueTicket> = claimed
            .iter()
            .map(|slot| IssueTicket::for_slot(campaign.id, slot))
            .collect();
        self.hand_off.record_pending(&tickets).await?;
        Ok(ApplyOutcome::Pending)
    }
}
