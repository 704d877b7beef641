//! Schema migrations (sea-orm-migration). Applied migrations are recorded in
//! `seaql_migrations`, so running them again changes nothing.

mod m20261125_000001_create_tables;
mod m20261126_000001_failure_replays;
mod m20261126_000002_issue_queue;
mod m20261127_000001_pending_ticket;
mod m20261207_000001_counter_epoch;
mod m20261208_000001_campaign_shards;

use coupon_core::Result;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use sea_orm_migration::prelude::*;

use crate::error::classify;

/// Every migration of the store, in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_tables::Migration),
            Box::new(m20261126_000001_failure_replays::Migration),
            Box::new(m20261126_000002_issue_queue::Migration),
            Box::new(m20261127_000001_pending_ticket::Migration),
            Box::new(m20261207_000001_counter_epoch::Migration),
            Box::new(m20261208_000001_campaign_shards::Migration),
        ]
    }
}

/// The name of the lock migrations run under (MySQL/MariaDB `GET_LOCK`; PostgreSQL
/// takes an advisory lock on [`MIGRATION_LOCK_KEY`]).
const MIGRATION_LOCK_NAME: &str = "firstcome.migrations";

/// The PostgreSQL advisory lock key of migrations: "firstcome" in ASCII, then 1.
const MIGRATION_LOCK_KEY: i64 = 0x6669_7273_7463_6f01;

/// How long a MySQL/MariaDB process waits for another one's migrations to finish.
const MIGRATION_LOCK_WAIT_SECS: i64 = 300;

/// Runs the pending migrations under a lock of the database, so that processes started
/// together on a fresh database take turns instead of colliding (PostgreSQL refuses a
/// second concurrent `CREATE TABLE` of the same name on its catalogue's unique index),
/// and every one after the first finds the migrations applied.
///
/// - PostgreSQL: one transaction holding `pg_advisory_xact_lock`; its DDL is
///   transactional, so a run that fails leaves nothing half-made, and the lock ends with
///   the transaction.
/// - MySQL/MariaDB: `GET_LOCK` on one connection (DDL commits by itself there, so a
///   transaction would not hold anything), released on every path.
/// - SQLite: one `BEGIN IMMEDIATE` transaction, which holds the database's write lock.
pub(crate) async fn migrate_locked(db: &DatabaseConnection) -> Result<()> {
    let what = || "running migrations".to_owned();
    let backend = db.get_database_backend();
    // A transaction pins one connection for the whole run: the lock's session.
    let txn = crate::sql::begin_write(db).await?;
    match backend {
        DbBackend::Postgres => {
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                "SELECT pg_advisory_xact_lock($1)",
                [MIGRATION_LOCK_KEY.into()],
            ))
            .await
            .map_err(|e| classify(e, what))?;
        }
        DbBackend::MySql => {
            let row = txn
                .query_one_raw(Statement::from_sql_and_values(
                    backend,
                    "SELECT GET_LOCK(?, ?)",
                    [MIGRATION_LOCK_NAME.into(), MIGRATION_LOCK_WAIT_SECS.into()],
                ))
                .await
                .map_err(|e| classify(e, what))?;
            let granted: Option<i64> = match row {
                Some(row) => row.try_get_by_index(0).map_err(|e| classify(e, what))?,
                None => None,
            };
            if granted != Some(1) {
                return Err(coupon_core::Error::unavailable(
                    crate::error::BACKEND,
                    format!(
                        "another process held the migrations lock ({MIGRATION_LOCK_NAME}) for {MIGRATION_LOCK_WAIT_SECS} s"
                    ),
                    None,
                ));
            }
        }
        _ => {} // SQLite: BEGIN IMMEDIATE took the write lock already.
    }
    let migrated = Migrator::up(&txn, None)
        .await
        .map_err(|e| classify(e, what));
    if backend == DbBackend::MySql {
        // Released before anything else: a lock left on a pooled connection would hold
        // every other process's migrations until that connection closes.
        let released = txn
            .execute_raw(Statement::from_sql_and_values(
                backend,
                "SELECT RELEASE_LOCK(?)",
                [MIGRATION_LOCK_NAME.into()],
            ))
            .await
            .map_err(|e| classify(e, what));
        migrated?;
        released?;
    } else {
        migrated?;
    }
    txn.commit().await.map_err(|e| classify(e, what))
}
