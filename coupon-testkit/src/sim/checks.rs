//! The promises, checked against the store once a seed's run has settled.

use std::collections::{BTreeSet, HashMap};

use super::faults::Injector;
use super::run::Heard;
use super::store::{REFUSED, SimStore};
use super::{SimConfig, SimFailure, SimReport};
use coupon_core::{CouponStore, FailureLedger, UserId, home_shard};

/// The promises, checked against the store.
pub(crate) async fn check(
    seed: u64,
    config: &SimConfig,
    faults: &Injector,
    store: &SimStore,
    campaign: coupon_core::CampaignId,
    heard: Heard,
) -> Result<SimReport, SimFailure> {
    let mut broken = Vec::new();
    let slots = store
        .inner
        .coupon_slots(campaign)
        .await
        .expect("reading the memory store");
    let coupons = slots.len() as u64;
    if coupons > config.cap {
        broken.push(format!("{coupons} coupons on cap {}", config.cap));
    }
    let mut per_user: HashMap<UserId, u32> = HashMap::new();
    for slot in &slots {
        *per_user.entry(slot.user).or_default() += 1;
    }
    for (user, held) in &per_user {
        if *held > config.per_user_limit {
            broken.push(format!("user {user} holds {held} coupons"));
        }
    }
    for (user, told) in &heard.accepted {
        let ranks: Vec<u64> = slots
            .iter()
            .filter(|slot| slot.user == *user)
            .map(|slot| slot.rank)
            .collect();
        for rank in told {
            if !ranks.contains(rank) {
                broken.push(format!(
                    "user {user} was told Accepted at rank {rank} and holds {ranks:?}"
                ));
            }
        }
    }
    let ranks: BTreeSet<u64> = slots.iter().map(|slot| slot.rank).collect();
    if ranks.len() != slots.len() {
        broken.push(format!("a rank is held twice: {slots:?}"));
    }
    let wanted = config
        .cap
        .min(config.applicants * u64::from(config.per_user_limit));
    if coupons != wanted {
        broken.push(format!(
            "{coupons} coupons where {wanted} applicants kept trying"
        ));
    }
    if config.shards <= 1 {
        if coupons == config.cap && ranks != (1..=config.cap).collect() {
            broken.push(format!("ranks are not 1..={}: {ranks:?}", config.cap));
        }
    } else {
        let shards = u64::from(config.shards);
        for slot in &slots {
            let home = u64::from(home_shard(slot.user, config.shards));
            if slot.rank == 0 || (slot.rank - 1) % shards != home {
                broken.push(format!(
                    "user {} holds rank {}, not of their home shard {home}'s class",
                    slot.user, slot.rank
                ));
            }
        }
    }
    // Dead letters only where the store was made to refuse a ticket for good, and each
    // replayed without failing again: a replay that ended over the cap (the rebuild did
    // not count the dead letter's slot) is recorded as a failure again.
    let refused = faults.refused();
    let failures = store
        .inner
        .failures(Some(campaign))
        .await
        .expect("reading the memory store");
    for failure in &failures {
        let ticket = &failure.ticket;
        if !refused.contains(&ticket.ticket_id) || !failure.error.contains(REFUSED) {
            broken.push(format!(
                "user {}'s ticket (slot {}, epoch {}) was recorded as a failure the faults did not make: {}",
                ticket.user, ticket.slot, ticket.epoch, failure.error
            ));
        } else if failure.is_open() {
            broken.push(format!(
                "user {}'s dead letter (slot {}, epoch {}) is open after the replays",
                ticket.user, ticket.slot, ticket.epoch
            ));
        }
    }
    broken.extend(heard.panics.iter().cloned());
    let counts = faults.counts();
    // A user holding fewer coupons than the answers that promised one (Accepted or
    // Pending) lost a Pending slot, whatever else happened.
    let counter_losses = faults.losses().len();
    for (user, answered) in &heard.pending {
        let told = heard.accepted.get(user).map_or(0, Vec::len) + answered.len();
        let held = per_user.get(user).copied().unwrap_or(0) as usize;
        if held < told {
            broken.push(format!(
                "user {user} was told Pending {} time(s) and Accepted {} time(s), and holds {held} coupon(s) ({counter_losses} counter loss(es) in the run)",
                answered.len(),
                told - answered.len()
            ));
        }
    }
    if broken.is_empty() {
        Ok(SimReport {
            seed,
            accepted: heard.accepted.values().map(Vec::len).sum(),
            pending: heard.pending.len(),
            coupons,
            faults: counts,
            trace: faults.trace(),
        })
    } else {
        Err(SimFailure {
            seed,
            broken,
            trace: faults.trace(),
        })
    }
}
