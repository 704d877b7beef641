//! The integration tests of `axum_server`, linked as one binary: each module was
//! a binary of its own, and linking the whole stack once per file was most of a
//! fresh build's time.

mod support;

mod admin;
mod alert_rules;
mod chaos;
mod cluster;
mod config_env;
mod console;
mod counter_loss;
mod crash;
mod deployments;
mod faults;
mod full_stack;
mod http;
mod identity;
mod live_page;
mod load_tool;
mod openapi;
mod prometheus;
mod rules_on_real_backends;
mod settlement;
mod timeouts;
