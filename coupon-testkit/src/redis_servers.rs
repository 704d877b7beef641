//! Redis servers of a test's own, started from `redis-server` (which
//! `scripts/services.sh install` puts on the machine) on free loopback ports: a single
//! server a test may kill and restart empty, a three-node Cluster, and a primary with a
//! replica watched by three Sentinels.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn redis_server() -> &'static str {
    // The harness (scripts/services.sh) installs redis-server when it is missing.
    "redis-server"
}

/// A redis-server of the test's own on a free loopback port, keeping nothing on disk,
/// killed when dropped.
pub struct PrivateRedis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts a server with the default settings.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with `extra` arguments (`--replicaof HOST PORT`, ...).
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("firstcome-redis-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create a redis dir");
        let mut redis = Self {
            port: free_port(),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        redis.spawn();
        redis
    }

    /// Its `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new(redis_server())
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server not found: run the tests through scripts/test.sh, which installs it",
            );
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ping = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "ping"])
                .output();
            if ping.is_ok_and(|out| out.stdout.starts_with(b"PONG")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis on port {} did not start", self.port);
    }

    /// `kill -9`: the server and everything it held are gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port, empty (nothing is saved unless asked: `SAVE`).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs redis-cli against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Cluster-enabled redis-servers of the test's own, joined into one Redis Cluster of
/// three primaries (with or without a replica each) by `redis-cli --cluster create`;
/// killed when dropped.
pub struct PrivateCluster {
    nodes: Vec<PrivateRedis>,
}

impl PrivateCluster {
    /// Starts the three nodes and joins them; returns once the cluster is `ok`.
    pub fn start() -> Self {
        Self::start_nodes(0)
    }

    /// Three primaries with one replica each (six nodes); returns once the cluster is
    /// `ok`.
    pub fn start_with_replicas() -> Self {
        Self::start_nodes(1)
    }

    fn start_nodes(replicas: usize) -> Self {
        let nodes: Vec<PrivateRedis> = (0..3 * (1 + replicas))
            .map(|_| {
                PrivateRedis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            created.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_ok();
        cluster
    }

    fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self
                .nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the private cluster did not reach cluster_state:ok");
    }

    /// Every replica takes over from its primary (`CLUSTER FAILOVER`, coordinated: it
    /// first has everything its primary held), as an operator's planned failover does;
    /// returns once each of them is a primary and the cluster is `ok`. Called again,
    /// the first primaries take over again (a failback).
    pub fn fail_over_every_primary(&self) {
        let replicas: Vec<&PrivateRedis> = self
            .nodes
            .iter()
            .filter(|node| node.cli(&["ROLE"]).starts_with("slave"))
            .collect();
        assert!(!replicas.is_empty(), "a cluster without replicas");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !replicas.iter().all(|node| {
            node.cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        }) {
            assert!(Instant::now() < deadline, "a replica never caught up");
            std::thread::sleep(Duration::from_millis(100));
        }
        // One at a time: each election needs the votes of the other primaries.
        // A manual failover that finds the cluster not ready gives up after 5 s: asked
        // again then.
        for replica in &replicas {
            let deadline = Instant::now() + Duration::from_secs(60);
            'asked: loop {
                assert_eq!(replica.cli(&["CLUSTER", "FAILOVER"]), "OK");
                let again = Instant::now() + Duration::from_secs(6);
                while Instant::now() < again {
                    if replica.cli(&["ROLE"]).starts_with("master") {
                        break 'asked;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                assert!(
                    Instant::now() < deadline,
                    "the failover to port {} did not finish",
                    replica.port
                );
            }
        }
        self.wait_ok();
    }

    /// Has every node write its data to its folder now (`SAVE`).
    pub fn save(&self) {
        for node in &self.nodes {
            assert_eq!(node.cli(&["SAVE"]), "OK", "SAVE on port {}", node.port);
        }
    }

    /// `kill -9` of every node, then each started again from its own folder: the data
    /// of its last [`save`](Self::save) and its cluster configuration, as a node
    /// restarted from its files (or a replica that lagged its primary, promoted) would
    /// hold. Returns once the cluster is `ok` again.
    pub fn restart_from_files(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        for node in &mut self.nodes {
            node.spawn();
        }
        self.wait_ok();
    }

    /// Every node's URL, comma-separated: the form `RedisCounterConfig` takes.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(PrivateRedis::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A primary, one replica and three Sentinels (quorum 2, a primary down after 1 s) of
/// the test's own on loopback; everything killed when dropped.
pub struct PrivateSentinels {
    /// The primary at start (a failover may promote the replica).
    pub primary: PrivateRedis,
    /// Its replica.
    pub replica: PrivateRedis,
    sentinels: Vec<(u16, Child)>,
    dir: PathBuf,
}

/// The name the Sentinels know the primary by.
pub const MASTER: &str = "firstcome";

impl PrivateSentinels {
    /// Starts the set; returns once every Sentinel watches the primary.
    pub fn start() -> Self {
        let primary = PrivateRedis::start();
        let replica =
            PrivateRedis::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
        let dir =
            std::env::temp_dir().join(format!("firstcome-sentinel-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create a sentinel dir");
        let mut sentinels = Vec::new();
        for index in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{index}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 3000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir = dir.display(),
                    primary = primary.port,
                ),
            )
            .expect("write a sentinel config");
            let child = Command::new(redis_server())
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server --sentinel: run the tests through scripts/test.sh, which installs it");
            sentinels.push((port, child));
        }
        let set = Self {
            primary,
            replica,
            sentinels,
            dir,
        };
        set.wait_until_watching();
        set
    }

    /// `redis+sentinel://` URL of the three Sentinels.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// The port of the server the Sentinels name as primary now.
    pub fn primary_port(&self) -> Option<u16> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.sentinels[0].0.to_string()])
            .args(["SENTINEL", "get-master-addr-by-name", MASTER])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)?
            .trim()
            .parse()
            .ok()
    }

    /// Until every Sentinel knows the replica (failover needs it) and the replica has
    /// synced.
    fn wait_until_watching(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let watching = self.sentinels.iter().all(|(port, _)| {
                Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "SENTINEL", "replicas", MASTER])
                    .output()
                    .is_ok_and(|out| {
                        String::from_utf8_lossy(&out.stdout)
                            .contains(&self.replica.port.to_string())
                    })
            });
            let synced = self
                .replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up");
            if watching && synced {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the Sentinels did not see the replica within 30 s");
    }
}

impl Drop for PrivateSentinels {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
