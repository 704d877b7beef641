//! SeaORM entities of the store's tables, for the store's simple reads and writes and for
//! users who want to query coupons themselves. `issue_batch` writes with hand-made SQL.

pub mod campaign;
pub mod coupon;
pub mod issue_failure;
pub mod pending_ticket;
