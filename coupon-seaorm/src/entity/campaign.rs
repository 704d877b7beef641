//! `campaign`: one row per campaign; `issued` counts its coupons, kept in the same
//! transaction as every insert.
#![allow(missing_docs)] // the derive macros generate the column and relation items

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "campaign")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub cap: i64,
    pub per_user_limit: i32,
    pub opens_at: Option<ChronoDateTimeUtc>,
    pub closes_at: Option<ChronoDateTimeUtc>,
    pub issued: i64,
    pub shards: i16,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
