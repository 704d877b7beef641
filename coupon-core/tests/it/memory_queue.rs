//! Behaviour of the in-process queue beyond the shared conformance suite.

use std::time::Duration;

use coupon_core::memory::MemoryQueue;
use coupon_core::{CampaignId, Error, IssueQueue, IssueSource, IssueTicket, UserId};

fn ticket(user: u64) -> IssueTicket {
    IssueTicket::new(CampaignId(1), UserId(user), 1, user)
}

#[tokio::test]
async fn full_queue_refuses_definitely_after_the_send_timeout() {
    let queue = MemoryQueue::with_send_timeout(2, Duration::from_millis(20));
    queue.publish(&ticket(1)).await.unwrap();
    queue.publish(&ticket(2)).await.unwrap();
    let error = queue.publish(&ticket(3)).await.unwrap_err();
    assert!(matches!(error, Error::PublishRefused { .. }), "{error:?}");
    assert_eq!(queue.lag(), 2);
}

#[tokio::test]
async fn closed_queue_refuses_then_drains_then_ends() {
    let queue = MemoryQueue::new(10);
    queue.publish(&ticket(1)).await.unwrap();
    queue.close();
    assert!(matches!(
        queue.publish(&ticket(2)).await,
        Err(Error::PublishRefused { .. })
    ));
    let batch = queue
        .next_batch(10)
        .await
        .unwrap()
        .expect("the queued ticket");
    assert_eq!(batch.tickets[0].user, UserId(1));
    queue.ack(batch).await.unwrap();
    assert!(queue.next_batch(10).await.unwrap().is_none());
}

#[tokio::test]
async fn aborted_consumer_gives_its_batch_back_in_order() {
    let queue = MemoryQueue::new(10);
    for user in 1..=5 {
        queue.publish(&ticket(user)).await.unwrap();
    }
    let first = queue.next_batch(3).await.unwrap().unwrap();
    assert_eq!(first.len(), 3);
    drop(first);
    let again = queue.next_batch(10).await.unwrap().unwrap();
    let users: Vec<u64> = again.tickets.iter().map(|t| t.user.get()).collect();
    assert_eq!(users, vec![1, 2, 3]);
    queue.ack(again).await.unwrap();
    let rest = queue.next_batch(10).await.unwrap().unwrap();
    assert_eq!(rest.len(), 2);
    queue.ack(rest).await.unwrap();
    assert_eq!(queue.lag(), 0);
}

#[tokio::test]
async fn waiting_consumer_wakes_for_a_redelivered_batch() {
    let queue = MemoryQueue::new(10);
    queue.publish(&ticket(1)).await.unwrap();
    let batch = queue.next_batch(10).await.unwrap().unwrap();
    let waiting = tokio::spawn({
        let queue = queue.clone();
        async move { queue.next_batch(10).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(batch);
    let redelivered = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(redelivered.tickets[0].user, UserId(1));
}
