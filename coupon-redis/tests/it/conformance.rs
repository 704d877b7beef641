//! The core conformance suite on the harness Redis: one test per scenario, each on a
//! key prefix of its own.

use crate::support;

use std::sync::Arc;

coupon_testkit::counter_scenarios!(redis, Arc::new(support::shared_counter().await));
