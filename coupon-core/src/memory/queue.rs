use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};

use super::lock;
use crate::{Batch, Error, IssueQueue, IssueSource, IssueTicket, QueueMark, Result};

const BACKEND: &str = "memory queue";

/// An in-process hand-off over a bounded tokio channel: [`IssueQueue`] and
/// [`IssueSource`] in one value, shared behind an `Arc`.
///
/// - Back-pressure: `publish` waits while the channel is full, up to the send timeout,
///   and then answers [`Error::PublishRefused`] (the ticket was not enqueued).
/// - At least once: a delivered batch that is dropped without being acked (a worker
///   task aborted mid-batch) goes back to the front of the queue.
/// - [`close`](MemoryQueue::close) refuses new tickets; the source then drains what is
///   queued and answers `None`.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    sender: RwLock<Option<mpsc::Sender<IssueTicket>>>,
    receiver: tokio::sync::Mutex<mpsc::Receiver<IssueTicket>>,
    redelivery: Mutex<VecDeque<IssueTicket>>,
    redelivered: Notify,
    send_timeout: Duration,
    capacity: usize,
    /// Tickets enqueued, and tickets acked (each at most once: a redelivered ticket is
    /// acked only in the batch that carries it last), for [`IssueQueue::drained`].
    published: AtomicU64,
    acked: AtomicU64,
}

/// Travels inside a [`Batch`]; gives its tickets back to the queue unless acked.
struct Receipt {
    shared: Arc<Shared>,
    unacked: Option<Vec<IssueTicket>>,
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if let Some(tickets) = self.unacked.take() {
            let mut redelivery = lock(&self.shared.redelivery);
            for ticket in tickets.into_iter().rev() {
                redelivery.push_front(ticket);
            }
            drop(redelivery);
            self.shared.redelivered.notify_one();
        }
    }
}

impl MemoryQueue {
    /// A queue holding at most `capacity` tickets (at least 1), with a 5 s send timeout.
    pub fn new(capacity: usize) -> Self {
        Self::with_send_timeout(capacity, Duration::from_secs(5))
    }

    /// A queue whose `publish` gives up after `send_timeout` while full.
    pub fn with_send_timeout(capacity: usize, send_timeout: Duration) -> Self {
        let capacity = capacity.max(1);
        let (sender, receiver) = mpsc::channel(capacity);
        Self {
            shared: Arc::new(Shared {
                sender: RwLock::new(Some(sender)),
                receiver: tokio::sync::Mutex::new(receiver),
                redelivery: Mutex::new(VecDeque::new()),
                redelivered: Notify::new(),
                send_timeout,
                capacity,
                published: AtomicU64::new(0),
                acked: AtomicU64::new(0),
            }),
        }
    }

    /// Refuses further tickets; the source drains what is queued, then answers `None`.
    pub fn close(&self) {
        self.shared
            .sender
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Tickets waiting for a consumer (the queue lag).
    pub fn lag(&self) -> usize {
        let queued = self
            .shared
            .sender
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |sender| self.shared.capacity - sender.capacity());
        queued + lock(&self.shared.redelivery).len()
    }

    fn take_redelivery(&self, max: usize) -> Vec<IssueTicket> {
        let mut redelivery = lock(&self.shared.redelivery);
        let n = max.min(redelivery.len());
        redelivery.drain(..n).collect()
    }

    fn batch(&self, tickets: Vec<IssueTicket>) -> Batch {
        let receipt = Receipt {
            shared: self.shared.clone(),
            unacked: Some(tickets.clone()),
        };
        Batch::new(tickets, receipt)
    }
}

#[async_trait]
impl IssueQueue for MemoryQueue {
    async fn ready(&self) -> Result<()> {
        let open = self
            .shared
            .sender
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if open {
            Ok(())
        } else {
            Err(Error::Closed { what: BACKEND })
        }
    }

