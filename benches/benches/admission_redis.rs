//! Admissions per second through `RedisCounter` at 1, 16, 64 and 256 concurrent tasks,
//! gathered (the default) and one script call per apply, then Redis's own CPU per
//! admission both ways side by side (`INFO cpu`), beside `redis-benchmark` running the
//! same script at the same concurrency; then, on a
//! primary with one replica that the bench starts, 256 tasks with confirmation (`WAIT`)
//! on and off, beside `redis-benchmark` of the script on that primary.
//!
//! ```sh
//! scripts/services.sh start /tmp/fc && source /tmp/fc/env
//! cargo bench -p firstcome-benches --bench admission_redis
//! ```

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coupon_core::{Campaign, CouponCounter, UserId};
use coupon_redis::{Confirm, RedisCounter, RedisCounterConfig};
use coupon_testkit::redis_servers::PrivateRedis;
use coupon_testkit::{ready_campaign, service_url};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const CONCURRENCY: [u64; 4] = [1, 16, 64, 256];
/// Never reached: every measured admission is granted and writes, as in a live sale.
const CAP: u64 = i64::MAX as u64;

fn host_port(url: &str) -> (String, String) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "6379"));
    (host.to_owned(), port.to_owned())
}

/// Runs redis-benchmark on the admission script, one apply per call (as an apply alone
/// makes it); returns its requests per second.
fn redis_benchmark(url: &str, clients: u64, pipeline: u64) -> Option<f64> {
    let (host, port) = host_port(url);
    let script = include_str!("../../coupon-redis/src/scripts/admit.lua");
    let sha = Command::new("redis-cli")
        .args(["-h", &host, "-p", &port, "SCRIPT", "LOAD", script])
        .output()
        .ok()?;
    let sha = String::from_utf8_lossy(&sha.stdout).trim().to_owned();
    let tag = "{bench:redis-benchmark}";
    // Built on this server, as a live campaign is: the script then runs its full path.
    let info = Command::new("redis-cli")
        .args(["-h", &host, "-p", &port, "INFO", "server"])
        .output()
        .ok()?;
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    let run_id = info
        .lines()
        .find_map(|line| line.strip_prefix("run_id:"))?
        .trim()
        .to_owned();
    Command::new("redis-cli")
        .args([
            "-h",
            &host,
            "-p",
            &port,
            "HSET",
            &format!("{tag}:users"),
            "~built",
            &run_id,
            "~epoch",
            "1",
        ])
        .output()
        .ok()?;
    Command::new("redis-cli")
        .args([
            "-h",
            &host,
            "-p",
            &port,
            "SET",
            &format!("{tag}:count"),
            "0",
        ])
        .output()
        .ok()?;
    let out = Command::new("redis-benchmark")
        .args(["-h", &host, "-p", &port, "-q", "-r", "1000000000"])
        .args([
            "-c",
            &clients.to_string(),
            "-n",
            "200000",
            "-P",
            &pipeline.to_string(),
        ])
        .args(["EVALSHA", &sha, "4"])
        .args([
            format!("{tag}:count"),
            format!("{tag}:users"),
            format!("{tag}:slots"),
            format!("{tag}:free"),
        ])
        .args([&CAP.to_string(), "1", &run_id, "t", "__rand_int__"])
        .output()
        .ok()?;
    let _ = Command::new("redis-cli")
        .args(["-h", &host, "-p", &port, "DEL"])
        .args([format!("{tag}:count"), format!("{tag}:users")])
        .output();
    let text = String::from_utf8_lossy(&out.stdout);
    // "EVALSHA ...: 53191.49 requests per second, p50=0.455 msec"
    let figure = text.rsplit(": ").next()?.split_whitespace().next()?;
    figure.parse().ok()
}

