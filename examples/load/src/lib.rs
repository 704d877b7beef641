//! The load tool as a library, so tests can run it against a server they started.
//!
//! It creates a campaign, sends `requests` applications from `users` distinct users over
//! `concurrency` connections, reports throughput and latency percentiles per outcome,
//! then checks through the API (and the database, when given) that exactly
//! min(cap, users who applied) coupons were issued and that nobody holds two.

mod checks;
mod client;
mod cpu;
pub mod report;
mod tokens;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use checks::verify;
pub use client::{HttpClient, POOL_IDLE_TIMEOUT, call, http_client};
use cpu::cpu_now;

/// What to send, and where.
#[derive(Debug, Clone, Parser)]
#[command(name = "load")]
pub struct LoadArgs {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The service's admin token (to create the campaign).
    #[arg(long, env = "ADMIN_TOKEN")]
    pub admin_token: String,
    /// Coupons of the campaign the run creates.
    #[arg(long, default_value_t = 1_000)]
    pub cap: u64,
    /// Distinct users.
    #[arg(long, default_value_t = 5_000)]
    pub users: u64,
    /// Applications to send in all.
    #[arg(long, default_value_t = 20_000)]
    pub requests: u64,
    /// Connections sending at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Apply as each user with an HS256 token signed with this secret (the service's
    /// `JWT_SECRET`), minted before the run; without it the body names the user, which
    /// needs a service in `--identity trusted-clients` mode.
    #[arg(long, env = "JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// Connections checking holders at once after the run.
    #[arg(long, default_value_t = 32)]
    pub verify_concurrency: usize,
    /// The service's database, to count coupons per user there too.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// No progress bar (for logs and tests).
    #[arg(long)]
    pub quiet: bool,
    /// Another process on this machine whose CPU time (with every process under it)
    /// the run reports, as NAME=PID: `--pid redis=1234 --pid postgres=5678`.
    #[arg(long = "pid", value_parser = parse_named_pid)]
    pub pids: Vec<(String, u32)>,
    /// Write a JSON summary of the run here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Write the run as a self-contained HTML page here: latency per outcome,
    /// throughput and p99 over time, CPU per process.
    #[arg(long)]
    pub html: Option<std::path::PathBuf>,
}

fn parse_named_pid(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=PID"))?;
    let pid = pid
        .trim()
        .parse()
        .map_err(|_| format!("{pid:?} is not a pid"))?;
    Ok((name.trim().to_owned(), pid))
}

/// What a run measured and found.
#[derive(Debug)]
pub struct Report {
    /// The campaign it created.
    pub campaign: u64,
    /// Answers per outcome.
    pub outcomes: BTreeMap<String, u64>,
    /// Coupons the API says were issued.
    pub issued: u64,
    /// Users who hold a coupon, as the API answers per user.
    pub holders: u64,
    /// Whether every check passed.
    pub ok: bool,
    /// CPU seconds each measured process spent while the applications were sent.
    pub cpu_seconds: BTreeMap<String, f64>,
}

