//! The bad-input list: every request the API cannot act on is a 4xx JSON error, never
//! a 5xx, and admits nobody.

use super::*;

#[tokio::test]
async fn bad_input_is_a_4xx_json_error_never_a_5xx() {
    let service = service();
    let app = &service.app;
    let campaign = create(app, json!({ "name": "x", "cap": 5 })).await;
    let uri = format!("/campaigns/{campaign}/apply");
    let huge = format!(r#"{{"user_id": 1, "pad": "{}"}}"#, "x".repeat(BODY_LIMIT));
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (
            json_request("POST", &uri, &huge),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            json_request("POST", &uri, r#"{"user_id": 1, "extra": true}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, r#"{"user_id": -5}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, r#"{"user_id": 18446744073709551616}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, r#"{"user_id": "7"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, r#"{"user_id": 1.5}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, r#"{}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, r#"{"user_id": 1"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, ""),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("POST", &uri, "\u{0}\u{1}binary"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Request::builder()
                .method("POST")
                .uri(&uri)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(r#"{"user_id":1}"#))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            json_request("POST", "/campaigns", r#"{"name":"x","cap":-1}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request(
                "POST",
                "/campaigns",
                r#"{"name":"x","cap":1,"per_user_limit":0}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request(
                "POST",
                "/campaigns",
                r#"{"name":"x","cap":1,"opens_at":"yesterday"}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json_request("DELETE", &uri, ""),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (get("/nowhere"), StatusCode::NOT_FOUND),
    ];
    for (request, expected) in cases {
        let label = format!("{} {}", request.method(), request.uri());
        let (status, _, body) = send(app, request).await;
        assert_eq!(status, expected, "{label}: {body}");
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{label}: {body}"
        );
    }
    // Nothing was admitted by any of it.
    let (_, _, body) = send(app, get(&format!("/campaigns/{campaign}"))).await;
    assert_eq!(body["admitted"].as_u64(), Some(0));
}
