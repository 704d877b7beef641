//! A seeded simulation of the whole protocol: one or two API processes (each a service:
//! issuer, fence watcher, settler), the worker and an operator replaying dead letters,
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
//!   `1..=cap` once each (on a sharded campaign: ranks once each, each of its holder's
//!   home shard; exactly `cap` coupons is then also "no stock stranded on a shard");
//! - dead letters only of tickets the injected store refused for good, each replayed
//!   without failing again (a replay that ends over the cap is recorded again), and no
//!   task of the run panicked;
//! - every applicant told `Pending` holds a coupon, whatever the counter lost after
//!   (a `Pending` answer comes only once the ticket is recorded in the store).
//!
//! ```
//! use coupon_testkit::sim::{SimConfig, run_seed};
//! let report = run_seed(7, &SimConfig::default()).expect("seed 7 keeps every promise");
//! assert!(report.coupons <= SimConfig::default().cap);
//! ```

mod checks;
mod counter;
mod faults;
mod queue;
mod run;
mod shards;
mod store;

use std::collections::BTreeMap;
use std::time::Duration;

pub use faults::FaultRates;

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
    /// API processes sharing the counter, the queue and the store (each its own
    /// service: issuer, fence, settler), applicants spread over them.
    pub issuers: usize,
    /// How long faults are injected (virtual time).
    pub fault_window: Duration,
    /// How long applicants who heard "sold out" keep trying (virtual time).
    pub trying_for: Duration,
    /// The fault rates.
    pub rates: FaultRates,
    /// Shards the campaign's cap is split over (1: one counter).
    pub shards: u16,
    /// Percent of the applicants whose home is shard 0 (the rest are users in id
    /// order), so that one shard runs dry long before the others.
    pub skew: u8,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            applicants: 24,
            cap: 8,
            per_user_limit: 1,
            issuers: 1,
            fault_window: Duration::from_secs(40),
            trying_for: Duration::from_secs(180),
            rates: FaultRates::default(),
            shards: 1,
            skew: 0,
        }
    }
}

impl SimConfig {
    /// Sets the fault rates.
    pub fn with_rates(mut self, rates: FaultRates) -> Self {
        self.rates = rates;
        self
    }

    /// Sets the number of API processes (at least 1).
    pub fn with_issuers(mut self, issuers: usize) -> Self {
        self.issuers = issuers.max(1);
        self
    }

    /// Splits the campaign over `shards` shards (at least 1), `skew` percent of the
    /// applicants homed on shard 0.
    pub fn with_shards(mut self, shards: u16, skew: u8) -> Self {
        self.shards = shards.max(1);
        self.skew = skew.min(100);
        self
    }

    /// The applicants' user ids: `skew` percent homed on shard 0, the rest the other
    /// users in id order.
    pub fn applicant_ids(&self) -> Vec<coupon_core::UserId> {
        use coupon_core::{UserId, home_shard};
        let skewed = self.applicants * u64::from(self.skew) / 100;
        let on_first = (1..)
            .map(UserId)
            .filter(|&user| home_shard(user, self.shards) == 0)
            .take(skewed as usize);
        let mut ids: Vec<UserId> = on_first.collect();
        let skewed: std::collections::HashSet<UserId> = ids.iter().copied().collect();
        ids.extend(
            (1..)
                .map(UserId)
                .filter(|user| !skewed.contains(user))
                .take((self.applicants - skewed.len() as u64) as usize),
        );
        ids
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
    runtime.block_on(run::simulate(seed, config.clone()))
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
