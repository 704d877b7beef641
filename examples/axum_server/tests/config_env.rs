//! The binary's settings from the environment: a variable set to nothing counts as unset.

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
        "REBUILD_GRACE_MS",
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
