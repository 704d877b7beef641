//! Test support: counters on the harness Redis (servers of a test's own are
//! `coupon_testkit::redis_servers`).
#![allow(dead_code, unreachable_pub)]

use coupon_redis::{RedisCounter, RedisCounterConfig};
use coupon_testkit::service_url;
use uuid::Uuid;

/// A counter on the harness Redis (`REDIS_URL`) under a key prefix of its own.
pub async fn shared_counter() -> RedisCounter {
    RedisCounter::connect(config(&service_url("REDIS_URL")))
        .await
        .expect("connect to REDIS_URL")
}

/// Settings for `url` with a prefix no other test uses.
pub fn config(url: &str) -> RedisCounterConfig {
    RedisCounterConfig::new(url).with_key_prefix(format!("test-{}", Uuid::new_v4().simple()))
}
