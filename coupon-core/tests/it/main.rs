//! The integration tests of `coupon-core`, linked as one binary: each module was
//! a binary of its own, and linking the whole stack once per file was most of a
//! fresh build's time.

mod conformance;
mod memory_queue;
mod reopen;
mod simulation;
