//! A real Prometheus server (Debian's package) scraping the service and evaluating the
//! shipped alerting rules: a database outage longer than the settle grace makes the
//! settlement alert fire, and it resolves once the database is back. The rules are
//! `deploy/prometheus/firstcome-rules.yml` with their thresholds scaled from minutes to
//! seconds, so that the test takes about a minute, not ten. The console, meanwhile,
//! says that the database is why nothing is admitted.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use coupon_testkit::services::PrivateService;
use serde_json::Value;

use crate::support::{self, Api, Process, free_port};

/// Prometheus on a free port, killed when dropped.
struct Prometheus {
    child: Child,
    api: Api,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A folder removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Prometheus {
    /// Scrapes `target` (host:port) every second and evaluates the shipped rules, scaled.
    async fn start(target: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "firstcome-prometheus-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("a folder for Prometheus");
        let dir = TempDir(dir);
        let rules = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../deploy/prometheus/firstcome-rules.yml"),
        )
        .expect("the shipped rules");
        // Minutes to seconds: the expressions are the shipped ones.
        let scaled = rules
            .replace("> 120", "> 4")
            .replace("for: 1m", "for: 2s")
            .replace("for: 2m", "for: 2s");
        assert_ne!(scaled, rules, "the thresholds moved: update the scaling");
        std::fs::write(dir.0.join("rules.yml"), scaled).expect("rules");
        std::fs::write(
            dir.0.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - rules.yml\n\
                 scrape_configs:\n  - job_name: firstcome\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("config");
        let port = free_port();
        let binary = std::env::var("PROMETHEUS")
            .ok()
            .filter(|path| !path.is_empty())
            .unwrap_or_else(|| "prometheus".into());
        let child = Command::new(&binary)
            .current_dir(&dir.0)
            .args([
                "--config.file=prometheus.yml".to_owned(),
                format!("--storage.tsdb.path={}", dir.0.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "{binary}: {error}; install it with `scripts/services.sh install` (Debian's \
                     prometheus package), or run the suite with scripts/test.sh"
                )
            });
        let prometheus = Self {
            child,
            api: Api::at(format!("http://127.0.0.1:{port}")),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(
            prometheus.api.call(Method::GET, "/-/ready", None).await,
            Ok((StatusCode::OK, _))
        ) {
            assert!(
                Instant::now() < deadline,
                "Prometheus did not get ready in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        prometheus
    }

    /// The state of alert `name` now: "firing", "pending", or `None`.
    async fn alert(&self, name: &str) -> Option<String> {
        let (status, body) = self
            .api
            .call(Method::GET, "/api/v1/alerts", None)
            .await
            .expect("alerts");
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"]["alerts"]
            .as_array()
            .expect("a list of alerts")
            .iter()
            .find(|alert| alert["labels"]["alertname"] == name)
            .and_then(|alert| alert["state"].as_str().map(str::to_owned))
    }

    /// Waits up to `limit` for alert `name` to be in `state` (`None`: absent).
    async fn wait_for(&self, name: &str, state: Option<&str>, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let now = self.alert(name).await;
            if now.as_deref() == state {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{name} is {now:?} after {limit:?}, not {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The value of `query` now, if it has one.
    async fn value(&self, query: &str) -> Option<f64> {
        let (_, body): (StatusCode, Value) = self
            .api
            .call(Method::GET, &format!("/api/v1/query?query={query}"), None)
            .await
            .expect("query");
        body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|value| value.parse().ok())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_past_the_grace_fires_the_settlement_alert_until_it_is_back() {
    let postgres = PrivateService::start("postgres");
    let database = support::fresh_postgres_on(postgres.port()).await;
    let env = [
        ("DATABASE_URL", database.as_str()),
        ("SETTLE_GRACE_MS", "1000"),
        ("SETTLE_INTERVAL_MS", "500"),
        ("DATABASE_ACQUIRE_TIMEOUT_MS", "300"),
        ("DATABASE_OPERATION_TIMEOUT_MS", "300"),
    ];
    let port = free_port();
    let service = Process::start(port, &[], &env).await;
    let campaign = service.api.create_campaign(10).await;
    let (status, body) = service.api.apply(campaign, 1).await.expect("an answer");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let prometheus = Prometheus::start(&format!("127.0.0.1:{port}")).await;
    // Scraped, ready, and settling: nothing fires.
    let deadline = Instant::now() + Duration::from_secs(30);
    while prometheus.value("firstcome_ready").await != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw the service ready"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(prometheus.alert("FirstcomeSettlementStalled").await, None);

    postgres.kill();
    let fired = prometheus
        .wait_for(
            "FirstcomeSettlementStalled",
            Some("firing"),
            Duration::from_secs(60),
        )
        .await;
    // The service stays scrapable through the outage, and says it is not ready.
    let deadline = Instant::now() + Duration::from_secs(15);
    while prometheus.value("firstcome_ready").await != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "no scrape said not ready in the outage"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The console says why nothing is admitted, and that it is the database.
    let browser = support::Browser::start(1280, 900).await;
    browser
        .goto(&format!(
            "http://127.0.0.1:{port}/ui#token={}",
            support::TOKEN
        ))
        .await;
    let paused = browser
        .wait_for(
            "the console's pause reason",
            "return document.querySelector('#pause:not([hidden]) [data-pause=not-ready]')?.textContent ?? null",
            Duration::from_secs(15),
        )
        .await;
    assert!(
        paused
            .as_str()
            .is_some_and(|text| text.contains("the database")),
        "{paused}"
    );

    postgres.restart();
    browser
        .wait_for(
            "the pause reason gone once the database is back",
            "return !document.querySelector('[data-pause=not-ready]') || null",
            Duration::from_secs(60),
        )
        .await;
    browser.close().await;
    let resolved = prometheus
        .wait_for("FirstcomeSettlementStalled", None, Duration::from_secs(60))
        .await;
    eprintln!("fired {fired:?} after the kill, resolved {resolved:?} after the restart");
    drop(service);
}
