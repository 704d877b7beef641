//! A seed's report: answers per outcome, faults per kind, each promise and whether it
//! held, and how long the run took to settle; as text and as JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::availability::{self, Window};
use crate::check::{Check, Found};
use crate::inject::Injected;
use crate::rush::Heard;

/// What one seed did and found.
#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// The campaign's cap.
    pub cap: u64,
    /// Applicants.
    pub applicants: u64,
    /// How long the schedule of faults lasted, in seconds.
    pub window_secs: f64,
    /// Answers per outcome.
    pub answers: BTreeMap<String, u64>,
    /// Applicants told accepted, pending, already_applied.
    pub told: BTreeMap<&'static str, u64>,
    /// Faults carried out, per kind.
    pub faults: BTreeMap<String, u64>,
    /// Every fault as carried out, in order.
    pub injected: Vec<Injected>,
    /// What each kind of fault did to the attempts sent while it was on (and 2 s
    /// after), beside `no fault`.
    pub availability: BTreeMap<String, Window>,
    /// Each promise.
    pub checks: Vec<Check>,
    /// Figures the checks read.
    pub found: Found,
    /// Seconds from the end of the schedule until every coupon was issued (`None`: not
    /// within the patience given).
    pub settle_secs: Option<f64>,
    /// How often the test broker panicked on its own and the tool restarted it.
    pub broker_repairs: u64,
    /// Where the processes' and services' logs are (removed when every promise held,
    /// unless asked to keep them).
    pub logs: PathBuf,
}

/// What [`SeedReport::new`] is made of.
pub struct Parts {
    /// The seed.
    pub seed: u64,
    /// The cap.
    pub cap: u64,
    /// Applicants.
    pub applicants: u64,
    /// The schedule's length.
    pub window: Duration,
    /// What applicants heard.
    pub heard: Heard,
    /// Faults carried out.
    pub injected: Vec<Injected>,
    /// The promises.
    pub checks: Vec<Check>,
    /// Figures.
    pub found: Found,
    /// Processes that exited unasked.
    pub unplanned_exits: Vec<String>,
    /// How long settling took.
    pub time_to_settle: Option<Duration>,
    /// Test broker panics repaired.
    pub broker_repairs: u64,
    /// The logs' directory.
    pub logs: PathBuf,
}

impl SeedReport {
    /// Puts a report together; faults that could not be carried out and processes that
    /// died unasked are broken promises of the run itself.
    pub fn new(parts: Parts) -> Self {
        let mut faults = BTreeMap::new();
        for done in &parts.injected {
            *faults.entry(done.fault.kind()).or_default() += 1;
        }
        let mut checks = parts.checks;
        let failed: Vec<String> = parts
            .injected
            .iter()
            .filter_map(|done| done.error.as_ref().map(|e| format!("{}: {e}", done.fault)))
            .collect();
        checks.push(Check {
            promise: "every fault carried out and healed",
            held: failed.is_empty(),
            detail: format!("{} failed: {failed:?}", failed.len()),
        });
        checks.push(Check {
            promise: "no process died unasked",
            held: parts.unplanned_exits.is_empty(),
            detail: format!("{:?}", parts.unplanned_exits),
        });
        checks.push(Check {
            promise: "settled once the faults ended",
            held: parts.time_to_settle.is_some(),
            detail: match parts.time_to_settle {
                Some(took) => format!("every coupon issued {:.1} s after", took.as_secs_f64()),
                None => "not every coupon issued within the patience given".into(),
            },
        });
        let told = BTreeMap::from([
            ("accepted", parts.heard.accepted.len() as u64),
            ("pending", parts.heard.pending.len() as u64),
            ("already_applied", parts.heard.already.len() as u64),
            ("still trying at the end", parts.heard.still_trying),
        ]);
        let availability = availability::by_fault(&parts.heard.attempts, &parts.injected);
        Self {
            seed: parts.seed,
            cap: parts.cap,
            applicants: parts.applicants,
            window_secs: parts.window.as_secs_f64(),
            answers: parts.heard.answers,
            told,
            faults,
            injected: parts.injected,
            availability,
            checks,
            found: parts.found,
            settle_secs: parts.time_to_settle.map(|took| took.as_secs_f64()),
            broker_repairs: parts.broker_repairs,
            logs: parts.logs,
        }
    }

    /// Whether every promise held.
    pub fn kept_every_promise(&self) -> bool {
        self.checks.iter().all(|check| check.held)
    }
}

impl fmt::Display for SeedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.kept_every_promise() {
            "kept every promise"
        } else {
            "BROKE A PROMISE"
        };
        writeln!(
            f,
            "seed {}: {verdict} (cap {}, {} applicants, {:.0} s of faults)",
            self.seed, self.cap, self.applicants, self.window_secs
        )?;
        writeln!(f, "  answers:")?;
        for (outcome, count) in &self.answers {
            writeln!(f, "    {count:>8}  {outcome}")?;
        }
        writeln!(f, "  applicants told:")?;
        for (what, count) in &self.told {
            writeln!(f, "    {count:>8}  {what}")?;
        }
        writeln!(f, "  faults:")?;
        for (kind, count) in &self.faults {
            writeln!(f, "    {count:>8}  {kind}")?;
        }
        if self.broker_repairs > 0 {
            writeln!(
                f,
                "    {:>8}  test broker panics (tansu), restarted by the tool",
                self.broker_repairs
            )?;
        }
        writeln!(
            f,
            "  attempts sent during each kind of fault (and 2 s after): answered / 503 / failed, p50 / p99 of the answered:"
        )?;
        for (kind, window) in &self.availability {
            writeln!(
                f,
                "    {:>8}  {kind:<22} {:>5.1}% / {:>5.1}% / {:>5.1}%  {:>7.1} / {:>7.1} ms",
                window.attempts,
                window.answered * 100.0,
                window.unavailable * 100.0,
                window.failed * 100.0,
                window.p50_ms,
                window.p99_ms
            )?;
        }
        writeln!(f, "  promises:")?;
        for check in &self.checks {
            let mark = if check.held { "ok  " } else { "FAIL" };
            writeln!(f, "    {mark} {}: {}", check.promise, check.detail)?;
        }
        if !self.kept_every_promise() {
            writeln!(f, "  schedule:")?;
            for done in &self.injected {
                writeln!(f, "    {:>6.1}s {}", done.began.as_secs_f64(), done.fault)?;
            }
            writeln!(f, "  logs: {}", self.logs.display())?;
        }
        Ok(())
    }
}
