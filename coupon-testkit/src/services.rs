//! Services of a test's own, started, killed and restarted through the harness script
//! (`scripts/services.sh`, exported as `FIRSTCOME_SERVICES_SCRIPT`), for fault tests
//! that must not disturb the services other tests share.

use std::path::PathBuf;
use std::process::Command;

use uuid::Uuid;

/// One service (`postgres`, `kafka` or `redis`) under a temporary directory of its own;
/// stopped and removed when dropped.
#[derive(Debug)]
pub struct PrivateService {
    name: &'static str,
    script: String,
    dir: PathBuf,
}

impl PrivateService {
    /// Starts `name` on a free loopback port. Panics if the harness script
    /// fails, naming it.
    pub fn start(name: &'static str) -> Self {
        let service = Self::unstarted(name);
        service.run("start-one");
        service
    }

    /// Starts a Kafka broker that tells clients to connect to `advertised_port` (where
    /// the test runs a [`FaultProxy`](super::proxy::FaultProxy) in front of it).
    pub fn start_kafka_advertising(advertised_port: u16) -> Self {
        let service = Self::unstarted("kafka");
        let dir = service.dir.join("kafka");
        std::fs::create_dir_all(&dir).expect("create the broker's directory");
        std::fs::write(dir.join("advertised_port"), advertised_port.to_string())
            .expect("write the advertised port");
        service.run("start-one");
        service
    }

    fn unstarted(name: &'static str) -> Self {
        Self {
            name,
            script: harness_script(),
            dir: std::env::temp_dir().join(format!("firstcome-{name}-{}", Uuid::new_v4().simple())),
        }
    }

    fn run(&self, command: &str) {
        let status = Command::new("bash")
            .arg(&self.script)
            .args([command, self.name])
            .arg(&self.dir)
            .status()
            .expect("run scripts/services.sh");
        assert!(
            status.success(),
            "services.sh {command} {} failed",
            self.name
        );
    }

    /// Its state directory (`port` files, logs).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// `kill -9`: gone at once, storage left as it was.
    pub fn kill(&self) {
        self.run("kill");
    }

    /// Kills it if running, then starts it again on the same port and storage.
    pub fn restart(&self) {
        self.run("restart");
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        let file = match self.name {
            "postgres" => self.dir.join("postgres.port"),
            name => self.dir.join(name).join("port"),
        };
        let text = std::fs::read_to_string(&file).expect("the service's port file");
        text.trim().parse().expect("a port number")
    }
}

impl Drop for PrivateService {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The harness script: `FIRSTCOME_SERVICES_SCRIPT` when set (as `scripts/test.sh`
/// exports it), else this workspace's `scripts/services.sh`, so that tools run outside
/// the test harness (the chaos tool) start services the same way.
fn harness_script() -> String {
    match std::env::var("FIRSTCOME_SERVICES_SCRIPT") {
        Ok(script) if !script.trim().is_empty() => script,
        _ => concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services.sh").to_owned(),
    }
}
