//! Settlement against real services: a counter call cut after Redis ran the script, and
//! the settler run by two processes at once.

use crate::support;
use coupon_core::FailureLedger;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use coupon_core::memory::{MemoryQueue, MemoryStore};
use coupon_core::{
    CouponCounter, CouponService, CouponStore, IssueWorker, NewCampaign, SealedEpoch,
    ServiceConfig, SettlerConfig, UserId,
};
use coupon_kafka::{KafkaConfig, KafkaIssueSource};
use coupon_redis::{RedisCounter, RedisCounterConfig};
use coupon_testkit::proxy::{FaultProxy, ProxyMode};
use coupon_testkit::{service_url, wait_for_issued};
use firstcome_server::api::{AppState, router};
use firstcome_server::auth::Identity;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {}", support::TOKEN))
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .expect("a request");
    let response = app.clone().oneshot(request).await.expect("a response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn redis_address() -> String {
    let url = service_url("REDIS_URL");
    url.trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned()
}

/// The connection to Redis is cut right after Redis ran `try_acquire` for user 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_counter_call_cut_after_the_script_ran_ends_as_a_coupon() {
    counter_call_lost_after_the_script_ran(ProxyMode::CutAfterAnswer).await;
}

/// Redis's answer to `try_acquire` for user 2 arrives after the client's 1 s response
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_counter_call_timed_out_after_the_script_ran_ends_as_a_coupon() {
    counter_call_lost_after_the_script_ran(ProxyMode::DelayAnswers(Duration::from_millis(1_500)))
        .await;
}

/// `fault` hits the counter call of user 2 after Redis ran the script: the applicant
/// hears a retryable error (503), yet the slot is taken. Applying again says pending,
/// not "already applied"; the settler publishes the admission's ticket; the applicant
/// ends with the coupon of rank 2.
async fn counter_call_lost_after_the_script_ran(fault: ProxyMode) {
    let proxy = FaultProxy::start(redis_address()).await;
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let counter = Arc::new(
        RedisCounter::connect(
            RedisCounterConfig::new(format!("redis://{}/", proxy.address()))
                .with_key_prefix(&prefix),
        )
        .await
        .expect("Redis through the proxy"),
    );
    let direct = RedisCounter::connect(
        RedisCounterConfig::new(service_url("REDIS_URL")).with_key_prefix(&prefix),
    )
    .await
    .expect("Redis");
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new(100));
    let service = CouponService::with_config(
        counter.clone(),
        queue.clone(),
        store.clone(),
        ServiceConfig::default()
            .with_settler(SettlerConfig::default().with_grace(Duration::from_millis(300))),
    );
    let app = router(Arc::new(
        AppState::new(Arc::new(service), support::TOKEN).with_identity(Identity::TrustedClients),
    ));
    let worker = IssueWorker::new(queue.clone(), store.clone());
    let working = tokio::spawn(async move { worker.run(std::future::pending()).await });
    let campaign = store
        .create_campaign(NewCampaign::new("cut", 10))
        .await
        .expect("campaign");
    counter
        .rebuild(&campaign, Arc::new(SealedEpoch::new(1, Vec::new())))
        .await
        .expect("build the counter");
    let apply = |user: u64| {
        let app = app.clone();
        async move {
            let uri = format!("/campaigns/{}/apply", campaign.id);
            call(&app, "POST", &uri, Some(json!({ "user_id": user }))).await
        }
    };

    assert_eq!(apply(1).await.0, StatusCode::ACCEPTED);
    proxy.set(fault);
    let (status, body) = apply(2).await;
    proxy.set(ProxyMode::Pass);
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")),
        "{body}"
    );
    assert!(
        direct
            .is_admitted(&campaign, UserId(2))
            .await
            .expect("is_admitted"),
        "Redis ran the script before the cut"
    );

    // The connection manager reconnects by itself; user 2 retries.
    let deadline = Instant::now() + Duration::from_secs(10);
    let retried = loop {
        let (status, body) = apply(2).await;
        if status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (retried.0, retried.1["status"].as_str()),
        (StatusCode::ACCEPTED, Some("pending")),
        "{}",
        retried.1
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, report) = call(&app, "POST", "/admin/settle", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["republished"].as_u64(), Some(1), "{report}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let coupon = loop {
        let uri = format!("/campaigns/{}/coupons/2", campaign.id);
        let (status, body) = call(&app, "GET", &uri, None).await;
        if status == StatusCode::OK || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    working.abort();
    assert_eq!(coupon["rank"].as_u64(), Some(2), "{coupon}");
    assert_eq!(store.issued_count(campaign.id).await.expect("count"), 2);
    let (status, body) = apply(2).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("already_applied"))
    );
}

/// Runs `firstcome-server settle` (the binary) with `env`; returns its JSON report.
async fn settle_in_a_process(env: Vec<(String, String)>) -> Value {
    operator_task(&["settle"], env).await
}

