//! Which offset of each partition may be committed: the first one not yet done.

use std::collections::{BTreeMap, HashMap};

/// Tracks delivered messages per partition until they are done (every ticket of the
/// message persisted or dead-lettered). Batches may be acked out of order, may hold part
/// of a message's tickets, and may be redelivered; the committable offset never passes
/// a message with a ticket not done, so a commit never skips one.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    /// Per partition, per offset: which of the message's tickets are done.
    partitions: HashMap<i32, BTreeMap<i64, Vec<bool>>>,
}

impl OffsetTracker {
    /// A message of `tickets` tickets (at least one is counted) was received.
    pub(crate) fn delivered(&mut self, partition: i32, offset: i64, tickets: usize) {
        self.partitions
            .entry(partition)
            .or_default()
            .entry(offset)
            .or_insert_with(|| vec![false; tickets.max(1)]);
    }

    /// The message's ticket at `index` is done.
    pub(crate) fn done(&mut self, partition: i32, offset: i64, index: usize) {
        if let Some(done) = self
            .partitions
            .get_mut(&partition)
            .and_then(|offsets| offsets.get_mut(&offset))
            .and_then(|tickets| tickets.get_mut(index))
        {
            *done = true;
        }
    }

    /// The whole message is done (parked unread on the dead-letter topic).
    pub(crate) fn done_all(&mut self, partition: i32, offset: i64) {
        if let Some(tickets) = self
            .partitions
            .get_mut(&partition)
            .and_then(|offsets| offsets.get_mut(&offset))
        {
            tickets.fill(true);
        }
    }

    /// Forgets a partition this consumer no longer owns.
    pub(crate) fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// For each partition with a done prefix: the offset to commit (the next one to
    /// read), which is the first offset not done, or one past the last done.
    pub(crate) fn committable(&self) -> Vec<(i32, i64)> {
        let mut commits = Vec::new();
        for (&partition, offsets) in &self.partitions {
            let mut next = None;
            for (&offset, tickets) in offsets {
                if !tickets.iter().all(|&done| done) {
                    break;
                }
                next = Some(offset + 1);
            }
            if let Some(next) = next {
                commits.push((partition, next));
            }
        }
        commits.sort_unstable();
        commits
    }

    /// Drops the messages of `partition` before `next`, all done: committing `next` is
    /// now the [`Commits`](crate::commit::Commits)' to do, retries included.
    pub(crate) fn release(&mut self, partition: i32, next: i64) {
        if let Some(offsets) = self.partitions.get_mut(&partition) {
            *offsets = offsets.split_off(&next);
            if offsets.is_empty() {
                self.partitions.remove(&partition);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_a_done_prefix() {
        let mut tracker = OffsetTracker::default();
        for offset in 0..5 {
            tracker.delivered(0, offset, 1);
        }
        tracker.done(0, 3, 0);
        tracker.done(0, 4, 0);
        assert_eq!(tracker.committable(), vec![], "0..=2 are still in flight");
        tracker.done(0, 0, 0);
        tracker.done(0, 1, 0);
        assert_eq!(tracker.committable(), vec![(0, 2)]);
        tracker.done(0, 2, 0);
        assert_eq!(tracker.committable(), vec![(0, 5)]);
        tracker.release(0, 5);
        assert_eq!(tracker.committable(), vec![]);
    }

    #[test]
    fn partitions_are_independent_and_forgettable() {
        let mut tracker = OffsetTracker::default();
        tracker.delivered(0, 10, 1);
        tracker.delivered(1, 20, 1);
        tracker.delivered(1, 21, 1);
        tracker.done(0, 10, 0);
        tracker.done(1, 21, 0);
        assert_eq!(tracker.committable(), vec![(0, 11)]);
        tracker.forget(1);
        tracker.done(1, 20, 0);
        assert_eq!(tracker.committable(), vec![(0, 11)]);
    }

    #[test]
    fn redelivery_of_a_done_offset_keeps_it_done() {
        let mut tracker = OffsetTracker::default();
        tracker.delivered(0, 0, 1);
        tracker.done(0, 0, 0);
        tracker.delivered(0, 0, 1);
        assert_eq!(tracker.committable(), vec![(0, 1)]);
    }

    #[test]
    fn a_message_of_several_tickets_is_done_only_when_all_are() {
        let mut tracker = OffsetTracker::default();
        tracker.delivered(0, 0, 3);
        tracker.delivered(0, 1, 1);
        tracker.done(0, 1, 0);
        tracker.done(0, 0, 2);
        tracker.done(0, 0, 0);
        assert_eq!(
            tracker.committable(),
            vec![],
            "ticket 1 of offset 0 is not done"
        );
        tracker.done(0, 0, 0); // a redelivered ticket done again changes nothing
        assert_eq!(tracker.committable(), vec![]);
        tracker.done(0, 0, 1);
        assert_eq!(tracker.committable(), vec![(0, 2)]);
        tracker.delivered(0, 2, 4);
        tracker.done_all(0, 2);
        assert_eq!(tracker.committable(), vec![(0, 3)]);
    }
}
