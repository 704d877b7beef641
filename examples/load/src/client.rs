//! The HTTP client every tool and test talks to the service with, and one request
//! through it.

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The HTTP client the load tool (and the chaos tool) send with.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How long a pooled connection may sit idle before it is dropped: below the service's
/// `--header-read-timeout-ms` (5 s by default), which also closes a kept-alive
/// connection idle that long, so that the pool never hands out a connection the server
/// is closing at that moment (the send would fail).
pub const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The client every tool and test talks to the service with: up to `max_idle` pooled
/// connections, none kept past [`POOL_IDLE_TIMEOUT`].
pub fn http_client(max_idle: usize) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(max_idle)
        .build_http()
}

/// One request to `url`, with `token` as a bearer credential and `body` as JSON: the
/// status and the JSON answer (`Value::Null` when the answer is not JSON); a transport
/// error is `Err`.
pub async fn call(
    client: &HttpClient,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, Value), String> {
    let mut request = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(body.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let request = request.body(body).map_err(|e| e.to_string())?;
    let (status, bytes) = send(client, request).await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Sends `request`; the status and the whole body.
pub(crate) async fn send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, bytes))
}
