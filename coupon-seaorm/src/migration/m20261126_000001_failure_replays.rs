// async_trait expands these signatures; the trait declares `&SchemaManager` without a lifetime.
#![allow(elided_lifetimes_in_paths)]

//! `issue_failure.replayed_at`: when a dead letter's ticket was last published again, so
//! that operators replay each one once after fixing its cause. Nullable, so rows written
//! before it read as not replayed.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum IssueFailure {
    Table,
    ReplayedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(IssueFailure::Table)
                    .add_column(
                        ColumnDef::new(IssueFailure::ReplayedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(IssueFailure::Table)
                    .drop_column(IssueFailure::ReplayedAt)
                    .to_owned(),
            )
            .await
    }
}
