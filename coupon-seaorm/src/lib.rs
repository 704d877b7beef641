//! SeaORM coupon store for firstcome: `SeaOrmStore` implementing
//! [`coupon_core::CouponStore`] on SQLite, PostgreSQL and MySQL/MariaDB, with the cap
//! enforced inside one transaction per batch.
//!
//! Not implemented yet: this crate reserves the name and the place in the workspace.
//! Until it lands, use [`coupon_core::memory::MemoryStore`].

pub use coupon_core::CouponStore;
