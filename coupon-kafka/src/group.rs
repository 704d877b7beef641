//! Many tickets in one record. The apply path's tickets for one partition gather while
//! that partition's earlier records are in flight and leave together, so librdkafka,
//! the broker and the consumer handle one record where they would handle hundreds.
//!
//! Each partition has a lane: a task that takes the tickets waiting for it, up to the
//! largest group, queues them as one record, and answers every waiting publish with the
//! record's delivery report. At most [`IN_FLIGHT`] records of a lane are in flight; a
//! lane with all of them out keeps gathering, which is what makes groups large exactly
//! when the load is.

use std::sync::Arc;

use coupon_core::IssueTicket;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::codec;
use crate::producer::ReplaceableProducer;

/// Records in flight per partition. librdkafka's idempotent producer sends a partition
/// nothing new while five of its messages are in flight (the broker's de-duplication
/// window); with a record per ticket, one request of five or more tickets blocked its
/// partition until answered, and the broker thread, its next batch ready, polled in a
/// loop meanwhile. Four records never reach that limit.
const IN_FLIGHT: usize = 4;

/// Tickets that may wait in one lane; past it a publish is refused at once (as when
/// librdkafka's own queue is full), so the issuer gives the slot back.
const LANE_CAPACITY: usize = 50_000;

/// A ticket waiting for its lane, and the publish waiting for its report.
struct Waiting {
    ticket: IssueTicket,
    report: oneshot::Sender<Result<(), KafkaError>>,
}

/// The lanes of the ticket topic, one per partition.
pub(crate) struct Lanes {
    lanes: Vec<mpsc::Sender<Waiting>>,
}

impl Lanes {
    /// Starts one lane per partition on the current runtime; each sends records of at
    /// most `max_group` tickets. The lanes end once `Lanes` is dropped and what waits in
    /// them is sent.
    pub(crate) fn start(
        producer: &Arc<ReplaceableProducer>,
        partitions: i32,
        max_group: usize,
    ) -> Self {
        let lanes = (0..partitions.max(1))
            .map(|partition| {
                let (sender, waiting) = mpsc::channel(LANE_CAPACITY);
                tokio::spawn(lane(producer.clone(), partition, waiting, max_group.max(1)));
                sender
            })
            .collect();
        Self { lanes }
    }

    /// Whether every lane still runs (a lane stops only with its runtime, or by a bug).
    pub(crate) fn running(&self) -> bool {
        self.lanes.iter().all(|lane| !lane.is_closed())
    }

    /// Publishes `ticket` in its partition's next record and waits for that record's
    /// delivery report. A ticket whose publish is dropped before its record was queued
    /// is never sent.
    pub(crate) async fn publish(&self, ticket: &IssueTicket) -> Result<(), KafkaError> {
        let partitions = i32::try_from(self.lanes.len()).unwrap_or(i32::MAX);
        let lane = usize::try_from(codec::partition(ticket, partitions)).unwrap_or(0);
        let (report, reported) = oneshot::channel();
        let waiting = Waiting {
            ticket: ticket.clone(),
            report,
        };
        // A full or stopped lane never had the ticket: a definite refusal.
        self.lanes[lane].try_send(waiting).map_err(|error| {
            if matches!(error, mpsc::error::TrySendError::Closed(_)) {
                tracing::error!(
                    lane,
                    "a partition's lane has stopped; its tickets are refused"
                );
            }
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
        })?;
        // A lane that stopped after queueing the record leaves its outcome unknown.
        reported.await.unwrap_or(Err(KafkaError::Canceled))
    }
}

/// One partition's lane: gathers, sends, reports.
async fn lane(
    producer: Arc<ReplaceableProducer>,
    partition: i32,
    mut waiting: mpsc::Receiver<Waiting>,
    max_group: usize,
) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        // While every record of this lane is out, tickets gather behind this one.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut group = Vec::with_capacity(max_group.min(256));
        group.push(first);
        while group.len() < max_group {
            match waiting.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        // A publish that stopped waiting (its deadline passed, or its caller went away
        // and a new publish took over) must not land later than it would have: its
        // ticket is left out, which the issuer treats as not sent. (So a ticket is
        // queued by its publish deadline, as when it was queued at the publish's start,
        // up to how late the deadline's timer fires: the counter rebuild's grace keeps
        // a second for that.)
        group.retain(|waiting| !waiting.report.is_closed());
        if group.is_empty() {
            continue;
        }
        let (tickets, reports): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|waiting| (waiting.ticket, waiting.report))
            .unzip();
        match producer.enqueue(partition, &codec::encode_group(&tickets)) {
            Ok(delivery) => {
                tokio::spawn(async move {
                    let result = delivery.await;
                    drop(permit);
                    for report in reports {
                        let _ = report.send(result.clone());
                    }
                });
            }
            Err(error) => {
                for report in reports {
                    let _ = report.send(Err(error.clone()));
                }
            }
        }
    }
}
