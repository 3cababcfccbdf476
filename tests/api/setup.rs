//! First-run setup over HTTP: token rules, validation, what it creates, and the 503 gate.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::helpers::{TestApp, problem};

#[tokio::test]
async fn status_reports_uninitialized_then_initialized() {
    let app = TestApp::spawn().await;
    let body: Value = app.get("/api/v1/setup/status").await.json().await.unwrap();
    assert_eq!(body, json!({"initialized": false}));
    app.initialize().await;
    let body: Value = app.get("/api/v1/setup/status").await.json().await.unwrap();
    assert_eq!(body, json!({"initialized": true}));
}

#[tokio::test]
async fn token_file_is_private_and_deleted_after_setup() {
    let app = TestApp::spawn().await;
    let mode = std::fs::metadata(app.token_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(app.setup_token().len(), 64);
    app.initialize().await;
    assert!(!app.token_path().exists(), "the used token is deleted");
}

#[tokio::test]
async fn wrong_or_missing_token_is_refused_and_nothing_is_created() {
    let app = TestApp::spawn().await;
    let mut body = app.setup_body();
    body["setup_token"] = json!("0".repeat(64));
    problem(
        app.post_json("/api/v1/setup", &body).await,
        403,
        "setup.invalid_token",
    )
    .await;
    body["setup_token"] = json!("");
    problem(
        app.post_json("/api/v1/setup", &body).await,
        403,
        "setup.invalid_token",
    )
    .await;
    // Without a token file no token matches, not even an empty one.
    let good = app.setup_body();
    std::fs::remove_file(app.token_path()).unwrap();
    problem(
        app.post_json("/api/v1/setup", &good).await,
        403,
        "setup.invalid_token",
    )
    .await;
    let business: i64 = sqlx::query_scalar("SELECT count(*) FROM business")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(business, 0);
}

#[tokio::test]
async fn second_setup_is_refused() {
    let app = TestApp::spawn().await;
    let body = app.setup_body();
    app.initialize().await;
    let body = problem(
        app.post_json("/api/v1/setup", &body).await,
        409,
        "setup.already_done",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("already set up"));
    // Whatever the body: setup runs once.
    problem(
        app.post_json("/api/v1/setup", &json!({})).await,
        409,
        "setup.already_done",
    )
    .await;
}

#[tokio::test]
async fn concurrent_setups_create_one_business() {
    let app = TestApp::spawn().await;
    let body = app.setup_body();
    let (a, b) = tokio::join!(
        app.post_json("/api/v1/setup", &body),
        app.post_json("/api/v1/setup", &body)
    );
    let mut statuses = vec![a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, vec![201, 409]);
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(users, 1);
}

#[tokio::test]
async fn invalid_currency_timezone_and_password_are_listed() {
    let app = TestApp::spawn().await;
    let body = json!({
        "setup_token": app.setup_token(),
        "business": {"name": "Corner Shop", "currency": "EURO", "timezone": "Mars/Olympus"},
        "admin": {"username": "admin", "password": "short"}
    });
    let body = problem(
        app.post_json("/api/v1/setup", &body).await,
        422,
        "validation.failed",
    )
    .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec!["business.currency", "business.timezone", "admin.password"]
    );
    assert!(app.token_path().exists(), "a failed setup keeps the token");
}

#[tokio::test]
async fn weak_passwords_are_refused() {
    let app = TestApp::spawn().await;
    for password in [
        "password123",
        "admin-is-me-123",
        "123456789",
        &"x".repeat(129),
    ] {
        let mut body = app.setup_body();
        body["admin"]["password"] = json!(password);
        let body = problem(
            app.post_json("/api/v1/setup", &body).await,
            422,
            "validation.failed",
        )
        .await;
        assert_eq!(
            body["errors"][0]["field"], "admin.password",
            "{password}: {body}"
        );
    }
}

#[tokio::test]
async fn missing_and_unknown_fields_are_named() {
    let app = TestApp::spawn().await;
    let mut body = app.setup_body();
    body["business"].as_object_mut().unwrap().remove("timezone");
    let body = problem(
        app.post_json("/api/v1/setup", &body).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "business", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("timezone"),
        "{body}"
    );
    let mut extra = app.setup_body();
    extra["business"]["colour"] = json!("red");
    let body = problem(
        app.post_json("/api/v1/setup", &extra).await,
        422,
        "validation.failed",
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{body}"
    );
}

#[tokio::test]
async fn setup_creates_business_defaults_roles_and_admin() {
    let app = TestApp::spawn().await;
    let response = app.post_json("/api/v1/setup", &app.setup_body()).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        created["business"],
        json!({"name": "Corner Shop", "currency": "EUR", "timezone": "Europe/Berlin"})
    );
    assert_eq!(created["admin"]["username"], "admin");
    assert_eq!(created["admin"]["roles"], json!(["super_admin"]));
    assert!(
        !created.to_string().contains("correct horse"),
        "the password is never echoed"
    );

    let (name, currency, timezone): (String, String, String) =
        sqlx::query_as("SELECT name, currency, timezone FROM business")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        (name.as_str(), currency.as_str(), timezone.as_str()),
        ("Corner Shop", "EUR", "Europe/Berlin")
    );
    let roles: Vec<String> =
        sqlx::query_scalar("SELECT name FROM roles WHERE builtin ORDER BY name")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        roles,
        vec!["accountant", "auditor", "cashier", "manager", "super_admin"]
    );
    let register: (uuid::Uuid, String) = sqlx::query_as("SELECT id, name FROM registers")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        register.0.to_string(),
        created["register_id"].as_str().unwrap()
    );
    let hash: String = sqlx::query_scalar(
        "SELECT u.password_hash FROM users u JOIN user_roles ur ON ur.user_id = u.id \
         JOIN roles r ON r.id = ur.role_id WHERE u.username = 'admin' AND r.name = 'super_admin'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    let currency_scale: Value =
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'business.currency_scale'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(currency_scale, json!(2));
}

/// Every documented `/api/v1` route other than setup and the API description answers 503
/// `setup.required` until setup has run, and works afterwards.
#[tokio::test]
async fn every_api_route_requires_setup_first() {
    let app = TestApp::spawn().await;
    let document: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let exempt = [
        "/api/v1/setup",
        "/api/v1/setup/status",
        "/api/v1/openapi.json",
    ];
    let mut gated = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") || exempt.contains(&path.as_str()) {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let request = app
                .client
                .request(method.to_uppercase().parse().unwrap(), app.url(path));
            let response = request
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let body = problem(response, 503, "setup.required").await;
            assert!(body["detail"].as_str().unwrap().contains("plugpos init"));
            gated.push(path.clone());
        }
    }
    assert!(gated.contains(&"/api/v1/version".to_owned()), "{gated:?}");
    app.initialize().await;
    let token = app.token("admin", "correct horse battery").await;
    let version: Value = app
        .get_as("/api/v1/version", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(version["api"], "v1");
    assert_eq!(
        version["schema_version"],
        *crate::migrations::all_versions().last().unwrap()
    );
}
