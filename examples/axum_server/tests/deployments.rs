//! Deployments as people run them: several processes on one database, started
//! together, replaced one by one. Each must keep every promise and come up on its own.

mod support;

use support::{Process, free_port};

/// Two API processes and a worker started at the same moment on a fresh PostgreSQL
/// database all come up: their migrations take turns under the database's lock instead
/// of colliding (PostgreSQL refuses a second concurrent `CREATE TABLE` of one name).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_started_together_on_a_fresh_database_all_come_up() {
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let env = [("DATABASE_URL", database.as_str())];
    let (api_port, other_port, worker_port) = (free_port(), free_port(), free_port());
    let (_api, _other, mut worker) = tokio::join!(
        Process::start(api_port, &["--role", "api"], &env),
        Process::start(other_port, &["--role", "api"], &env),
        Process::start(worker_port, &["--role", "worker"], &env),
    );
    // The API processes answered, so every migration has run; a worker that failed its
    // own would have exited by now.
    assert_eq!(worker.exit_status(), None, "the worker exited");
}
