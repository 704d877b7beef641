//! Committing offsets: which commit to send and when, one at a time, each answer read,
//! a failed one sent again.
//!
//! A commit can fail (the group's coordinator away longer than librdkafka waits for it,
//! a rebalance under way). When no message follows, no later commit covers the failed
//! one, and the queue would never count as drained, so a counter rebuild waiting on it
//! would wait for good (issue 24). Hence every commit's answer is read, and a failed
//! commit is sent again after [`RETRY_AFTER`], with or without new messages.
//!
//! The answer of an asynchronous commit would come to
//! `ConsumerContext::commit_callback`, which rust-rdkafka 0.39 never calls for
//! `CommitMode::Async` (fede1024/rust-rdkafka#856). So a [`Committer`] thread sends each
//! commit synchronously: `ack` does not wait for it, and its answer is read when it
//! returns.

use std::collections::HashMap;
use std::sync::Weak;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::context::{Context, SharedState, State, lock};
use crate::error::classify;

/// How long after a failed commit the next one is sent: soon enough for a rebuild
/// waiting on the queue to go ahead, rare enough not to press a coordinator that is away.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Which offsets this consumer wants committed, which the coordinator confirmed, and
/// the commit in flight.
///
/// At most one commit is in flight: an earlier commit retried after a later one
/// succeeded would move the group's offset back, below what this consumer believes
/// committed. Offsets done meanwhile go in the next commit, sent once the answer is in.
#[derive(Debug, Default)]
pub(crate) struct Commits {
    /// Per partition: the offset to commit (every message before it is done).
    wanted: HashMap<i32, i64>,
    /// Per partition: the highest offset the coordinator confirmed to this consumer.
    confirmed: HashMap<i32, i64>,
    /// The commit sent and not answered, less the partitions forgotten since.
    in_flight: Option<Vec<(i32, i64)>>,
    /// No commit before this, after a failure.
    retry_at: Option<Instant>,
}

impl Commits {
    /// Every message of `partition` before `next` is done.
    pub(crate) fn want(&mut self, partition: i32, next: i64) {
        let wanted = self.wanted.entry(partition).or_insert(next);
        *wanted = (*wanted).max(next);
    }

    /// Forgets a partition this consumer no longer owns: nothing more is committed for
    /// it, and what the answer of a commit in flight says of it is not kept.
    pub(crate) fn forget(&mut self, partition: i32) {
        self.wanted.remove(&partition);
        self.confirmed.remove(&partition);
        if let Some(offsets) = &mut self.in_flight {
            offsets.retain(|&(p, _)| p != partition);
        }
    }

    /// Partitions whose wanted offset is not confirmed, in order.
    fn unconfirmed(&self) -> Vec<(i32, i64)> {
        let mut offsets: Vec<(i32, i64)> = self
            .wanted
            .iter()
            .filter(|&(partition, &next)| self.confirmed.get(partition) < Some(&next))
            .map(|(&partition, &next)| (partition, next))
            .collect();
        offsets.sort_unstable();
        offsets
    }

    /// Whether [`Commits::start`] would send something at `now`.
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.in_flight.is_none()
            && self.retry_at.is_none_or(|at| now >= at)
            && !self.unconfirmed().is_empty()
    }

    /// The commit to send now, recorded as in flight: every unconfirmed partition that
    /// `assigned` owns. Empty while a commit is in flight or a failure's pause lasts.
    pub(crate) fn start(
        &mut self,
        now: Instant,
        assigned: impl Fn(i32) -> bool,
    ) -> Vec<(i32, i64)> {
        if !self.due(now) {
            return Vec::new();
        }
        self.retry_at = None;
        let (offsets, held): (Vec<_>, Vec<_>) = self
            .unconfirmed()
            .into_iter()
            .partition(|&(partition, _)| assigned(partition));
        if !held.is_empty() {
            // Not assigned now (a rebalance under way): its revoke forgets it, or it is
            // sent later; the pause keeps an idle consumer from looping on it.
            self.retry_at = Some(now + RETRY_AFTER);
        }
        if !offsets.is_empty() {
            self.in_flight = Some(offsets.clone());
        }
        offsets
    }

    /// No commit for [`RETRY_AFTER`]: the one due could not be sent.
    pub(crate) fn pause(&mut self, now: Instant) {
        self.retry_at = Some(now + RETRY_AFTER);
    }

    /// The commit in flight was answered: `committed`, or it failed (or could not be
    /// sent), and after [`RETRY_AFTER`] what it held is due again.
    pub(crate) fn answered(&mut self, committed: bool, now: Instant) {
        let offsets = self.in_flight.take().unwrap_or_default();
        if !committed {
            self.retry_at = Some(now + RETRY_AFTER);
            return;
        }
        for (partition, offset) in offsets {
            let confirmed = self.confirmed.entry(partition).or_insert(offset);
            *confirmed = (*confirmed).max(offset);
        }
    }

    /// When a commit falls due without anything new happening: now, or when a failure's
    /// pause ends. `None` while a commit is in flight (its answer comes first) and when
    /// everything wanted is confirmed (an ack makes the next one due).
    pub(crate) fn wake_at(&self, now: Instant) -> Option<Instant> {
        if self.in_flight.is_some() || self.unconfirmed().is_empty() {
            return None;
        }
        Some(self.retry_at.unwrap_or(now).max(now))
    }
}

