//! Login, tokens, sessions, throttling and lockout, through the HTTP API.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::{TestApp, problem};

const ADMIN_PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn login_returns_tokens_and_me_shows_roles_and_permissions() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", "PlugPOS-Desktop/1.0")
        .json(&json!({"username": "Admin", "password": ADMIN_PASSWORD, "workstation_id": "till-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["user"]["username"], "admin");
    assert_eq!(tokens["user"]["roles"], json!(["super_admin"]));
    assert_eq!(tokens["password_change_required"], false);
    assert!(
        tokens["refresh_token"].as_str().unwrap().len() >= 43,
        "at least 256 bits"
    );

    let me: Value = app
        .get_as("/api/v1/auth/me", tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "admin");
    assert!(
        me["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("administration.users.manage")),
        "{me}"
    );

    let (workstation, ip, agent): (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT workstation_id, host(ip), user_agent FROM sessions")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(workstation.as_deref(), Some("till-2"));
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(agent.as_deref(), Some("PlugPOS-Desktop/1.0"));
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM refresh_tokens")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(
        !stored
            .iter()
            .any(|h| h == tokens["refresh_token"].as_str().unwrap().as_bytes()),
        "stored hashed"
    );
    assert_eq!(app.security_event_kinds().await, vec!["login_succeeded"]);
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_look_the_same() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        bodies.push(strip(
            problem(
                app.login("admin", "wrong password here").await,
                401,
                "auth.invalid_credentials",
            )
            .await,
        ));
        known.push(started.elapsed());
        let started = Instant::now();
        bodies.push(strip(
            problem(
                app.login("nobody", "wrong password here").await,
                401,
                "auth.invalid_credentials",
            )
            .await,
        ));
        unknown.push(started.elapsed());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    known.sort();
    unknown.sort();
    // Unknown users are checked against a dummy hash; without it they would answer many times faster.
    assert!(
        unknown[1] * 3 > known[1],
        "unknown {unknown:?} vs known {known:?}"
    );
    let kinds = app.security_event_kinds().await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "login_failed").count(),
        6,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn throttling_then_lockout_refuse_even_the_right_password() {
    let app = TestApp::spawn_initialized_with(|c| {
        c.auth.throttle_after_failures = 3;
        c.auth.lockout_after_failures = 5;
    })
    .await;
    for _ in 0..3 {
        problem(
            app.login("admin", "wrong password here").await,
            401,
            "auth.invalid_credentials",
        )
        .await;
    }
    let response = app.login("admin", ADMIN_PASSWORD).await;
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    problem(response, 429, "auth.throttled").await;

    app.clock.advance(chrono::Duration::seconds(3));
    problem(
        app.login("admin", "wrong password here").await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    let response = app.login("admin", ADMIN_PASSWORD).await;
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3..=4).contains(&retry), "the wait grows: {retry}");
    problem(response, 429, "auth.throttled").await;

    app.clock.advance(chrono::Duration::seconds(5));
    problem(
        app.login("admin", "wrong password here").await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    let response = app.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(response.headers()["retry-after"], "1800");
    problem(response, 429, "auth.locked").await;

    app.clock.advance(chrono::Duration::minutes(31));
    app.login_ok("admin", ADMIN_PASSWORD).await;
    let kinds = app.security_event_kinds().await;
    for kind in [
        "login_failed",
        "login_throttled",
        "account_locked",
        "login_succeeded",
    ] {
        assert!(kinds.contains(&kind.to_owned()), "{kind} in {kinds:?}");
    }
}

#[tokio::test]
async fn unknown_usernames_are_throttled_like_real_ones() {
    let app = TestApp::spawn_initialized_with(|c| {
        c.auth.throttle_after_failures = 2;
        c.auth.lockout_after_failures = 4;
    })
    .await;
    for name in ["admin", "ghost"] {
        for _ in 0..2 {
            problem(
                app.login(name, "wrong password here").await,
                401,
                "auth.invalid_credentials",
            )
            .await;
        }
        problem(
            app.login(name, "wrong password here").await,
            429,
            "auth.throttled",
        )
        .await;
    }
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let first = app.login_ok("admin", ADMIN_PASSWORD).await;
    let refresh = |token: &Value| json!({"refresh_token": token["refresh_token"]});
    let response = app
        .post_json("/api/v1/auth/refresh", &refresh(&first))
        .await;
    assert_eq!(response.status(), 200);
    let second: Value = response.json().await.unwrap();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(
        app.get_as("/api/v1/auth/me", second["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );

    // The first refresh token again: the whole session is ended.
    problem(
        app.post_json("/api/v1/auth/refresh", &refresh(&first))
            .await,
        401,
        "auth.refresh_reused",
    )
    .await;
    problem(
        app.post_json("/api/v1/auth/refresh", &refresh(&second))
            .await,
        401,
        "auth.session_ended",
    )
    .await;
    problem(
        app.get_as("/api/v1/auth/me", second["access_token"].as_str().unwrap())
            .await,
        401,
        "auth.session_ended",
    )
    .await;
    assert!(
        app.security_event_kinds()
            .await
            .contains(&"refresh_token_reused".to_owned())
    );
    problem(
        app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": "made-up"}))
            .await,
        401,
        "auth.invalid_refresh_token",
    )
    .await;
}

#[tokio::test]
async fn logout_ends_the_session_at_once() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let tokens = app.login_ok("admin", ADMIN_PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    let response = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    problem(
        app.get_as("/api/v1/auth/me", access).await,
        401,
        "auth.session_ended",
    )
    .await;
    let body = json!({"refresh_token": tokens["refresh_token"]});
    problem(
        app.post_json("/api/v1/auth/refresh", &body).await,
        401,
        "auth.session_ended",
    )
    .await;
}

#[tokio::test]
async fn bad_access_tokens_are_refused() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let response = app.get("/api/v1/auth/me").await;
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    problem(response, 401, "auth.unauthenticated").await;
    problem(
        app.get_as("/api/v1/auth/me", "not-a-jwt").await,
        401,
        "auth.invalid_token",
    )
    .await;

    let tokens = app.login_ok("admin", ADMIN_PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    let parts: Vec<&str> = access.split('.').collect();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    // alg none, no signature.
    let none = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "at+jwt"})),
        parts[1]
    );
    problem(
        app.get_as("/api/v1/auth/me", &none).await,
        401,
        "auth.invalid_token",
    )
    .await;
    // Claims changed under the original signature.
    let mut forged = claims.clone();
    forged["exp"] = json!(claims["exp"].as_u64().unwrap() + 86_400);
    let tampered = format!("{}.{}.{}", parts[0], encode(&forged), parts[2]);
    problem(
        app.get_as("/api/v1/auth/me", &tampered).await,
        401,
        "auth.invalid_token",
    )
    .await;
    // Another key, wrong audience, wrong type.
    let other = plugpos::core::auth::tokens::SigningKey::random();
    let now = app.clock.now().timestamp() as u64;
    let foreign = other
        .issue(
            claims["sub"].as_str().unwrap().parse().unwrap(),
            claims["sid"].as_str().unwrap().parse().unwrap(),
            now,
            900,
        )
        .unwrap();
    problem(
        app.get_as("/api/v1/auth/me", &foreign).await,
        401,
        "auth.invalid_token",
    )
    .await;
    // The right key, but the wrong audience, type or algorithm.
    let sign = |header: jsonwebtoken::Header, claims: &Value| {
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_secret(&app.signing_secret),
        )
        .unwrap()
    };
    let mut at_jwt = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    at_jwt.typ = Some("at+jwt".to_owned());
    assert_eq!(
        app.get_as("/api/v1/auth/me", &sign(at_jwt.clone(), &claims))
            .await
            .status(),
        200,
        "control"
    );
    let mut other_audience = claims.clone();
    other_audience["aud"] = json!("someone-else");
    problem(
        app.get_as("/api/v1/auth/me", &sign(at_jwt.clone(), &other_audience))
            .await,
        401,
        "auth.invalid_token",
    )
    .await;
    let plain_jwt = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    problem(
        app.get_as("/api/v1/auth/me", &sign(plain_jwt, &claims))
            .await,
        401,
        "auth.invalid_token",
    )
    .await;
    let mut hs512 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512);
    hs512.typ = Some("at+jwt".to_owned());
    problem(
        app.get_as("/api/v1/auth/me", &sign(hs512, &claims)).await,
        401,
        "auth.invalid_token",
    )
    .await;
    // Expired: the app's clock moves past 15 minutes.
    app.clock.advance(chrono::Duration::minutes(16));
    problem(
        app.get_as("/api/v1/auth/me", access).await,
        401,
        "auth.invalid_token",
    )
    .await;
}

