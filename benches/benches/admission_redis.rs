//! Admissions per second through `RedisCounter` at 1, 16, 64 and 256 concurrent tasks,
//! beside `redis-benchmark` running the same script at the same concurrency.
//!
//! ```sh
//! scripts/services.sh start /tmp/fc && source /tmp/fc/env
//! cargo bench -p firstcome-benches --bench admission_redis
//! ```

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coupon_core::testkit::{fresh_campaign, service_url};
use coupon_core::{CouponCounter, UserId};
use coupon_redis::{RedisCounter, RedisCounterConfig};
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

/// Runs redis-benchmark on the try_acquire script; returns its requests per second.
fn redis_benchmark(url: &str, clients: u64, pipeline: u64) -> Option<f64> {
    let (host, port) = host_port(url);
    let script = include_str!("../../coupon-redis/src/scripts/try_acquire.lua");
    let sha = Command::new("redis-cli")
        .args(["-h", &host, "-p", &port, "SCRIPT", "LOAD", script])
        .output()
        .ok()?;
    let sha = String::from_utf8_lossy(&sha.stdout).trim().to_owned();
    let tag = "{bench:redis-benchmark}";
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
        .args(["__rand_int__", &CAP.to_string(), "1"])
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

fn admission(c: &mut Criterion) {
    let url = service_url("REDIS_URL");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let counter = runtime
        .block_on(RedisCounter::connect(
            RedisCounterConfig::new(&url).with_key_prefix("bench"),
        ))
        .expect("connect to REDIS_URL");
    let counter = Arc::new(counter);
    let campaign = Arc::new(fresh_campaign(CAP));
    let next_user = Arc::new(AtomicU64::new(0));

    let mut group = c.benchmark_group("admission_redis");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    for tasks in CONCURRENCY {
        group.bench_with_input(
            BenchmarkId::new("RedisCounter::try_acquire", tasks),
            &tasks,
            |b, &tasks| {
                b.iter_custom(|iters| {
                    let per_task = iters.div_ceil(tasks);
                    runtime.block_on(async {
                        let started = Instant::now();
                        let mut handles = Vec::new();
                        for _ in 0..tasks {
                            let (counter, campaign, next_user) =
                                (counter.clone(), campaign.clone(), next_user.clone());
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
                    })
                });
            },
        );
    }
    group.finish();
    runtime
        .block_on(counter.forget(campaign.id))
        .expect("clean up");

    println!("\nbaseline: redis-benchmark, same script, same server (requests/s)");
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

criterion_group!(benches, admission);
criterion_main!(benches);
