//! The binary's settings from the environment: a variable set to nothing counts as unset,
//! and secrets never print.

use std::process::Command;

/// Variables set to nothing (`SETTLE_GRACE_MS=`, as compose files and shells write
/// the ones they leave unset), for numbers, names, choices and URLs alike: the
/// defaults apply and an operator task (listing dead letters) runs, where each used to stop the start with
/// "invalid value".
#[test]
fn variables_set_to_nothing_count_as_unset() {
    let file = std::env::temp_dir().join(format!(
        "firstcome-env-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let empty = [
        "REDIS_URL",
        "KAFKA_BROKERS",
        "ADMIN_TOKEN",
        "QUEUE",
        "ROLE",
        "KAFKA_PARTITIONS",
        "WORKER_BATCH_SIZE",
        "SETTLE_GRACE_MS",
        "REDIS_CONFIRM",
        "STARTUP_PATIENCE_MS",
    ];
    let output = Command::new(env!("CARGO_BIN_EXE_firstcome-server"))
        .arg("dead-letters")
        .envs(empty.map(|name| (name, "")))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", file.display()),
        )
        .env("RUST_LOG", "warn")
        .output()
        .expect("run firstcome-server dead-letters");
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("dead-letters prints JSON");
    assert!(report.is_object(), "{report}");
}

