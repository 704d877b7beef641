//! Classifying Redis errors into the core's three kinds: nothing happened, maybe
//! happened, will fail again.

use coupon_core::{Error, ErrorClass};
use redis::{ErrorKind, RedisError, ServerErrorKind};

pub(crate) const BACKEND: &str = "redis";

/// What a failed command may have done.
///
/// - Refused connections and the server's own refusals (loading, busy with a script,
///   failing over, read-only replica) ran nothing: retryable.
/// - A timeout, or a connection lost with the command on the wire, may have run it: the
///   outcome is unknown. For `try_acquire` that means a slot may be held; the settler
///   finds it.
/// - Anything else (wrong type at a key, a script error) will fail the same way again.
pub(crate) fn class(error: &RedisError) -> ErrorClass {
    if error.is_connection_refusal() {
        return ErrorClass::Retryable;
    }
    if error.is_timeout() || error.is_connection_dropped() || error.is_io_error() {
        return ErrorClass::OutcomeUnknown;
    }
    match error.kind() {
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly,
        )
        | ErrorKind::ClusterConnectionNotFound => ErrorClass::Retryable,
        // A script running past lua-time-limit answers BUSY until it ends; a server at
        // maxmemory refuses writes with OOM until memory is freed.
        _ if matches!(error.code(), Some("BUSY" | "OOM")) => ErrorClass::Retryable,
        _ => ErrorClass::Permanent,
    }
}

/// Converts `error`, naming `what` (the operation and its keys) in the message.
pub(crate) fn classify(error: RedisError, what: impl FnOnce() -> String) -> Error {
    let message = format!("{}: {error}", what());
    let kind = class(&error);
    let source = Some(error.into());
    match kind {
        ErrorClass::Retryable => Error::unavailable(BACKEND, message, source),
        ErrorClass::OutcomeUnknown => Error::outcome_unknown(BACKEND, message, source),
        ErrorClass::Permanent => Error::backend(BACKEND, message, source),
    }
}

/// A reply the scripts never give: the keys were written by something else.
pub(crate) fn unexpected_reply(what: String) -> Error {
    Error::backend(BACKEND, what, None)
}
