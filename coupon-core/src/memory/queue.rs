use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};

use super::lock;
use crate::{Batch, Error, IssueQueue, IssueSource, IssueTicket, Result};

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
            Ok(Ok(())) => Ok(()),
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
            let first = tokio::select! {
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
                receipt.unacked = None;
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
