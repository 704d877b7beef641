//! The seeded simulation (`coupon_testkit::sim`): a fixed set of seeds, each a
//! rush through a window of injected faults on a virtual clock, checked against every
//! promise. Any seed that breaks one fails the test with its fault trace; replay it
//! with `cargo run -p simulate -- --from SEED --seeds 1 --trace`.

use coupon_testkit::sim::{SimConfig, run_seeds};

/// How many seeds `cargo test` runs (more with FIRSTCOME_SIM_SEEDS).
const SEEDS: u64 = 2_000;

#[test]
fn every_seed_keeps_every_promise() {
    let seeds = std::env::var("FIRSTCOME_SIM_SEEDS")
        .ok()
        .and_then(|seeds| seeds.parse().ok())
        .unwrap_or(SEEDS);
    let (reports, failures) = run_seeds(0, seeds, &SimConfig::default());
    if let Some(first) = failures.first() {
        panic!(
            "{} of {seeds} seeds broke a promise; the first:\n{first}",
            failures.len()
        );
    }
    assert_eq!(reports.len() as u64, seeds);
    // Injected faults only, not the events every seed notes (the build, the window's end).
    let injected = |kind: &str| {
        reports
            .iter()
            .map(|r| r.faults.get(kind).copied().unwrap_or(0))
            .sum::<u64>()
    };
    for kind in [
        "error before",
        "error after",
        "counter forgets",
        "worker killed",
    ] {
        assert!(injected(kind) > 0, "no {kind:?} injected in {seeds} seeds");
    }
    let total: u64 = [
        "error before",
        "error after",
        "delay",
        "publish refused",
        "publish lost",
    ]
    .iter()
    .map(|kind| injected(kind))
    .sum();
    assert!(
        total > 10 * seeds,
        "only {total} faults injected in {seeds} seeds"
    );
}

/// Three slots per user: six applicants on cap 12 take exactly 12, each told rank held.
#[test]
fn seeds_with_three_slots_per_user_keep_every_promise() {
    let config = SimConfig::default().with_rush(6, 12, 3);
    let (reports, failures) = run_seeds(0, 300, &config);
    if let Some(first) = failures.first() {
        panic!(
            "{} of 300 seeds broke a promise; the first:\n{first}",
            failures.len()
        );
    }
    assert!(reports.iter().all(|report| report.coupons == 12));
}

/// A seed replays exactly: the same faults at the same virtual times.
#[test]
fn a_seed_replays_exactly() {
    use coupon_testkit::sim::run_seed;
    let config = SimConfig::default();
    let first = run_seed(11, &config).expect("seed 11");
    let again = run_seed(11, &config).expect("seed 11 again");
    assert!(first.trace.len() > 5, "{:?}", first.trace);
    assert_eq!(first.trace, again.trace);
    assert_ne!(first.trace, run_seed(12, &config).expect("seed 12").trace);
}
