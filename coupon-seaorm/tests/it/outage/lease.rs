//! The counter lease: one holder per database, however the database is reached, and a
//! session the database ended loses it.

use coupon_seaorm::CounterLease;
use coupon_testkit::service_url;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

use crate::support::fresh_database;

/// One holder at a time; a session the database ended (an administrator, a holder gone
/// silent) loses the lease, the check says so, and another process takes it.
async fn one_holder_of_the_lease_at_a_time(
    url: &str,
    end_sessions: impl AsyncFnOnce(&DatabaseConnection),
) {
    let (mut first, mut second) = (CounterLease::new(url), CounterLease::new(url));
    assert!(first.try_acquire().await.expect("first"));
    assert!(
        !second.try_acquire().await.expect("second"),
        "held by the first"
    );
    assert!(first.check().await.expect("check"), "still the first's");
    let admin = Database::connect(url).await.expect("connect");
    end_sessions(&admin).await;
    assert!(!first.check().await.unwrap_or(false), "the session ended");
    // The database lets the lock go once the ended session is gone, which MariaDB's
    // `KILL` does not wait for: within moments, not at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !second.try_acquire().await.expect("second") {
        assert!(std::time::Instant::now() < deadline, "free again");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        !first.try_acquire().await.expect("first again"),
        "the second's now"
    );
}

/// The last path segment of a database URL: the database's name.
fn database_of(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().expect("a database name").to_owned()
}

#[tokio::test]
async fn the_counter_lease_on_postgres() {
    let url = fresh_database(&service_url("DATABASE_URL")).await;
    let database = database_of(&url);
    one_holder_of_the_lease_at_a_time(&url, async |admin| {
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{database}' AND pid <> pg_backend_pid()"
            ))
            .await
            .expect("end the holder's session");
    })
    .await;
}

#[tokio::test]
async fn the_counter_lease_on_mariadb() {
    let url = fresh_database(&service_url("MYSQL_URL")).await;
    let database = database_of(&url);
    one_holder_of_the_lease_at_a_time(&url, async |admin| {
        let sessions = admin
            .query_all_raw(sea_orm::Statement::from_string(
                admin.get_database_backend(),
                format!(
                    "SELECT ID FROM information_schema.PROCESSLIST \
                     WHERE DB = '{database}' AND ID <> CONNECTION_ID()"
                ),
            ))
            .await
            .expect("the sessions");
        assert!(!sessions.is_empty(), "the holder's session is listed");
        for session in sessions {
            let id: i64 = session.try_get_by_index(0).expect("an id");
            admin
                .execute_unprepared(&format!("KILL {id}"))
                .await
                .expect("end the holder's session");
        }
    })
    .await;
}

/// Two services on two databases of one server each hold their own database's lease:
/// MySQL/MariaDB's lock names belong to the server, so one name for every database made
/// the second service wait for ever behind the first.
#[tokio::test]
async fn each_database_of_one_server_has_a_lease_of_its_own() {
    for server in ["DATABASE_URL", "MYSQL_URL"] {
        let base = service_url(server);
        let (one, other) = (fresh_database(&base).await, fresh_database(&base).await);
        let (mut first, mut second) = (CounterLease::new(&one), CounterLease::new(&other));
        assert!(first.try_acquire().await.expect("first"), "{server}");
        assert!(
            second.try_acquire().await.expect("second"),
            "{server}: the other database's lease is free"
        );
        assert!(
            !CounterLease::new(&one).try_acquire().await.expect("third"),
            "{server}: still one holder per database"
        );
    }
}

/// Through PgBouncer in transaction mode, which runs each transaction on whichever
/// server connection is free: one holder at a time, and a release hands the lease over.
/// Before, the lease was a session lock taken outside a transaction: it stayed behind
/// on the server connection the pool then gave the second process, which took it again
/// (advisory locks are re-entrant within a session), and both admitted.
#[tokio::test]
async fn the_counter_lease_through_pgbouncer_in_transaction_mode() {
    let direct = fresh_database(&service_url("DATABASE_URL")).await;
    let pooled = service_url("PGBOUNCER_URL");
    let pooled = format!(
        "{}/{}",
        pooled.rsplit_once('/').expect("a database path").0,
        database_of(&direct)
    );
    let (mut first, mut second) = (CounterLease::new(&pooled), CounterLease::new(&pooled));
    assert!(first.try_acquire().await.expect("first"));
    assert!(
        !second.try_acquire().await.expect("second"),
        "held by the first"
    );
    assert!(first.check().await.expect("check"), "still the first's");
    assert!(
        !second.try_acquire().await.expect("second again"),
        "still held by the first"
    );
    first.release().await;
    assert!(second.try_acquire().await.expect("second"), "released");
    assert!(
        !first.try_acquire().await.expect("first again"),
        "the second's now"
    );
}
