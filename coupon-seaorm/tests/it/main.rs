//! The integration tests of `coupon-seaorm`, linked as one binary: each module was
//! a binary of its own, and linking the whole stack once per file was most of a
//! fresh build's time.

mod support;

mod batches;
mod blackhole;
mod conformance;
mod issue_at_commit;
mod outage;
mod queue;
mod restart;
mod schema;
