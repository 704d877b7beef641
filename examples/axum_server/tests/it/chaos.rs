//! Two seeds of the chaos tool (`examples/chaos`) against the service's own binary: two
//! API processes and two workers on private Redis, tansu and PostgreSQL, a rush of
//! 1,250 applicants on cap 1,000, and 60 s of faults from each seed's schedule (kill -9
//! of every process and backend, network latency, resets and blackholes, clients
//! hanging up). Every promise is checked in the database and through the API.
//! Seed 2 holds PostgreSQL's commits back (they land after their callers' timeouts),
//! restarts Redis empty twice within one rebuild, then once more, and kills PostgreSQL,
//! a worker and an API process; seed 10 holds a PostgreSQL outage of 34 s. `target/release/chaos --seeds 20 --duration-secs 180`
//! runs more (docs/reliability.md).

use std::time::Duration;

async fn run(seed: u64) {
    let binary = env!("CARGO_BIN_EXE_firstcome-server").into();
    let args = chaos::ChaosArgs::for_seed(seed, Duration::from_secs(60), binary);
    let report = chaos::run_seed(&args, seed)
        .await
        .expect("the chaos tool could not set the stack up");
    println!("{report}");
    assert!(report.kept_every_promise(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_seed_2_keeps_every_promise() {
    run(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_seed_10_keeps_every_promise() {
    run(10).await;
}
