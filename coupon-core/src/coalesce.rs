//! One read for many concurrent questions, each answered by a read sent after it was
//! asked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// How long a caller waits for a read another caller sent before it sends one itself
/// (that caller may have gone away without announcing).
const TAKE_OVER_AFTER: Duration = Duration::from_millis(50);

/// Shares reads of one value between concurrent callers, under one rule: a caller's
/// answer comes from a read *sent after the caller asked*, so an answer never predates
/// the question (what a confirmation needs: "is it still so, now?"). One read is in
/// flight at a time; every caller that asked before it was sent takes its answer, the
/// others wait for the next. Under a flood of questions that is one read per round trip,
/// not one per question.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use coupon_core::Coalesced;
/// let held = Coalesced::<bool>::new();
/// assert!(held.ask(|| async { true }).await);
/// # }
/// ```
#[derive(Debug)]
pub struct Coalesced<T> {
    /// Reads sent so far.
    sent: AtomicU64,
    /// Held by the caller sending a read.
    sending: tokio::sync::Mutex<()>,
    /// The last read that answered: its number and what it found.
    answered: watch::Sender<(u64, Option<T>)>,
}

impl<T: Clone + Send + Sync> Default for Coalesced<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Send + Sync> Coalesced<T> {
    /// No read made yet.
    pub fn new() -> Self {
        Self {
            sent: AtomicU64::new(0),
            sending: tokio::sync::Mutex::new(()),
            answered: watch::channel((0, None)).0,
        }
    }

    /// The answer of a read sent after this call began; `read` performs one, when it is
    /// this caller's turn to.
    pub async fn ask<F, Fut>(&self, read: F) -> T
    where
        F: Fn() -> Fut,
        Fut: Future<Output = T>,
    {
        // Any read numbered above this one is sent after this point, so it answers us.
        let needed = self.sent.load(Ordering::Acquire) + 1;
        let mut answered = self.answered.subscribe();
        loop {
            {
                let last = answered.borrow_and_update();
                if last.0 >= needed
                    && let Some(answer) = &last.1
                {
                    return answer.clone();
                }
            }
            if let Ok(sending) = self.sending.try_lock() {
                let number = self.sent.fetch_add(1, Ordering::AcqRel) + 1;
                let answer = read().await;
                // Free the turn before announcing, so that whoever wakes can take it.
                drop(sending);
                self.answered.send_replace((number, Some(answer.clone())));
                if number >= needed {
                    return answer;
                }
                continue;
            }
            let _ = tokio::time::timeout(TAKE_OVER_AFTER, answered.changed()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_questions_share_reads_sent_after_them() {
        let shared = Arc::new(Coalesced::<u32>::new());
        let reads = Arc::new(AtomicUsize::new(0));
        let mut asking = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let (shared, reads) = (shared.clone(), reads.clone());
            asking.spawn(async move {
                shared
                    .ask(|| {
                        let reads = reads.clone();
                        async move {
                            reads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            3
                        }
                    })
                    .await
            });
        }
        while let Some(answer) = asking.join_next().await {
            assert_eq!(answer.expect("task"), 3);
        }
        let reads = reads.load(Ordering::SeqCst);
        assert!((1..200).contains(&reads), "{reads} reads for 200 questions");
    }

    #[tokio::test]
    async fn a_later_question_is_not_answered_by_an_earlier_read() {
        let shared = Coalesced::<u32>::new();
        assert_eq!(shared.ask(|| async { 1 }).await, 1);
        assert_eq!(shared.ask(|| async { 2 }).await, 2);
    }
}
