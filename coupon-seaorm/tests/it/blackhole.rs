//! The store behind a network that swallows the database's answers (a partition that
//! leaves connections open): each call gives up at the operation timeout with a
//! retryable error instead of waiting forever, and once the network passes again the
//! store works on fresh connections, the swallowed batch applied at most once.

use std::time::{Duration, Instant};

use coupon_core::{CouponStore, IssueTicket, NewCampaign, UserId};
use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig};
use coupon_testkit::proxy::{FaultProxy, ProxyMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swallowed_answers_time_out_and_the_store_recovers() {
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let (proxy, through_proxy) = FaultProxy::in_front_of(&database).await;
    let store = SeaOrmStore::connect(
        SeaOrmStoreConfig::new(&through_proxy)
            .with_max_connections(1)
            .with_operation_timeout(Duration::from_secs(1)),
    )
    .await
    .expect("connect through the proxy");
    let campaign = store
        .create_campaign(NewCampaign::new("blackhole", 10))
        .await
        .expect("campaign");
    let ticket = IssueTicket::new(campaign.id, UserId(1), 1, 1);

    // A slow network first, so that the batch's transaction is mid-way (connection
    // acquired and checked, statements in flight) when the answers stop coming.
    proxy.set(ProxyMode::DelayAnswers(Duration::from_millis(300)));
    let began = Instant::now();
    let patience = Duration::from_secs(10);
    let write = tokio::spawn({
        let (store, ticket) = (store.clone(), ticket.clone());
        async move {
            tokio::time::timeout(patience, store.issue_batch(std::slice::from_ref(&ticket))).await
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.set(ProxyMode::SwallowAnswers);
    let write = write
        .await
        .expect("the write's task")
        .expect("the write must give up on its own, not wait for the answer forever");
    let error = write.expect_err("a write whose answer was swallowed cannot succeed");
    assert!(error.is_outcome_unknown(), "{error}");
    let read = tokio::time::timeout(patience, store.issued_count(campaign.id))
        .await
        .expect("the read must give up on its own");
    assert!(read.as_ref().is_err_and(|e| e.is_retryable()), "{read:?}");
    assert!(began.elapsed() < patience, "{:?}", began.elapsed());

    proxy.set(ProxyMode::Pass);
    // The pool may still hold a connection whose answer was swallowed: a call on it
    // times out once and closes it; within a few tries every call succeeds.
    let mut outcome = None;
    for _ in 0..5 {
        if let Ok(done) = store.issue_batch(std::slice::from_ref(&ticket)).await {
            outcome = Some(done);
            break;
        }
    }
    assert!(
        outcome.is_some(),
        "the store did not recover once the network passed"
    );
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 1);
}
