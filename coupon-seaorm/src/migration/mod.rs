//! Schema migrations (sea-orm-migration). Applied migrations are recorded in
//! `seaql_migrations`, so running them again changes nothing.

mod m20261125_000001_create_tables;
mod m20261126_000001_failure_replays;
mod m20261126_000002_issue_queue;
mod m20261127_000001_pending_ticket;

use sea_orm_migration::prelude::*;

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
        ]
    }
}