/// Commits for one consumer, on a thread of its own: woken by [`Committer::kick`] (an
/// ack, a dead-lettered message) and by its own retry timer, so that a failed commit is
/// sent again whether or not the worker polls or acks anything more. A thread, not a
/// task: a commit may block for a session timeout, and no runtime should wait for it
/// at shutdown. It ends once the source is dropped (after a commit it is sending).
pub(crate) struct Committer {
    kick: SyncSender<()>,
}

impl Committer {
    /// Starts the thread. It holds the consumer only while it commits, so that dropping
    /// the source closes the consumer, which leaves the group.
    pub(crate) fn start(
        consumer: Weak<StreamConsumer<Context>>,
        topic: String,
        state: SharedState,
    ) -> std::io::Result<Self> {
        // One kick waiting is enough: the thread reads everything done when it wakes.
        let (kick, kicked) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("firstcome-commit".into())
            .spawn(move || run(&consumer, &topic, &state, &kicked))?;
        Ok(Self { kick })
    }

    /// Offsets may have become committable.
    pub(crate) fn kick(&self) {
        // Full: a kick is already waiting, which covers this one.
        let _ = self.kick.try_send(());
    }
}

fn run(
    consumer: &Weak<StreamConsumer<Context>>,
    topic: &str,
    state: &SharedState,
    kicked: &Receiver<()>,
) {
    loop {
        let now = Instant::now();
        let wake = {
            let mut state = lock(state);
            let State {
                offsets, commits, ..
            } = &mut *state;
            for (partition, next) in offsets.committable() {
                commits.want(partition, next);
                offsets.release(partition, next);
            }
            commits.wake_at(now)
        };
        let waited = match wake {
            None => kicked.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at) if at > now => kicked.recv_timeout(at - now),
            Some(_) => Err(RecvTimeoutError::Timeout),
        };
        match waited {
            Ok(()) => continue,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return, // the source is gone
        }
        let Some(consumer) = consumer.upgrade() else {
            return;
        };
        attempt(&consumer, topic, state);
    }
}