/// The `p` quantile (0.0..=1.0) of `sorted` latencies, nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Runs the load and the checks; prints as it goes.
pub async fn run(args: LoadArgs) -> Result<Report, String> {
    if args.users == 0 || args.requests == 0 || args.concurrency == 0 {
        return Err("--users, --requests and --concurrency must be at least 1".into());
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let client = http_client(args.concurrency);

    let (status, created) = call(
        &client,
        Method::POST,
        &format!("{base}/campaigns"),
        Some(&args.admin_token),
        Some(json!({ "name": "load", "cap": args.cap })),
    )
    .await?;
    if status != StatusCode::CREATED {
        return Err(format!(
            "creating the campaign answered {status}: {created}"
        ));
    }
    let campaign = created["id"].as_u64().ok_or("no campaign id")?;
    let tokens = Arc::new(match &args.jwt_secret {
        Some(secret) => tokens::mint_hs256_per_user(secret.as_bytes(), args.users)?,
        None => Vec::new(),
    });
    println!(
        "campaign {campaign}: cap {}, {} requests from {} users over {} connections",
        args.cap, args.requests, args.users, args.concurrency
    );

    let progress = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.requests)
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            .map_err(|e| e.to_string())?,
    );
    let next = Arc::new(AtomicU64::new(0));
    let samples: Arc<Mutex<BTreeMap<String, Vec<Duration>>>> = Arc::default();
    // (finished at, since the start; latency) of every request, for the page.
    let timeline: Arc<Mutex<Vec<(Duration, Duration)>>> = Arc::default();
    let applied: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let winners: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let cpu_before = cpu_now(&client, &base, &args).await;
    let started = Instant::now();
    let mut connections = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let timeline = timeline.clone();
        let (client, next, samples, applied, winners, progress, tokens) = (
            client.clone(),
            next.clone(),
            samples.clone(),
            applied.clone(),
            winners.clone(),
            progress.clone(),
            tokens.clone(),
        );
        let (url, requests, users) = (
            format!("{base}/campaigns/{campaign}/apply"),
            args.requests,
            args.users,
        );
        connections.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return;
                }
                // Spread a user's repeated applications over the run.
                let user = 1 + (i.wrapping_mul(2_654_435_761) % users);
                // With tokens the credentials name the user, else the body does.
                let (token, body) = match tokens.get((user - 1) as usize) {
                    Some(token) => (Some(token.as_str()), None),
                    None => (None, Some(json!({ "user_id": user }))),
                };
                let sent = Instant::now();
                let answer = call(&client, Method::POST, &url, token, body).await;
                let elapsed = sent.elapsed();
                let outcome = match answer {
                    // 202 with a rank: told yes. 202 pending: admitted, hand-off not yet
                    // confirmed (the coupon route will tell).
                    Ok((StatusCode::ACCEPTED, body)) if body["rank"].is_u64() => {
                        winners
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(user);
                        "accepted".to_owned()
                    }
                    Ok((StatusCode::ACCEPTED, _)) => "pending".to_owned(),
                    Ok((status, body)) => body["error"]
                        .as_str()
                        .map_or(status.to_string(), str::to_owned),
                    Err(_) => "transport_error".to_owned(),
                };
                applied
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(user);
                samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(outcome)
                    .or_default()
                    .push(elapsed);
                timeline
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((started.elapsed(), elapsed));
                progress.inc(1);
            }
        });
    }
    while connections.join_next().await.is_some() {}
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    let cpu_after = cpu_now(&client, &base, &args).await;
    let cpu_seconds: BTreeMap<String, f64> = cpu_after
        .iter()
        .filter_map(|(name, after)| Some((name.clone(), after - cpu_before.get(name)?)))
        .collect();

    let mut samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
    println!(
        "{} requests in {:.2} s: {:.0} requests/s",
        args.requests,
        elapsed.as_secs_f64(),
        args.requests as f64 / elapsed.as_secs_f64()
    );
    println!(
        "{:<18} {:>8} {:>10} {:>10} {:>10}",
        "outcome", "count", "p50", "p99", "p99.9"
    );
    let mut outcomes = BTreeMap::new();
    for (outcome, latencies) in &mut samples {
        latencies.sort_unstable();
        println!(
            "{outcome:<18} {:>8} {:>10.2?} {:>10.2?} {:>10.2?}",
            latencies.len(),
            percentile(latencies, 0.50),
            percentile(latencies, 0.99),
            percentile(latencies, 0.999)
        );
        outcomes.insert(outcome.clone(), latencies.len() as u64);
    }

    let admitted = ["accepted", "pending"]
        .iter()
        .filter_map(|outcome| outcomes.get(*outcome))
        .sum::<u64>();
    for (name, seconds) in &cpu_seconds {
        let per_request = seconds * 1e6 / args.requests as f64;
        let per_admitted = if admitted > 0 {
            format!("{:.0} µs", seconds * 1e6 / admitted as f64)
        } else {
            "-".to_owned()
        };
        println!(
            "cpu {name:<12} {seconds:>8.2} s  {per_request:>8.1} µs per request  {per_admitted:>10} per accepted apply"
        );
    }

    let applied = applied.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let winners = winners.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let expected = args.cap.min(applied.len() as u64);
    let (issued, holders, single) =
        verify(&client, &base, campaign, expected, &applied, &args).await?;
    let accepted = outcomes.get("accepted").copied().unwrap_or(0);
    let winners_hold = winners.is_subset(&holders);
    let ok = issued == expected
        && holders.len() as u64 == expected
        && accepted <= expected
        && winners_hold
        && single;
    println!(
        "check: issued {issued} (expected {expected}), holders {}, accepted {accepted}, every accepted user holds a coupon: {winners_hold}: {}",
        holders.len(),
        if ok { "ok" } else { "FAILED" }
    );
    if let Some(path) = &args.html {
        let timeline = timeline.lock().unwrap_or_else(|e| e.into_inner());
        let page = report::html(&report::RunPage {
            title: format!(
                "{base}, campaign {campaign}: {} requests from {} users on cap {} over {} connections; {:.0} requests/s; check {}",
                args.requests,
                args.users,
                args.cap,
                args.concurrency,
                args.requests as f64 / elapsed.as_secs_f64(),
                if ok { "ok" } else { "FAILED" }
            ),
            latencies: &samples,
            timeline: &timeline,
            cpu_seconds: &cpu_seconds,
            admitted,
        });
        std::fs::write(path, page).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let summary = json!({
            "campaign": campaign,
            "requests": args.requests,
            "users": args.users,
            "cap": args.cap,
            "concurrency": args.concurrency,
            "elapsed_seconds": elapsed.as_secs_f64(),
            "requests_per_second": args.requests as f64 / elapsed.as_secs_f64(),
            "outcomes": samples.iter().map(|(outcome, latencies)| (outcome.clone(), json!({
                "count": latencies.len(),
                "p50_ms": percentile(latencies, 0.50).as_secs_f64() * 1e3,
                "p99_ms": percentile(latencies, 0.99).as_secs_f64() * 1e3,
                "p999_ms": percentile(latencies, 0.999).as_secs_f64() * 1e3,
            }))).collect::<serde_json::Map<_, _>>(),
            "cpu_seconds": cpu_seconds,
            "cpu_us_per_accepted_apply": cpu_seconds.iter().filter(|_| admitted > 0)
                .map(|(name, seconds)| (name.clone(), json!(seconds * 1e6 / admitted as f64)))
                .collect::<serde_json::Map<_, _>>(),
            "issued": issued,
            "holders": holders.len(),
            "ok": ok,
        });
        let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(Report {
        campaign,
        outcomes,
        issued,
        holders: holders.len() as u64,
        ok,
        cpu_seconds,
    })
}
