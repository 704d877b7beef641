//! One seed's run: the issuer, the settler and a worker that may be killed, applicants
//! arriving in a rush, the fault window, then a quiet time to settle.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::counter::SimCounter;
use super::faults::Injector;
use super::queue::SimQueue;
use super::store::SimStore;
use super::{SimConfig, SimFailure, SimReport};
use crate::lock;
use coupon_core::memory::MemoryQueue;
use coupon_core::{
    ApplyOutcome, CouponIssuer, IssueWorker, IssuerConfig, NewCampaign, Settler, SettlerConfig,
    UserId, WorkerConfig,
};

/// What each applicant heard last, by user.
#[derive(Debug, Default)]
pub(crate) struct Heard {
    /// The ranks each applicant was told `Accepted` at.
    pub(crate) accepted: HashMap<UserId, Vec<u64>>,
    /// Applicants told `Pending`, with the (virtual) time of each such answer.
    pub(crate) pending: BTreeMap<UserId, Vec<tokio::time::Instant>>,
    /// Tasks of the run that panicked (an answer no open campaign gives, an error
    /// that should never be permanent).
    pub(crate) panics: Vec<String>,
}

pub(crate) async fn simulate(seed: u64, config: SimConfig) -> Result<SimReport, SimFailure> {
    let faults = Arc::new(Injector::new(seed, config.rates.clone()));
    let counter = Arc::new(SimCounter::new(faults.clone()));
    let queue = Arc::new(SimQueue::new(MemoryQueue::new(4_096), faults.clone()));
    let store = Arc::new(SimStore::new(faults.clone()));
    let issuer = Arc::new(CouponIssuer::with_config(
        counter.clone(),
        queue.clone(),
        store.clone(),
        IssuerConfig::default()
            // The memo's clock is the real one, which a paused runtime does not move.
            .with_sold_out_ttl(Duration::ZERO)
            .with_publish_timeout(Duration::from_secs(2))
            .with_drain_fallback(Duration::from_secs(30)),
    ));
    // The store's create passes through the injector untouched; a first build that
    // fails leaves the campaign to the fence at its first apply.
    let new = NewCampaign::new("sim", config.cap).per_user_limit(config.per_user_limit);
    let campaign = issuer
        .create_campaign(new)
        .await
        .unwrap_or_else(|error| panic!("creating the campaign: {error}"));
    // Admission times are read from the real clock, which does not move here: a zero
    // grace makes every held slot without a coupon due at each pass.
    let settler = Arc::new(Settler::new(
        counter.clone(),
        queue.clone(),
        store.clone(),
        SettlerConfig::default()
            .with_grace(Duration::ZERO)
            .with_interval(Duration::from_secs(1)),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let settling = {
        let (settler, mut stopped) = (settler.clone(), stopped.clone());
        tokio::spawn(async move {
            settler
                .run(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await;
        })
    };
    let working = tokio::spawn(run_workers(
        queue.clone(),
        store.clone(),
        faults.clone(),
        stopped.clone(),
    ));

    let heard = Arc::new(Mutex::new(Heard::default()));
    let mut applicants = tokio::task::JoinSet::new();
    let started = tokio::time::Instant::now();
    for user in 1..=config.applicants {
        let (issuer, faults, heard) = (issuer.clone(), faults.clone(), heard.clone());
        let arrival = Duration::from_millis(faults.below(5_000));
        let until = started + config.trying_for;
        let (id, limit) = (campaign.id, config.per_user_limit);
        applicants.spawn(async move {
            tokio::time::sleep(arrival).await;
            let user = UserId(user);
            for _ in 0..limit {
                if !apply_until_answered(&issuer, &faults, &heard, id, user, until).await {
                    break;
                }
            }
        });
    }
    tokio::time::sleep(config.fault_window).await;
    faults.disable();
    let mut panics = Vec::new();
    while let Some(joined) = applicants.join_next().await {
        if let Err(error) = joined {
            panics.push(format!("an applicant's task failed: {error}"));
        }
    }
    // Let the worker and the settler finish what is in flight.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let _ = stop.send(true);
    for (name, task) in [("settler", settling), ("worker", working)] {
        if let Err(error) = task.await {
            panics.push(format!("the {name}'s task failed: {error}"));
        }
    }

    let mut heard = std::mem::take(&mut *lock(&heard));
    heard.panics = panics;
    super::checks::check(seed, &config, &faults, &store, campaign.id, heard).await
}

/// One application: applies until told something final; keeps trying after "sold out"
/// until `until`, as a shopper refreshing the page would, so that a slot freed later is
/// taken. Whether the applicant got a slot and may apply for another.
async fn apply_until_answered(
    issuer: &CouponIssuer,
    faults: &Injector,
    heard: &Mutex<Heard>,
    campaign: coupon_core::CampaignId,
    user: UserId,
    until: tokio::time::Instant,
) -> bool {
    loop {
        if tokio::time::Instant::now() >= until {
            return false;
        }
        // An applicant who gives up drops the request mid-way, hearing nothing.
        let patience = if faults.roll(faults.rates().give_up, "applicant gives up", || {
            format!("user {user}")
        }) {
            Duration::from_millis(faults.below(50))
        } else {
            Duration::from_secs(3_600)
        };
        match tokio::time::timeout(patience, issuer.apply(campaign, user)).await {
            Ok(Ok(ApplyOutcome::Accepted { rank, .. })) => {
                lock(heard).accepted.entry(user).or_default().push(rank);
                return true;
            }
            Ok(Ok(ApplyOutcome::Pending)) => {
                lock(heard)
                    .pending
                    .entry(user)
                    .or_default()
                    .push(tokio::time::Instant::now());
                return true;
            }
            Ok(Ok(ApplyOutcome::AlreadyApplied)) => return false,
            Ok(Ok(ApplyOutcome::SoldOut)) => tokio::time::sleep(Duration::from_secs(3)).await,
            Ok(Ok(other)) => panic!("an open campaign answered {other:?}"),
            Ok(Err(error)) if error.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Err(error)) => panic!("apply failed for good: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A worker that may be killed mid-batch (its run future dropped) and is restarted.
async fn run_workers(
    queue: Arc<SimQueue>,
    store: Arc<SimStore>,
    faults: Arc<Injector>,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    let config = WorkerConfig::default()
        .with_batch_size(4)
        .with_backoff(Duration::from_millis(100), Duration::from_secs(2));
    while !*stopped.borrow() {
        let worker = IssueWorker::with_config(queue.clone(), store.clone(), config.clone());
        let life = if faults.roll(faults.rates().crash * 10.0, "worker killed", || {
            "mid-run".into()
        }) {
            Duration::from_millis(faults.below(4_000))
        } else {
            Duration::from_secs(10)
        };
        let mut shutdown = stopped.clone();
        let run = worker.run(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        });
        if let Ok(Err(error)) = tokio::time::timeout(life, run).await {
            faults.note("worker stopped", error.to_string());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if stopped.has_changed().is_err() {
            return;
        }
    }
}
