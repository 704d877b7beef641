//! The core conformance suite on the harness Redis: one test per scenario, each on a
//! key prefix of its own.

use crate::support;

use std::sync::Arc;

coupon_testkit::counter_scenarios!(redis, Arc::new(support::shared_counter().await));

// One call of the admission script in flight per campaign (`--redis-calls-in-flight 1`):
// the same rules, whatever the applies a call gathers.
coupon_testkit::counter_scenarios!(
    redis_one_call_in_flight,
    Arc::new(
        coupon_redis::RedisCounter::connect(
            support::config(&coupon_testkit::service_url("REDIS_URL")).with_calls_in_flight(1)
        )
        .await
        .expect("connect to REDIS_URL")
    )
);
