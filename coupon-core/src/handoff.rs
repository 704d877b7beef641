//! The hand-off of one admission: publish its ticket, confirm the epoch it was admitted
//! in, and answer; or give the slot back on a definite refusal; or record it as pending.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::unanswered::Unanswered;
use crate::{
    ApplyOutcome, Campaign, CouponCounter, CouponStore, Error, IssueQueue, IssueTicket, Release,
    Result,
};

/// The ports a hand-off needs, shared with the task that finishes an abandoned one.
pub(crate) struct HandOff {
    pub(crate) counter: Arc<dyn CouponCounter>,
    pub(crate) queue: Arc<dyn IssueQueue>,
    /// Where a ticket whose publish has no known outcome is recorded before `Pending`.
    pub(crate) store: Arc<dyn CouponStore>,
    pub(crate) publish_timeout: Duration,
    /// Admissions taken here whose applicant heard no yes (an error, a caller gone):
    /// the sold-out flag does not answer them.
    pub(crate) unanswered: Unanswered,
}

impl HandOff {
    /// Publishes by `deadline`: the admission's time plus the publish timeout.
    async fn publish(&self, ticket: &IssueTicket, deadline: tokio::time::Instant) -> Result<()> {
        crate::queue::publish_by(self.queue.as_ref(), ticket, deadline, "issuer").await
    }

    /// Publishes the ticket of a slot just granted; on a definite refusal gives the slot
    /// back (setting `releasing` first), on anything else keeps it for the settler.
    pub(crate) async fn run(
        &self,
        campaign: &Campaign,
        ticket: &IssueTicket,
        releasing: &AtomicBool,
        deadline: tokio::time::Instant,
    ) -> Result<ApplyOutcome> {
        let error = match self.publish(ticket, deadline).await {
            Ok(()) => return self.confirm(campaign, ticket).await,
            // Only a definite refusal proves the ticket exists nowhere; any other failure
            // might have stored it, and releasing then could let cap + 1 tickets exist.
            Err(error @ Error::PublishRefused { .. }) => error,
            Err(error) => return self.keep_pending(ticket, error).await,
        };
        releasing.store(true, Ordering::Relaxed);
        match self.counter.release(campaign, &ticket.held_slot()).await {
            Ok(Release::Released | Release::NotHeld) => Err(Error::NotHandedOff {
                campaign: ticket.campaign,
                user: ticket.user,
                source: Box::new(error),
            }),
            // Claimed meanwhile (by a settler, or a repeated apply answering pending):
            // its ticket may be published from now on, so it is pending, and recorded.
            Ok(Release::Settling) => self.keep_pending(ticket, error).await,
            // The release may or may not have run: the slot is either free or held
            // without a ticket (which the settler will publish). Neither is a promise
            // yet, so the caller hears a retryable error; applying again tells which.
            Err(release_error) => {
                tracing::warn!(campaign = %ticket.campaign, user = %ticket.user, %error, %release_error, "hand-off refused and giving the slot back failed");
                Err(release_error)
            }
        }
    }

    /// The queue acknowledged `ticket`: `Accepted`, once it is sure no rebuild has
    /// superseded the ticket's epoch without counting it. A queue kept in the store
    /// proves that by acknowledging; any other is confirmed against the counter, and
    /// when the counter cannot confirm (it was closed for a rebuild, or lost its memory),
    /// the ticket is recorded as pending in the store, which refuses it if a seal
    /// superseded it.
    async fn confirm(&self, campaign: &Campaign, ticket: &IssueTicket) -> Result<ApplyOutcome> {
        let accepted = ApplyOutcome::Accepted {
            rank: ticket.rank,
            ticket_id: ticket.ticket_id,
        };
        if ticket.epoch == 0 || self.queue.in_store() {
            return Ok(accepted);
        }
        let unconfirmed = match self.counter.confirm_epoch(campaign, ticket.epoch).await {
            Ok(true) => return Ok(accepted),
            Ok(false) => Error::NotReady {
                campaign: ticket.campaign,
                backend: "counter",
            },
            Err(error) => error,
        };
        self.keep_pending(ticket, unconfirmed).await
    }

