//! The conformance suite every adapter runs against its own instance (feature `testkit`).
//!
//! Each function is one scenario with exact assertions; it panics on the first broken
//! promise. Scenarios create their own campaigns (random ids for counters, fresh
//! campaigns in stores), so they can run in parallel against one shared backend.
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use coupon_core::memory::MemoryCounter;
//! coupon_core::testkit::counter::exact_cap_under_contention(Arc::new(MemoryCounter::new())).await;
//! # }
//! ```

pub mod counter;
pub mod pipeline;
pub mod proxy;
pub mod queue;
pub mod rng;
pub mod services;
pub mod sim;
pub mod store;

use uuid::Uuid;

use crate::{Campaign, CampaignId, CouponCounter, NewCampaign, Rebuild};

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

/// A [`fresh_campaign`] whose counter `counter` has built (with no slots), as a
/// campaign created through [`CouponIssuer::create_campaign`](crate::CouponIssuer::create_campaign) is.
pub async fn ready_campaign(counter: &dyn CouponCounter, cap: u64) -> Campaign {
    ready_campaign_from(counter, NewCampaign::new("conformance", cap)).await
}

/// [`ready_campaign`] with the other settings of `new`.
pub async fn ready_campaign_from(counter: &dyn CouponCounter, new: NewCampaign) -> Campaign {
    let campaign = fresh_campaign_from(new);
    let built = counter.rebuild(&campaign, &[]).await;
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
