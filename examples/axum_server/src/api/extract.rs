//! Extracting what a request carries: JSON bodies whose rejections are JSON errors
//! too, an optional body, and a campaign id from the path.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use coupon_core::CampaignId;
use serde::de::DeserializeOwned;

use super::BODY_LIMIT;
use crate::error::ApiError;

/// `Json` whose rejections are JSON errors too.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// An optional JSON body: an empty one or `null` is `None`; anything else must be the
/// JSON of `T`.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over {BODY_LIMIT} bytes"),
            )
        })?;
        if bytes.trim_ascii().is_empty() {
            return Ok(Self(None));
        }
        let request = Request::from_parts(parts, Body::from(bytes));
        let ApiJson(value) = ApiJson::<Option<T>>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let code = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        _ => "invalid_request",
    };
    // Syntax and data errors (400 and 422 in axum) are both a body we cannot act on.
    let status = if status == StatusCode::BAD_REQUEST {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        status
    };
    ApiError::new(status, code, rejection.body_text())
}

pub(super) fn campaign_id(text: &str) -> Result<CampaignId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_campaign",
            format!("no campaign {text:?}"),
        )
    })
}