    /// The publish of `ticket` has no known outcome (or its epoch could not be
    /// confirmed): records the ticket in the store before answering `Pending`, so that
    /// the admission outlives the counter (every later epoch seal counts it, and the
    /// settler publishes it from the store). When the store refuses it (a rebuild
    /// superseded its epoch, or it was dead-lettered) the caller hears that, and when the
    /// store cannot take it the publish's error (retryable; the slot stays held for the
    /// settler): `Pending` is a promise only once it is durable.
    pub(crate) async fn keep_pending(
        &self,
        ticket: &IssueTicket,
        error: Error,
    ) -> Result<ApplyOutcome> {
        match self.record_pending(std::slice::from_ref(ticket)).await {
            Ok(()) => {
                tracing::warn!(campaign = %ticket.campaign, user = %ticket.user, ticket = %ticket.ticket_id, %error, "hand-off not confirmed; ticket recorded as pending, the settler will roll it forward");
                Ok(ApplyOutcome::Pending)
            }
            Err(refused @ (Error::Superseded { .. } | Error::TicketRefused { .. })) => {
                tracing::info!(campaign = %ticket.campaign, user = %ticket.user, ticket = %ticket.ticket_id, %error, %refused, "hand-off not confirmed and its ticket refused by the store: nothing promised");
                Err(refused)
            }
            Err(record_error) => {
                tracing::warn!(campaign = %ticket.campaign, user = %ticket.user, ticket = %ticket.ticket_id, %error, %record_error, "hand-off not confirmed and the pending ticket not recorded; the settler will roll the slot forward");
                Err(error)
            }
        }
    }

    /// Records `tickets` as pending, all within one publish timeout, so that no caller
    /// waits on the store for ever.
    pub(crate) async fn record_pending(&self, tickets: &[IssueTicket]) -> Result<()> {
        let record_all = async {
            for ticket in tickets {
                self.store.record_pending(ticket).await?;
            }
            Ok(())
        };
        tokio::time::timeout(self.publish_timeout, record_all)
            .await
            .unwrap_or_else(|_| {
                Err(Error::outcome_unknown(
                    "issuer",
                    format!("recording {} pending ticket(s) timed out", tickets.len()),
                    None,
                ))
            })
    }

    /// Publishes the ticket of an admission whose caller went away mid-publish. Never
    /// releases: the first publish may still be on its way (a broker client keeps a
    /// message it queued), so a failure here leaves the slot to the settler.
    async fn finish_abandoned(&self, ticket: &IssueTicket, deadline: tokio::time::Instant) {
        match self.publish(ticket, deadline).await {
            Ok(()) => tracing::debug!(ticket = %ticket.ticket_id, "finished an abandoned hand-off"),
            Err(error) => {
                tracing::warn!(ticket = %ticket.ticket_id, %error, "abandoned hand-off failed; the settler will roll it forward");
            }
        }
    }
}

/// Finishes the hand-off of a granted slot whose `apply` future was dropped mid-publish:
/// on a task of its own, so that no admission waits for the settler's grace period only
/// because its caller went away.
pub(crate) struct AbandonGuard<'a> {
    pub(crate) hand_off: &'a Arc<HandOff>,
    pub(crate) ticket: Option<&'a IssueTicket>,
    /// Set once the publish was refused and the release began: from then on nothing
    /// may publish the ticket again (the slot may already be free for someone else).
    pub(crate) releasing: &'a AtomicBool,
    /// When every publish of this admission must have ended.
    pub(crate) deadline: tokio::time::Instant,
}

impl AbandonGuard<'_> {
    pub(crate) fn disarm(mut self) {
        self.ticket = None;
    }
}

impl Drop for AbandonGuard<'_> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        self.hand_off.unanswered.note(ticket.campaign, ticket.user);
        if self.releasing.load(Ordering::Relaxed) {
            // Released or not, nobody heard yes: a slot still held without a ticket is
            // the settler's to publish, a free one is free.
            return;
        }
        // Without a runtime (the caller's own runtime is shutting down) the settler
        // publishes the ticket after its grace period instead.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let hand_off = self.hand_off.clone();
        let ticket = ticket.clone();
        let deadline = self.deadline;
        runtime.spawn(async move { hand_off.finish_abandoned(&ticket, deadline).await });
    }
}
