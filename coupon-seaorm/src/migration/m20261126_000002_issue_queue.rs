// async_trait expands these signatures; the trait declares `&SchemaManager` without a lifetime.
#![allow(elided_lifetimes_in_paths)]

//! `issue_queue`: the hand-off as a table (`SqlIssueQueue`), in the same database as
//! the coupons.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum IssueQueue {
    Table,
    Id,
    TicketId,
    CampaignId,
    UserId,
    Ticket,
    EnqueuedAt,
    AvailableAt,
    Deliveries,
    DeadReason,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IssueQueue::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(IssueQueue::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(IssueQueue::TicketId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IssueQueue::CampaignId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IssueQueue::UserId).big_integer().not_null())
                    .col(ColumnDef::new(IssueQueue::Ticket).text().not_null())
                    .col(
                        ColumnDef::new(IssueQueue::EnqueuedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IssueQueue::AvailableAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IssueQueue::Deliveries)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(IssueQueue::DeadReason).text().null())
                    .to_owned(),
            )
            .await?;
        // Workers take the oldest available rows; rebuilds read a campaign's rows.
        manager
            .create_index(
                Index::create()
                    .name("ix_issue_queue_available")
                    .table(IssueQueue::Table)
                    .col(IssueQueue::AvailableAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_issue_queue_campaign")
                    .table(IssueQueue::Table)
                    .col(IssueQueue::CampaignId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(IssueQueue::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
