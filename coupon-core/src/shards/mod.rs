//! Quota shards: a campaign's cap split over several counters, so that one hot
//! campaign's admissions are not all bound to one key on one core
//! (`docs/plans/quota-shards.md`). What exists so far is the routing every part must
//! agree on: a user's home shard.

mod route;

pub use route::home_shard;
