//! Test support: the service on a loopback port of its own, and a client for it.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode, header};
use clap::Parser;
use firstcome_server::config::Config;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

mod process;
mod rush;
mod webdriver;

pub use process::{Process, free_port};
pub use rush::{Heard, Rush};
pub use webdriver::{Browser, program};

/// The admin token of every service these tests start.
pub const TOKEN: &str = "fault-tests-admin";

/// An HTTP client keeping connections alive.
pub use load::HttpClient;

/// The service running on a free loopback port.
pub struct Service {
    /// A client of it.
    pub api: Api,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

/// A client of the service's API.
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    client: HttpClient,
}

/// Sends the in-process service's log to the test's output (shown by nextest for a
/// failing test only): what the service saw is what tells a failure's cause. `RUST_LOG`
/// overrides the default level.
pub fn log_to_test_output() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,rdkafka=warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

impl Service {
    /// Starts `firstcome-server` with `args`. Backends not named in `args` are the embedded
    /// ones, whatever the environment says.
    pub async fn start(args: &[&str]) -> Self {
        log_to_test_output();
        let mut argv = vec!["firstcome-server", "--admin-token", TOKEN];
        if !args.contains(&"--identity") {
            // The scenarios name users in the body; identity has tests of its own.
            argv.extend(["--identity", "trusted-clients"]);
        }
        argv.extend_from_slice(args);
        let mut config = Config::parse_from(&argv);
        if !args.contains(&"--redis-url") {
            config.redis.redis_url = None;
        }
        if !args.contains(&"--kafka-brokers") {
            config.kafka.kafka_brokers = None;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            firstcome_server::serve(config, Some(listener), shutdown).await
        });
        let client = load::http_client(usize::MAX);
        Self {
            api: Api { url, client },
            stop,
            task,
        }
    }

    /// Stops it gracefully and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("service task").expect("service");
    }

    /// Asks it to stop gracefully; the task that ends when it has.
    pub fn begin_stop(self) -> tokio::task::JoinHandle<Result<(), String>> {
        let _ = self.stop.send(());
        self.task
    }
}

