//! Redis admission counter for firstcome: `RedisCounter` implementing
//! [`coupon_core::CouponCounter`] with one Lua script per operation.
//!
//! Not implemented yet: this crate reserves the name and the place in the workspace.
//! Until it lands, use [`coupon_core::memory::MemoryCounter`].

pub use coupon_core::CouponCounter;
