//! The integration tests of `coupon-kafka`, linked as one binary: each module was
//! a binary of its own, and linking the whole stack once per file was most of a
//! fresh build's time.

mod support;

mod broker_restart;
mod conformance;
mod faults;
mod pipeline;
