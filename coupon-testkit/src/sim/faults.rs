//! The seeded source of every fault ([`Injector`]) and the rates it draws them at. The
//! adapters it wraps are in `counter.rs`, `queue.rs` and `store.rs`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::lock;
use crate::rng::Rng;
use coupon_core::{Error, Result, TicketId};

/// How likely each fault is, per call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FaultRates {
    /// A call fails before it does anything (retryable).
    pub before: f64,
    /// A call does its work, then the caller hears a failure of unknown outcome.
    pub after: f64,
    /// A call is delayed by up to three seconds first.
    pub delay: f64,
    /// A publish stores its ticket twice.
    pub duplicate: f64,
    /// An admission finds the counter emptied, as a restarted Redis would be.
    pub forget: f64,
    /// A worker is killed mid-run (per batch it takes).
    pub crash: f64,
    /// An applicant gives up on a request mid-way.
    pub give_up: f64,
    /// A counter rebuild after a loss sees the counter lose its memory again (per
    /// rebuild): before or after the store seals its epoch, or up to three seconds into
    /// its seal.
    pub forget_again: f64,
    /// After a ticket is dead-lettered, or a publish goes late, the counter loses its
    /// memory at its next call (per such event).
    pub forget_after: f64,
    /// A publish answers nothing in time (up to four seconds, then an unknown outcome)
    /// and its ticket becomes visible in the queue up to eight seconds after the call.
    pub late: f64,
    /// The store refuses a ticket for good (a permanent error, per ticket and batch),
    /// until the worker has it alone and dead-letters it; a replay is then taken.
    pub refuse: f64,
}

impl Default for FaultRates {
    fn default() -> Self {
        Self {
            before: 0.04,
            after: 0.04,
            delay: 0.03,
            duplicate: 0.02,
            forget: 0.002,
            crash: 0.03,
            give_up: 0.05,
            forget_again: 0.3,
            forget_after: 0.4,
            late: 0.03,
            refuse: 0.02,
        }
    }
}

/// The seeded source of every fault, and the trace of those it injected.
pub(crate) struct Injector {
    rng: Mutex<Rng>,
    rates: FaultRates,
    started: tokio::time::Instant,
    enabled: std::sync::atomic::AtomicBool,
    trace: Mutex<Vec<String>>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// When the counter lost its memory (virtual time).
    losses: Mutex<Vec<tokio::time::Instant>>,
    /// What the faults left behind, for the events noted and the checks.
    left: Mutex<Left>,
    /// A loss of the counter's memory drawn, for its next call.
    loss_armed: std::sync::atomic::AtomicBool,
}

/// Tickets the faults touched.
#[derive(Default)]
struct Left {
    /// Published late: (ticket, epoch) once visible in the queue.
    late: HashSet<(TicketId, u64)>,
    /// Refused for good by the store, each time alone (so the worker dead-letters it).
    refused: HashSet<TicketId>,
    /// Dead-lettered (a failure record written) and without a coupon yet.
    dead: HashSet<TicketId>,
}

impl Injector {
    pub(crate) fn new(seed: u64, rates: FaultRates) -> Self {
        Self {
            rng: Mutex::new(Rng::new(seed)),
            rates,
            started: tokio::time::Instant::now(),
            enabled: std::sync::atomic::AtomicBool::new(true),
            trace: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
            losses: Mutex::new(Vec::new()),
            left: Mutex::new(Left::default()),
            loss_armed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Ends the fault window: from now on every call behaves.
    pub(crate) fn disable(&self) {
        self.enabled
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.note("faults", "end of the fault window".into());
    }

    pub(crate) fn rates(&self) -> &FaultRates {
        &self.rates
    }

    /// A draw that does not depend on the fault window (arrival times, give-ups).
    pub(crate) fn below(&self, n: u64) -> u64 {
        lock(&self.rng).below(n)
    }

    /// Whether to inject fault `kind` with probability `p`, noting it when so.
    pub(crate) fn roll(&self, p: f64, kind: &'static str, what: impl FnOnce() -> String) -> bool {
        if !self.enabled.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        if !lock(&self.rng).chance(p) {
            return false;
        }
        self.note(kind, what());
        true
    }

    /// Records an event in the trace with the virtual time.
    pub(crate) fn note(&self, kind: &'static str, what: String) {
        let at = self.started.elapsed().as_secs_f64();
        lock(&self.trace).push(format!("{at:>8.3}s {kind:<18} {what}"));
        *lock(&self.counts).entry(kind).or_default() += 1;
    }

    /// Sleeps up to three seconds when a delay is drawn.
    pub(crate) async fn maybe_delay(&self, what: &str) {
        if self.roll(self.rates.delay, "delay", || what.to_owned()) {
            let millis = self.below(3_000);
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
    }

    pub(crate) fn before(&self, what: &str) -> Result<()> {
        if self.roll(self.rates.before, "error before", || what.to_owned()) {
            return Err(Error::unavailable(
                "sim",
                format!("injected before {what}"),
                None,
            ));
        }
        Ok(())
    }

    pub(crate) fn after(&self, what: &str) -> bool {
        self.roll(self.rates.after, "error after", || what.to_owned())
    }

    /// Remembers that the counter lost its memory now, and notes the dead letters
    /// without a coupon it lost them with (the rebuild must count their slots).
    pub(crate) fn lost_memory(&self) {
        lock(&self.losses).push(tokio::time::Instant::now());
        let dead = lock(&self.left).dead.len();
        if dead > 0 {
            self.note(
                "loss, dead letter",
                format!("{dead} dead-lettered ticket(s) without a coupon"),
            );
        }
    }

    /// Draws whether the counter loses its memory at its next call, after `what`.
    pub(crate) fn maybe_forget_after(&self, what: impl FnOnce() -> String) {
        if self.roll(self.rates.forget_after, "forget after", what) {
            self.loss_armed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether a loss was drawn for this call (then it is taken).
    pub(crate) fn take_armed_loss(&self) -> bool {
        self.loss_armed
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Ticket `id` of `epoch`, published late, is visible in the queue now.
    pub(crate) fn visible_late(&self, id: TicketId, epoch: u64) {
        lock(&self.left).late.insert((id, epoch));
    }

    /// Whether ticket `id` of `epoch` was published late.
    pub(crate) fn was_late(&self, id: TicketId, epoch: u64) -> bool {
        lock(&self.left).late.contains(&(id, epoch))
    }

    /// The store refused ticket `id` for good, alone.
    pub(crate) fn refused_for_good(&self, id: TicketId) {
        lock(&self.left).refused.insert(id);
    }

    /// Every ticket the store refused for good, alone.
    pub(crate) fn refused(&self) -> HashSet<TicketId> {
        lock(&self.left).refused.clone()
    }

    /// The failure of ticket `id` was recorded: a dead letter.
    pub(crate) fn dead_lettered(&self, id: TicketId) {
        lock(&self.left).dead.insert(id);
    }

    /// The coupon of ticket `id` was stored.
    pub(crate) fn issued(&self, id: TicketId) {
        lock(&self.left).dead.remove(&id);
    }

    /// Every moment the counter lost its memory.
    pub(crate) fn losses(&self) -> Vec<tokio::time::Instant> {
        lock(&self.losses).clone()
    }

    pub(crate) fn trace(&self) -> Vec<String> {
        lock(&self.trace).clone()
    }

    pub(crate) fn counts(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.counts).clone()
    }
}

/// The error of a call whose effect happened, as its caller hears it.
pub(crate) fn unknown(what: &str) -> Error {
    Error::outcome_unknown("sim", format!("injected after {what}"), None)
}