impl Api {
    /// A client of whatever answers HTTP at `url` (`http://127.0.0.1:<port>`).
    pub fn at(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            client: load::http_client(16),
        }
    }

    /// One request as the admin; the status and the JSON body (a JSON string if it is
    /// not JSON). A transport error is `Err`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), String> {
        let admin = format!("Bearer {TOKEN}");
        let (status, _, body) = self
            .request(method, path, body, &[("authorization", &admin)])
            .await?;
        Ok((status, body))
    }

    /// One request with exactly `headers` (and a JSON content type when there is a
    /// body); the status, the headers and the JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, axum::http::HeaderMap, Value), String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, headers, body))
    }

    /// Every campaign as `GET /admin/campaigns` lists it.
    pub async fn campaigns(&self) -> Vec<Value> {
        let (status, body) = self
            .call(Method::GET, "/admin/campaigns", None)
            .await
            .expect("campaigns");
        assert_eq!(status, StatusCode::OK, "{body}");
        body["campaigns"].as_array().expect("a list").clone()
    }

    /// A campaign's state as `GET /campaigns/{id}` says.
    pub async fn campaign_state(&self, campaign: u64) -> String {
        let (status, body) = self
            .call(Method::GET, &format!("/campaigns/{campaign}"), None)
            .await
            .expect("campaign");
        assert_eq!(status, StatusCode::OK, "{body}");
        body["state"].as_str().expect("a state").to_owned()
    }

    /// Creates a campaign of `cap`; returns its id.
    pub async fn create_campaign(&self, cap: u64) -> u64 {
        self.create_sharded_campaign(cap, 1).await
    }

    /// Creates a campaign of `cap` split over `shards` counters; returns its id.
    pub async fn create_sharded_campaign(&self, cap: u64, shards: u16) -> u64 {
        let (status, body) = self
            .call(
                Method::POST,
                "/campaigns",
                Some(json!({ "name": "faults", "cap": cap, "shards": shards })),
            )
            .await
            .expect("create the campaign");
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_u64().expect("an id")
    }

    /// Applies once as `user`.
    pub async fn apply(&self, campaign: u64, user: u64) -> Result<(StatusCode, Value), String> {
        self.call(
            Method::POST,
            &format!("/campaigns/{campaign}/apply"),
            Some(json!({ "user_id": user })),
        )
        .await
    }

    /// Waits until the campaign says `issued >= expected` (the API may answer 503 while a
    /// backend is away); returns the last `issued` seen.
    pub async fn wait_for_issued(&self, campaign: u64, expected: u64, patience: Duration) -> u64 {
        let deadline = Instant::now() + patience;
        let mut issued = 0;
        loop {
            if let Ok((StatusCode::OK, body)) = self
                .call(Method::GET, &format!("/campaigns/{campaign}"), None)
                .await
            {
                issued = body["issued"].as_u64().unwrap_or(0);
            }
            if issued >= expected || Instant::now() > deadline {
                return issued;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The users among `users` whose coupon route answers 200 with exactly one coupon;
    /// panics on any other answer than 200 or 404.
    pub async fn holders(&self, campaign: u64, users: &HashSet<u64>) -> HashSet<u64> {
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in users.iter().copied().collect::<Vec<_>>().chunks(100) {
            let chunk = chunk.to_vec();
            let probe = self.clone();
            tasks.spawn(async move {
                let mut held = Vec::new();
                for user in chunk {
                    let path = format!("/campaigns/{campaign}/coupons/{user}");
                    let (status, body) = probe
                        .call(Method::GET, &path, None)
                        .await
                        .expect("coupon route");
                    match status {
                        StatusCode::OK => {
                            assert_eq!(body["coupons"].as_u64(), Some(1), "user {user}: {body}");
                            held.push(user);
                        }
                        StatusCode::NOT_FOUND | StatusCode::ACCEPTED => {}
                        other => panic!("coupon of user {user}: {other} {body}"),
                    }
                }
                held
            });
        }
        let mut holders = HashSet::new();
        while let Some(joined) = tasks.join_next().await {
            holders.extend(joined.expect("probe task"));
        }
        holders
    }
}

/// A fresh database on the PostgreSQL listening on `port`.
pub async fn fresh_postgres_on(port: u16) -> String {
    coupon_seaorm::testkit::fresh_database(&format!(
        "postgres://postgres@127.0.0.1:{port}/postgres"
    ))
    .await
}

/// Topic, group and key-prefix flags of a test's own on the harness Redis and broker.
pub fn shared_backend_args() -> Vec<String> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    vec![
        "--redis-url".into(),
        coupon_testkit::service_url("REDIS_URL"),
        "--redis-key-prefix".into(),
        format!("test-{id}"),
        "--kafka-brokers".into(),
        coupon_testkit::service_url("KAFKA_BROKERS"),
        "--kafka-topic".into(),
        format!("test-{id}"),
        "--kafka-dlq-topic".into(),
        format!("test-{id}-dlq"),
        "--kafka-group".into(),
        format!("group-{id}"),
        "--kafka-create-topics".into(),
    ]
}

/// [`shared_backend_args`] with the counter on `redis_url` (a private server, a Cluster).
pub fn shared_backend_args_on(redis_url: &str) -> Vec<String> {
    let mut args = shared_backend_args();
    for pair in args.chunks_mut(2) {
        if pair[0] == "--redis-url" {
            pair[1] = redis_url.to_owned();
        }
    }
    args
}

/// The value `args` give `flag` (`--flag value` pairs).
pub fn arg_value<'a>(args: &'a [String], flag: &str) -> &'a str {
    args.chunks(2)
        .find(|pair| pair[0] == flag)
        .map(|pair| pair[1].as_str())
        .unwrap_or_else(|| panic!("{flag} is not among {args:?}"))
}
