//! Deployments as people run them: several processes on one database, started
//! together, replaced one by one. Each must keep every promise and come up on its own.

mod support;

use axum::http::{Method, StatusCode};
use support::{Heard, Process, Rush, free_port};

/// Two API processes and a worker started at the same moment on a fresh PostgreSQL
/// database all come up: their migrations take turns under the database's lock instead
/// of colliding (PostgreSQL refuses a second concurrent `CREATE TABLE` of one name).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_started_together_on_a_fresh_database_all_come_up() {
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let env = [("DATABASE_URL", database.as_str())];
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

/// Two copies of the default (in-memory counter, the database's queue) on one
/// PostgreSQL database, applicants spread over both: only the copy holding the
/// database's counter lease admits; the other answers 503 `not_ready` (and is not
/// ready). When the holder is killed, the other takes the lease, rebuilds the campaign
/// in a new epoch from what the first left in the database, and admits the rest.
/// Before the lease each copy admitted up to the cap, and the store refused hundreds
/// of applicants who had heard 202.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_copies_of_the_default_on_one_database_promise_no_more_than_the_cap() {
    const CAP: u64 = 1_000;
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let env = [
        ("DATABASE_URL", database.as_str()),
        ("SETTLE_GRACE_MS", "2000"),
        ("SETTLE_INTERVAL_MS", "500"),
    ];
    let mut first = Process::start(free_port(), &[], &env).await;
    let second = Process::start(free_port(), &[], &env).await;
    let campaign = first.api.create_campaign(CAP).await;
    let (ready, body) = second
        .api
        .call(Method::GET, "/readyz", None)
        .await
        .expect("readyz");
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE, "{body}");

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

    // The holder dies; the other takes over and fills the campaign.
    first.kill();
    let rush = Rush::start(&second.api, campaign, 10_001..=12_000, 32);
    heard.merge(rush.finish().await);
    heard
        .assert_promises_kept(&second.api, campaign, CAP, 12_000, false)
        .await;
}
