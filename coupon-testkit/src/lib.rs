//! What firstcome's tests, benchmarks and fault tools share: the conformance suite every
//! adapter runs against its own instance (with macros that make one test of each
//! scenario), the pipeline scenario, fault injectors (a TCP fault proxy, the seeded
//! fault simulation), the harness of private services ([`services`], through
//! `scripts/services.sh`) and Redis servers a test starts itself ([`redis_servers`],
//! from `redis-server`). A dev-dependency of the libraries (coupon-seaorm's `testkit`
//! feature turns it on for its database helpers), a dependency of the simulation and
//! chaos tools and the benchmarks, so that `coupon-core` is the domain and its memory
//! adapters only.
//!
//! Each scenario is a function with exact assertions; it panics on the first broken
//! promise. Scenarios create their own campaigns (random ids for counters, fresh
//! campaigns in stores), so they can run in parallel against one shared backend.
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use coupon_core::memory::MemoryCounter;
//! coupon_testkit::counter::exact_cap_under_contention(Arc::new(MemoryCounter::new())).await;
//! # }
//! ```

pub mod counter;
pub mod durable;
mod generate;
pub mod pipeline;
pub mod proxy;
pub mod queue;
pub mod redis_servers;
pub mod rng;
pub mod services;
pub mod sim;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use coupon_core::{
    Campaign, CampaignId, CouponCounter, CouponStore, NewCampaign, Rebuild, SealedEpoch,
};

/// Locks `mutex`, whether or not a panicking holder poisoned it: the scenarios' shared
/// records stay readable after one task failed.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A campaign that no other scenario uses: a random 48-bit id, so keys never collide
/// on a shared Redis and ids stay exact in JSON.
pub fn fresh_campaign(cap: u64) -> Campaign {
    fresh_campaign_from(NewCampaign::new("conformance", cap))
}

/// [`fresh_campaign`] with the other settings of `new`.
pub fn fresh_campaign_from(new: NewCampaign) -> Campaign {
    let id = (Uuid::new_v4().as_u128() >> 80) as u64;
    Campaign::from_new(CampaignId(id.max(1)), new)
}

/// A [`fresh_campaign`] whose counter `counter` has built (epoch 1, no slots), as a
/// campaign created through [`CouponService::create_campaign`](coupon_core::CouponService::create_campaign) is.
pub async fn ready_campaign(counter: &dyn CouponCounter, cap: u64) -> Campaign {
    ready_campaign_from(counter, NewCampaign::new("conformance", cap)).await
}

/// [`ready_campaign`] with the other settings of `new`.
pub async fn ready_campaign_from(counter: &dyn CouponCounter, new: NewCampaign) -> Campaign {
    let campaign = fresh_campaign_from(new);
    let built = counter
        .rebuild(&campaign, Arc::new(SealedEpoch::new(1, Vec::new())))
        .await;
    assert!(
        matches!(built, Ok(Rebuild::Built(_))),
        "building the counter of a new campaign: {built:?}"
    );
    campaign
}

/// The value of the environment variable `name`, which the test harness exports for a
/// real service (`REDIS_URL`, `DATABASE_URL`, `KAFKA_BROKERS`, `MYSQL_URL`).
///
/// Panics with a message saying how to start the services: a test that needs a service
/// fails without it, it never skips silently.
pub fn service_url(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!(
            "{name} is not set: run the tests through scripts/test.sh, which starts Redis, \
             PostgreSQL and a Kafka broker and exports their addresses (or start them with \
             `scripts/services.sh start DIR` and `source DIR/env`)"
        ),
    }
}

/// Polls `store` until it holds at least `expected` coupons of `campaign`, for at most
/// `patience`; returns the last count the store gave (an error, e.g. while the database
/// is away, is asked again; if the last answer was one, it is printed to stderr). The
/// caller asserts on the count, so a shortfall names the figure.
///
/// ```no_run
/// # async fn demo(store: &dyn coupon_core::CouponStore, campaign: coupon_core::CampaignId) {
/// use std::time::Duration;
/// let issued = coupon_testkit::wait_for_issued(store, campaign, 100, Duration::from_secs(60)).await;
/// assert_eq!(issued, 100);
/// # }
/// ```
pub async fn wait_for_issued(
    store: &dyn CouponStore,
    campaign: CampaignId,
    expected: u64,
    patience: Duration,
) -> u64 {
    let deadline = tokio::time::Instant::now() + patience;
    let mut issued = 0;
    loop {
        // A store that cannot answer now (an outage the test itself caused) is asked
        // again; the count is the last one it gave.
        let error = match store.issued_count(campaign).await {
            Ok(count) => {
                issued = count;
                None
            }
            Err(error) => Some(error),
        };
        if issued >= expected || tokio::time::Instant::now() >= deadline {
            if let Some(error) = error.filter(|_| issued < expected) {
                eprintln!("wait_for_issued: the store's last answer was an error: {error}");
            }
            return issued;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The adapter guide (`docs/adapters.md`), whose complete examples compile as doc tests
/// of this crate, so that the guide cannot drift from the traits.
#[cfg(doctest)]
#[doc = include_str!("../../docs/adapters.md")]
pub struct AdapterGuide;
