//! Deployments as people run them: several processes on one database, started
//! together, replaced one by one. Each must keep every promise and come up on its own.

use crate::support;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use support::{Heard, Process, Rush, free_port};

/// Two API processes and a worker started at the same moment on a fresh PostgreSQL
/// database all come up: their migrations take turns under the database's lock instead
/// of colliding (PostgreSQL refuses a second concurrent `CREATE TABLE` of one name).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_started_together_on_a_fresh_database_all_come_up() {
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    started_together_all_come_up(&database).await;
}

/// The same on a fresh SQLite file (the embedded default's database): the migrations
/// take SQLite's write lock in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_started_together_on_a_fresh_sqlite_file_all_come_up() {
    let file = std::env::temp_dir().join(format!(
        "firstcome-together-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    started_together_all_come_up(&format!("sqlite://{}?mode=rwc", file.display())).await;
}

async fn started_together_all_come_up(database: &str) {
    let env = [("DATABASE_URL", database)];
    let (api_port, other_port, worker_port) = (free_port(), free_port(), free_port());
    let (_api, _other, mut worker) = tokio::join!(
        Process::start(api_port, &["--role", "api"], &env),
        Process::start(other_port, &["--role", "api"], &env),
        Process::start(worker_port, &["--role", "worker"], &env),
    );
    // The API processes answered, so every migration has run; a worker that failed its
    // own would have exited by now.
    assert_eq!(worker.exit_status(), None, "the worker exited");
}

/// A worker-only process (`--role worker`) can be watched: it answers `/healthz` and
/// `/readyz` for an orchestrator and `/metrics` for Prometheus (the batches it took and
/// the tickets it issued), and nothing else. Before, it listened on nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_only_process_can_be_probed_and_scraped_and_serves_nothing_else() {
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let env = [("DATABASE_URL", database.as_str())];
    let api = Process::start(free_port(), &["--role", "api"], &env).await;
    let worker = Process::start(free_port(), &["--role", "worker"], &env).await;
    let campaign = api.api.create_campaign(50).await;
    for user in 1..=20 {
        let (status, body) = api.api.apply(campaign, user).await.expect("an answer");
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let issued = api
        .api
        .wait_for_issued(campaign, 20, Duration::from_secs(60))
        .await;
    assert_eq!(issued, 20);

    let (status, body) = worker
        .api
        .call(Method::GET, "/readyz", None)
        .await
        .expect("readyz");
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
    let (status, metrics) = worker
        .api
        .call(Method::GET, "/metrics", None)
        .await
        .expect("metrics");
    assert_eq!(status, StatusCode::OK);
    let text = metrics.as_str().expect("Prometheus text");
    let issued_by_worker =
        process_stats::sample(text, "firstcome_worker_tickets_total{outcome=\"issued\"}");
    assert_eq!(issued_by_worker, Some(20.0), "{text}");
    assert!(text.contains("firstcome_queue_lag "), "{text}");
    assert!(
        text.contains("firstcome_worker_batch_tickets_count"),
        "{text}"
    );
    // It admits nobody: no API route, no page.
    for path in [
        format!("/campaigns/{campaign}/apply"),
        "/ui".to_owned(),
        "/openapi.json".to_owned(),
    ] {
        let (status, _) = worker
            .api
            .call(Method::GET, &path, None)
            .await
            .expect("an answer");
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
}

/// Two copies of the default (in-memory counter, the database's queue) on one
/// PostgreSQL database, applicants spread over both: only the copy holding the
/// database's counter lease admits; the other answers 503 `not_ready` (and is not
/// ready). When the holder is killed, the other takes the lease, rebuilds the campaign
/// in a new epoch from what the first left in the database, and admits; a third copy
/// started beside it takes over in turn when it is killed, and admits the rest.
/// Before the lease each copy admitted up to the cap, and the store refused hundreds
/// of applicants who had heard 202.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_copies_of_the_default_on_one_database_promise_no_more_than_the_cap() {
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    two_copies_promise_no_more_than_the_cap(&database).await;
}

/// The same on one SQLite file, the embedded default, where the store is the queue
/// (tickets become coupons in the commit that makes them durable): the lease is a lock
/// on a file beside the database, and the copy that takes over seals the coupons the
/// first issued at commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_copies_of_the_embedded_default_on_one_file_promise_no_more_than_the_cap() {
    let file = std::env::temp_dir().join(format!(
        "firstcome-copies-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    two_copies_promise_no_more_than_the_cap(&format!("sqlite://{}?mode=rwc", file.display())).await;
}

async fn two_copies_promise_no_more_than_the_cap(database: &str) {
    const CAP: u64 = 1_000;
    let env = [
        ("DATABASE_URL", database),
        ("SETTLE_GRACE_MS", "2000"),
        ("SETTLE_INTERVAL_MS", "500"),
    ];
    let mut first = Process::start(free_port(), &[], &env).await;
    let mut second = Process::start(free_port(), &[], &env).await;
    let campaign = first.api.create_campaign(CAP).await;
    let (ready, body) = second
        .api
        .call(Method::GET, "/readyz", None)
        .await
        .expect("readyz");
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // What the alerting rules read: the standby is not ready, on purpose, and does not
    // count its campaigns as fenced (its counter is suspended, not lost); the holder
    // is ready with nothing fenced.
    let (_, standby) = second
        .api
        .call(Method::GET, "/metrics", None)
        .await
        .expect("metrics");
    let standby = standby.as_str().expect("Prometheus text");
    assert!(standby.contains("\nfirstcome_ready 0\n"), "{standby}");
    assert!(
        !standby.contains("firstcome_campaigns_rebuilding"),
        "{standby}"
    );
    let (_, holder) = first
        .api
        .call(Method::GET, "/metrics", None)
        .await
        .expect("metrics");
    let holder = holder.as_str().expect("Prometheus text");
    assert!(holder.contains("\nfirstcome_ready 1\n"), "{holder}");
    assert!(
        holder.contains("\nfirstcome_campaigns_rebuilding 0\n"),
        "{holder}"
    );

    // 1,200 applicants, one apply each, alternately on each copy.
    let mut heard = Heard::default();
    let mut from_second = std::collections::BTreeMap::<String, u64>::new();
    for user in 1..=1_200u64 {
        let api = if user % 2 == 0 {
            &first.api
        } else {
            &second.api
        };
        let (status, body) = api.apply(campaign, user).await.expect("an answer");
        if status == StatusCode::ACCEPTED {
            heard.accepted.insert(user);
        }
        if user % 2 == 1 {
            *from_second
                .entry(format!("{} {}", status.as_u16(), body["error"]))
                .or_default() += 1;
        }
    }
    assert_eq!(
        from_second,
        [("503 \"not_ready\"".to_owned(), 600)].into(),
        "the copy without the lease admitted no one"
    );
    assert_eq!(heard.accepted.len(), 600, "the holder admitted its 600");

    // Replaced one by one: the holder dies, the other takes over and admits some, a
    // new copy comes up beside it, then the second dies and the third fills the campaign.
    first.kill();
    let rush = Rush::start(&second.api, campaign, 10_001..=10_200, 32);
    heard.merge(rush.finish().await);
    let third = Process::start(free_port(), &[], &env).await;
    second.kill();
    let rush = Rush::start(&third.api, campaign, 10_201..=12_000, 32);
    heard.merge(rush.finish().await);
    heard
        .assert_promises_kept(&third.api, campaign, CAP, 12_000, false)
        .await;
}

/// 3,000 applicants on cap 500, the first 1,500 pressing twice (the second press once
/// the first is answered): every winner's second press hears where their slot stands
/// (`already_applied`, or `202 pending` while the coupon is on its way), every loser's
/// `sold_out`. Before, the sold-out memo answered before anyone looked at who
/// held a slot: 303 of the winners' second presses heard `sold_out`.
async fn winners_pressing_again_hear_already_applied(api: &support::Api) {
    let campaign = api.create_campaign(500).await;
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..32u64 {
        let api = api.clone();
        tasks.spawn(async move {
            let mut answers = Vec::new();
            for user in (1..=3_000u64).filter(|user| user % 32 == lane) {
                let first = retrying_apply(&api, campaign, user).await;
                let second = if user <= 1_500 {
                    Some(retrying_apply(&api, campaign, user).await)
                } else {
                    None
                };
                answers.push((user, first, second));
            }
            answers
        });
    }
    let mut won = 0;
    let mut second_presses = std::collections::BTreeMap::<(bool, String), u64>::new();
    while let Some(lane) = tasks.join_next().await {
        for (_, first, second) in lane.expect("lane") {
            let winner = first == "202";
            won += u64::from(winner);
            if let Some(second) = second {
                *second_presses.entry((winner, second)).or_default() += 1;
            }
        }
    }
    assert_eq!(won, 500);
    let wrong: Vec<_> = second_presses
        .iter()
        .filter(|((winner, answer), _)| match winner {
            true => answer != "409 already_applied" && answer != "202 pending",
            false => answer != "409 sold_out",
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "second presses (winner?, answer): {second_presses:?}"
    );
}

/// One apply, retried while the answer is 503: "202", "202 pending", or the status and
/// error code.
async fn retrying_apply(api: &support::Api, campaign: u64, user: u64) -> String {
    loop {
        match api.apply(campaign, user).await {
            Ok((StatusCode::ACCEPTED, body)) if body["status"] == "pending" => {
                return "202 pending".to_owned();
            }
            Ok((StatusCode::ACCEPTED, _)) => return "202".to_owned(),
            Ok((StatusCode::SERVICE_UNAVAILABLE, _)) | Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Ok((status, body)) => {
                return format!(
                    "{} {}",
                    status.as_u16(),
                    body["error"].as_str().unwrap_or("?")
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn winners_pressing_again_hear_already_applied_on_the_embedded_default() {
    let file = std::env::temp_dir().join(format!(
        "firstcome-again-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let database = format!("sqlite://{}?mode=rwc", file.display());
    let service = support::Service::start(&["--database-url", &database]).await;
    winners_pressing_again_hear_already_applied(&service.api).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn winners_pressing_again_hear_already_applied_on_the_full_stack() {
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let mut args = support::shared_backend_args();
    args.extend(["--database-url".into(), database]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let service = support::Service::start(&args).await;
    winners_pressing_again_hear_already_applied(&service.api).await;
    service.stop().await;
}

/// A second process of one machine started on an address another one holds (an API
/// and a worker both on the default `--bind`) stops at once and says what to do, not
/// only the operating system's "address in use".
#[test]
fn a_process_whose_address_is_taken_says_to_give_it_its_own() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to hold");
    let address = taken.local_addr().expect("its address");
    let file = std::env::temp_dir().join(format!(
        "firstcome-taken-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_firstcome-server"))
        .args(["--role", "worker", "--bind", &address.to_string()])
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", file.display()),
        )
        .env("RUST_LOG", "warn")
        .output()
        .expect("run firstcome-server");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains(&format!("binding {address}"))
            && said.contains("give each process of one machine its own address with --bind"),
        "{said}"
    );
    let _ = std::fs::remove_file(file);
}