/// An empty `DATABASE_URL` (an unresolved `${...}` in a compose file) stops the start:
/// its default, a SQLite file of this process's own, would split the service's state.
#[test]
fn an_empty_database_url_is_refused_not_replaced() {
    let directory =
        std::env::temp_dir().join(format!("firstcome-env-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).expect("a working folder");
    let output = Command::new(env!("CARGO_BIN_EXE_firstcome-server"))
        .arg("dead-letters")
        .current_dir(&directory)
        .env("DATABASE_URL", "")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run firstcome-server dead-letters");
    let created = std::fs::read_dir(&directory).map_or(0, |entries| entries.count());
    let _ = std::fs::remove_dir_all(&directory);
    assert!(
        !output.status.success(),
        "ran on a default database: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(created, 0, "a database file was created");
}

/// Secrets every test below sets, and the part of each that must never be printed.
const SECRETS: [(&str, &str, &str); 5] = [
    (
        "ADMIN_TOKEN",
        "admin-token-never-printed",
        "admin-token-never-printed",
    ),
    (
        "JWT_SECRET",
        "jwt-secret-never-printed-of-32-bytes!!",
        "jwt-secret-never-printed",
    ),
    (
        "REDIS_URL",
        "redis://:redis-password-never-printed@127.0.0.1:1/",
        "redis-password-never-printed",
    ),
    (
        "KAFKA_OPTIONS",
        "sasl.password=kafka-password-never-printed",
        "kafka-password-never-printed",
    ),
    (
        "DATABASE_URL",
        "postgres://user:db-password-never-printed@127.0.0.1:1/x",
        "db-password-never-printed",
    ),
];

/// `output` holds none of the secrets' hidden parts.
fn assert_no_secret(what: &str, output: &str) {
    for (name, _, hidden) in SECRETS {
        assert!(!output.contains(hidden), "{what} shows {name}:\n{output}");
    }
}

/// The binary with none of its settings' variables but those a test sets: the shell that
/// runs the tests may have exported some (README's walk-through exports `ADMIN_TOKEN`
/// and `JWT_SECRET`), which would change what the service does and prints.
fn server() -> Command {
    use clap::CommandFactory;

    let mut command = Command::new(env!("CARGO_BIN_EXE_firstcome-server"));
    for argument in firstcome_server::config::Config::command().get_arguments() {
        if let Some(name) = argument.get_env() {
            command.env_remove(name);
        }
    }
    command.env("RUST_LOG", "warn");
    command
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `--help` names each secret's variable and hides its value; a bad secret is refused
/// by the setting's name, and one given as a flag draws a warning, neither showing it.
#[test]
fn help_and_errors_name_secrets_without_showing_them() {
    let help = server()
        .arg("--help")
        .envs(SECRETS.map(|(name, value, _)| (name, value)))
        .output()
        .expect("--help");
    let help = text(&help);
    assert!(help.contains("[env: ADMIN_TOKEN]"), "{help}");
    assert!(help.contains("[env: DATABASE_URL]"), "{help}");
    assert_no_secret("--help", &help);

    let short = server()
        .args(["--admin-token", "shortsecret", "dead-letters"])
        .output()
        .expect("a short token");
    let short = text(&short);
    assert!(short.contains("invalid value for --admin-token"), "{short}");
    assert!(!short.contains("shortsecret"), "{short}");

    let flagged = server()
        .args(["--admin-token", "admin-token-never-printed", "mint-token"])
        .args(["--user", "1"])
        .output()
        .expect("a token as a flag");
    let flagged = text(&flagged);
    assert!(
        flagged.contains("--admin-token (use ADMIN_TOKEN or ADMIN_TOKEN_FILE)"),
        "{flagged}"
    );
    assert_no_secret("a warning", &flagged);

    let both = server()
        .args(["mint-token", "--user", "1"])
        .env("ADMIN_TOKEN", "admin-token-never-printed")
        .env("ADMIN_TOKEN_FILE", "/nonexistent")
        .output()
        .expect("both");
    let both = text(&both);
    assert!(both.contains("cannot be used with"), "{both}");
    assert_no_secret("a conflict", &both);
}

/// The service started with every secret set prints none of them and creates its SQLite
/// file for its user only, and one started with none writes the secrets it generates to
/// files only its user reads; with no JWT key it
/// refuses a non-loopback address. The `*_FILE` variants carry the secrets.
#[test]
fn the_start_up_output_shows_no_secret_and_generated_ones_go_to_private_files() {
    use std::io::{BufRead, Read, Write};

    let directory = std::env::temp_dir().join(format!(
        "firstcome-secrets-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&directory).expect("a working folder");
    // Runs the service until it listens; everything it printed, and its address.
    let start = |env: &[(&str, &str)]| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut child = server()
            .current_dir(&directory)
            .env_remove("DATABASE_URL")
            .env("BIND", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the service");
        let mut printed = String::new();
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        for line in lines.by_ref() {
            let line = line.expect("a line");
            printed.push_str(&line);
            printed.push('\n');
            if line.starts_with("listening on") {
                break;
            }
        }
        (child, printed, port)
    };
    let stop = |mut child: std::process::Child, mut printed: String| {
        let _ = child.kill();
        let _ = child.wait();
        let _ = child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut printed);
        printed
    };

    let database = format!("sqlite://{}/db.sqlite?mode=rwc", directory.display());
    let files = [
        ("admin", "admin-token-never-printed"),
        ("jwt", "jwt-secret-never-printed-of-32-bytes!!"),
        ("database", database.as_str()),
    ];
    for (name, value) in files {
        std::fs::write(directory.join(name), format!("{value}\n")).expect("a secret file");
    }
    let (child, printed, port) = start(&[
        ("ADMIN_TOKEN_FILE", "admin"),
        ("JWT_SECRET_FILE", "jwt"),
        ("DATABASE_URL_FILE", "database"),
        (
            "KAFKA_OPTIONS",
            "sasl.password=kafka-password-never-printed",
        ),
    ]);
    assert!(printed.contains("listening on"), "{printed}");
    // The token from the file opens the admin routes.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .write_all(
            b"GET /admin/campaigns HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
              Authorization: Bearer admin-token-never-printed\r\n\r\n",
        )
        .expect("a request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let printed = stop(child, printed);
    assert_no_secret("the start-up output", &printed);
    // The database file holds coupon codes: its user's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(directory.join("db.sqlite"))
            .expect("the database file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the SQLite file");
    }
    let minted = server()
        .args(["mint-token", "--user", "42"])
        .current_dir(&directory)
        .env("JWT_SECRET_FILE", "jwt")
        .output()
        .expect("mint-token");
    let verifier = firstcome_server::auth::JwtVerifier::hs256(
        b"jwt-secret-never-printed-of-32-bytes!!",
        &firstcome_server::auth::JwtRules::default(),
    )
    .expect("a verifier");
    let token = String::from_utf8_lossy(&minted.stdout);
    assert_eq!(
        verifier.user(token.trim()).map_err(|e| e.code()),
        Ok(coupon_core::UserId(42))
    );

    // Nothing configured: the README's `scripts/run.sh`.
    let (child, printed, _) = start(&[("DATABASE_URL", &database)]);
    let printed = stop(child, printed);
    assert!(printed.contains("listening on"), "{printed}");
    for file in [
        firstcome_server::GENERATED_ADMIN_TOKEN,
        firstcome_server::GENERATED_JWT_SECRET,
    ] {
        let path = directory.join(file);
        let secret = std::fs::read_to_string(&path).expect("a generated secret");
        assert_eq!(secret.trim().len(), 64, "{file}");
        assert!(
            !printed.contains(secret.trim()),
            "{file} printed:\n{printed}"
        );
        assert!(
            printed.contains(&format!("./{file} (mode 0600")),
            "{printed}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    let exposed = server()
        .current_dir(&directory)
        .env("DATABASE_URL", &database)
        .env("BIND", "0.0.0.0:0")
        .output()
        .expect("a start on every address");
    let exposed = text(&exposed);
    assert!(
        exposed.contains("--identity jwt needs a key to listen on 0.0.0.0:0"),
        "{exposed}"
    );
    let _ = std::fs::remove_dir_all(&directory);
}

/// `mint-token` without a secret says where one comes from, the file a service started
/// without one wrote included; a secret too short is refused by its setting's name,
/// never shown.
#[test]
fn mint_token_says_where_its_secret_comes_from() {
    let mint = |env: &[(&str, &str)]| {
        let output = server()
            .args(["mint-token", "--user", "42"])
            .env_remove("JWT_SECRET")
            .env_remove("JWT_SECRET_FILE")
            .envs(env.iter().copied())
            .output()
            .expect("mint-token");
        (output.status.success(), text(&output))
    };
    let (minted, missing) = mint(&[]);
    assert!(!minted, "{missing}");
    assert!(missing.contains("JWT_SECRET_FILE"), "{missing}");
    assert!(
        missing.contains(firstcome_server::GENERATED_JWT_SECRET),
        "{missing}"
    );
    let (minted, short) = mint(&[("JWT_SECRET", "short-secret")]);
    assert!(!minted, "{short}");
    assert!(short.contains("JWT_SECRET"), "{short}");
    assert!(!short.contains("short-secret"), "{short}");
}

/// `--queue memory` keeps promised tickets where only this process sees them, so it is
/// refused, before anything connects, wherever another process could take admissions
/// over while this one lives: on a database server (a lease the server gives away from
/// a stalled process) or with Redis (a rebuild by another copy); it starts on SQLite.
#[test]
fn the_in_process_queue_is_refused_where_another_process_could_take_over() {
    let directory =
        std::env::temp_dir().join(format!("firstcome-queue-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).expect("a working folder");
    let sqlite = format!("sqlite://{}/q.db?mode=rwc", directory.display());
    for (database, redis) in [
        ("postgres://u@127.0.0.1:1/x", None),
        ("mysql://u@127.0.0.1:1/x", None),
        (sqlite.as_str(), Some("redis://127.0.0.1:1/")),
    ] {
        let mut command = server();
        command
            .args(["--queue", "memory", "--bind", "127.0.0.1:0"])
            .current_dir(&directory)
            .env("DATABASE_URL", database)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(redis) = redis {
            command.env("REDIS_URL", redis);
        }
        let mut child = command.spawn().expect("run firstcome-server");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while child.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let output = child.wait_with_output().expect("output");
        let said = text(&output);
        assert!(
            !output.status.success()
                && said.contains("--queue memory runs only with SQLite and without REDIS_URL"),
            "{database} {redis:?}: {said}"
        );
    }
    let _ = std::fs::remove_dir_all(&directory);
}
