//! One seed's run: one or two API processes (each a service with its issuer, settler and
//! fence watcher), a worker that may be killed and an operator replaying dead letters,
//! applicants arriving in a rush, the fault window, then a quiet time to settle.

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
    ApplyOutcome, CampaignId, CouponService, Error, IssueWorker, IssuerConfig, NewCampaign,
    ServiceConfig, SettlerConfig, UserId, WorkerConfig,
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
    // One service per API process, each with its own fence, settler and caches, all
    // over the one counter, queue and store.
    let services: Vec<Arc<CouponService>> = (0..config.issuers.max(1))
        .map(|_| {
            Arc::new(CouponService::with_config(
                counter.clone(),
                queue.clone(),
                store.clone(),
                service_config(),
            ))
        })
        .collect();
    // The store's create passes through the injector untouched; a first build that
    // fails leaves the campaign to the fences.
    let new = NewCampaign::new("sim", config.cap)
        .per_user_limit(config.per_user_limit)
        .shards(config.shards);
    let campaign = services[0]
        .create_campaign(new)
        .await
        .unwrap_or_else(|error| panic!("creating the campaign: {error}"));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for service in &services {
        let (settler, stopping) = (service.settler().clone(), until_stopped(&stopped));
        tasks.push((
            "settler",
            tokio::spawn(async move { settler.run(stopping).await }),
        ));
        let (service, stopping) = (service.clone(), until_stopped(&stopped));
        tasks.push((
            "fence watcher",
            tokio::spawn(async move { service.watch_counters(stopping).await }),
        ));
    }
    tasks.push((
        "worker",
        tokio::spawn(run_workers(
            queue.clone(),
            store.clone(),
            faults.clone(),
            stopped.clone(),
        )),
    ));
    tasks.push((
        "operator",
        tokio::spawn(replay_dead_letters(
            services[0].clone(),
            faults.clone(),
            campaign.id,
            stopped.clone(),
        )),
    ));

    let heard = Arc::new(Mutex::new(Heard::default()));
    let mut applicants = tokio::task::JoinSet::new();
    let started = tokio::time::Instant::now();
    for user in config.applicant_ids() {
        let (services, faults, heard) = (services.clone(), faults.clone(), heard.clone());
        let arrival = Duration::from_millis(faults.below(5_000));
        let until = started + config.trying_for;
        let (id, limit) = (campaign.id, config.per_user_limit);
        applicants.spawn(async move {
            tokio::time::sleep(arrival).await;
            for _ in 0..limit {
                if !apply_until_answered(&services, &faults, &heard, id, user, until).await {
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
    // Let the worker, the settlers and the operator finish what is in flight.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let _ = stop.send(true);
    for (name, task) in tasks {
        if let Err(error) = task.await {
            panics.push(format!("the {name}'s task failed: {error}"));
        }
    }

    let mut heard = std::mem::take(&mut *lock(&heard));
    heard.panics = panics;
    super::checks::check(seed, &config, &faults, &store, campaign.id, heard).await
}

/// What every simulated API process runs with.
fn service_config() -> ServiceConfig {
    let issuer = IssuerConfig::default()
        // The memo's clock is the real one, which a paused runtime does not move.
        .with_sold_out_ttl(Duration::ZERO)
        .with_publish_timeout(Duration::from_secs(2))
        .with_drain_fallback(Duration::from_secs(30));
    // Admission times are read from the real clock, which does not move here: a zero
    // grace makes every held slot without a coupon due at each pass.
    let settler = SettlerConfig::default()
        .with_grace(Duration::ZERO)
        .with_interval(Duration::from_secs(1));
    ServiceConfig::default()
        .with_issuer(issuer)
        .with_settler(settler)
}

/// Completes once `stop` is sent.
fn until_stopped(
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut stopped = stopped.clone();
    async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }
}

/// An operator who replays the campaign's open dead letters (once the cause is fixed):
/// first at a time drawn in 20..60 s, during the fault window or after it, then every
/// 20 s until the end.
async fn replay_dead_letters(
    service: Arc<CouponService>,
    faults: Arc<Injector>,
    campaign: CampaignId,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut stopping = std::pin::pin!(until_stopped(&stopped));
    let mut wait = Duration::from_millis(20_000 + faults.below(40_000));
    loop {
        tokio::select! {
            biased;
            () = &mut stopping => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = Duration::from_secs(20);
        match service.replay(Some(campaign), &[]).await {
            Ok(report) if report.replayed.is_empty() && report.failed.is_empty() => {}
            Ok(report) => faults.note(
                "replayed",
                format!(
                    "{} dead letter(s) published again, {} not now",
                    report.replayed.len(),
                    report.failed.len()
                ),
            ),
            Err(error) => faults.note("replay failed", error.to_string()),
        }
    }
}

/// One application: applies until told something final; keeps trying after "sold out"
/// until `until`, as a shopper refreshing the page would, so that a slot freed later is
/// taken. Whether the applicant got a slot and may apply for another.
async fn apply_until_answered(
    services: &[Arc<CouponService>],
    faults: &Injector,
    heard: &Mutex<Heard>,
    campaign: CampaignId,
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
        // Behind a load balancer: each request goes to any of the processes (named in
        // the answers noted when there are several).
        let (service, by) = match services.len() {
            1 => (&services[0], String::new()),
            n => {
                let index = faults.below(n as u64) as usize;
                (&services[index], format!(" by process {}", index + 1))
            }
        };
        match tokio::time::timeout(patience, service.apply(campaign, user)).await {
            Ok(Ok(ApplyOutcome::Accepted { rank, .. })) => {
                faults.note("told accepted", format!("user {user} rank {rank}{by}"));
                lock(heard).accepted.entry(user).or_default().push(rank);
                return true;
            }
            Ok(Ok(ApplyOutcome::Pending)) => {
                faults.note("told pending", format!("user {user}{by}"));
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
            // The ticket of the slot held was dead-lettered: nothing is promised until
            // an operator replays it; the applicant comes back later.
            Ok(Err(Error::TicketRefused { .. })) => {
                faults.note("told refused", format!("user {user}{by}"));
                tokio::time::sleep(Duration::from_secs(3)).await;
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
