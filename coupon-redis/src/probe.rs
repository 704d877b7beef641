//! Epoch probes: whether a campaign's counter still admits in an epoch, one read per
//! group of concurrent questions about a campaign.
//!
//! The issuer asks after each publish a queue acknowledged, so under load thousands ask
//! at once. An answer is valid for a question only if its read was sent after the
//! question was asked (a read sent before may predate the loss the question is about),
//! so each question waits for the next read of its campaign, and one read in flight per
//! campaign answers everyone who asked before it was sent: the pattern of the `WAIT`s in
//! [`confirm`](crate::confirm).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use coupon_core::CampaignId;
use tokio::sync::watch;

/// What one read found: whether the campaign is built on the server the read reached,
/// and its epoch there; `None` when the read failed.
pub(crate) type Reading = Option<(bool, Option<u64>)>;

/// The reads of one campaign.
struct Probe {
    /// Reads sent so far.
    sent: AtomicU64,
    /// Held by the caller sending a read.
    sending: tokio::sync::Mutex<()>,
    /// The last read that answered: its number and what it found.
    answered: watch::Sender<(u64, Reading)>,
}

/// The probes of every campaign asked about.
#[derive(Default)]
pub(crate) struct Probes {
    campaigns: Mutex<HashMap<CampaignId, Arc<Probe>>>,
}

impl Probes {
    fn probe(&self, campaign: CampaignId) -> Arc<Probe> {
        let mut campaigns = self.campaigns.lock().unwrap_or_else(|e| e.into_inner());
        campaigns
            .entry(campaign)
            .or_insert_with(|| {
                Arc::new(Probe {
                    sent: AtomicU64::new(0),
                    sending: tokio::sync::Mutex::new(()),
                    answered: watch::channel((0, None)).0,
                })
            })
            .clone()
    }

    /// What a read of `campaign` sent after this call began found; `read` performs one.
    pub(crate) async fn ask<F, Fut>(&self, campaign: CampaignId, read: F) -> Reading
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Reading>,
    {
        let probe = self.probe(campaign);
        // Any read numbered above this one is sent after this point, so it answers us.
        let needed = probe.sent.load(Ordering::Acquire) + 1;
        let mut answered = probe.answered.subscribe();
        loop {
            let (last, reading) = *answered.borrow_and_update();
            if last >= needed {
                return reading;
            }
            if let Ok(sending) = probe.sending.try_lock() {
                let number = probe.sent.fetch_add(1, Ordering::AcqRel) + 1;
                let reading = read().await;
                // Free the turn before announcing, so that whoever wakes can take it.
                drop(sending);
                probe.answered.send_replace((number, reading));
                if number >= needed {
                    return reading;
                }
                continue;
            }
            // The sender's caller may go away before announcing (its future dropped):
            // then take the turn after a while rather than wait for ever.
            let waited =
                tokio::time::timeout(std::time::Duration::from_millis(50), answered.changed())
                    .await;
            if let Ok(Err(_)) = waited {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_questions_share_reads_sent_after_them() {
        let probes = Arc::new(Probes::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let mut asking = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let (probes, reads) = (probes.clone(), reads.clone());
            asking.spawn(async move {
                probes
                    .ask(CampaignId(1), || {
                        let reads = reads.clone();
                        async move {
                            reads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            Some((true, Some(3)))
                        }
                    })
                    .await
            });
        }
        while let Some(answer) = asking.join_next().await {
            assert_eq!(answer.expect("task"), Some((true, Some(3))));
        }
        let reads = reads.load(Ordering::SeqCst);
        assert!((1..200).contains(&reads), "{reads} reads for 200 questions");
    }

    #[tokio::test]
    async fn a_question_is_answered_by_a_read_sent_after_it() {
        let probes = Probes::default();
        let first = probes
            .ask(CampaignId(1), || async { Some((true, Some(1))) })
            .await;
        assert_eq!(first, Some((true, Some(1))));
        // The earlier read's answer is not reused for a later question.
        let second = probes
            .ask(CampaignId(1), || async { Some((false, None)) })
            .await;
        assert_eq!(second, Some((false, None)));
    }
}
