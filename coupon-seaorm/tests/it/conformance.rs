//! The core store conformance suite on every backend: one test per scenario and
//! backend, each in a database of its own; and on the durable ones, that what a store
//! acknowledged is there when it is opened again.

use crate::support;

use std::sync::Arc;

coupon_testkit::store_scenarios!(sqlite_memory, Arc::new(support::sqlite_memory().await));
coupon_testkit::store_scenarios!(sqlite_file, Arc::new(support::sqlite_file().await));
coupon_testkit::store_scenarios!(postgres, Arc::new(support::postgres().await));
coupon_testkit::store_scenarios!(mysql, Arc::new(support::mysql().await));

coupon_testkit::durable_store_scenarios!(
    sqlite_file_reopened,
    support::reopens(support::sqlite_file_url())
);
coupon_testkit::durable_store_scenarios!(
    postgres_reopened,
    support::reopens(support::fresh_database(&coupon_testkit::service_url("DATABASE_URL")).await)
);
coupon_testkit::durable_store_scenarios!(
    mysql_reopened,
    support::reopens(support::fresh_database(&coupon_testkit::service_url("MYSQL_URL")).await)
);
