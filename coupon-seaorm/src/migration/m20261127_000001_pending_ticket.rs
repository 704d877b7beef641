// async_trait expands these signatures; the trait declares `&SchemaManager` without a lifetime.
#![allow(elided_lifetimes_in_paths)]

//! `pending_ticket`: tickets of admissions answered `Pending` (their hand-off had no
//! known outcome), kept until their coupon exists, so that the admission outlives a
//! counter that loses its memory.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum PendingTicket {
    Table,
    Id,
    TicketId,
    CampaignId,
    Ticket,
    RecordedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PendingTicket::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(PendingTicket::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(PendingTicket::TicketId)
                            .string_len(36)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(PendingTicket::CampaignId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(PendingTicket::Ticket).text().not_null())
                    .col(
                        ColumnDef::new(PendingTicket::RecordedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // The settler and a counter rebuild read one campaign's rows.
        manager
            .create_index(
                Index::create()
                    .name("ix_pending_ticket_campaign")
                    .table(PendingTicket::Table)
                    .col(PendingTicket::CampaignId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(PendingTicket::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
