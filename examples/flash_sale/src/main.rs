//! The race this project exists for, told with numbers. N applications from U users race
//! for K coupons, three ways, and one table compares them:
//!
//! - naive: `SELECT count(*)`, then `INSERT` if below the cap, in a real database with
//!   a pool of connections (over-issues);
//! - textbook: `INCR` a counter, send when the result is at most K, never check the user
//!   (the counter overshoots, a user can win twice);
//! - firstcome: `CouponService` and a worker (exactly K, one per user, ranks 1..=K).
//!
//! `cargo run -p flash_sale -- --applications 3000 --users 2000 --cap 1000` on the
//! embedded default (a SQLite file, in-memory counters); `--database-url` and
//! `--redis-url` (or `DATABASE_URL`, `REDIS_URL`) run it on PostgreSQL and Redis.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use coupon_core::memory::{MemoryCounter, MemoryQueue};
use coupon_core::{
    ApplyOutcome, CouponCounter, CouponService, CouponStore, IssueWorker, NewCampaign, UserId,
};
use coupon_redis::{RedisCounter, RedisCounterConfig};
use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig};
use sea_orm::{ConnectOptions, Database};
use tokio::task::JoinSet;

mod baselines;

use baselines::{execute, naive, textbook};

#[derive(Parser)]
#[command(name = "flash_sale")]
struct Args {
    /// Applications sent at once.
    #[arg(long, default_value_t = 3_000)]
    applications: u64,
    /// Distinct users among them (the rest apply twice).
    #[arg(long, default_value_t = 2_000)]
    users: u64,
    /// Coupons promised.
    #[arg(long, default_value_t = 1_000)]
    cap: u64,
    /// Database for all three (default: a SQLite file in the temporary directory).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Redis for the textbook counter and firstcome's admission (default: in memory).
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
}

/// What one approach ended with.
struct Tally {
    name: &'static str,
    told_yes: u64,
    coupons: u64,
    holders: u64,
    double_winners: u64,
    counter: Option<u64>,
}

fn user_of(application: u64, users: u64) -> u64 {
    1 + application % users
}

/// Applications in a shuffled order, as a crowd arrives: a user's second application
/// can come before someone else's first.
fn arrival_order(applications: u64) -> Vec<u64> {
    let mut order: Vec<u64> = (0..applications).collect();
    let mut state = uuid::Uuid::new_v4().as_u128() as u64 | 1;
    for i in (1..order.len()).rev() {
        // xorshift64: enough to shuffle a demo.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    order
}

/// firstcome: atomic admission, durable hand-off, a worker, the store's own checks.
async fn firstcome(args: &Args, url: &str, run: &str) -> Result<Tally, String> {
    let store = Arc::new(
        SeaOrmStore::connect(SeaOrmStoreConfig::new(url))
            .await
            .map_err(|e| e.to_string())?,
    );
    let counter: Arc<dyn CouponCounter> = match &args.redis_url {
        Some(url) => Arc::new(
            RedisCounter::connect(
                RedisCounterConfig::new(url).with_key_prefix(format!("flash-sale-{run}")),
            )
            .await
            .map_err(|e| e.to_string())?,
        ),
        None => Arc::new(MemoryCounter::new()),
    };
    let queue = Arc::new(MemoryQueue::new(args.applications as usize + 1));
    let issuer = Arc::new(CouponService::new(
        counter.clone(),
        queue.clone(),
        store.clone(),
    ));
    let campaign = issuer
        .create_campaign(NewCampaign::new("flash sale", args.cap))
        .await
        .map_err(|e| e.to_string())?;
    let worker = IssueWorker::new(queue.clone(), store.clone());
    let worker = tokio::spawn(async move { worker.run(std::future::pending()).await });

    let mut tasks = JoinSet::new();
    for application in arrival_order(args.applications) {
        let issuer = issuer.clone();
        let user = UserId(user_of(application, args.users));
        tasks.spawn(async move { issuer.apply(campaign.id, user).await });
    }
    let mut told_yes = 0;
    let mut ranks = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        if let ApplyOutcome::Accepted { rank, .. } = joined
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
        {
            told_yes += 1;
            ranks.insert(rank);
        }
    }
    queue.close();
    worker
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let holders = store
        .holders(campaign.id)
        .await
        .map_err(|e| e.to_string())?;
    let mut per_user: HashMap<UserId, u64> = HashMap::new();
    for user in &holders {
        *per_user.entry(*user).or_default() += 1;
    }
    if ranks.len() as u64 != told_yes || ranks.iter().any(|&r| r == 0 || r > args.cap) {
        return Err(format!("ranks are not 1..={} once each", args.cap));
    }
    Ok(Tally {
        name: "firstcome",
        told_yes,
        coupons: holders.len() as u64,
        holders: per_user.len() as u64,
        double_winners: per_user.values().filter(|&&n| n > 1).count() as u64,
        counter: Some(
            counter
                .status(&campaign)
                .await
                .map_err(|e| e.to_string())?
                .admitted,
        ),
    })
}

async fn run(args: Args) -> Result<bool, String> {
    if args.users == 0 || args.users > args.applications {
        return Err("--users must be between 1 and --applications".into());
    }
    let run = uuid::Uuid::new_v4().simple().to_string();
    let url = args.database_url.clone().unwrap_or_else(|| {
        let path = std::env::temp_dir().join(format!("flash-sale-{run}.db"));
        format!("sqlite://{}?mode=rwc", path.display())
    });
    let mut options = ConnectOptions::new(url.clone());
    // A pool, as an application server has: the naive check and insert interleave.
    options.max_connections(16).sqlx_logging(false);
    let db = Database::connect(options)
        .await
        .map_err(|e| e.to_string())?;

    println!(
        "{} applications from {} users for {} coupons, on {} and {}",
        args.applications,
        args.users,
        args.cap,
        if args.database_url.is_some() {
            "the given database"
        } else {
            "a SQLite file"
        },
        if args.redis_url.is_some() {
            "Redis"
        } else {
            "in-memory counters"
        },
    );
    let tallies = [
        naive(&args, &db, &format!("flash_naive_{run}")).await?,
        textbook(&args, &db, &format!("flash_textbook_{run}"), &run).await?,
        firstcome(&args, &url, &run).await?,
    ];
    for table in ["naive", "textbook"] {
        let _ = execute(&db, &format!("DROP TABLE flash_{table}_{run}"), vec![]).await;
    }

    println!(
        "\n{:<26} {:>9} {:>8} {:>8} {:>13} {:>8}",
        "approach", "told yes", "coupons", "holders", "won 2+ times", "counter"
    );
    for t in &tallies {
        let counter = t.counter.map_or("-".to_owned(), |c| c.to_string());
        println!(
            "{:<26} {:>9} {:>8} {:>8} {:>13} {:>8}",
            t.name, t.told_yes, t.coupons, t.holders, t.double_winners, counter
        );
    }
    let expected = args.cap.min(args.users);
    let ours = &tallies[2];
    let kept = ours.told_yes == expected
        && ours.coupons == expected
        && ours.holders == expected
        && ours.double_winners == 0;
    println!(
        "\nfirstcome: {} (expected exactly {expected} coupons for {expected} users)",
        if kept { "every promise kept" } else { "BROKEN" }
    );
    Ok(kept)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
