//! `coupon`: one row per issued coupon. Unique on (user_id, campaign_id, user_slot),
//! on `code` and on `ticket_id`; `user_slot` is 1..=per_user_limit, so with the default
//! limit of 1 the first key is the one-coupon-per-user uniqueness users rely on.
#![allow(missing_docs)] // the derive macros generate the column and relation items

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "coupon")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub campaign_id: i64,
    /// The user id's 64 bits, stored in a signed column (ids above `i64::MAX` wrap).
    pub user_id: i64,
    pub user_slot: i32,
    pub rank: i64,
    #[sea_orm(unique)]
    pub code: String,
    #[sea_orm(unique)]
    pub ticket_id: String,
    pub issued_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
