//! `issue_failure`: tickets the worker could not persist, one row per ticket.
#![allow(missing_docs)] // the derive macros generate the column and relation items

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "issue_failure")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub ticket_id: String,
    pub campaign_id: i64,
    /// The ticket as JSON, to replay it.
    pub ticket: String,
    pub error: String,
    pub attempts: i32,
    pub first_seen: ChronoDateTimeUtc,
    pub last_seen: ChronoDateTimeUtc,
    /// When the ticket was last published again by a replay; cleared when it fails again.
    pub replayed_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