    async fn publish(&self, ticket: &IssueTicket) -> Result<()> {
        let sender = self
            .shared
            .sender
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(sender) = sender else {
            return Err(Error::PublishRefused {
                backend: BACKEND,
                source: "the queue is closed".into(),
            });
        };
        // `send` enqueues nothing if it is cancelled, so a timeout is a definite refusal.
        match tokio::time::timeout(self.shared.send_timeout, sender.send(ticket.clone())).await {
            Ok(Ok(())) => {
                self.shared.published.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
            Ok(Err(_)) => Err(Error::PublishRefused {
                backend: BACKEND,
                source: "the consumer side is gone".into(),
            }),
            Err(_) => Err(Error::PublishRefused {
                backend: BACKEND,
                source: format!("queue full for {:?}", self.shared.send_timeout).into(),
            }),
        }
    }

    /// The number of tickets enqueued so far.
    async fn mark(&self) -> Result<Option<QueueMark>> {
        let published = self.shared.published.load(Ordering::Acquire);
        Ok(Some(QueueMark {
            positions: vec![i64::try_from(published).unwrap_or(i64::MAX)],
        }))
    }

    /// Every ticket enqueued so far is acked (stronger than the mark asks, and exact:
    /// the queue cannot tell which ones an ack covered, only how many).
    async fn drained(&self, _mark: &QueueMark) -> Result<bool> {
        let acked = self.shared.acked.load(Ordering::Acquire);
        Ok(acked >= self.shared.published.load(Ordering::Acquire))
    }
}

#[async_trait]
impl IssueSource for MemoryQueue {
    async fn next_batch(&self, max: usize) -> Result<Option<Batch>> {
        let max = max.max(1);
        loop {
            let redelivered = self.take_redelivery(max);
            if !redelivered.is_empty() {
                return Ok(Some(self.batch(redelivered)));
            }
            let mut receiver = self.shared.receiver.lock().await;
            // Both branches are cancel-safe; nothing is taken off the channel unless
            // `recv` completes, and the rest of the batch is taken without awaiting.
            // Biased, so that a seeded simulation replays exactly.
            let first = tokio::select! {
                biased;
                first = receiver.recv() => first,
                () = self.shared.redelivered.notified() => continue,
            };
            let Some(first) = first else {
                drop(receiver);
                let redelivered = self.take_redelivery(max);
                return Ok((!redelivered.is_empty()).then(|| self.batch(redelivered)));
            };
            let mut tickets = Vec::with_capacity(max.min(1024));
            tickets.push(first);
            while tickets.len() < max {
                match receiver.try_recv() {
                    Ok(ticket) => tickets.push(ticket),
                    Err(_) => break,
                }
            }
            return Ok(Some(self.batch(tickets)));
        }
    }

    async fn ack(&self, batch: Batch) -> Result<()> {
        match batch.into_receipt::<Receipt>() {
            Ok(mut receipt) => {
                let done = receipt.unacked.take().map_or(0, |tickets| tickets.len());
                self.shared.acked.fetch_add(done as u64, Ordering::AcqRel);
                Ok(())
            }
            Err(_) => Err(Error::backend(
                BACKEND,
                "ack of a batch this queue did not deliver",
                None,
            )),
        }
    }

    async fn lag(&self) -> Result<Option<u64>> {
        Ok(Some(MemoryQueue::lag(self) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CampaignId, UserId};

    /// Drained once every ticket enqueued is acked; a batch dropped unacked does not
    /// count, and neither does a ticket enqueued after the mark while it waits.
    #[tokio::test]
    async fn drained_only_once_everything_enqueued_is_acked() {
        let queue = MemoryQueue::new(16);
        for user in 1..=3 {
            let ticket = IssueTicket::new(CampaignId(1), UserId(user), 1, user);
            queue.publish(&ticket).await.expect("publish");
        }
        let mark = queue.mark().await.expect("mark").expect("a mark");
        assert!(!queue.drained(&mark).await.expect("drained"));
        let dropped = queue.next_batch(10).await.expect("batch").expect("tickets");
        drop(dropped);
        assert!(
            !queue.drained(&mark).await.expect("drained"),
            "dropped, not acked"
        );
        let batch = queue.next_batch(10).await.expect("batch").expect("tickets");
        assert_eq!(batch.len(), 3);
        queue.ack(batch).await.expect("ack");
        assert!(queue.drained(&mark).await.expect("drained"));
    }
}
