// async_trait expands these signatures; the trait declares `&SchemaManager` without a lifetime.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Campaign {
    Table,
    Id,
    Name,
    Cap,
    PerUserLimit,
    OpensAt,
    ClosesAt,
    Issued,
}

#[derive(DeriveIden)]
enum Coupon {
    Table,
    Id,
    CampaignId,
    UserId,
    UserSlot,
    Rank,
    Code,
    TicketId,
    IssuedAt,
}

#[derive(DeriveIden)]
enum IssueFailure {
    Table,
    Id,
    TicketId,
    CampaignId,
    Ticket,
    Error,
    Attempts,
    FirstSeen,
    LastSeen,
}

fn id<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Campaign::Table)
                    .if_not_exists()
                    .col(id(Campaign::Id))
                    .col(ColumnDef::new(Campaign::Name).string_len(255).not_null())
                    .col(ColumnDef::new(Campaign::Cap).big_integer().not_null())
                    .col(ColumnDef::new(Campaign::PerUserLimit).integer().not_null())
                    .col(
                        ColumnDef::new(Campaign::OpensAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Campaign::ClosesAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Campaign::Issued)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Coupon::Table)
                    .if_not_exists()
                    .col(id(Coupon::Id))
                    .col(ColumnDef::new(Coupon::CampaignId).big_integer().not_null())
                    .col(ColumnDef::new(Coupon::UserId).big_integer().not_null())
                    .col(ColumnDef::new(Coupon::UserSlot).integer().not_null())
                    .col(ColumnDef::new(Coupon::Rank).big_integer().not_null())
                    .col(
                        ColumnDef::new(Coupon::Code)
                            .string_len(32)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(Coupon::TicketId)
                            .string_len(36)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(Coupon::IssuedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_coupon_campaign")
                            .from(Coupon::Table, Coupon::CampaignId)
                            .to(Campaign::Table, Campaign::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // The user leads: a batch looks up its users' coupons in a campaign, and the
        // planner's estimates for a user id stay right while a new campaign, unknown to
        // the statistics until the next ANALYZE, grows by thousands of rows a second.
        manager
            .create_index(
                Index::create()
                    .name("ux_coupon_user_campaign_slot")
                    .table(Coupon::Table)
                    .col(Coupon::UserId)
                    .col(Coupon::CampaignId)
                    .col(Coupon::UserSlot)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_coupon_campaign")
                    .table(Coupon::Table)
                    .col(Coupon::CampaignId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IssueFailure::Table)
                    .if_not_exists()
                    .col(id(IssueFailure::Id))
                    .col(
                        ColumnDef::new(IssueFailure::TicketId)
                            .string_len(36)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(IssueFailure::CampaignId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IssueFailure::Ticket).text().not_null())
                    .col(ColumnDef::new(IssueFailure::Error).text().not_null())
                    .col(ColumnDef::new(IssueFailure::Attempts).integer().not_null())
                    .col(
                        ColumnDef::new(IssueFailure::FirstSeen)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IssueFailure::LastSeen)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_issue_failure_campaign")
                    .table(IssueFailure::Table)
                    .col(IssueFailure::CampaignId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IssueFailure::Table.into_iden(),
            Coupon::Table.into_iden(),
            Campaign::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
