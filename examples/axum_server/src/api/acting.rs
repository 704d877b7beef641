//! Who a user route acts for, decided once from the headers, before a body is read: a
//! client without credentials must not hold the connection while it sends a body slowly.

use axum::http::{HeaderMap, StatusCode};
use coupon_core::UserId;

use super::AppState;
use crate::auth::{Caller, is_admin};
use crate::error::ApiError;

/// Who a request acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Acting {
    /// The admin token: acts for the user the request names.
    Admin,
    /// A user the identity authenticated: acts as themselves only.
    User(UserId),
    /// A trusted client (`--identity trusted-clients`): acts for the user it names.
    Trusted,
}

impl Acting {
    /// The admin, when `admin_may` and the request bears the admin token; else the
    /// caller the service's identity finds in `headers` (401 without valid credentials).
    pub(super) fn of(
        state: &AppState,
        headers: &HeaderMap,
        admin_may: bool,
    ) -> Result<Self, ApiError> {
        if admin_may && is_admin(headers, &state.admin_token) {
            return Ok(Self::Admin);
        }
        Ok(match state.identity.caller(headers)? {
            Caller::User(user) => Self::User(user),
            Caller::Trusted => Self::Trusted,
        })
    }

    /// The user the request acts for when it names `named` (`None`: it names nobody): a
    /// user only as themselves (403 `refused` otherwise); the admin and a trusted client
    /// for the user they name, who must be named.
    pub(super) fn user(self, named: Option<UserId>, refused: &str) -> Result<UserId, ApiError> {
        match (self, named) {
            (Self::User(me), None) => Ok(me),
            (Self::User(me), Some(named)) if named == me => Ok(me),
            (Self::User(_), Some(_)) => {
                Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", refused))
            }
            (Self::Admin | Self::Trusted, Some(named)) => Ok(named),
            (Self::Admin | Self::Trusted, None) => Err(ApiError::invalid(
                "name the user: this request acts for the user it names",
            )),
        }
    }
}
