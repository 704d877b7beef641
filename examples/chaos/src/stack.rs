//! The stack under test: private Redis, PostgreSQL and tansu from the harness script,
//! a fault proxy in front of each, and the service's processes (API and worker roles)
//! connected through the proxies, each of which can be killed and started again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use coupon_testkit::proxy::{FaultProxy, ProxyMode};
use coupon_testkit::services::PrivateService;
use load::HttpClient;

use crate::schedule::{Backend, Network};

/// The admin token of the processes the tool starts.
pub const ADMIN_TOKEN: &str = "chaos-tool-admin-token";

/// How the service's processes are started.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The service's binary (`firstcome-server`).
    pub binary: PathBuf,
    /// API processes (`--role api`).
    pub apis: usize,
    /// Worker processes (`--role worker`).
    pub workers: usize,
    /// Where each process's stderr goes, one file per process.
    pub logs: PathBuf,
}

/// Redis, tansu and PostgreSQL of the run's own, each behind a fault proxy.
pub struct Backends {
    redis: PrivateService,
    broker: PrivateService,
    postgres: PrivateService,
    redis_proxy: FaultProxy,
    broker_proxy: FaultProxy,
    postgres_proxy: FaultProxy,
    /// The run's database, reached directly (not through the proxy): for the checks.
    pub database_url: String,
    /// The same database through the proxy: for the service.
    proxied_database_url: String,
}

impl Backends {
    /// Starts the three services and their proxies, and creates the run's database.
    pub async fn start() -> Self {
        let redis = PrivateService::start("redis");
        let postgres = PrivateService::start("postgres");
        // The broker tells clients where to connect: the proxy's port, known first.
        let broker_proxy = FaultProxy::start("127.0.0.1:9").await;
        let broker = PrivateService::start_kafka_advertising(broker_proxy.port());
        broker_proxy.set_upstream(format!("127.0.0.1:{}", broker.port()));
        let redis_proxy = FaultProxy::start(format!("127.0.0.1:{}", redis.port())).await;
        let postgres_proxy = FaultProxy::start(format!("127.0.0.1:{}", postgres.port())).await;
        let database_url = coupon_seaorm::testkit::fresh_database(&format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            postgres.port()
        ))
        .await;
        let proxied_database_url = database_url.replace(
            &format!("127.0.0.1:{}/", postgres.port()),
            &format!("127.0.0.1:{}/", postgres_proxy.port()),
        );
        Self {
            redis,
            broker,
            postgres,
            redis_proxy,
            broker_proxy,
            postgres_proxy,
            database_url,
            proxied_database_url,
        }
    }

    /// The environment a service process needs to reach the backends (through the
    /// proxies).
    pub fn service_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "REDIS_URL",
                format!("redis://127.0.0.1:{}", self.redis_proxy.port()),
            ),
            ("KAFKA_BROKERS", self.broker_proxy.address()),
            ("DATABASE_URL", self.proxied_database_url.clone()),
        ]
    }

    fn service(&self, backend: Backend) -> &PrivateService {
        match backend {
            Backend::Redis => &self.redis,
            Backend::Broker => &self.broker,
            Backend::Postgres => &self.postgres,
        }
    }

    fn proxy(&self, backend: Backend) -> &FaultProxy {
        match backend {
            Backend::Redis => &self.redis_proxy,
            Backend::Broker => &self.broker_proxy,
            Backend::Postgres => &self.postgres_proxy,
        }
    }

    /// `kill -9` of a backend.
    pub fn kill(&self, backend: Backend) -> Result<(), String> {
        harness(backend, "kill", || self.service(backend).kill())
    }

    /// Starts a killed backend again on its port and storage (Redis: empty).
    pub fn restart(&self, backend: Backend) -> Result<(), String> {
        harness(backend, "restart", || self.service(backend).restart())
    }

    /// The network to `backend` misbehaves as `fault` says.
    pub fn disturb(&self, backend: Backend, fault: Network) {
        self.proxy(backend).set(match fault {
            Network::Latency(delay) => ProxyMode::DelayAnswers(delay),
            Network::Reset => ProxyMode::CutAfterAnswer,
            Network::Blackhole => ProxyMode::SwallowAnswers,
        });
    }

    /// Holds PostgreSQL's commits back (`true`: each waits for a synchronous standby
    /// that does not exist) or lets them all through (`false`). Set on the server
    /// itself, not through the proxy, so the service sees nothing but slow commits.
    pub async fn hold_commits(&self, hold: bool) -> Result<(), String> {
        use sea_orm::ConnectionTrait;
        let setting = if hold {
            "ALTER SYSTEM SET synchronous_standby_names = 'firstcome_chaos_absent'"
        } else {
            "ALTER SYSTEM RESET synchronous_standby_names"
        };
        let admin = sea_orm::Database::connect(&self.database_url)
            .await
            .map_err(|e| format!("postgres (commits): {e}"))?;
        for statement in [setting, "SELECT pg_reload_conf()"] {
            admin
                .execute_unprepared(statement)
                .await
                .map_err(|e| format!("postgres (commits): {statement}: {e}"))?;
        }
        let _ = admin.close().await;
        Ok(())
    }

    /// The network to `backend` behaves again.
    pub fn heal(&self, backend: Backend) {
        self.proxy(backend).set(ProxyMode::Pass);
    }

    /// How often the test broker (tansu) has panicked so far, by its log. Unpatched,
    /// tansu 0.6's storage panicked ("more or less than one row") when an idempotent
    /// producer bumped its own epoch, and refused every request until restarted: a
    /// defect of the test broker (fixed by `scripts/tansu/tansu-storage/`), which the
    /// tool still repairs and counts, since it is not a fault of the schedule.
    pub fn broker_panics(&self) -> usize {
        let log = self.broker.dir().join("kafka").join("tansu.log");
        // Only the known defect: any other panic stays a failure of the run.
        std::fs::read_to_string(log)
            .map(|text| text.matches("more or less than one row").count())
            .unwrap_or(0)
    }

    /// Where the services keep their state and logs.
    pub fn dirs(&self) -> [&Path; 3] {
        [self.redis.dir(), self.broker.dir(), self.postgres.dir()]
    }
}

