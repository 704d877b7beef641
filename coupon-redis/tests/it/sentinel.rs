//! The counter behind Redis Sentinel: it follows a failover by itself, and treats the
//! promoted replica (which may have missed the last admissions) as a counter that lost
//! its memory: nothing is admitted there until the counter is rebuilt from the store.

use coupon_core::AdmissionLedger;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coupon_core::memory::MemoryStore;
use coupon_core::{
    Admission, CouponCounter, CouponStore, Error, IssueOutcome, IssueTicket, NewCampaign, Rebuild,
    SealedEpoch, UserId,
};
use coupon_redis::{Confirm, RedisCounter, RedisCounterConfig};
use coupon_testkit::redis_servers::PrivateSentinels;
use tokio::task::JoinSet;

/// What the applicants heard, and what the test did on their behalf.
#[derive(Default)]
struct Tally {
    /// (user, rank) of every grant, persisted at once (the queue and the worker).
    told_yes: Vec<(u64, u64)>,
    /// Grants the store refused: promises broken.
    refused: u64,
    /// Rebuilds this test ran, and the slots each added from the store.
    rebuilt: Vec<u64>,
}

/// 20,000 applications from 10,000 users on cap 5,000 through the Sentinels; the
/// primary is killed with kill -9 a third of the way in and a replica promoted. Every
/// grant is persisted before it counts as told yes, applicants retry on retryable
/// errors, and a `NotReady` makes the applicant rebuild from the store. In the end
/// exactly 5,000 coupons, every grant among them, no rank twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_counter_follows_a_failover_and_grants_no_slot_twice() {
    failover_mid_rush(Confirm::Auto).await;
}

/// The same without replica confirmation. Replication is asynchronous, so the
/// promoted replica may lack the last admissions; the fence still keeps every promise
/// made to an applicant told yes, because the counter is rebuilt from the store before
/// it admits there. The figures are printed for docs/architecture.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_confirmation_the_fence_still_keeps_the_promises() {
    failover_mid_rush(Confirm::Off).await;
}

async fn failover_mid_rush(confirm: Confirm) {
    let mut set = PrivateSentinels::start();
    let first_primary = set.primary.port;
    let counter = Arc::new(
        RedisCounter::connect(
            RedisCounterConfig::new(set.url())
                .with_timeouts(Duration::from_millis(500), Duration::from_millis(500))
                .with_confirm(confirm, Duration::from_millis(200)),
        )
        .await
        .expect("connect through the Sentinels"),
    );
    let store = Arc::new(MemoryStore::new());
    let campaign = Arc::new(
        store
            .create_campaign(NewCampaign::new("failover", 5_000))
            .await
            .expect("campaign"),
    );
    let built = counter
        .rebuild(&campaign, Arc::new(SealedEpoch::new(1, Vec::new())))
        .await
        .expect("build");
    assert!(matches!(built, Rebuild::Built(_)), "{built:?}");

    let tally = Arc::new(Mutex::new(Tally::default()));
    let answered = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..64 {
        let (counter, store, campaign, tally, answered, next) = (
            counter.clone(),
            store.clone(),
            campaign.clone(),
            tally.clone(),
            answered.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            loop {
                let application = next.fetch_add(1, Ordering::Relaxed);
                if application >= 20_000 {
                    return;
                }
                let user = UserId(application % 10_000 + 1);
                loop {
                    match counter.try_acquire(&campaign, user).await {
                        Ok(Admission::Granted { rank, slot, .. }) => {
                            let ticket = IssueTicket::new(campaign.id, user, slot, rank);
                            let outcome = store.issue_batch(&[ticket]).await.expect("persist");
                            let mut tally = tally.lock().expect("tally");
                            match outcome.as_slice() {
                                [IssueOutcome::Issued(_)] => {
                                    tally.told_yes.push((user.get(), rank))
                                }
                                _ => tally.refused += 1,
                            }
                            break;
                        }
                        Ok(_) => break,
                        Err(Error::NotReady { .. }) => {
                            let sealed = {
                                let after = store.sealed_epoch(campaign.id).await.expect("epoch");
                                store
                                    .seal_epoch(campaign.id, after, &[])
                                    .await
                                    .expect("seal")
                            };
                            match counter.rebuild(&campaign, Arc::new(sealed)).await {
                                Ok(Rebuild::Built(report)) => {
                                    tally.lock().expect("tally").rebuilt.push(report.added);
                                }
                                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                                Err(error) => assert!(error.is_retryable(), "{error:?}"),
                            }
                        }
                        Err(error) if error.is_retryable() => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(error) => panic!("try_acquire: {error:?}"),
                    }
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    while answered.load(Ordering::Relaxed) < 6_667 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    set.primary.kill();
    let finished = tokio::time::timeout(Duration::from_secs(120), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    assert!(
        finished.is_ok(),
        "the rush did not end within 2 min of the failover"
    );
    let promoted = set.primary_port();
    assert!(
        promoted.is_some_and(|port| port != first_primary),
        "the Sentinels promoted the replica"
    );

    // Settle: an admission whose answer was lost (a timeout during the failover) holds a
    // slot without a coupon; publish it, as the settler does.
    let stored: HashSet<(UserId, u32)> = store
        .coupon_slots(campaign.id)
        .await
        .expect("slots")
        .iter()
        .map(|slot| (slot.user, slot.slot))
        .collect();
    let late: Vec<IssueTicket> = counter
        .held_slots(&campaign)
        .await
        .expect("held slots")
        .iter()
        .filter(|slot| !stored.contains(&(slot.user, slot.slot)))
        .map(|slot| IssueTicket::for_slot(campaign.id, slot))
        .collect();
    store.issue_batch(&late).await.expect("settle");

    let tally = std::mem::take(&mut *tally.lock().expect("tally"));
    println!(
        "failover ({confirm:?}): {} told yes, {} refused by the store, {} settled late, rebuilds adding {:?} slots the promoted replica lacked",
        tally.told_yes.len(),
        tally.refused,
        late.len(),
        tally.rebuilt
    );
    assert_eq!(tally.refused, 0, "grants the store refused");
    assert!(
        !tally.rebuilt.is_empty(),
        "the promoted replica was never rebuilt"
    );
    let ranks: HashSet<u64> = tally.told_yes.iter().map(|&(_, rank)| rank).collect();
    assert_eq!(
        ranks.len(),
        tally.told_yes.len(),
        "a rank was granted twice"
    );
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 5_000);
    let holders: HashSet<UserId> = store
        .coupon_slots(campaign.id)
        .await
        .expect("slots")
        .iter()
        .map(|slot| slot.user)
        .collect();
    assert!(
        tally
            .told_yes
            .iter()
            .all(|&(user, _)| holders.contains(&UserId(user))),
        "someone told yes holds no coupon"
    );
}
