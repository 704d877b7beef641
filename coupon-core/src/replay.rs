//! Replaying dead letters: publishing again the tickets the store refused, once the
//! cause is fixed.

use chrono::Utc;
use serde::Serialize;

use crate::{CampaignId, CouponStore, IssueQueue, Result, TicketId};

/// What [`replay_failures`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Tickets published again, now marked replayed.
    pub replayed: Vec<TicketId>,
    /// Tickets that could not be published now, with the error; still open.
    pub failed: Vec<(TicketId, String)>,
}

/// Publishes again the ticket of every open failure record of `campaign` (every
/// campaign when `None`), or only of `tickets` when that is not empty, and marks them
/// replayed. A ticket that fails again is recorded again by the worker (and reopened).
///
/// Safe to repeat: a ticket whose coupon exists by now is a duplicate the store ignores.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
/// use coupon_core::memory::{MemoryQueue, MemoryStore};
/// use coupon_core::{replay_failures, CouponStore, FailureLedger, IssueFailure, IssueTicket, NewCampaign, UserId};
///
/// let (store, queue) = (MemoryStore::new(), MemoryQueue::new(16));
/// let campaign = store.create_campaign(NewCampaign::new("drop", 10)).await?;
/// let ticket = IssueTicket::new(campaign.id, UserId(7), 1, 1);
/// store.record_failure(&IssueFailure::new(ticket.clone(), "constraint broken", 1)).await?;
///
/// let report = replay_failures(&store, &queue, Some(campaign.id), &[]).await?;
/// assert_eq!(report.replayed, vec![ticket.ticket_id]);
/// assert!(!store.failures(Some(campaign.id)).await?[0].is_open());
/// # Ok(()) }
/// ```
pub async fn replay_failures(
    store: &dyn CouponStore,
    queue: &dyn IssueQueue,
    campaign: Option<CampaignId>,
    tickets: &[TicketId],
) -> Result<ReplayReport> {
    let mut report = ReplayReport::default();
    // Taken before publishing: a ticket that fails again meanwhile stays open.
    let at = Utc::now();
    for failure in store.failures(campaign).await? {
        let id = failure.ticket.ticket_id;
        if !failure.is_open() || (!tickets.is_empty() && !tickets.contains(&id)) {
            continue;
        }
        match queue.publish(&failure.ticket).await {
            Ok(()) => report.replayed.push(id),
            Err(error) => report.failed.push((id, error.to_string())),
        }
    }
    if !report.replayed.is_empty() {
        store.mark_replayed(&report.replayed, at).await?;
        tracing::info!(replayed = report.replayed.len(), "replayed dead letters");
    }
    Ok(report)
}
