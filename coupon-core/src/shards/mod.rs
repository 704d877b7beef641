//! Quota shards: a campaign's cap split over several counters, so that one hot
//! campaign's admissions are not all bound to one key on one core
//! (`docs/plans/quota-shards.md`).
//!
//! A backend supplies atomic steps on one shard ([`ShardOps`]); [`ShardedCounter`]
//! does what spans shards over them: routing each user to their home shard
//! ([`home_shard`]), moving stock to a shard that runs dry, answering "sold out" only
//! when every shard is empty with nothing in transit, and rebuilding every shard in
//! one epoch.

mod admit;
mod counter;
mod ops;
mod plan;
mod rebuild;
mod route;

pub use counter::ShardedCounter;
pub use ops::{MoveId, OpenMove, RebuildToken, ShardAdmission, ShardOps, ShardView};
pub use route::home_shard;

/// The shards of `campaign`, 0 read as 1 (a definition built without validation).
fn shards_of(campaign: &crate::Campaign) -> u16 {
    campaign.shards.max(1)
}
