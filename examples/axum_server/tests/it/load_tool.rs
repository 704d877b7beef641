//! The load tool (`examples/load`) against a real server on loopback, embedded default
//! and full stack: its verification passes where the promises hold.

use clap::Parser;
use coupon_testkit::service_url;
use firstcome_server::config::Config;
use load::LoadArgs;
use uuid::Uuid;

/// Starts the service on a free port; returns its base URL and the shutdown trigger.
/// Backends not named in `args` are the embedded ones, whatever the environment says.
async fn start(mut args: Vec<String>) -> (String, tokio::sync::oneshot::Sender<()>) {
    args.insert(0, "firstcome-server".into());
    args.extend(["--admin-token".into(), "load-test-admin-token".into()]);
    let mut config = Config::parse_from(&args);
    if !args.iter().any(|a| a == "--redis-url") {
        config.redis.redis_url = None;
    }
    if !args.iter().any(|a| a == "--kafka-brokers") {
        config.kafka.kafka_brokers = None;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        firstcome_server::serve(config, Some(listener), shutdown)
            .await
            .expect("server");
    });
    (url, stop)
}

/// The secret of the run that applies with tokens.
const JWT_SECRET: &str = "load-test-jwt-secret-of-32-bytes!!";

fn load_args(url: String, database_url: Option<String>) -> LoadArgs {
    LoadArgs {
        jwt_secret: None,
        verify_concurrency: 16,
        pids: Vec::new(),
        json: None,
        html: None,
        url,
        admin_token: "load-test-admin-token".into(),
        cap: 300,
        users: 800,
        requests: 2_000,
        concurrency: 32,
        database_url,
        quiet: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verification_passes_on_the_embedded_default() {
    let path = std::env::temp_dir().join(format!("firstcome-load-{}.db", Uuid::new_v4().simple()));
    let database = format!("sqlite://{}?mode=rwc", path.display());
    let (url, stop) = start(vec![
        "--identity".into(),
        "trusted-clients".into(),
        "--database-url".into(),
        database.clone(),
    ])
    .await;
    let summary =
        std::env::temp_dir().join(format!("firstcome-load-{}.json", Uuid::new_v4().simple()));
    let mut args = load_args(url, Some(database));
    // The service runs in this process here: its tree is this process.
    args.pids = vec![("this-test".into(), std::process::id())];
    args.json = Some(summary.clone());
    let page = summary.with_extension("html");
    args.html = Some(page.clone());
    let report = load::run(args).await.expect("a run");
    assert!(report.ok, "{report:?}");
    assert_eq!((report.issued, report.holders), (300, 300));
    assert_eq!(report.outcomes.get("accepted"), Some(&300));
    for process in ["service", "load", "this-test"] {
        let seconds = report.cpu_seconds.get(process).copied().unwrap_or_default();
        assert!(seconds > 0.0, "{process}: {:?}", report.cpu_seconds);
    }
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("the summary"))
            .expect("JSON");
    let _ = std::fs::remove_file(&summary);
    let html = std::fs::read_to_string(&page).expect("the page");
    let _ = std::fs::remove_file(&page);
    assert_eq!(html.matches("<svg").count(), 3, "three charts");
    assert!(
        html.contains("accepted (300)"),
        "the latency chart counts every accepted apply"
    );
    assert_eq!(written["outcomes"]["accepted"]["count"], 300, "{written}");
    assert_eq!(written["ok"], true);
    assert!(
        written["cpu_us_per_accepted_apply"]["service"]
            .as_f64()
            .is_some_and(|us| us > 0.0),
        "{written}"
    );
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verification_passes_on_redis_kafka_and_postgres() {
    let id = Uuid::new_v4().simple().to_string();
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    // Users apply with JWTs here; the load comes from one address, so no address limit.
    let (url, stop) = start(vec![
        "--jwt-secret".into(),
        JWT_SECRET.into(),
        "--rate-limit-address-per-sec".into(),
        "0".into(),
        "--redis-url".into(),
        service_url("REDIS_URL"),
        "--redis-key-prefix".into(),
        format!("load-{id}"),
        "--kafka-brokers".into(),
        service_url("KAFKA_BROKERS"),
        "--kafka-topic".into(),
        format!("load-{id}"),
        "--kafka-dlq-topic".into(),
        format!("load-{id}-dlq"),
        "--kafka-group".into(),
        format!("load-{id}"),
        "--kafka-create-topics".into(),
        "--database-url".into(),
        database.clone(),
    ])
    .await;
    let mut args = load_args(url, Some(database));
    args.jwt_secret = Some(JWT_SECRET.into());
    let report = load::run(args).await.expect("a run");
    assert!(report.ok, "{report:?}");
    assert_eq!((report.issued, report.holders), (300, 300));
    let _ = stop.send(());
}
