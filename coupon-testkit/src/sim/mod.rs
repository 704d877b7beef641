//! A seeded simulation of the whole protocol: the issuer, the worker and the settler
//! over the in-memory adapters, each wrapped in a fault injector driven by one seed.
//!
//! Time is virtual (a current-thread runtime with tokio's clock paused), so a seed
//! replays the same faults in the same order, and minutes of retries and backoff take
//! milliseconds. Each seed runs a rush of applicants through a window of faults, lets
//! the system settle with the faults off, and checks the promises:
//!
//! - at most `cap` coupons, and at most `per_user_limit` per user;
//! - every applicant told `Accepted` holds a coupon, at the rank they were told;
//! - with at least `cap` applicants who keep trying, exactly `cap` coupons, ranks
//!   `1..=cap` once each;
//! - nothing dead-lettered (the injector never produces a permanent error), and no
//!   task of the run panicked;
//! - every applicant told `Pending` holds a coupon, whatever the counter lost after
//!   (a `Pending` answer comes only once the ticket is recorded in the store).
//!
//! ```
//! use coupon_testkit::sim::{SimConfig, run_seed};
//! let report = run_seed(7, &SimConfig::default()).expect("seed 7 keeps every promise");
//! assert!(report.coupons <= SimConfig::default().cap);
//! ```

mod faults;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use faults::FaultRates;
use faults::{Injector, SimCounter, SimQueue, SimStore};

use crate::lock;
use coupon_core::memory::MemoryQueue;
use coupon_core::{
    ApplyOutcome, CouponIssuer, CouponStore, IssueWorker, IssuerConfig, NewCampaign, Settler,
    SettlerConfig, UserId, WorkerConfig,
};

/// The shape of every seed's run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// Distinct applicants, each applying until answered for good.
    pub applicants: u64,
    /// The campaign's cap.
    pub cap: u64,
    /// Slots per user.
    pub per_user_limit: u32,
    /// How long faults are injected (virtual time).
    pub fault_window: Duration,
    /// How long applicants who heard "sold out" keep trying (virtual time).
    pub trying_for: Duration,
    /// The fault rates.
    pub rates: FaultRates,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            applicants: 24,
            cap: 8,
            per_user_limit: 1,
            fault_window: Duration::from_secs(40),
            trying_for: Duration::from_secs(180),
            rates: FaultRates::default(),
        }
    }
}

impl SimConfig {
    /// Sets the fault rates.
    pub fn with_rates(mut self, rates: FaultRates) -> Self {
        self.rates = rates;
        self
    }

    /// Sets the number of applicants, the cap and the per-user limit.
    pub fn with_rush(mut self, applicants: u64, cap: u64, per_user_limit: u32) -> Self {
        self.applicants = applicants;
        self.cap = cap;
        self.per_user_limit = per_user_limit.max(1);
        self
    }
}

/// What a seed's run did, when every promise held.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Applicants told `Accepted`.
    pub accepted: usize,
    /// Applicants told `Pending`.
    pub pending: usize,
    /// Coupons in the store at the end.
    pub coupons: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Every fault injected and event noted, with its virtual time.
    pub trace: Vec<String>,
}

/// A seed that broke a promise: what broke, and the faults that led there.
#[derive(Debug, Clone)]
pub struct SimFailure {
    /// The seed, to replay with [`run_seed`].
    pub seed: u64,
    /// Each broken promise.
    pub broken: Vec<String>,
    /// Every fault injected and event noted, with its virtual time.
    pub trace: Vec<String>,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {} broke {} promise(s):",
            self.seed,
            self.broken.len()
        )?;
        for broken in &self.broken {
            writeln!(f, "  - {broken}")?;
        }
        writeln!(f, "trace:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Runs one seed on a runtime of its own with a paused clock.
pub fn run_seed(seed: u64, config: &SimConfig) -> Result<SimReport, SimFailure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(simulate(seed, config.clone()))
}

/// What each applicant heard last, by user.
#[derive(Debug, Default)]
struct Heard {
    /// The ranks each applicant was told `Accepted` at.
    accepted: HashMap<UserId, Vec<u64>>,
    /// Applicants told `Pending`, with the (virtual) time of each such answer.
    pending: BTreeMap<UserId, Vec<tokio::time::Instant>>,
    /// Tasks of the run that panicked (an answer no open campaign gives, an error
    /// that should never be permanent).
    panics: Vec<String>,
}

async fn simulate(seed: u64, config: SimConfig) -> Result<SimReport, SimFailure> {
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
    check(seed, &config, &faults, &store, campaign.id, heard).await
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

/// The promises, checked against the store.
async fn check(
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
    if coupons == config.cap && ranks != (1..=config.cap).collect() {
        broken.push(format!("ranks are not 1..={}: {ranks:?}", config.cap));
    }
    let failures = store
        .inner
        .failures(Some(campaign))
        .await
        .expect("reading the memory store");
    if !failures.is_empty() {
        broken.push(format!("{} ticket(s) dead-lettered", failures.len()));
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

/// Runs seeds `from..from + count` and returns the failures and the reports.
pub fn run_seeds(from: u64, count: u64, config: &SimConfig) -> (Vec<SimReport>, Vec<SimFailure>) {
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for seed in from..from.saturating_add(count) {
        match run_seed(seed, config) {
            Ok(report) => reports.push(report),
            Err(failure) => failures.push(failure),
        }
    }
    (reports, failures)
}
