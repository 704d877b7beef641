//! What the issuer costs on the embedded default, beside the bare counter it wraps.
//!
//! `cargo bench -p firstcome-benches --bench apply_memory`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use coupon_core::memory::MemoryCounter;
use coupon_core::{CouponCounter, UserId};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use firstcome_benches::memory_service;

// Never reached: every measured apply of the accepted case is admitted.
const CAP: u64 = i64::MAX as u64;

fn apply(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut group = c.benchmark_group("apply_memory");
    group.throughput(Throughput::Elements(1));

    let counter = Arc::new(MemoryCounter::new());
    let (issuer, campaign) = runtime.block_on(memory_service(CAP));
    let next_user = AtomicU64::new(0);
    group.bench_function("baseline: MemoryCounter::try_acquire", |b| {
        b.to_async(&runtime).iter(|| {
            let user = UserId(next_user.fetch_add(1, Ordering::Relaxed));
            let (counter, campaign) = (counter.clone(), &campaign);
            async move { counter.try_acquire(campaign, user).await }
        });
    });
    let next_user = AtomicU64::new(0);
    group.bench_function("CouponService::apply accepted", |b| {
        b.to_async(&runtime).iter(|| {
            let user = UserId(next_user.fetch_add(1, Ordering::Relaxed));
            let issuer = &issuer;
            async move { issuer.apply(campaign.id, user).await }
        });
    });

    let (sold_out_issuer, small) = runtime.block_on(memory_service(1));
    let next_user = AtomicU64::new(0);
    group.bench_function("CouponService::apply sold out (memo)", |b| {
        b.to_async(&runtime).iter(|| {
            let user = UserId(next_user.fetch_add(1, Ordering::Relaxed));
            let issuer = &sold_out_issuer;
            async move { issuer.apply(small.id, user).await }
        });
    });
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
