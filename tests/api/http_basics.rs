//! HTTP basics: problem documents for every error, request ids, security headers, limits.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, problem};

#[tokio::test]
async fn unknown_route_is_a_404_problem() {
    let app = TestApp::spawn().await;
    let body = problem(
        app.get("/api/v1/no-such-thing").await,
        404,
        "route.not_found",
    )
    .await;
    assert_eq!(body["title"], "Not found");
    problem(app.get("/nowhere").await, 404, "route.not_found").await;
}

#[tokio::test]
async fn wrong_method_is_a_405_problem_with_allow() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .delete(app.url("/api/v1/setup/status"))
        .send()
        .await
        .unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET"), "{allow}");
    problem(response, 405, "http.method_not_allowed").await;
}

#[tokio::test]
async fn a_nul_character_is_refused_before_it_reaches_the_database() {
    let shop = crate::shop::Shop::open().await;
    // In a body: 422 naming the field (PostgreSQL cannot store it: it used to be a 500).
    let response = shop
        .app
        .post_as(
            "/api/v1/customers",
            &shop.cashier,
            &json!({"name": "Anna\u{0}Nul"}),
        )
        .await;
    let body = problem(response, 422, "validation.failed").await;
    assert_eq!(body["errors"][0]["field"], "name");
    // In a query or a path: 400.
    problem(
        shop.app
            .get_as("/api/v1/customers?search=an%00na", &shop.cashier)
            .await,
        400,
        "request.nul_character",
    )
    .await;
    problem(
        shop.app
            .get_as("/api/v1/backups/targets/usb%00x/backups", &shop.admin)
            .await,
        400,
        "request.nul_character",
    )
    .await;
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/v1/setup"))
        .header("content-type", "application/json")
        .body(r#"{"setup_token": "abc", "business": "#)
        .send()
        .await
        .unwrap();
    problem(response, 400, "request.malformed_json").await;
}

#[tokio::test]
async fn wrong_content_type_is_a_415_problem() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_string(&app.setup_body()).unwrap();
    let response = app
        .client
        .post(app.url("/api/v1/setup"))
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    problem(response, 415, "request.unsupported_media_type").await;
    let response = app
        .client
        .post(app.url("/api/v1/setup"))
        .body(body)
        .send()
        .await
        .unwrap();
    problem(response, 415, "request.unsupported_media_type").await;
}

#[tokio::test]
async fn body_over_the_limit_is_a_413_problem() {
    let app = TestApp::spawn_with(|c| c.http.body_limit_bytes = 4096).await;
    let mut body = app.setup_body();
    body["business"]["name"] = json!("x".repeat(10_000));
    problem(
        app.post_json("/api/v1/setup", &body).await,
        413,
        "request.too_large",
    )
    .await;
    // Just under the limit is read (and then validated).
    body["business"]["name"] = json!("x".repeat(300));
    let body = problem(
        app.post_json("/api/v1/setup", &body).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "business.name");
}

#[tokio::test]
async fn wrong_shape_names_the_field() {
    let app = TestApp::spawn().await;
    let mut body = app.setup_body();
    body["business"]["currency"] = json!(978);
    let body = problem(
        app.post_json("/api/v1/setup", &body).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "business.currency");
}

#[tokio::test]
async fn request_id_is_kept_or_generated_and_echoed() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "till-2:abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "till-2:abc-123");
    let response = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "till-2:abc-124")
        .send()
        .await
        .unwrap();
    let body = problem(response, 404, "route.not_found").await;
    assert_eq!(body["request_id"], "till-2:abc-124");

    let first = app.get("/health/live").await.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let second = app.get("/health/live").await.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(first, second);
    assert!(uuid::Uuid::parse_str(&first).is_ok(), "{first}");
    // An id that is unsafe to log is replaced.
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "a".repeat(200))
        .send()
        .await
        .unwrap();
    assert_ne!(response.headers()["x-request-id"], "a".repeat(200).as_str());
}

#[tokio::test]
async fn security_headers_are_set() {
    let app = TestApp::spawn().await;
    for path in ["/health/live", "/api/v1/setup/status", "/nope"] {
        let response = app.get(path).await;
        let h = response.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"),
            "{path}"
        );
    }
}

/// A client that stops sending its body half-way is answered 408 with a problem document
/// once the request timeout passes, and the connection is not held forever.
#[tokio::test]
async fn stalled_request_times_out_with_a_408_problem() {
    let app = TestApp::spawn_with(|c| c.http.request_timeout_secs = 1).await;
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let head = "POST /api/v1/setup HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                content-length: 100\r\nx-request-id: slow-1\r\n\r\n{\"setup_token\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            buffer.extend_from_slice(&chunk[..n]);
            if n == 0 || String::from_utf8_lossy(&buffer).contains("\"request_id\"") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10s");
    let text = String::from_utf8_lossy(&buffer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    let body: Value = serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["code"], "request.timeout");
    assert_eq!(body["request_id"], "slow-1");
}

#[tokio::test]
async fn browsers_may_call_from_the_allowed_origins_only() {
    let app = TestApp::spawn_initialized_with(|c| {
        c.http.cors.allowed_origins = vec!["https://shop.example".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/auth/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    // A preflight carries no token: it is answered before authentication.
    let allowed = preflight("https://shop.example").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("PATCH"), "{methods}");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // A real request from the allowed origin gets the header; from another, not.
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    // Without the setting (the default), no origin is allowed.
    let plain = TestApp::spawn().await;
    let response = plain
        .client
        .get(plain.url("/health/live"))
        .header("origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[test]
fn a_cors_origin_must_be_a_bare_origin() {
    use std::collections::BTreeMap;
    let mut config = plugpos::core::config::Config::default();
    for good in ["https://shop.example", "http://10.0.0.5:8080"] {
        config.http.cors.allowed_origins = vec![good.into()];
        assert!(config.validate(&BTreeMap::new()).is_ok(), "{good}");
    }
    for bad in [
        "*",
        "https://shop.example/",
        "shop.example",
        "https://a.example/path",
        "https://",
    ] {
        config.http.cors.allowed_origins = vec![bad.into()];
        let message = config.validate(&BTreeMap::new()).unwrap_err().to_string();
        assert!(
            message.contains("http.cors.allowed_origins"),
            "{bad}: {message}"
        );
    }
}
