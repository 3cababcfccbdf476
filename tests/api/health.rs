//! Liveness, readiness and metrics.

use serde_json::Value;

use crate::helpers::{TestApp, create_database, database_url, pool, readiness_check};

#[tokio::test]
async fn live_answers() {
    let app = TestApp::spawn().await;
    let response = app.get("/health/live").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "live");
}

#[tokio::test]
async fn ready_lists_each_check() {
    let app = TestApp::spawn().await;
    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["data_dir", "database", "migrations"]);
    assert!(
        body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true)
    );
}

#[tokio::test]
async fn unreachable_database_makes_it_unready_with_the_reason() {
    let database = "test_does_not_exist".to_owned();
    let app = TestApp::serve(pool(&database), pool(&database), |_| {}).await;
    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unready");
    let database_check = readiness_check(&body, "database");
    assert_eq!(database_check["ok"], false);
    assert_eq!(database_check["detail"], "unreachable");
    // Anyone may ask: the answer names no database, path or error (issue 28, finding 16).
    let text = body.to_string();
    for leak in ["does not exist", "test_does_not_exist", "/tmp", "pid"] {
        assert!(!text.contains(leak), "readiness shows {leak:?}: {text}");
    }
    // Liveness is not readiness.
    assert_eq!(app.get("/health/live").await.status(), 200);
}

#[tokio::test]
async fn pending_migrations_make_it_unready() {
    let database = create_database(false).await;
    let app = TestApp::serve(pool(&database), pool(&database), |_| {}).await;
    let body: Value = app.get("/health/ready").await.json().await.unwrap();
    let check = readiness_check(&body, "migrations");
    assert_eq!(check["ok"], false);
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("migrations pending"),
        "{check}"
    );
    assert!(database_url(&database).contains(&database));
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = TestApp::spawn().await;
    app.get("/health/live").await;
    app.get("/api/v1/setup/status").await;
    app.get("/definitely/not/here").await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let has = |needle: &str| text.lines().any(|l| l.contains(needle));
    assert!(
        has(r#"http_requests_total{method="GET",route="/health/live",status="200"}"#),
        "{text}"
    );
    assert!(
        has(r#"http_requests_total{method="GET",route="/api/v1/setup/status",status="200"}"#),
        "{text}"
    );
    // Unknown paths share one label instead of one series per path.
    assert!(has(r#"route="unmatched",status="404""#), "{text}");
    assert!(
        has(
            r#"http_request_duration_seconds_bucket{method="GET",route="/health/live",status="200",le="0.005"}"#
        ),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "postgres_up 1"), "{text}");
    assert!(has(r#"db_pool_connections{state="idle"}"#), "{text}");
    assert!(has("db_pool_max_connections"), "{text}");
}

/// What readiness hides from the LAN, an admin reads in detail (issue 28, finding 16).
#[tokio::test]
async fn readiness_details_are_for_admins() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let admin = app.token("admin", crate::helpers::ADMIN_PASSWORD).await;
    let response = app.get_as("/api/v1/health/details", &admin).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let data_dir = readiness_check(&body, "data_dir");
    assert!(
        data_dir["detail"]
            .as_str()
            .unwrap()
            .contains(&app.data_dir.path().display().to_string()),
        "{body}"
    );
    let public: Value = app.get("/health/ready").await.json().await.unwrap();
    assert_eq!(readiness_check(&public, "data_dir")["detail"], "writable");
    let cashier = app
        .user_token("till", "cashier pass 123", &["cashier"])
        .await;
    crate::helpers::problem(
        app.get_as("/api/v1/health/details", &cashier).await,
        403,
        "rbac.forbidden",
    )
    .await;
}
