//! One batch through the store: persisted (split in halves to find the tickets a
//! permanent error is about), refusals recorded, then acked.

use std::collections::VecDeque;
use std::ops::Range;

use super::{IssueWorker, Stop, Stopped, WorkerReport};
use crate::{Batch, Error, IssueFailure, IssueOutcome, IssueTicket};

/// What became of one ticket of a batch.
enum Settled {
    Stored(IssueOutcome),
    /// The store refused this ticket alone with a permanent error.
    Refused(Error),
}

impl IssueWorker {
    /// [`process`](Self::process), giving up (batch unacked, `Err(None)`) when `stop`
    /// fires while it waits to retry.
    pub(super) async fn process_until(
        &self,
        batch: Batch,
        stop: &mut Stop<'_>,
    ) -> std::result::Result<WorkerReport, Option<Error>> {
        let mut report = WorkerReport {
            batches: 1,
            ..WorkerReport::default()
        };
        let settled = self
            .persist(&batch.tickets, &mut report, stop)
            .await
            .map_err(|Stopped| None)?;
        for (ticket, settled) in batch.tickets.iter().zip(settled) {
            let dead_letter = match settled {
                Settled::Stored(IssueOutcome::Issued(_)) => {
                    report.issued += 1;
                    continue;
                }
                Settled::Stored(IssueOutcome::Duplicate) => {
                    report.duplicates += 1;
                    continue;
                }
                Settled::Stored(IssueOutcome::Superseded) => {
                    tracing::info!(campaign = %ticket.campaign, user = %ticket.user, ticket = %ticket.ticket_id, epoch = ticket.epoch, "ticket of a superseded counter epoch refused: its admission was never promised");
                    report.superseded += 1;
                    continue;
                }
                Settled::Stored(IssueOutcome::OverCap) => {
                    // The store held the cap against an admission the counter made: the
                    // counter lost data. Someone was told yes and gets nothing; keep a
                    // trace for operators.
                    tracing::error!(campaign = %ticket.campaign, user = %ticket.user, "ticket over cap refused by the store");
                    let failure =
                        IssueFailure::new(ticket.clone(), "over cap: the store refused it", 1);
                    self.record(&failure, &mut report, stop)
                        .await
                        .map_err(|Stopped| None)?;
                    report.over_cap += 1;
                    continue;
                }
                Settled::Stored(IssueOutcome::UnknownCampaign) => "unknown campaign".to_owned(),
                Settled::Refused(error) => error.to_string(),
            };
            tracing::error!(campaign = %ticket.campaign, user = %ticket.user, ticket = %ticket.ticket_id, reason = %dead_letter, "dead-lettering a ticket the store refused");
            let failure = IssueFailure::new(ticket.clone(), dead_letter.clone(), 1);
            self.record(&failure, &mut report, stop)
                .await
                .map_err(|Stopped| None)?;
            self.retrying(&mut report, stop, "dead_letter", || {
                self.source.dead_letter(ticket, &dead_letter)
            })
            .await
            .map_err(|Stopped| None)?;
            report.dead_lettered += 1;
        }
        self.source.ack(batch).await.map_err(Some)?;
        Ok(report)
    }

    /// Stores `tickets`, answering what became of each, in order. Retryable failures
    /// are retried; a permanent one splits its range in halves, down to single tickets.
    async fn persist(
        &self,
        tickets: &[IssueTicket],
        report: &mut WorkerReport,
        stop: &mut Stop<'_>,
    ) -> std::result::Result<Vec<Settled>, Stopped> {
        let mut settled: Vec<Option<Settled>> = tickets.iter().map(|_| None).collect();
        let mut ranges: VecDeque<Range<usize>> = VecDeque::new();
        ranges.push_back(0..tickets.len());
        while let Some(range) = ranges.pop_front() {
            let mut attempt = 0;
            let error = loop {
                let part = &tickets[range.clone()];
                match self.store.issue_batch(part).await {
                    Ok(outcomes) if outcomes.len() == part.len() => {
                        for (slot, outcome) in settled[range.clone()].iter_mut().zip(outcomes) {
                            *slot = Some(Settled::Stored(outcome));
                        }
                        break None;
                    }
                    Ok(outcomes) => {
                        break Some(Error::backend(
                            "store",
                            format!(
                                "issue_batch answered {} outcomes for {} tickets",
                                outcomes.len(),
                                part.len()
                            ),
                            None,
                        ));
                    }
                    Err(error) if error.is_retryable() => {
                        attempt += 1;
                        report.retries += 1;
                        tracing::warn!(%error, attempt, tickets = part.len(), "issue_batch failed, retrying");
                        self.wait(attempt, stop).await?;
                    }
                    Err(error) => break Some(error),
                }
            };
            let Some(error) = error else { continue };
            if range.len() == 1 {
                settled[range.start] = Some(Settled::Refused(error));
            } else {
                tracing::warn!(%error, tickets = range.len(), "issue_batch failed for good; splitting the batch to find the ticket to blame");
                let middle = range.start + range.len() / 2;
                ranges.push_front(middle..range.end);
                ranges.push_front(range.start..middle);
            }
        }
        Ok(settled
            .into_iter()
            .map(|settled| {
                settled.unwrap_or_else(|| {
                    Settled::Refused(Error::backend("worker", "ticket left unsettled", None))
                })
            })
            .collect())
    }
}
