//! Every error answer: a status, a stable `error` code and a human `message`, as JSON.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coupon_core::Error;

use crate::wire::ErrorBody;

/// The message of every `unavailable` answer.
pub const UNAVAILABLE_MESSAGE: &str = "a backend is unavailable; try again (nothing was done, or the outcome is unknown: \
     retrying tells)";

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An answer with `status`, stable `code` and a human `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// The same answer naming the request field it is about (a form shows the message
    /// next to that field).
    pub fn about_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The same answer telling the client to retry after `seconds`.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Seconds the client is told to wait before retrying, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// 422: the request is not one we can act on.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match &error {
            Error::UnknownCampaign { .. } => {
                Self::new(StatusCode::NOT_FOUND, "unknown_campaign", error.to_string())
            }
            Error::InvalidCampaign { field, .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_campaign",
                error.to_string(),
            )
            .about_field(*field),
            // Nothing was admitted: the counter is being rebuilt, or waits for this
            // process to hold the database's counter lease.
            Error::NotReady { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "admissions to this campaign are paused while its counter is rebuilt; try again shortly",
            ),
            // The admission was superseded by a counter rebuild: nobody was promised it.
            Error::Superseded { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "superseded",
                "your application was not admitted (the counter was rebuilt meanwhile); apply again",
            ),
            // The store refused this admission's ticket for good: a promise broke, and
            // the operators were alerted (the worker's error log and metrics).
            Error::TicketRefused { .. } => {
                tracing::error!(%error, "an admitted applicant asked about a refused ticket");
                Self::new(
                    StatusCode::CONFLICT,
                    "admission_refused",
                    "your admission could not be made a coupon; an operator can replay it",
                )
            }
            // The backend's own words (hosts, key names, raw errors) go to the log,
            // the client gets the code and a fixed message.
            _ if error.is_retryable() => {
                tracing::warn!(%error, "backend unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    UNAVAILABLE_MESSAGE,
                )
            }
            _ => {
                tracing::error!(%error, "backend failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: self.code.into(),
            message: self.message,
            field: self.field,
        });
        let mut response = (self.status, body).into_response();
        let retry_after = match (self.retry_after, self.status) {
            (Some(seconds), _) => Some(seconds),
            (None, StatusCode::SERVICE_UNAVAILABLE) => Some(1),
            (None, _) => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
