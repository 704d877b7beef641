//! A flash drop on the embedded default (memory counter, in-process queue, memory
//! store): N concurrent applicants race for K coupons, a worker persists the winners,
//! and the program checks the three promises before printing the tally.
//!
//! `cargo run -p quickstart -- [APPLICANTS] [CAP]` (defaults 1000 and 100).

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coupon_core::memory::{MemoryCounter, MemoryQueue, MemoryStore};
use coupon_core::{
    ApplyOutcome, CouponService, CouponStore, IssueWorker, NewCampaign, UserId, WorkerConfig,
};
use tokio::task::JoinSet;

fn parse_arg(position: usize, default: u64) -> Result<u64, String> {
    match std::env::args().nth(position) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| format!("argument {position} must be a whole number, got {text:?}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let applicants = parse_arg(1, 1_000)?;
    let cap = parse_arg(2, 100)?;

    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(10_000));
    let issuer = Arc::new(CouponService::new(
        Arc::new(MemoryCounter::new()),
        queue.clone(),
        store.clone(),
    ));
    let campaign = issuer
        .create_campaign(NewCampaign::new("flash drop", cap))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "campaign {} \"{}\": cap {cap}, {applicants} applicants at once",
        campaign.id, campaign.name
    );

    let worker = IssueWorker::with_config(
        queue.clone(),
        store.clone(),
        WorkerConfig::default().with_batch_size(500),
    );
    let worker = tokio::spawn(async move { worker.run(std::future::pending()).await });

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for user in 1..=applicants {
        let issuer = issuer.clone();
        tasks.spawn(async move { issuer.apply(campaign.id, UserId(user)).await });
    }
    let mut tally: BTreeMap<&str, u64> = BTreeMap::new();
    let mut ranks = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let label = match outcome {
            ApplyOutcome::Accepted { rank, .. } => {
                ranks.insert(rank);
                "accepted"
            }
            ApplyOutcome::Pending => "pending",
            ApplyOutcome::SoldOut => "sold out",
            ApplyOutcome::AlreadyApplied => "already applied",
            ApplyOutcome::NotOpen => "not open",
            ApplyOutcome::Closed => "closed",
        };
        *tally.entry(label).or_default() += 1;
    }
    let elapsed = started.elapsed();

    // Closing the queue lets the worker drain what is queued and stop.
    queue.close();
    let report = tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .map_err(|_| "the worker did not drain within 60 s".to_owned())?
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;

    for (label, count) in &tally {
        println!("  {label:>16}: {count}");
    }
    println!(
        "  applies took {:.1} ms ({:.0}/s)",
        elapsed.as_secs_f64() * 1e3,
        applicants as f64 / elapsed.as_secs_f64()
    );
    let issued = store
        .issued_count(campaign.id)
        .await
        .map_err(|e| e.to_string())?;
    let holders = store
        .holders(campaign.id)
        .await
        .map_err(|e| e.to_string())?;
    let distinct: HashSet<UserId> = holders.iter().copied().collect();
    println!(
        "  persisted coupons: {issued} for {} distinct users (worker: {} batches)",
        distinct.len(),
        report.batches
    );

    let expected = cap.min(applicants);
    let accepted = tally.get("accepted").copied().unwrap_or(0);
    let ranks_ok = ranks == (1..=expected).collect::<HashSet<u64>>();
    if issued == expected && accepted == expected && distinct.len() as u64 == expected && ranks_ok {
        println!("ok: exactly {expected} coupons, one per user, ranks 1..={expected}");
        Ok(())
    } else {
        Err(format!(
            "broken promise: expected {expected}, accepted {accepted}, persisted {issued}, distinct holders {}",
            distinct.len()
        ))
    }
}
