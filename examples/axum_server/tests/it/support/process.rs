//! The service binary as a process of its own, on a port of the test's choosing.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};

use super::{Api, TOKEN};

/// The service binary running as a process of its own, killed when dropped.
pub struct Process {
    child: std::process::Child,
    /// A client of it (API roles).
    pub api: Api,
}

impl Process {
    /// Starts `firstcome-server` with `args` and `env` on `port` (the shared services of the
    /// harness are not inherited: each process gets only what `env` names), and waits
    /// until it answers `/healthz` (every role: a worker-only process serves its probes).
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
        // Every role answers /healthz (a worker-only process serves its probes).
        {
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
