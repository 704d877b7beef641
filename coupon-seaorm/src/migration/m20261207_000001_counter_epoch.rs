// async_trait expands these signatures; the trait declares `&SchemaManager` without a lifetime.
#![allow(elided_lifetimes_in_paths)]

//! `counter_epoch` and `epoch_slot`: each campaign's last sealed counter epoch and that
//! seal's snapshot (the admissions, by user, slot and rank, it counted that had no
//! coupon), so that the store refuses a ticket of an older epoch the seal did not count. Campaigns created before
//! this migration have no row: epoch 0, until their first seal.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum CounterEpoch {
    Table,
    CampaignId,
    Epoch,
}

#[derive(DeriveIden)]
enum EpochSlot {
    Table,
    CampaignId,
    UserId,
    UserSlot,
    Rank,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CounterEpoch::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(CounterEpoch::CampaignId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(CounterEpoch::Epoch).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EpochSlot::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(EpochSlot::CampaignId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(EpochSlot::UserId).big_integer().not_null())
                    .col(ColumnDef::new(EpochSlot::UserSlot).integer().not_null())
                    .col(ColumnDef::new(EpochSlot::Rank).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(EpochSlot::CampaignId)
                            .col(EpochSlot::UserId)
                            .col(EpochSlot::UserSlot),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Table::drop().table(EpochSlot::Table).if_exists().to_owned(),
            Table::drop()
                .table(CounterEpoch::Table)
                .if_exists()
                .to_owned(),
        ] {
            manager.drop_table(table).await?;
        }
        Ok(())
    }
}
