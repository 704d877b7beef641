//! The chaos tool: the service as real processes (two `--role api`, two `--role
//! worker`) on private Redis, tansu and PostgreSQL, a rush of applicants, and meanwhile
//! a seeded schedule of faults: `kill -9` of each process and backend, a PostgreSQL
//! outage of 30 to 60 s, latency, resets and a blackhole on each backend's connections
//! (through a fault proxy the tool runs), clients that hang up mid-request. When the
//! schedule ends it waits for the run to settle and checks every promise in the
//! database and through the API.
//!
//! A seed fixes the schedule and each applicant's choices; the interleaving of real
//! processes is not fixed, so a seed that failed once is replayed to see the same faults,
//! not always the same failure.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! let args = chaos::ChaosArgs::for_seed(7, std::time::Duration::from_secs(60), "target/debug/firstcome-server".into());
//! let report = chaos::run_seed(&args, 7).await?;
//! assert!(report.kept_every_promise(), "{report}");
//! # Ok(()) }
//! ```

pub mod availability;
pub mod check;
pub mod inject;
pub mod report;
pub mod rush;
pub mod schedule;
pub mod stack;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use clap::Parser;
use serde_json::json;

pub use report::SeedReport;

use crate::inject::Processes;
use crate::rush::{Rush, RushSettings};
use crate::stack::{ADMIN_TOKEN, Backends, ServerProcess, ServerSettings};

/// What to run.
#[derive(Debug, Clone, Parser)]
#[command(name = "chaos", version, about)]
pub struct ChaosArgs {
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// How many seeds, one after another.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// How long each seed's schedule of faults lasts, in seconds.
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// The campaign's cap.
    #[arg(long, default_value_t = 1_000)]
    pub cap: u64,
    /// Applicants, arriving evenly over the first three quarters of the schedule (by
    /// default a quarter more than the cap: the cap is reached about 60% of the way in,
    /// so faults strike both admissions and the settling after).
    #[arg(long, default_value_t = 1_250)]
    pub applicants: u64,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// The share of attempts that hang up mid-request.
    #[arg(long, default_value_t = 0.05)]
    pub hang_up: f64,
    /// How long to wait after the schedule for every coupon to be issued, in seconds.
    #[arg(long, default_value_t = 180)]
    pub settle_secs: u64,
    /// The service's binary; by default `firstcome-server` beside this tool's own.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Writes every seed's report as JSON lines to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Prints each seed's schedule of faults and runs nothing.
    #[arg(long)]
    pub plan_only: bool,
    /// Keeps each seed's directory (process logs, service logs) even when it passed.
    #[arg(long)]
    pub keep: bool,
}

impl ChaosArgs {
    /// The defaults, for one seed lasting `duration`, with the service at `server_bin`.
    pub fn for_seed(seed: u64, duration: Duration, server_bin: PathBuf) -> Self {
        let mut args = Self::parse_from(["chaos"]);
        args.from = seed;
        args.duration_secs = duration.as_secs();
        args.server_bin = Some(server_bin);
        args
    }

