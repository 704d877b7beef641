//! Scenarios for an [`IssueQueue`] / [`IssueSource`] pair over one channel or topic.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::fresh_campaign;
use coupon_core::{Batch, IssueQueue, IssueSource, IssueTicket, TicketId, UserId};

/// How long a scenario waits for tickets before it declares them lost.
const PATIENCE: Duration = Duration::from_secs(60);

/// Publishes `count` tickets of a fresh campaign from concurrent tasks; returns their ids.
async fn publish_many(queue: Arc<dyn IssueQueue>, count: u64) -> HashSet<TicketId> {
    let campaign = fresh_campaign(count);
    let mut tasks = JoinSet::new();
    for user in 1..=count {
        let queue = queue.clone();
        tasks.spawn(async move {
            let ticket = IssueTicket::new(campaign.id, UserId(user), 1, user);
            queue.publish(&ticket).await.map(|()| ticket.ticket_id)
        });
    }
    let mut ids = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        ids.insert(joined.expect("task panicked").expect("publish failed"));
    }
    ids
}

/// Consumes until `expected` tickets were seen. Acks each batch when `ack` is set;
/// otherwise returns the batches still held, so that none is given back before the
/// caller drops them.
async fn consume(
    source: &dyn IssueSource,
    expected: usize,
    ack: bool,
) -> (Vec<TicketId>, Vec<Batch>) {
    let mut seen = Vec::new();
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.len() < expected {
        let next = tokio::time::timeout_at(deadline, source.next_batch(100)).await;
        let batch = next
            .unwrap_or_else(|_| panic!("only {} of {expected} tickets arrived", seen.len()))
            .expect("next_batch failed")
            .expect("source closed early");
        assert!(
            batch.len() <= 100,
            "batch larger than asked: {}",
            batch.len()
        );
        seen.extend(batch.tickets.iter().map(|t| t.ticket_id));
        if ack {
            source.ack(batch).await.expect("ack failed");
        } else {
            held.push(batch);
        }
    }
    (seen, held)
}

/// Asserts that `seen` holds each of `published` exactly once.
fn assert_once_each(seen: &[TicketId], published: &HashSet<TicketId>) {
    let distinct: HashSet<TicketId> = seen.iter().copied().collect();
    assert_eq!(seen.len(), distinct.len(), "a ticket was delivered twice");
    assert_eq!(distinct.len(), published.len(), "delivered count");
    assert!(
        distinct == *published,
        "delivered tickets differ from published ones"
    );
}

/// 1,000 concurrent publishes are all delivered, once each, in batches of at most 100.
pub async fn delivers_every_published_ticket(
    queue: Arc<dyn IssueQueue>,
    source: Arc<dyn IssueSource>,
) {
    let published = publish_many(queue, 1_000).await;
    assert_eq!(published.len(), 1_000);
    let (seen, _) = consume(source.as_ref(), 1_000, true).await;
    assert_once_each(&seen, &published);
}

/// Tickets of batches that were never acked come again from `reopen(source)` (the same
/// source for in-process queues, a new group member for brokers).
pub async fn unacked_batches_are_redelivered<F, Fut>(
    queue: Arc<dyn IssueQueue>,
    source: Arc<dyn IssueSource>,
    reopen: F,
) where
    F: FnOnce(Arc<dyn IssueSource>) -> Fut,
    Fut: Future<Output = Arc<dyn IssueSource>>,
{
    let published = publish_many(queue, 200).await;
    let (first_pass, held) = consume(source.as_ref(), 200, false).await;
    assert_once_each(&first_pass, &published);
    // The consumer dies holding its batches, none acked.
    drop(held);
    let source = reopen(source).await;
    let (second_pass, _) = consume(source.as_ref(), 200, true).await;
    assert_once_each(&second_pass, &published);
}

/// For a queue that can tell ([`IssueQueue::mark`] is `Some`): the queue is drained
/// past a mark only once every ticket published before it was consumed and acked, and
/// tickets published after the mark do not hold it back. What a counter rebuild waits
/// for before trusting the store. A queue that reads its unacked tickets
/// ([`IssueQueue::unacked`]) answers exactly those published before the mark and not
/// acked yet, taken or not, and none once all are acked.
pub async fn drained_only_once_every_ticket_before_the_mark_is_acked(
    queue: Arc<dyn IssueQueue>,
    source: Arc<dyn IssueSource>,
) {
    let before = publish_many(queue.clone(), 30).await;
    let mark = queue
        .mark()
        .await
        .expect("mark failed")
        .expect("this queue can tell its position");
    assert!(
        !queue.drained(&mark).await.expect("drained failed"),
        "drained with 30 tickets waiting"
    );
    assert_unacked(queue.as_ref(), &mark, &before, "30 tickets waiting").await;
    let (seen, held) = consume(source.as_ref(), before.len(), false).await;
    assert_once_each(&seen, &before);
    assert!(
        !queue.drained(&mark).await.expect("drained failed"),
        "drained with 30 tickets taken but not acked"
    );
    let after = publish_many(queue.clone(), 5).await;
    // Taken but not acked, they are still the queue's; those after the mark are not
    // counted against it.
    assert_unacked(queue.as_ref(), &mark, &before, "30 taken, 5 after the mark").await;
    for batch in held {
        source.ack(batch).await.expect("ack failed");
    }
    // A queue may record acks asynchronously (Kafka commits offsets): allow it time.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !queue.drained(&mark).await.expect("drained failed") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not drained once everything before the mark was acked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_unacked(queue.as_ref(), &mark, &HashSet::new(), "every ticket acked").await;
    let (rest, _) = consume(source.as_ref(), after.len(), true).await;
    assert_once_each(&rest, &after);
}

/// What [`IssueQueue::unacked`] answers before `mark` is exactly `expected`, for a
/// queue that can read it (a queue that cannot answers `None`).
async fn assert_unacked(
    queue: &dyn IssueQueue,
    mark: &coupon_core::QueueMark,
    expected: &HashSet<TicketId>,
    when: &str,
) {
    let Some(unacked) = queue.unacked(mark).await.expect("unacked failed") else {
        return;
    };
    let ids: Vec<TicketId> = unacked.iter().map(|ticket| ticket.ticket_id).collect();
    let distinct: HashSet<TicketId> = ids.iter().copied().collect();
    assert_eq!(ids.len(), distinct.len(), "{when}: a ticket read twice");
    assert!(
        distinct == *expected,
        "{when}: {} unacked read, {} expected; missing {:?}, extra {:?}",
        distinct.len(),
        expected.len(),
        expected.difference(&distinct).next(),
        distinct.difference(expected).next()
    );
}