/// One process of the service, which can be killed and started again on the same port.
pub struct ServerProcess {
    name: String,
    role: &'static str,
    port: u16,
    child: Option<Child>,
    env: Vec<(String, String)>,
    settings: ServerSettings,
    crashes: Vec<String>,
    /// A client of it (API role).
    pub client: HttpClient,
}

impl ServerProcess {
    /// Starts `name` in `role` (`api` or `worker`) with the backends' environment and
    /// settings in `env`; an API process is started when it answers `/healthz`.
    pub async fn start(
        name: String,
        role: &'static str,
        settings: &ServerSettings,
        env: Vec<(String, String)>,
    ) -> Result<Self, String> {
        let port = free_port()?;
        let mut process = Self {
            name,
            role,
            port,
            child: None,
            env,
            settings: settings.clone(),
            crashes: Vec::new(),
            client: load::http_client(256),
        };
        process.spawn().await?;
        Ok(process)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.settings.logs.join(format!("{}.log", self.name)))
            .map_err(|e| format!("opening {}'s log: {e}", self.name))?;
        let mut command = Command::new(&self.settings.binary);
        // Only what the tool names: nothing of the caller's own settings leaks in.
        command.env_clear();
        for name in ["PATH", "HOME", "TMPDIR", "LANG"] {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command
            .args(["--role", self.role])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("BIND", format!("127.0.0.1:{}", self.port))
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            // The rush names its users in the body, and must not be rate limited.
            .env("IDENTITY", "trusted-clients")
            // The tool logs nothing itself: its RUST_LOG, if set, is the services'.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn,rdkafka=warn".into()),
            )
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = command.spawn().map_err(|e| {
            format!(
                "starting {} ({}): {e}; build it with `cargo build -p firstcome-server` or pass --server-bin",
                self.name,
                self.settings.binary.display()
            )
        })?;
        self.child = Some(child);
        if self.role == "api" {
            self.wait_healthy(Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    async fn wait_healthy(&mut self, patience: Duration) -> Result<(), String> {
        let deadline = Instant::now() + patience;
        let url = format!("{}/healthz", self.url());
        loop {
            if let Ok((StatusCode::OK, _)) =
                load::call(&self.client, Method::GET, &url, None, None).await
            {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("{} exited at start: {status}", self.name));
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not answer within {patience:?}", self.name));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9` (a process found already dead is recorded as an unplanned exit).
    pub fn kill(&mut self) {
        if let Some(exit) = self.exited() {
            self.crashes.push(exit);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again after a kill, on the same port.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn().await
    }

    /// Whether it exited on its own (a crash the schedule did not ask for).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(format!("{} exited: {status}", self.name)),
            _ => None,
        }
    }

    /// Every exit it made on its own: found at a scheduled kill, or now.
    pub fn unplanned_exits(&mut self) -> Vec<String> {
        let mut exits = self.crashes.clone();
        exits.extend(self.exited());
        exits
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a harness action, which panics when the script fails, as a `Result`.
fn harness(backend: Backend, action: &str, run: impl FnOnce()) -> Result<(), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .map_err(|_| format!("services.sh {action} {backend} failed"))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| format!("finding a free port: {e}"))
}