#[tokio::test]
async fn disabling_a_user_ends_their_tokens_at_once() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let user = app
        .add_user("cashier1", "till drawer key 42", &["cashier"], false)
        .await;
    let tokens = app.login_ok("cashier1", "till drawer key 42").await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.get_as("/api/v1/auth/me", access).await.status(), 200);
    app.behind_its_back(async {
        sqlx::query("UPDATE users SET disabled_at = now() WHERE id = $1")
            .bind(user)
            .execute(&app.pool)
            .await
            .unwrap();
    })
    .await;
    problem(
        app.get_as("/api/v1/auth/me", access).await,
        401,
        "auth.session_ended",
    )
    .await;
    problem(
        app.login("cashier1", "till drawer key 42").await,
        401,
        "auth.invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn forced_password_change_then_all_sessions_end() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    app.add_user("newbie", "temporary pass 123", &["cashier"], true)
        .await;
    let tokens = app.login_ok("newbie", "temporary pass 123").await;
    assert_eq!(tokens["password_change_required"], true);
    let access = tokens["access_token"].as_str().unwrap();
    let me: Value = app
        .get_as("/api/v1/auth/me", access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["password_change_required"], true);

    let weak = json!({"current_password": "temporary pass 123", "new_password": "password123"});
    let body = problem(
        app.post_as("/api/v1/auth/password", access, &weak).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "new_password");
    let wrong =
        json!({"current_password": "not it at all", "new_password": "my own secret phrase"});
    let body = problem(
        app.post_as("/api/v1/auth/password", access, &wrong).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "current_password");

    let change =
        json!({"current_password": "temporary pass 123", "new_password": "my own secret phrase"});
    assert_eq!(
        app.post_as("/api/v1/auth/password", access, &change)
            .await
            .status(),
        204
    );
    problem(
        app.get_as("/api/v1/auth/me", access).await,
        401,
        "auth.session_ended",
    )
    .await;
    problem(
        app.login("newbie", "temporary pass 123").await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    let tokens = app.login_ok("newbie", "my own secret phrase").await;
    assert_eq!(tokens["password_change_required"], false);
    assert!(
        app.security_event_kinds()
            .await
            .contains(&"password_changed".to_owned())
    );
}

#[tokio::test]
async fn session_limit_ends_the_oldest_or_refuses() {
    let app = TestApp::spawn_initialized_with(|c| c.auth.max_sessions_per_user = 2).await;
    let first = app.login_ok("admin", ADMIN_PASSWORD).await;
    app.login_ok("admin", ADMIN_PASSWORD).await;
    app.login_ok("admin", ADMIN_PASSWORD).await;
    problem(
        app.get_as("/api/v1/auth/me", first["access_token"].as_str().unwrap())
            .await,
        401,
        "auth.session_ended",
    )
    .await;

    let app = TestApp::spawn_initialized_with(|c| {
        c.auth.max_sessions_per_user = 1;
        c.auth.session_limit = plugpos::core::config::SessionLimitPolicy::RefuseNew;
    })
    .await;
    app.login_ok("admin", ADMIN_PASSWORD).await;
    problem(
        app.login("admin", ADMIN_PASSWORD).await,
        409,
        "auth.session_limit",
    )
    .await;
}

#[tokio::test]
async fn sessions_end_at_their_absolute_lifetime() {
    let app = TestApp::spawn_initialized_with(|c| c.auth.session_lifetime_hours = 1).await;
    let tokens = app.login_ok("admin", ADMIN_PASSWORD).await;
    let body = json!({"refresh_token": tokens["refresh_token"]});
    app.clock.advance(chrono::Duration::minutes(61));
    problem(
        app.post_json("/api/v1/auth/refresh", &body).await,
        401,
        "auth.session_ended",
    )
    .await;
}

/// Guessing the current password through `POST /auth/password` counts like failed logins: the
/// lockout threshold locks the account and ends the session that guessed (issue 28, finding 9).
#[tokio::test]
async fn wrong_current_passwords_count_like_failed_logins() {
    let app = TestApp::spawn_initialized_with(|c| {
        c.auth.throttle_after_failures = 50;
        c.auth.lockout_after_failures = 3;
    })
    .await;
    let token = app
        .user_token("mia", "mia's long passphrase", &["cashier"])
        .await;
    let guess = |n: usize| json!({"current_password": format!("guess number {n}"), "new_password": "a brand new passphrase"});
    for n in 0..2 {
        let response = app
            .post_as("/api/v1/auth/password", &token, &guess(n))
            .await;
        problem(response, 422, "validation.failed").await;
    }
    assert_eq!(app.get_as("/api/v1/auth/me", &token).await.status(), 200);
    let third = app
        .post_as("/api/v1/auth/password", &token, &guess(2))
        .await;
    assert_eq!(third.status(), 422);
    assert_eq!(
        app.get_as("/api/v1/auth/me", &token).await.status(),
        401,
        "the session that guessed has ended"
    );
    // The account is locked like after failed logins.
    problem(
        app.login("mia", "mia's long passphrase").await,
        429,
        "auth.locked",
    )
    .await;
    assert!(
        app.security_event_kinds()
            .await
            .contains(&"account_locked".to_owned())
    );
}
