//! What the consumer holds between calls, and the librdkafka callbacks that change it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use coupon_core::IssueTicket;
use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};

use crate::commit::Commits;
use crate::offsets::OffsetTracker;

/// A message taken off the topic and not yet handed out or dead-lettered.
#[derive(Clone)]
pub(crate) enum Pending {
    Ticket {
        partition: i32,
        offset: i64,
        /// Its place in the message's group.
        index: usize,
        ticket: IssueTicket,
    },
    Malformed {
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        reason: String,
    },
}

impl Pending {
    pub(crate) fn partition(&self) -> i32 {
        match self {
            Pending::Ticket { partition, .. } | Pending::Malformed { partition, .. } => *partition,
        }
    }
}

/// What the consumer holds between calls, shared with the rebalance callback.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) buffer: VecDeque<Pending>,
    /// Tickets of batches dropped without an ack, to hand out again first.
    pub(crate) redelivery: VecDeque<Pending>,
    pub(crate) offsets: OffsetTracker,
    pub(crate) commits: Commits,
}

pub(crate) type SharedState = Arc<Mutex<State>>;

pub(crate) fn lock(state: &SharedState) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Drops what this consumer held of partitions taken away by a rebalance: their new
/// owner starts from the last committed offset, and commits for them would be refused.
///
/// Commits are not answered here: rust-rdkafka 0.39 never calls
/// `ConsumerContext::commit_callback` for a `CommitMode::Async` commit (it passes
/// librdkafka no reply queue; fede1024/rust-rdkafka#856), so the
/// [`Committer`](crate::commit::Committer) commits synchronously on a thread of its own
/// and reads each answer there.
pub(crate) struct Context {
    pub(crate) state: SharedState,
    pub(crate) revoked: Arc<AtomicU64>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &TopicPartitionList| -> Vec<i32> {
            list.elements().iter().map(|e| e.partition()).collect()
        };
        match rebalance {
            Rebalance::Assign(assigned) => {
                tracing::info!(partitions = ?partitions(assigned), "partitions assigned to this worker");
            }
            Rebalance::Revoke(revoked) => {
                tracing::info!(partitions = ?partitions(revoked), "partitions revoked from this worker");
                self.revoked
                    .fetch_add(revoked.count() as u64, Ordering::Relaxed);
                let mut state = lock(&self.state);
                for element in revoked.elements() {
                    let partition = element.partition();
                    state.offsets.forget(partition);
                    state.commits.forget(partition);
                    state.buffer.retain(|p| p.partition() != partition);
                    state.redelivery.retain(|p| p.partition() != partition);
                }
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}
