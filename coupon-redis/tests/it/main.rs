//! The integration tests of `coupon-redis`, linked as one binary: each module was
//! a binary of its own, and linking the whole stack once per file was most of a
//! fresh build's time.

mod support;

mod cluster;
mod confirm;
mod conformance;
mod contention;
mod faults;
mod sentinel;
