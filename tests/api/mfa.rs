//! Two-factor authentication through the HTTP API.

use serde_json::{Value, json};
use totp_rs::{Builder, Secret};

use crate::helpers::{TestApp, problem};

/// The code an authenticator app would show for `secret` at the app's current time.
fn code(app: &TestApp, secret: &str) -> String {
    let bytes = Secret::try_from_base32(secret).unwrap();
    let totp = Builder::new().with_secret(bytes).build().unwrap();
    totp.generate(app.clock.now().timestamp() as u64)
        .to_string()
}

async fn enroll(app: &TestApp, token: &str) -> (String, Vec<String>) {
    let response = app
        .post_as("/api/v1/auth/mfa/enroll", token, &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    let enrollment: Value = response.json().await.unwrap();
    let secret = enrollment["secret"].as_str().unwrap().to_owned();
    let uri = enrollment["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/PlugPOS:") && uri.contains(&secret),
        "{uri}"
    );
    problem(
        app.post_as("/api/v1/auth/mfa/verify", token, &json!({"code": "000000"}))
            .await,
        422,
        "validation.failed",
    )
    .await;
    let response = app
        .post_as(
            "/api/v1/auth/mfa/verify",
            token,
            &json!({"code": code(app, &secret)}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (secret, codes)
}

async fn login(app: &TestApp, extra: Value) -> reqwest::Response {
    let mut body = json!({"username": "admin", "password": "correct horse battery"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    app.post_json("/api/v1/auth/login", &body).await
}

#[tokio::test]
async fn totp_login_with_replay_protection_and_recovery_codes() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let token = app.token("admin", "correct horse battery").await;
    let (secret, codes) = enroll(&app, &token).await;
    assert_eq!(codes.len(), 10);
    problem(
        app.post_as("/api/v1/auth/mfa/enroll", &token, &json!({}))
            .await,
        409,
        "auth.mfa_already_enabled",
    )
    .await;

    problem(login(&app, json!({})).await, 401, "auth.mfa_required").await;
    problem(
        login(&app, json!({"totp_code": "123456"})).await,
        401,
        "auth.mfa_invalid",
    )
    .await;
    // The code that confirmed enrollment is used up; the next step's code works once.
    problem(
        login(&app, json!({"totp_code": code(&app, &secret)})).await,
        401,
        "auth.mfa_invalid",
    )
    .await;
    app.clock.advance(chrono::Duration::seconds(30));
    let fresh = code(&app, &secret);
    assert_eq!(login(&app, json!({"totp_code": fresh})).await.status(), 200);
    problem(
        login(&app, json!({"totp_code": fresh})).await,
        401,
        "auth.mfa_invalid",
    )
    .await;

    let recovery = codes[0].to_lowercase();
    assert_eq!(
        login(&app, json!({"recovery_code": recovery}))
            .await
            .status(),
        200
    );
    problem(
        login(&app, json!({"recovery_code": codes[0]})).await,
        401,
        "auth.mfa_invalid",
    )
    .await;
    let kinds = app.security_event_kinds().await;
    assert!(kinds.contains(&"mfa_changed".to_owned()), "{kinds:?}");
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM security_events WHERE kind = 'login_failed' AND details->>'reason' = 'second_factor'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(failed, 4, "every wrong code is a failed attempt");
}

#[tokio::test]
async fn a_role_can_require_mfa() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    app.behind_its_back(async {
        sqlx::query(
            "UPDATE settings SET value = '[\"manager\"]' WHERE key = 'security.mfa_required_roles'",
        )
        .execute(&app.pool)
        .await
        .unwrap();
    })
    .await;
    let token = app
        .user_token("boss", "manager pass 123", &["manager"])
        .await;
    let me: Value = app
        .get_as("/api/v1/auth/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["mfa_enrollment_required"], true);
    problem(
        app.get_as("/api/v1/users", &token).await,
        403,
        "auth.mfa_enrollment_required",
    )
    .await;
    enroll(&app, &token).await;
    assert_eq!(app.get_as("/api/v1/users", &token).await.status(), 200);
    // The admin's role is not in the list.
    let admin = app.token("admin", "correct horse battery").await;
    assert_eq!(app.get_as("/api/v1/users", &admin).await.status(), 200);
}

/// TOTP seeds are sealed at rest with a key in the data directory's keys/: the database holds
/// no usable seed, a seed moved to another user does not open, and a seed stored before sealing
/// is sealed once it is used (issue 28, finding 16).
#[tokio::test]
async fn totp_seeds_are_sealed_at_rest() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let token = app.token("admin", "correct horse battery").await;
    let (secret, _) = enroll(&app, &token).await;
    let seed: Vec<u8> = Secret::try_from_base32(&secret).unwrap().as_ref().to_vec();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret FROM user_mfa")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(stored.starts_with(b"PPS1"));
    assert!(!stored.windows(seed.len()).any(|w| w == &seed[..]));
    assert!(app.data_dir.path().join("keys/mfa-secrets.key").exists());
    app.clock.advance(chrono::Duration::seconds(60));
    let response = login(&app, json!({"totp_code": code(&app, &secret)})).await;
    assert_eq!(response.status(), 200);

    // A seed stored in clear before this version logs in, and is sealed by that login.
    sqlx::query("UPDATE user_mfa SET secret = $1")
        .bind(&seed)
        .execute(&app.pool)
        .await
        .unwrap();
    app.clock.advance(chrono::Duration::seconds(60));
    let response = login(&app, json!({"totp_code": code(&app, &secret)})).await;
    assert_eq!(response.status(), 200);
    let resealed: Vec<u8> = sqlx::query_scalar("SELECT secret FROM user_mfa")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(resealed.starts_with(b"PPS1") && resealed != stored);

    // The server seals at start what it finds in clear, used or not.
    sqlx::query("UPDATE user_mfa SET secret = $1")
        .bind(&seed)
        .execute(&app.pool)
        .await
        .unwrap();
    let sealed = plugpos::core::auth::mfa::seal_stored_seeds(&app.state)
        .await
        .unwrap();
    assert_eq!(sealed, 1);
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret FROM user_mfa")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(stored.starts_with(b"PPS1"));
    app.clock.advance(chrono::Duration::seconds(60));
    let response = login(&app, json!({"totp_code": code(&app, &secret)})).await;
    assert_eq!(response.status(), 200);
}
