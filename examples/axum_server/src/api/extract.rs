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
    let message = rejection.body_text();
    let field = matches!(rejection, JsonRejection::JsonDataError(_))
        .then(|| field_of(&message))
        .flatten();
    let error = ApiError::new(status, code, message);
    match field {
        Some(field) => error.about_field(field),
        None => error,
    }
}

/// The body field a JSON data error is about, read from serde's message: a path before
/// the reason (`...target type: cap: invalid value...`) or a missing field
/// (``missing field `cap` ``).
fn field_of(message: &str) -> Option<String> {
    let detail = message.split_once("target type: ")?.1;
    if let Some(rest) = detail.strip_prefix("missing field `") {
        return rest.split_once('`').map(|(field, _)| field.to_owned());
    }
    let (path, _) = detail.split_once(": ")?;
    let is_path = path.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c));
    is_path.then(|| path.to_owned())
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

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn a_data_error_names_its_field() {
        let prefix = "Failed to deserialize the JSON body into the target type: ";
        for (detail, field) in [
            (
                "cap: invalid value: integer `-5`, expected u64 at line 1 column 9",
                Some("cap"),
            ),
            ("missing field `cap` at line 1 column 14", Some("cap")),
            (
                "opens_at: premature end of input at line 1 column 20",
                Some("opens_at"),
            ),
            (
                "invalid type: string \"x\", expected struct CreateCampaign",
                None,
            ),
        ] {
            assert_eq!(
                field_of(&format!("{prefix}{detail}")).as_deref(),
                field,
                "{detail}"
            );
        }
        assert_eq!(field_of("Failed to parse the request body as JSON"), None);
    }
}