/// Sends the commit that is due, if any, for the partitions still assigned, and records
/// its answer. Blocking: a synchronous commit returns once librdkafka has the answer,
/// which it always gives (it holds a commit at most a session timeout for an absent
/// coordinator, and each request at most `socket.timeout.ms`).
fn attempt(consumer: &StreamConsumer<Context>, topic: &str, state: &SharedState) {
    if !lock(state).commits.due(Instant::now()) {
        return;
    }
    // Read before taking the lock: the rebalance callback takes it too.
    let assigned = match consumer.assignment() {
        Ok(assigned) => assigned,
        Err(error) => {
            let error = classify(error, || "reading the assignment".into());
            tracing::warn!(%error, "commit postponed");
            lock(state).commits.pause(Instant::now());
            return;
        }
    };
    let offsets = lock(state).commits.start(Instant::now(), |partition| {
        assigned.find_partition(topic, partition).is_some()
    });
    if offsets.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    let result = offsets
        .iter()
        .try_for_each(|&(partition, next)| {
            list.add_partition_offset(topic, partition, Offset::Offset(next))
        })
        .and_then(|()| consumer.commit(&list, CommitMode::Sync));
    if let Err(error) = result.clone() {
        let error = classify(error, || format!("committing {offsets:?} on {topic:?}"));
        tracing::warn!(%error, "commit failed; it is sent again in {RETRY_AFTER:?}");
    }
    lock(state).commits.answered(result.is_ok(), Instant::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: i32) -> bool {
        true
    }

    #[test]
    fn one_commit_in_flight_and_the_rest_after_its_answer() {
        let now = Instant::now();
        let mut commits = Commits::default();
        commits.want(0, 5);
        commits.want(1, 3);
        assert_eq!(commits.start(now, all), vec![(0, 5), (1, 3)]);
        commits.want(0, 9);
        assert_eq!(commits.start(now, all), vec![], "one commit at a time");
        assert_eq!(commits.wake_at(now), None, "the answer comes first");
        commits.answered(true, now);
        assert_eq!(
            commits.wake_at(now),
            Some(now),
            "offset 9 of partition 0 waits"
        );
        assert_eq!(commits.start(now, all), vec![(0, 9)]);
        commits.answered(true, now);
        assert_eq!(
            (commits.start(now, all), commits.wake_at(now)),
            (vec![], None)
        );
    }

    #[test]
    fn a_failed_commit_is_sent_again_after_a_pause() {
        let now = Instant::now();
        let mut commits = Commits::default();
        commits.want(0, 5);
        commits.want(1, 7);
        assert_eq!(commits.start(now, all), vec![(0, 5), (1, 7)]);
        commits.answered(false, now);
        assert_eq!(commits.wake_at(now), Some(now + RETRY_AFTER));
        assert_eq!(commits.start(now, all), vec![], "paused");
        let later = now + RETRY_AFTER;
        assert_eq!(commits.start(later, all), vec![(0, 5), (1, 7)]);
        commits.answered(true, later);
        assert_eq!(commits.wake_at(later), None);
    }

    #[test]
    fn offsets_done_during_a_failed_commit_go_with_its_retry() {
        let now = Instant::now();
        let mut commits = Commits::default();
        commits.want(0, 5);
        assert_eq!(commits.start(now, all), vec![(0, 5)]);
        commits.want(0, 8);
        commits.want(2, 1);
        commits.answered(false, now);
        assert_eq!(commits.start(now + RETRY_AFTER, all), vec![(0, 8), (2, 1)]);
    }

    #[test]
    fn a_forgotten_partition_is_neither_committed_nor_believed() {
        let now = Instant::now();
        let mut commits = Commits::default();
        commits.want(0, 5);
        commits.want(1, 8);
        assert_eq!(commits.start(now, all), vec![(0, 5), (1, 8)]);
        commits.forget(1);
        commits.answered(true, now);
        assert_eq!(commits.wake_at(now), None);
        // Assigned again, from an offset the next owner committed: not taken as
        // confirmed from the answer that came after the revoke.
        commits.want(1, 2);
        assert_eq!(commits.start(now, all), vec![(1, 2)]);
    }

    #[test]
    fn an_unassigned_partition_waits_without_holding_up_the_others() {
        let now = Instant::now();
        let mut commits = Commits::default();
        commits.want(0, 5);
        commits.want(1, 8);
        assert_eq!(commits.start(now, |p| p == 0), vec![(0, 5)]);
        commits.answered(true, now);
        assert_eq!(commits.wake_at(now), Some(now + RETRY_AFTER));
        assert_eq!(commits.start(now, all), vec![], "paused");
        assert_eq!(commits.start(now + RETRY_AFTER, all), vec![(1, 8)]);
    }

    #[test]
    fn nothing_assigned_pauses_without_a_commit_in_flight() {
        let now = Instant::now();
        let mut commits = Commits::default();
        commits.want(0, 5);
        assert_eq!(commits.start(now, |_| false), vec![]);
        assert_eq!(commits.wake_at(now), Some(now + RETRY_AFTER));
        assert_eq!(commits.start(now + RETRY_AFTER, all), vec![(0, 5)]);
    }

    #[test]
    fn a_commit_that_could_not_be_sent_waits_out_the_pause() {
        let now = Instant::now();
        let mut commits = Commits::default();
        commits.want(0, 5);
        commits.pause(now);
        assert_eq!(commits.wake_at(now), Some(now + RETRY_AFTER));
        assert_eq!(commits.start(now, all), vec![]);
        assert_eq!(commits.start(now + RETRY_AFTER, all), vec![(0, 5)]);
    }

    #[test]
    fn the_wanted_offset_never_moves_back() {
        let now = Instant::now();
        let mut commits = Commits::default();
        commits.want(0, 9);
        commits.want(0, 4);
        assert_eq!(commits.start(now, all), vec![(0, 9)]);
        commits.answered(true, now);
        commits.want(0, 6);
        assert_eq!(commits.wake_at(now), None, "6 is below what is confirmed");
    }
}
