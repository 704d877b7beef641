//! The tickets the store recorded as pending (their applicants heard `Pending`),
//! published again whether or not the counter still remembers their admissions.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use chrono::Utc;

use super::{SettleReport, Settler};
use crate::sync::lock;
use crate::{Campaign, IssueTicket, Result, TicketId};

impl Settler {
    /// Publishes again the recorded pending tickets of `campaign` older than the grace
    /// period (each at most once per grace period from this settler; a duplicate is
    /// harmless), after forgetting those whose coupon exists. Returns the ids of every
    /// recorded ticket still without a coupon: the counter's pass leaves them alone.
    pub(super) async fn settle_recorded(
        &self,
        campaign: &Campaign,
        report: &mut SettleReport,
    ) -> Result<HashSet<TicketId>> {
        self.store.forget_settled_pending(campaign.id).await?;
        let pending = self.store.pending_tickets(campaign.id).await?;
        let now = Utc::now();
        let grace = chrono::Duration::from_std(self.config.grace).unwrap_or(chrono::Duration::MAX);
        let due: Vec<&IssueTicket> = {
            let mut published = lock(&self.recorded_published);
            let published = published.entry(campaign.id).or_default();
            // Forget the tickets settled since.
            let ids: HashSet<TicketId> = pending.iter().map(|ticket| ticket.ticket_id).collect();
            published.retain(|id, _| ids.contains(id));
            pending
                .iter()
                .filter(|ticket| now - ticket.admitted_at >= grace)
                .filter(|ticket| {
                    published
                        .get(&ticket.ticket_id)
                        .is_none_or(|&at| now - at >= grace)
                })
                .collect()
        };
        let stale = pending
            .iter()
            .filter(|ticket| now - ticket.admitted_at >= grace);
        report.unsettled += stale.clone().count() as u64;
        report.oldest_unsettled_ms = stale
            .filter_map(|ticket| (now - ticket.admitted_at).to_std().ok())
            .max()
            .map(|age| age.as_millis() as u64)
            .max(report.oldest_unsettled_ms);
        let deadline = tokio::time::Instant::now() + self.config.publish_timeout;
        for ticket in due {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            lock(&self.recorded_published)
                .entry(campaign.id)
                .or_default()
                .insert(ticket.ticket_id, now);
            match crate::queue::publish_by(self.queue.as_ref(), ticket, deadline, "settler").await {
                Ok(()) => {
                    report.republished += 1;
                    self.republished.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(campaign = %campaign.id, user = %ticket.user, ticket = %ticket.ticket_id, "published a recorded pending ticket again");
                }
                Err(error) => {
                    tracing::warn!(campaign = %campaign.id, ticket = %ticket.ticket_id, %error, "could not publish a recorded pending ticket again");
                }
            }
        }
        Ok(pending.iter().map(|ticket| ticket.ticket_id).collect())
    }
}
