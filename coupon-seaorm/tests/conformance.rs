//! The core store conformance suite on every backend.

mod support;

use std::sync::Arc;

use coupon_core::testkit::store;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_memory_conformance() {
    store::all(Arc::new(support::sqlite_memory().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_conformance() {
    store::all(Arc::new(support::sqlite_file().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conformance() {
    store::all(Arc::new(support::postgres().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_conformance() {
    store::all(Arc::new(support::mysql().await)).await;
}
