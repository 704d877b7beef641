//! Shared set-up for the benchmarks in `benches/benches/`.

use std::sync::Arc;

use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
use coupon_core::{Campaign, CouponService, IssueSource, NewCampaign};
use coupon_seaorm::SeaOrmStore;
use sea_orm::{ConnectionTrait, DbBackend};

/// The service on the memory adapters with one campaign of `cap` coupons, and a task
/// that consumes and acks every ticket so that `apply` never waits on a full queue.
///
/// Must be called inside a tokio runtime (the drain task is spawned on it). The figures
/// are then the cost of our layer alone.
pub async fn memory_service(cap: u64) -> (CouponService, Campaign) {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(65_536));
    let drain = queue.clone();
    tokio::spawn(async move {
        while let Ok(Some(batch)) = drain.next_batch(4_096).await {
            if drain.ack(batch).await.is_err() {
                break;
            }
        }
    });
    let service = CouponService::new(Arc::new(MemoryCounter::new()), queue, store.clone());
    let campaign = service
        .create_campaign(NewCampaign::new("bench", cap))
        .await
        .expect("a valid campaign");
    (service, campaign)
}

/// Refreshes PostgreSQL's statistics of `coupon`, as autovacuum does on a live
/// database, so that each measured run starts from the same planner knowledge; a no-op
/// on other backends.
pub async fn analyze(store: &SeaOrmStore) {
    let db = store.connection();
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared("ANALYZE coupon")
            .await
            .expect("ANALYZE");
    }
}
