//! The core queue/source conformance scenarios on the harness broker.

use crate::support;

use std::sync::Arc;

use coupon_core::IssueSource;
use coupon_kafka::{KafkaIssueQueue, KafkaIssueSource};
use coupon_testkit::queue;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_delivers_every_published_ticket() {
    let config = support::config(3);
    let producer = Arc::new(
        KafkaIssueQueue::connect(config.clone())
            .await
            .expect("producer"),
    );
    let consumer = Arc::new(KafkaIssueSource::connect(config).await.expect("consumer"));
    queue::delivers_every_published_ticket(producer, consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_redelivers_unacked_tickets_to_the_next_group_member() {
    let config = support::config(3);
    let producer = Arc::new(
        KafkaIssueQueue::connect(config.clone())
            .await
            .expect("producer"),
    );
    let consumer = Arc::new(
        KafkaIssueSource::connect(config.clone())
            .await
            .expect("consumer"),
    );
    queue::unacked_batches_are_redelivered(producer, consumer, |old| async move {
        // The old member leaves without committing; a new one joins the same group.
        drop(old);
        let next: Arc<dyn IssueSource> =
            Arc::new(KafkaIssueSource::connect(config).await.expect("consumer"));
        next
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_is_drained_past_a_mark_once_the_group_committed_it() {
    let config = support::config(3);
    let producer = Arc::new(
        KafkaIssueQueue::connect(config.clone())
            .await
            .expect("producer"),
    );
    let consumer = Arc::new(KafkaIssueSource::connect(config).await.expect("consumer"));
    queue::drained_only_once_every_ticket_before_the_mark_is_acked(producer, consumer).await;
}
