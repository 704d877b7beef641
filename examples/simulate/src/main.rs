//! `cargo run --release -p simulate -- --seeds 100000` runs that many seeds of the
//! fault simulation (`coupon_testkit::sim`) and prints every failing seed with its
//! fault trace; `--from SEED --seeds 1 --trace` replays one seed and prints its trace;
//! `--shards 3 --skew 60` runs a campaign split over 3 shards, 60% of the applicants
//! homed on the first.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use coupon_testkit::sim::{SimConfig, run_seed};

/// The fault simulation of the whole protocol on a virtual clock.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// How many seeds to run.
    #[arg(long, default_value_t = 10_000)]
    seeds: u64,
    /// Applicants per seed.
    #[arg(long, default_value_t = 24)]
    applicants: u64,
    /// The campaign's cap.
    #[arg(long, default_value_t = 8)]
    cap: u64,
    /// Slots per user.
    #[arg(long, default_value_t = 1)]
    per_user_limit: u32,
    /// API processes sharing the counter, the queue and the store.
    #[arg(long, default_value_t = 1)]
    issuers: usize,
    /// Shards the campaign's cap is split over.
    #[arg(long, default_value_t = 1)]
    shards: u16,
    /// Percent of the applicants homed on shard 0 (with --shards above 1).
    #[arg(long, default_value_t = 0)]
    skew: u8,
    /// Print the fault trace of every seed, not only of the failing ones.
    #[arg(long)]
    trace: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = SimConfig::default()
        .with_rush(args.applicants, args.cap, args.per_user_limit)
        .with_issuers(args.issuers)
        .with_shards(args.shards, args.skew);
    let started = Instant::now();
    let (mut passed, mut failed, mut pending) = (0u64, 0u64, 0usize);
    let mut faults = std::collections::BTreeMap::new();
    for seed in args.from..args.from.saturating_add(args.seeds) {
        match run_seed(seed, &config) {
            Ok(report) => {
                passed += 1;
                pending += report.pending;
                for (kind, count) in &report.faults {
                    *faults.entry(*kind).or_insert(0u64) += count;
                }
                if args.trace {
                    println!(
                        "seed {seed}: kept every promise: {} accepted, {} pending, {} coupons",
                        report.accepted, report.pending, report.coupons
                    );
                    for line in &report.trace {
                        println!("  {line}");
                    }
                }
            }
            Err(failure) => {
                failed += 1;
                println!("{failure}");
            }
        }
    }
    println!(
        "{} seeds from {} in {:.1} s: {passed} kept every promise, {failed} broke one",
        args.seeds,
        args.from,
        started.elapsed().as_secs_f64()
    );
    println!("events over all passing seeds: {faults:?}");
    println!("applicants told Pending over all passing seeds (each holds a coupon): {pending}");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
