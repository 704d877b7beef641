//! The service through faults, over real HTTP on loopback: the database killed mid-rush
//! for 75 s, on the full stack and on the embedded default.

use crate::support;

use std::time::{Duration, Instant};

use coupon_testkit::services::PrivateService;
use support::{Rush, Service};

/// 6,000 applicants on cap 2,000; PostgreSQL is killed with kill -9 a third of the way
/// in and started again 75 s later, the applicants trying on through the outage until
/// each hears an answer. Every applicant who heard 202 (accepted or pending) holds a
/// coupon in the end, exactly 2,000 do, and each of them heard yes, or "already
/// applied" after an error left their slot rolling forward (never "sold out").
async fn database_killed_for_75_s_mid_rush(backends: Vec<String>) {
    let pg = PrivateService::start("postgres");
    let database = support::fresh_postgres_on(pg.port()).await;
    let mut args: Vec<&str> = backends.iter().map(String::as_str).collect();
    args.extend([
        "--database-url",
        &database,
        "--settle-grace-ms",
        "5000",
        "--settle-interval-ms",
        "1000",
    ]);
    let service = Service::start(&args).await;
    let campaign = service.api.create_campaign(2_000).await;

    let rush = Rush::start(&service.api, campaign, 1..=6_000, 64);
    rush.wait_for(2_000).await;
    pg.kill();
    let killed = Instant::now();
    // An applicant whose slot is held but who heard an error keeps hearing one until
    // the database is back: the rush ends only after the restart.
    tokio::time::sleep(Duration::from_secs(75).saturating_sub(killed.elapsed())).await;
    pg.restart();
    let heard = rush.finish().await;

    heard
        .assert_promises_kept(&service.api, campaign, 2_000, 6_000, true)
        .await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_stack_database_killed_for_75_s_mid_rush() {
    database_killed_for_75_s_mid_rush(support::shared_backend_args()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_default_database_killed_for_75_s_mid_rush() {
    database_killed_for_75_s_mid_rush(Vec::new()).await;
}

/// Sends one apply over a connection of its own and hangs up after `after`, without
/// reading the answer.
async fn apply_and_hang_up(address: &str, campaign: u64, user: u64, after: Duration) {
    use tokio::io::AsyncWriteExt;
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return;
    };
    let body = format!(r#"{{"user_id":{user}}}"#);
    let request = format!(
        "POST /campaigns/{campaign}/apply HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(request.as_bytes()).await;
    tokio::time::sleep(after).await;
    drop(stream);
}

/// 3,000 applicants on cap 1,000 on the full stack, each hanging up mid-apply (0 to
/// 4 ms after sending, while the server admits and publishes). Nobody hears an answer,
/// and still every slot taken becomes a coupon: exactly 1,000, for 1,000 users.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_that_hang_up_mid_apply_still_fill_the_campaign() {
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let mut args: Vec<String> = support::shared_backend_args();
    args.extend([
        "--database-url".into(),
        database,
        "--settle-grace-ms".into(),
        "2000".into(),
        "--settle-interval-ms".into(),
        "500".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let service = Service::start(&args).await;
    let campaign = service.api.create_campaign(1_000).await;
    let address = service.api.url.trim_start_matches("http://").to_owned();

    let mut tasks = tokio::task::JoinSet::new();
    for user in 1..=3_000u64 {
        let address = address.clone();
        tasks.spawn(async move {
            let after = Duration::from_micros((user * 7_919) % 4_000);
            apply_and_hang_up(&address, campaign, user, after).await;
        });
        if tasks.len() >= 64 {
            tasks.join_next().await;
        }
    }
    while tasks.join_next().await.is_some() {}

    let issued = service
        .api
        .wait_for_issued(campaign, 1_000, Duration::from_secs(60))
        .await;
    let holders = service.api.holders(campaign, &(1..=3_000).collect()).await;
    let (_, metrics) = service
        .api
        .call(axum::http::Method::GET, "/metrics", None)
        .await
        .expect("metrics");
    service.stop().await;
    assert_eq!((issued, holders.len()), (1_000, 1_000));
    // Handlers that ran to the end counted their answer; the others were dropped
    // mid-apply when their client hung up.
    let answered: u64 = metrics
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with(r#"firstcome_requests_total{route="apply""#))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        answered < 3_000,
        "some handlers must have been dropped mid-apply for this test to mean anything"
    );
}
