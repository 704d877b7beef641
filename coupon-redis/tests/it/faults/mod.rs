//! Redis failures: data loss and the fencing rebuild, SCRIPT FLUSH, eviction settings, error
//! classification. Each test
//! runs its own redis-server so that killing it disturbs no other test.

mod data_loss;
mod server;

use std::sync::Arc;

use coupon_core::{Admission, Campaign, CouponCounter, Error, IssueTicket, UserId};
use coupon_redis::RedisCounter;
use tokio::task::JoinSet;

/// Applies `users` concurrently; returns the granted tickets and how many applies were
/// refused as not ready. Any other error fails the test.
async fn apply_all(
    counter: &Arc<RedisCounter>,
    campaign: &Arc<Campaign>,
    users: impl Iterator<Item = u64>,
) -> (Vec<IssueTicket>, usize) {
    let mut tasks = JoinSet::new();
    for user in users {
        let (counter, campaign) = (counter.clone(), campaign.clone());
        tasks.spawn(async move {
            let admission = counter.try_acquire(&campaign, UserId(user)).await;
            (user, admission)
        });
    }
    let (mut granted, mut not_ready) = (Vec::new(), 0);
    while let Some(joined) = tasks.join_next().await {
        let (user, admission) = joined.expect("task");
        match admission {
            Ok(Admission::Granted { rank, slot, .. }) => {
                granted.push(IssueTicket::new(campaign.id, UserId(user), slot, rank));
            }
            Ok(_) => {}
            Err(Error::NotReady { .. }) => not_ready += 1,
            Err(error) => panic!("try_acquire: {error:?}"),
        }
    }
    (granted, not_ready)
}
