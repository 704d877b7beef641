// async_trait expands these signatures; the trait declares `&SchemaManager` without a lifetime.
#![allow(elided_lifetimes_in_paths)]

//! `campaign.shards`: how many counters share a campaign's cap. Campaigns created before
//! this migration keep one, what they always had.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Campaign {
    Table,
    Shards,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Campaign::Table)
                    .add_column(
                        ColumnDef::new(Campaign::Shards)
                            .small_integer()
                            .not_null()
                            .default(1),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Campaign::Table)
                    .drop_column(Campaign::Shards)
                    .to_owned(),
            )
            .await
    }
}
