//! Classifying Redis errors into the core's retryable / permanent errors.

use coupon_core::Error;
use redis::{ErrorKind, RedisError, ServerErrorKind};

pub(crate) const BACKEND: &str = "redis";

/// Whether trying again later may succeed: the server is unreachable, slow, loading,
/// busy or failing over. Anything else (wrong type at a key, a script error) will fail
/// the same way again.
pub(crate) fn is_retryable(error: &RedisError) -> bool {
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
    {
        return true;
    }
    match error.kind() {
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly,
        )
        | ErrorKind::ClusterConnectionNotFound => true,
        // A script running past lua-time-limit answers BUSY until it ends.
        _ => matches!(error.code(), Some("BUSY")),
    }
}

/// Converts `error`, naming `what` (the operation and its keys) in a permanent error.
pub(crate) fn classify(error: RedisError, what: impl FnOnce() -> String) -> Error {
    if is_retryable(&error) {
        Error::unavailable(BACKEND, error)
    } else {
        Error::backend(BACKEND, format!("{}: {error}", what()), Some(error.into()))
    }
}

/// A reply the scripts never give: the keys were written by something else.
pub(crate) fn unexpected_reply(what: String) -> Error {
    Error::backend(BACKEND, what, None)
}
