//! The core conformance suite on the harness Redis.

mod support;

use std::sync::Arc;

use coupon_core::testkit::counter;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_counter_conformance() {
    let counter = Arc::new(support::shared_counter().await);
    counter::all(counter.clone()).await;
    counter::per_user_limit_above_one(counter).await;
}