/// The script calls (`EVALSHA` and `EVAL`) the server ran so far.
fn script_calls(url: &str) -> u64 {
    let (host, port) = host_port(url);
    let stats = Command::new("redis-cli")
        .args(["-h", &host, "-p", &port, "INFO", "commandstats"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    ["evalsha", "eval"]
        .iter()
        .filter_map(|command| {
            stats
                .lines()
                .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
                .and_then(|rest| rest.split(',').next())
                .and_then(|calls| calls.parse::<u64>().ok())
        })
        .sum()
}

/// Redis's own CPU time so far (`used_cpu_sys` + `used_cpu_user`), in seconds.
fn redis_cpu(url: &str) -> f64 {
    let (host, port) = host_port(url);
    let info = Command::new("redis-cli")
        .args(["-h", &host, "-p", &port, "INFO", "cpu"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    ["used_cpu_sys:", "used_cpu_user:"]
        .iter()
        .filter_map(|name| {
            info.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.trim().parse::<f64>().ok())
        })
        .sum()
}

/// A counter on `url` whose calls take up to `most` applies (1: one call per apply).
fn counter(runtime: &tokio::runtime::Runtime, url: &str, most: usize) -> Arc<RedisCounter> {
    let config = RedisCounterConfig::new(url)
        .with_key_prefix("bench")
        .with_max_gathered(most);
    Arc::new(
        runtime
            .block_on(RedisCounter::connect(config))
            .expect("connect to REDIS_URL"),
    )
}

fn admission(c: &mut Criterion) {
    let url = service_url("REDIS_URL");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let modes = [("one call per apply", 1), ("gathered", 256)];
    let counters: Vec<_> = modes
        .iter()
        .map(|&(_, most)| counter(&runtime, &url, most))
        .collect();
    let campaign = Arc::new(runtime.block_on(ready_campaign(counters[0].as_ref(), CAP)));
    let next_user = Arc::new(AtomicU64::new(0));

    let mut group = c.benchmark_group("admission_redis");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    for tasks in CONCURRENCY {
        for ((name, _), counter) in modes.iter().zip(&counters) {
            group.bench_with_input(BenchmarkId::new(*name, tasks), &tasks, |b, &tasks| {
                b.iter_custom(|iters| {
                    runtime.block_on(admit(counter, &campaign, &next_user, tasks, iters))
                });
            });
        }
    }
    group.finish();

    // Redis's own CPU per admission at 256 concurrent applies, both ways side by side,
    // alternated twice so that neither has the warmer machine.
    const ADMISSIONS: u64 = 100_000;
    println!("\nRedis CPU per admission, {ADMISSIONS} admissions at 256 concurrent applies:");
    println!(
        "| round | how | admissions/s | Redis CPU µs per admission | script calls per admission |"
    );
    println!("| --- | --- | --- | --- | --- |");
    let mut cpu = [0.0f64; 2];
    for round in 1..=2 {
        for (index, ((name, _), counter)) in modes.iter().zip(&counters).enumerate() {
            let (cpu_before, calls_before) = (redis_cpu(&url), script_calls(&url));
            let took = runtime.block_on(admit(counter, &campaign, &next_user, 256, ADMISSIONS));
            let used = redis_cpu(&url) - cpu_before;
            let calls = script_calls(&url).saturating_sub(calls_before);
            cpu[index] += used;
            println!(
                "| {round} | {name} | {:.0} | {:.2} | {:.3} |",
                ADMISSIONS as f64 / took.as_secs_f64(),
                used * 1e6 / ADMISSIONS as f64,
                calls as f64 / ADMISSIONS as f64
            );
        }
    }
    println!(
        "gathered / one call per apply, Redis CPU per admission: {:.2}x",
        cpu[1] / cpu[0].max(f64::EPSILON)
    );
    // Millions of users by now: a DEL may outlast the counter's response timeout, and
    // the keys are the bench's own ("bench" prefix), so a failed clean-up is only said.
    if let Err(error) = runtime.block_on(counters[0].forget(campaign.id)) {
        eprintln!("clean up (the bench's keys stay): {error}");
    }

    println!("\nbaseline: redis-benchmark, same script, one apply per call (requests/s)");
    for clients in CONCURRENCY {
        let plain = redis_benchmark(&url, clients, 1);
        let piped = redis_benchmark(&url, clients, 16);
        let show = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.0}"));
        println!(
            "  {clients:>3} clients: {:>8} unpipelined, {:>8} with -P 16",
            show(plain),
            show(piped)
        );
    }
}

/// Time for `iters` admissions from `tasks` concurrent tasks, each a new user.
async fn admit(
    counter: &Arc<RedisCounter>,
    campaign: &Arc<Campaign>,
    next_user: &Arc<AtomicU64>,
    tasks: u64,
    iters: u64,
) -> Duration {
    let per_task = iters.div_ceil(tasks);
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (counter, campaign, next_user) = (counter.clone(), campaign.clone(), next_user.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let user = UserId(next_user.fetch_add(1, Ordering::Relaxed));
                counter
                    .try_acquire(&campaign, user)
                    .await
                    .expect("admission");
            }
        }));
    }
    for handle in handles {
        handle.await.expect("task");
    }
    // Scale to the iterations asked for: tasks ran per_task each.
    started
        .elapsed()
        .mul_f64(iters as f64 / (per_task * tasks) as f64)
}

/// 256 tasks on a primary with one replica: each admission confirmed by the replica
/// (`WAIT`, shared) against unconfirmed, beside redis-benchmark of the script.
fn confirmation(c: &mut Criterion) {
    const TASKS: u64 = 256;
    let primary = PrivateRedis::start();
    let replica =
        PrivateRedis::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let linked = (0..200).any(|_| {
        let up = replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up");
        if !up {
            std::thread::sleep(Duration::from_millis(50));
        }
        up
    });
    assert!(linked, "the replica did not link to the primary");
    let url = primary.url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut group = c.benchmark_group("admission_redis_replicated");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    for (name, confirm) in [("confirmed", Confirm::Auto), ("unconfirmed", Confirm::Off)] {
        let counter = runtime
            .block_on(RedisCounter::connect(
                RedisCounterConfig::new(&url)
                    .with_key_prefix(format!("bench-{name}"))
                    .with_confirm(confirm, Duration::from_millis(500)),
            ))
            .expect("connect to the bench's primary");
        let counter = Arc::new(counter);
        let campaign = Arc::new(runtime.block_on(ready_campaign(counter.as_ref(), CAP)));
        let next_user = Arc::new(AtomicU64::new(0));
        group.bench_with_input(BenchmarkId::new(name, TASKS), &TASKS, |b, &tasks| {
            b.iter_custom(|iters| {
                runtime.block_on(admit(&counter, &campaign, &next_user, tasks, iters))
            });
        });
    }
    group.finish();
    let waits = Command::new("redis-cli")
        .args(["-p", &primary.port.to_string(), "INFO", "commandstats"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let waits = waits
        .lines()
        .find(|line| line.starts_with("cmdstat_wait:"))
        .unwrap_or("cmdstat_wait: none");
    println!("\nWAITs on the primary over the run: {waits}");
    let plain = redis_benchmark(&url, TASKS, 1);
    println!(
        "baseline: redis-benchmark, the script on the replicated primary, {TASKS} clients: {}",
        plain.map_or("n/a".to_owned(), |v| format!("{v:.0} requests/s"))
    );
}

criterion_group!(benches, admission, confirmation);
criterion_main!(benches);
