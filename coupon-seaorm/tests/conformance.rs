//! The core store conformance suite on every backend: one test per scenario and
//! backend, each in a database of its own.

mod support;

use std::sync::Arc;

coupon_testkit::store_scenarios!(sqlite_memory, Arc::new(support::sqlite_memory().await));
coupon_testkit::store_scenarios!(sqlite_file, Arc::new(support::sqlite_file().await));
coupon_testkit::store_scenarios!(postgres, Arc::new(support::postgres().await));
coupon_testkit::store_scenarios!(mysql, Arc::new(support::mysql().await));