/// Runs the binary with the subcommand `args` and `env`; returns the JSON it printed.
async fn operator_task(args: &[&str], env: Vec<(String, String)>) -> Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_firstcome-server"))
        .args(args)
        .envs(env)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run firstcome-server settle");
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The service's environment on the harness Redis and broker (names of this test's
/// own) and `database`.
fn service_env(id: &str, database: &str) -> Vec<(String, String)> {
    [
        ("REDIS_URL", service_url("REDIS_URL")),
        ("REDIS_KEY_PREFIX", format!("test-{id}")),
        ("KAFKA_BROKERS", service_url("KAFKA_BROKERS")),
        ("KAFKA_TOPIC", format!("test-{id}")),
        ("KAFKA_DLQ_TOPIC", format!("test-{id}-dlq")),
        ("KAFKA_GROUP", format!("group-{id}")),
        ("KAFKA_CREATE_TOPICS", "true".to_owned()),
        ("DATABASE_URL", database.to_owned()),
        ("SETTLE_GRACE_MS", "1000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A worker on this test's topic and group into `store`, stopped by the sender.
fn worker_on(
    id: &str,
    store: Arc<coupon_seaorm::SeaOrmStore>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<coupon_core::Result<coupon_core::WorkerReport>>,
) {
    let config = KafkaConfig::new(service_url("KAFKA_BROKERS"))
        .with_topics(format!("test-{id}"), format!("test-{id}-dlq"))
        .with_group_id(format!("group-{id}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let source = KafkaIssueSource::connect(config).await?;
        IssueWorker::new(Arc::new(source), store)
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });
    (stop, task)
}

/// A dead letter is listed and replayed by the operator subcommands; the replayed ticket
/// becomes its coupon; a second replay publishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_listed_and_replayed_by_the_operator_commands() {
    use coupon_core::{IssueFailure, IssueTicket};
    let id = uuid::Uuid::new_v4().simple().to_string();
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let env = service_env(&id, &database);
    let store = Arc::new(
        coupon_seaorm::SeaOrmStore::connect(coupon_seaorm::SeaOrmStoreConfig::new(&database))
            .await
            .expect("store"),
    );
    let campaign = store
        .create_campaign(NewCampaign::new("dead letters", 10))
        .await
        .expect("campaign");
    let ticket = IssueTicket::new(campaign.id, UserId(5), 1, 1);
    store
        .record_failure(&IssueFailure::new(
            ticket.clone(),
            "the cause, since fixed",
            1,
        ))
        .await
        .expect("record");
    let campaign_arg = campaign.id.to_string();

    let listed = operator_task(&["dead-letters", "--campaign", &campaign_arg], env.clone()).await;
    let listed = listed["dead_letters"].as_array().expect("a list").clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["ticket"]["ticket_id"], json!(ticket.ticket_id));

    let replayed = operator_task(&["replay", "--campaign", &campaign_arg], env.clone()).await;
    assert_eq!(
        replayed["replayed"],
        json!([ticket.ticket_id]),
        "{replayed}"
    );
    let again = operator_task(&["replay", "--campaign", &campaign_arg], env).await;
    assert_eq!(again["replayed"], json!([]), "{again}");

    let (stop, working) = worker_on(&id, store.clone());
    let issued = wait_for_issued(store.as_ref(), campaign.id, 1, Duration::from_secs(60)).await;
    assert_eq!(issued, 1, "the replayed ticket never landed");
    let _ = stop.send(());
    let report = working.await.expect("worker task").expect("worker");
    assert_eq!(report.issued, 1);
    let coupons = store
        .coupons_of(campaign.id, UserId(5))
        .await
        .expect("coupons");
    assert_eq!(coupons[0].ticket_id, ticket.ticket_id);
}

/// 300 admissions whose process died before publishing anything, on Redis, Kafka and
/// PostgreSQL. Two `firstcome-server settle` processes run at once: together they publish
/// each admission's ticket exactly once (claims), and a worker turns them into exactly
/// 300 coupons with no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_settler_processes_publish_each_admission_once() {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let env = service_env(&id, &database);
    let store = Arc::new(
        coupon_seaorm::SeaOrmStore::connect(coupon_seaorm::SeaOrmStoreConfig::new(&database))
            .await
            .expect("store"),
    );
    let campaign = store
        .create_campaign(NewCampaign::new("two settlers", 1_000))
        .await
        .expect("campaign");
    let counter = RedisCounter::connect(
        RedisCounterConfig::new(service_url("REDIS_URL")).with_key_prefix(format!("test-{id}")),
    )
    .await
    .expect("Redis");
    counter
        .rebuild(&campaign, Arc::new(SealedEpoch::new(1, Vec::new())))
        .await
        .expect("build the counter");
    for user in 1..=300 {
        counter
            .try_acquire(&campaign, UserId(user))
            .await
            .expect("try_acquire");
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let (first, second) = tokio::join!(
        settle_in_a_process(env.clone()),
        settle_in_a_process(env.clone())
    );
    let republished = |report: &Value| report["republished"].as_u64().expect("republished");
    assert_eq!(
        republished(&first) + republished(&second),
        300,
        "{first} {second}"
    );

    let (stop, working) = worker_on(&id, store.clone());
    let issued = wait_for_issued(store.as_ref(), campaign.id, 300, Duration::from_secs(60)).await;
    assert_eq!(issued, 300, "the republished tickets never all landed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(());
    let report = working.await.expect("worker task").expect("worker");
    assert_eq!((report.issued, report.duplicates), (300, 0), "{report:?}");
    let holders: HashSet<UserId> = store
        .holders(campaign.id)
        .await
        .expect("holders")
        .into_iter()
        .collect();
    assert_eq!(holders, (1..=300).map(UserId).collect());

    // A third pass finds nothing left to settle.
    let third = settle_in_a_process(env).await;
    assert_eq!(
        (third["unsettled"].as_u64(), third["republished"].as_u64()),
        (Some(0), Some(0))
    );
}
