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
            config.redis_url = None;
        }
        if !args.contains(&"--kafka-brokers") {
            config.kafka_brokers = None;
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

    /// Creates a campaign of `cap`; returns its id.
    pub async fn create_campaign(&self, cap: u64) -> u64 {
        let (status, body) = self
            .call(
                Method::POST,
                "/campaigns",
                Some(json!({ "name": "faults", "cap": cap })),
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

/// What applicants heard in a rush.
#[derive(Debug, Default)]
pub struct Heard {
    /// Users told 202 with a rank.
    pub accepted: HashSet<u64>,
    /// Users told 202 pending.
    pub pending: HashSet<u64>,
    /// Users told 409 already_applied: their first try took a slot and its answer was
    /// lost (the process died after committing the ticket) or was a retryable error
    /// while the admission rolled forward.
    pub already: HashSet<u64>,
    /// Other answers by status code and error code, counted.
    pub others: std::collections::BTreeMap<String, u64>,
    /// Users who heard a retryable error (503, or no answer) before their final answer.
    pub retried: HashSet<u64>,
}

impl Heard {
    /// Users told yes, one way or the other: 202 accepted or pending.
    pub fn told_yes(&self) -> HashSet<u64> {
        self.accepted.union(&self.pending).copied().collect()
    }

    /// The promises after a rush of `applicants` on `cap`: exactly `cap` issued and held,
    /// every applicant told yes or "already applied" among the holders, and no more
    /// than `cap` told yes. When `exact` (every applicant kept trying until a final
    /// answer, and no process died), the holders are exactly those told yes and those
    /// told "already applied": an applicant whose apply ended in a retryable error while
    /// their admission rolled forward (the contract allows it: the coupon route tells
    /// the truth) hears "already applied" when trying again once the coupon is stored.
    /// After a crash, an applicant whose first answer was lost with the process may
    /// also hear "sold out" when trying again.
    pub async fn assert_promises_kept(
        &self,
        api: &Api,
        campaign: u64,
        cap: u64,
        applicants: u64,
        exact: bool,
    ) {
        let issued = api
            .wait_for_issued(campaign, cap, Duration::from_secs(120))
            .await;
        let told_yes = self.told_yes();
        let holders = api.holders(campaign, &(1..=applicants).collect()).await;
        assert_eq!(issued, cap, "{self:?}");
        let empty_handed = told_yes.difference(&holders).count();
        assert_eq!(
            empty_handed, 0,
            "applicants who heard 202 and hold no coupon"
        );
        let told_already_without_coupon: Vec<_> = self.already.difference(&holders).collect();
        assert!(
            told_already_without_coupon.is_empty(),
            "told already applied and hold no coupon: {told_already_without_coupon:?}"
        );
        assert_eq!(holders.len() as u64, cap);
        assert!(told_yes.len() as u64 <= cap, "{} told yes", told_yes.len());
        if exact {
            let answered: HashSet<u64> = told_yes.union(&self.already).copied().collect();
            let unanswered: Vec<_> = holders.difference(&answered).collect();
            assert!(
                unanswered.is_empty(),
                "holders told neither yes nor already applied: {unanswered:?}; others heard {:?}",
                self.others
            );
            // Each applies once: "already applied" is right only after an error.
            let never_retried: Vec<_> = self.already.difference(&self.retried).collect();
            assert!(
                never_retried.is_empty(),
                "told already applied on their first answer: {never_retried:?}"
            );
        }
    }

    /// Adds what another rush over other users heard.
    pub fn merge(&mut self, other: Heard) {
        self.accepted.extend(other.accepted);
        self.pending.extend(other.pending);
        self.already.extend(other.already);
        self.retried.extend(other.retried);
        for (key, count) in other.others {
            *self.others.entry(key).or_default() += count;
        }
    }
}

/// A rush in progress: `users` apply once each over `concurrency` connections, retrying
/// on 503 (every applicant keeps trying until they hear an answer).
pub struct Rush {
    pub done: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<Heard>,
}

impl Rush {
    pub fn start(
        api: &Api,
        campaign: u64,
        users: std::ops::RangeInclusive<u64>,
        concurrency: usize,
    ) -> Self {
        use std::sync::atomic::Ordering;
        use std::sync::{Arc, Mutex};
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let heard = Arc::new(Mutex::new(Heard::default()));
        let next = Arc::new(std::sync::atomic::AtomicU64::new(*users.start()));
        let last = *users.end();
        let task = {
            let (api, done, heard) = (api.clone(), done.clone(), heard.clone());
            tokio::spawn(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..concurrency {
                    let (api, done, heard, next) =
                        (api.clone(), done.clone(), heard.clone(), next.clone());
                    tasks.spawn(async move {
                        loop {
                            let user = next.fetch_add(1, Ordering::Relaxed);
                            if user > last {
                                return;
                            }
                            let mut retried = false;
                            let answer = loop {
                                match api.apply(campaign, user).await {
                                    Ok((StatusCode::SERVICE_UNAVAILABLE, _)) | Err(_) => {
                                        retried = true;
                                        tokio::time::sleep(Duration::from_millis(200)).await;
                                    }
                                    Ok(answer) => break answer,
                                }
                            };
                            let mut heard = heard.lock().unwrap_or_else(|e| e.into_inner());
                            if retried {
                                heard.retried.insert(user);
                            }
                            match answer {
                                (StatusCode::ACCEPTED, body) if body["rank"].is_u64() => {
                                    heard.accepted.insert(user);
                                }
                                (StatusCode::ACCEPTED, body) if body["status"] == "pending" => {
                                    heard.pending.insert(user);
                                }
                                (StatusCode::CONFLICT, body)
                                    if body["error"] == "already_applied" =>
                                {
                                    heard.already.insert(user);
                                }
                                (status, body) => {
                                    let key = format!("{} {}", status.as_u16(), body["error"]);
                                    *heard.others.entry(key).or_default() += 1;
                                }
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
                while tasks.join_next().await.is_some() {}
                std::mem::take(&mut *heard.lock().unwrap_or_else(|e| e.into_inner()))
            })
        };
        Self { done, task }
    }

    /// Waits until `count` applicants have heard their answer.
    pub async fn wait_for(&self, count: u64) {
        while self.done.load(std::sync::atomic::Ordering::Relaxed) < count {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the end of the rush.
    pub async fn finish(self) -> Heard {
        self.task.await.expect("rush task")
    }
}

/// The service binary running as a process of its own, killed when dropped.
pub struct Process {
    child: std::process::Child,
    /// A client of it (API roles).
    pub api: Api,
}

impl Process {
    /// Starts `firstcome-server` with `args` and `env` on `port` (the shared services of the
    /// harness are not inherited: each process gets only what `env` names), and waits
    /// until it answers `/healthz` (API roles) or has printed its banner (workers).
    pub async fn start(port: u16, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(port, args, env, None, None).await
    }

    /// [`Process::start`] under an open-files limit of `open_files` (`ulimit -n`).
    pub async fn start_with_open_files(
        port: u16,
        args: &[&str],
        env: &[(&str, &str)],
        open_files: u32,
    ) -> Self {
        Self::spawn(port, args, env, None, Some(open_files)).await
    }

    /// [`Process::start`] with the process's output and log, at `info`, written to `log`.
    pub async fn start_logged(
        port: u16,
        args: &[&str],
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Self {
        let file = std::fs::File::create(log).expect("create the process's log file");
        Self::spawn(port, args, env, Some(file), None).await
    }

    async fn spawn(
        port: u16,
        args: &[&str],
        env: &[(&str, &str)],
        log: Option<std::fs::File>,
        open_files: Option<u32>,
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_firstcome-server");
        let mut command = match open_files {
            // The shell lowers the limit, then becomes the server.
            Some(limit) => {
                let mut shell = std::process::Command::new("sh");
                shell.args([
                    "-c",
                    &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
                    binary,
                ]);
                shell
            }
            None => std::process::Command::new(binary),
        };
        for name in [
            "REDIS_URL",
            "KAFKA_BROKERS",
            "DATABASE_URL",
            "MYSQL_URL",
            "ROLE",
            "QUEUE",
        ] {
            command.env_remove(name);
        }
        command
            .args(args)
            // The scenarios name users in the body; identity has tests of its own.
            .env("IDENTITY", "trusted-clients")
            .envs(env.iter().copied())
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", if log.is_some() { "info" } else { "warn" });
        match log {
            Some(file) => {
                let copy = file.try_clone().expect("share the log file");
                command.stdout(copy).stderr(file)
            }
            None => command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit()),
        };
        let child = command.spawn().expect("start firstcome-server");
        let api = Api {
            url: format!("http://127.0.0.1:{port}"),
            client: load::http_client(usize::MAX),
        };
        let mut process = Self { child, api };
        if !args.contains(&"worker") {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok((StatusCode::OK, _)) =
                    process.api.call(Method::GET, "/healthz", None).await
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the service did not answer within 60 s"
                );
                if let Some(status) = process.exit_status() {
                    panic!("the service exited before answering: {status}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        process
    }

    /// How the process ended, if it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
