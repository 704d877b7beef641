//! `pending_ticket`: tickets of admissions answered `Pending`, one row per ticket, kept
//! until their coupon exists.
#![allow(missing_docs)] // the derive macros generate the column and relation items

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pending_ticket")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub ticket_id: String,
    pub campaign_id: i64,
    /// The ticket as JSON, to publish it again.
    pub ticket: String,
    pub recorded_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