    /// The service's binary to run.
    pub fn server_binary(&self) -> Result<PathBuf, String> {
        if let Some(binary) = &self.server_bin {
            return Ok(binary.clone());
        }
        let beside = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("firstcome-server");
        if beside.exists() {
            Ok(beside)
        } else {
            Err(format!(
                "{} does not exist: build it first (`cargo build --release -p firstcome-server -p chaos`) or pass --server-bin",
                beside.display()
            ))
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.cap == 0 || self.applicants == 0 || self.concurrency == 0 {
            return Err("--cap, --applicants and --concurrency must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.hang_up) {
            return Err("--hang-up is a share between 0 and 1".into());
        }
        if self.duration_secs < 10 {
            return Err("--duration-secs must be at least 10".into());
        }
        Ok(())
    }
}

/// Processes of each role the tool starts.
pub const APIS: usize = 2;
/// Worker processes the tool starts.
pub const WORKERS: usize = 2;

/// Runs one seed from start to checks; `Err` when the stack could not be set up at all
/// (a broken promise is a report that says so, not an error).
pub async fn run_seed(args: &ChaosArgs, seed: u64) -> Result<SeedReport, String> {
    args.validate()?;
    let window = Duration::from_secs(args.duration_secs);
    let plan = schedule::plan(seed, window, APIS, WORKERS);
    let dir = std::env::temp_dir().join(format!("firstcome-chaos-{seed}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let settings = ServerSettings {
        binary: args.server_binary()?,
        apis: APIS,
        workers: WORKERS,
        logs: dir.clone(),
    };

    let backends = Backends::start().await;
    let mut env: Vec<(String, String)> = backends
        .service_env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (name, value) in [
        ("KAFKA_CREATE_TOPICS", "true"),
        ("SETTLE_GRACE_MS", "3000"),
        ("SETTLE_INTERVAL_MS", "1000"),
    ] {
        env.push((name.into(), value.into()));
    }
    let mut processes = Processes {
        apis: Vec::new(),
        workers: Vec::new(),
    };
    for index in 0..settings.apis {
        let name = format!("api-{index}");
        processes
            .apis
            .push(ServerProcess::start(name, "api", &settings, env.clone()).await?);
    }
    for index in 0..settings.workers {
        let name = format!("worker-{index}");
        processes
            .workers
            .push(ServerProcess::start(name, "worker", &settings, env.clone()).await?);
    }
    let urls: Vec<String> = processes.apis.iter().map(ServerProcess::url).collect();
    let client = processes.apis[0].client.clone();
    let campaign = create_campaign(&client, &urls[0], args.cap).await?;

    let started = Instant::now();
    let rush = Rush::start(
        RushSettings {
            seed,
            campaign,
            applicants: args.applicants,
            arrivals_over: window.mul_f64(0.75),
            hang_up: args.hang_up,
            concurrency: args.concurrency,
            request_timeout: Duration::from_secs(10),
            sold_out_retry: Duration::from_secs(5),
        },
        urls.clone(),
        started,
    );
    let finished = std::sync::atomic::AtomicBool::new(false);
    let work = async {
        let injected = inject::inject(&plan, &backends, &mut processes, started, |done| {
            let error = done
                .error
                .as_deref()
                .map(|e| format!(" (failed: {e})"))
                .unwrap_or_default();
            eprintln!(
                "[chaos {seed}] {:>6.1}s {}{error}",
                done.began.as_secs_f64(),
                done.fault
            );
        })
        .await;
        tokio::time::sleep_until((started + window).into()).await;
        let settled = wait_until_settled(
            &client,
            &urls,
            campaign,
            args.cap,
            Duration::from_secs(args.settle_secs),
        )
        .await;
        // Tickets still queued behind the last coupon (duplicates, or ones the store
        // would refuse) land or dead-letter now, before the checks read the store.
        tokio::time::sleep(Duration::from_secs(5)).await;
        finished.store(true, std::sync::atomic::Ordering::Relaxed);
        (injected, settled)
    };
    let ((injected, settled), broker_repairs) =
        tokio::join!(work, repair_broker(&backends, &finished, seed));
    let heard = rush.stop().await;
    let unplanned_exits = processes.unplanned_exits();
    let counter_losses: Vec<Duration> = injected
        .iter()
        .filter(|done| done.fault.loses_counter())
        .map(|done| done.began)
        .collect();
    let (checks, found) = check::check(&check::Facts {
        database_url: &backends.database_url,
        api: &urls[0],
        client: &client,
        campaign,
        cap: args.cap,
        applicants: args.applicants,
        heard: &heard,
        counter_losses: &counter_losses,
    })
    .await?;
    let report = SeedReport::new(report::Parts {
        seed,
        cap: args.cap,
        applicants: args.applicants,
        window,
        heard,
        injected,
        checks,
        found,
        unplanned_exits,
        time_to_settle: settled,
        broker_repairs,
        logs: dir.clone(),
    });
    drop(processes);
    if report.kept_every_promise() && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        for service in backends.dirs() {
            let _ = copy_logs(service, &dir);
        }
    }
    Ok(report)
}

/// Restarts the test broker whenever it has panicked (see [`Backends::broker_panics`])
/// until `finished`; how many times.
async fn repair_broker(
    backends: &Backends,
    finished: &std::sync::atomic::AtomicBool,
    seed: u64,
) -> u64 {
    let (mut seen, mut repairs) = (0, 0);
    while !finished.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let panics = backends.broker_panics();
        if panics > seen {
            eprintln!("[chaos {seed}] the test broker panicked (a tansu defect): restarting it");
            if tokio::task::block_in_place(|| backends.restart(schedule::Backend::Broker)).is_ok() {
                seen = panics;
                repairs += 1;
            }
        }
    }
    repairs
}

async fn create_campaign(client: &load::HttpClient, api: &str, cap: u64) -> Result<u64, String> {
    let body = json!({ "name": "chaos", "cap": cap });
    let url = format!("{api}/campaigns");
    let (status, created) =
        load::call(client, Method::POST, &url, Some(ADMIN_TOKEN), Some(body)).await?;
    if status != StatusCode::CREATED {
        return Err(format!(
            "creating the campaign answered {status}: {created}"
        ));
    }
    created["id"]
        .as_u64()
        .ok_or_else(|| format!("no campaign id in {created}"))
}

/// Waits until some API says every coupon is admitted and issued; returns how long that
/// took, or `None` after `patience`.
async fn wait_until_settled(
    client: &load::HttpClient,
    apis: &[String],
    campaign: u64,
    cap: u64,
    patience: Duration,
) -> Option<Duration> {
    let began = Instant::now();
    loop {
        for api in apis {
            let url = format!("{api}/campaigns/{campaign}");
            if let Ok((StatusCode::OK, body)) =
                load::call(client, Method::GET, &url, None, None).await
                && body["issued"].as_u64() == Some(cap)
                && body["admitted"].as_u64() == Some(cap)
            {
                return Some(began.elapsed());
            }
        }
        if began.elapsed() > patience {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Copies the logs of a service's directory next to the processes' logs.
fn copy_logs(service: &std::path::Path, into: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(service)? {
        let path = entry?.path();
        let logs = if path.is_dir() {
            std::fs::read_dir(&path)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect()
        } else {
            vec![path]
        };
        for log in logs
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
        {
            if let Some(name) = log.file_name() {
                std::fs::copy(&log, into.join(name))?;
            }
        }
    }
    Ok(())
}
