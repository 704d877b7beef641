//! Shared set-up for the benchmarks in `benches/benches/`.

use std::sync::Arc;

use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
use coupon_core::{Campaign, CouponIssuer, CouponStore, NewCampaign};

/// An issuer on the memory adapters with one campaign of `cap` coupons.
///
/// The queue is large enough for every admitted ticket, so `apply` never waits for a
/// consumer; the figures are the cost of our layer alone.
pub async fn memory_issuer(cap: u64) -> (CouponIssuer, Campaign) {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(cap.clamp(1, 1 << 22) as usize));
    let issuer = CouponIssuer::new(Arc::new(MemoryCounter::new()), queue, store.clone());
    let campaign = store
        .create_campaign(NewCampaign::new("bench", cap))
        .await
        .expect("a valid campaign");
    (issuer, campaign)
}
