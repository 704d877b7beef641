//! `cargo build --release -p firstcome-server -p chaos && target/release/chaos --seeds 20
//! --duration-secs 180` runs 20 seeds of three minutes of faults against the real stack
//! and exits non-zero if any broke a promise; `--from SEED --seeds 1` replays one.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = chaos::ChaosArgs::parse();
    let mut json = match args.json.as_ref().map(std::fs::File::create).transpose() {
        Ok(file) => file,
        Err(error) => {
            eprintln!("error: opening the JSON file: {error}");
            return ExitCode::FAILURE;
        }
    };
    if args.plan_only {
        let window = std::time::Duration::from_secs(args.duration_secs);
        for seed in args.from..args.from.saturating_add(args.seeds) {
            println!("seed {seed}:");
            for planned in chaos::schedule::plan(seed, window, chaos::APIS, chaos::WORKERS) {
                println!("  {:>6.1}s {}", planned.at.as_secs_f64(), planned.fault);
            }
        }
        return ExitCode::SUCCESS;
    }
    let (mut kept, mut broke) = (Vec::new(), Vec::new());
    for seed in args.from..args.from.saturating_add(args.seeds) {
        // Ctrl-C drops the run, which kills its processes and stops its services.
        let report = tokio::select! {
            result = chaos::run_seed(&args, seed) => match result {
                Ok(report) => report,
                Err(error) => {
                    eprintln!("error: seed {seed}: {error}");
                    return ExitCode::FAILURE;
                }
            },
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted during seed {seed}");
                return ExitCode::FAILURE;
            }
        };
        println!("{report}");
        if let Some(file) = json.as_mut() {
            let line = serde_json::to_string(&report).unwrap_or_default();
            let _ = writeln!(file, "{line}");
        }
        if report.kept_every_promise() {
            kept.push(seed);
        } else {
            broke.push(seed);
        }
    }
    println!(
        "{} seed(s) kept every promise; broke a promise: {broke:?}",
        kept.len()
    );
    if broke.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
