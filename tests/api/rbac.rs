//! Deny by default, the role matrix, users and roles administration, field-level permissions
//! and security events, through the HTTP API.

use serde_json::{Value, json};

use crate::helpers::{TestApp, problem};

const ADMIN_PASSWORD: &str = "correct horse battery";
const BUILTIN_ROLES: [&str; 5] = ["cashier", "manager", "accountant", "auditor", "super_admin"];

/// (method, path, x-permission) of every documented operation.
async fn operations(app: &TestApp) -> Vec<(String, String, String)> {
    let document: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let mut out = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let access = operation["x-permission"].as_str().unwrap_or("").to_owned();
            out.push((method.clone(), path.clone(), access));
        }
    }
    out
}

async fn admin_token(app: &TestApp) -> String {
    app.token("admin", ADMIN_PASSWORD).await
}

#[tokio::test]
async fn every_route_declares_who_may_call_it() {
    let app = TestApp::spawn().await;
    let public = [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/api/v1/setup",
        "/api/v1/setup/status",
        "/api/v1/openapi.json",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        // Anyone holding a paper receipt may check its QR code; the answer names fields only.
        "/api/v1/receipts/verify",
        "/api/v1/receipts/public-key",
        // A till exchanges its one-time enrolment code (an admin made it) for its credential.
        "/api/v1/devices/enrol",
    ];
    let self_service = [
        "/api/v1/auth/me",
        "/api/v1/version",
        "/api/v1/modules",
        "/api/v1/auth/logout",
        "/api/v1/auth/password",
        "/api/v1/auth/mfa/enroll",
        "/api/v1/auth/mfa/verify",
        "/api/v1/auth/pin",
        // The approver's own permissions decide (checked by the handler).
        "/api/v1/approvals",
        // Topics check their own permissions on subscribe.
        "/api/v1/ws",
    ];
    for (method, path, access) in operations(&app).await {
        match access.as_str() {
            "" => panic!("{method} {path} declares no access"),
            "public" => assert!(
                public.contains(&path.as_str()),
                "{method} {path} must not be public"
            ),
            "authenticated" => assert!(
                self_service.contains(&path.as_str()),
                "{method} {path} needs a permission"
            ),
            permission => assert!(
                plugpos::core::auth::permissions::exists(permission),
                "{method} {path}: unknown {permission}"
            ),
        }
    }
}

/// Every built-in role against every permission-guarded route: allowed ones never answer
/// 403, denied ones always answer 403 `rbac.forbidden`; nobody gets in without a token.
#[tokio::test]
async fn role_matrix() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let guarded: Vec<_> = operations(&app)
        .await
        .into_iter()
        .filter(|(_, _, a)| a.contains('.'))
        .collect();
    assert!(guarded.len() >= 10, "{guarded:?}");
    for role in BUILTIN_ROLES {
        let username = format!("matrix_{role}");
        app.add_user(&username, "matrix password 123", &[role], false)
            .await;
        let token = app.login_ok(&username, "matrix password 123").await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let granted = plugpos::core::auth::permissions::builtin_template(role);
        for (method, path, permission) in &guarded {
            let url = app.url(&path.replace("{id}", &uuid::Uuid::nil().to_string()));
            let request = app
                .client
                .request(method.to_uppercase().parse().unwrap(), &url);
            let response = request
                .bearer_auth(&token)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            if granted.contains(&permission.as_str()) {
                assert_ne!(response.status(), 403, "{role} may {method} {path}");
            } else {
                let body = problem(response, 403, "rbac.forbidden").await;
                assert!(
                    body["detail"]
                        .as_str()
                        .unwrap()
                        .contains(permission.as_str()),
                    "{body}"
                );
            }
        }
    }
    for (method, path, _) in &guarded {
        let url = app.url(&path.replace("{id}", &uuid::Uuid::nil().to_string()));
        let response = app
            .client
            .request(method.to_uppercase().parse().unwrap(), &url)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        problem(response, 401, "auth.unauthenticated").await;
    }
    let denied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM security_events WHERE kind = 'permission_denied'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(denied > 0);
}

#[tokio::test]
async fn admin_creates_a_user_who_must_change_the_password_first() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let admin = admin_token(&app).await;
    let body = json!({"username": "cashier1", "password": "first day pass 1", "roles": ["cashier"], "display_name": "Kim"});
    let response = app.post_as("/api/v1/users", &admin, &body).await;
    assert_eq!(response.status(), 201);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["roles"], json!(["cashier"]));
    assert_eq!(user["password_change_required"], true);
    problem(
        app.post_as("/api/v1/users", &admin, &body).await,
        409,
        "user.username_taken",
    )
    .await;

    let tokens = app.login_ok("cashier1", "first day pass 1").await;
    assert_eq!(tokens["password_change_required"], true);
    let token = tokens["access_token"].as_str().unwrap();
    problem(
        app.get_as("/api/v1/users", token).await,
        403,
        "auth.password_change_required",
    )
    .await;
    let listed: Value = app
        .get_as("/api/v1/users?limit=1", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let next = listed["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .get_as(&format!("/api/v1/users?limit=10&cursor={next}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"][0]["username"], "cashier1");
    assert!(rest["next_cursor"].is_null());
}

#[tokio::test]
async fn nobody_grants_what_they_do_not_hold() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let admin = admin_token(&app).await;
    let role = json!({"name": "user_admin", "permissions": ["administration.users.read", "administration.users.manage", "administration.roles.read", "administration.roles.manage"]});
    assert_eq!(
        app.post_as("/api/v1/roles", &admin, &role).await.status(),
        201
    );
    let token = app
        .user_token("delegate", "delegated pass 12", &["user_admin"])
        .await;

    let wider = json!({"name": "snoop", "permissions": ["administration.security_events.read"]});
    let body = problem(
        app.post_as("/api/v1/roles", &token, &wider).await,
        403,
        "rbac.forbidden",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("administration.security_events.read")
    );
    let escalate =
        json!({"username": "crony", "password": "loyal friend 1234", "roles": ["super_admin"]});
    problem(
        app.post_as("/api/v1/users", &token, &escalate).await,
        403,
        "rbac.forbidden",
    )
    .await;
    // Widening a role it manages is refused the same way, and every refusal is recorded even
    // though the request's transaction rolls back (issue 28, finding 11).
    let roles: Value = app
        .get_as("/api/v1/roles", &token)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .clone();
    let roles = roles
        .get("items")
        .unwrap_or(&roles)
        .as_array()
        .unwrap()
        .clone();
    let own = roles.iter().find(|r| r["name"] == "user_admin").unwrap();
    let widen = app
        .client
        .put(app.url(&format!("/api/v1/roles/{}/permissions", own["id"].as_str().unwrap())))
        .bearer_auth(&token)
        .json(&json!({"permissions": ["administration.users.read", "administration.security_events.read"]}))
        .send()
        .await
        .unwrap();
    problem(widen, 403, "rbac.forbidden").await;
    let recorded: Vec<String> = sqlx::query_scalar(
        "SELECT details->>'permission' FROM security_events \
         WHERE kind = 'permission_denied' AND username = 'delegate' AND details->>'reason' = 'grant_not_held' \
         ORDER BY occurred_at",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    assert_eq!(recorded[2], "administration.security_events.read");

    let unknown = json!({"name": "odd", "permissions": ["no.such.permission"]});
    let body = problem(
        app.post_as("/api/v1/roles", &admin, &unknown).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "permissions[0]");
}

#[tokio::test]
async fn role_changes_end_sessions_and_super_admin_cannot_be_lost() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let admin = admin_token(&app).await;
    let cashier = app
        .add_user("cashier2", "cashier pass 123", &["cashier"], false)
        .await;
    let token = app.token("cashier2", "cashier pass 123").await;
    let response = app
        .client
        .patch(app.url(&format!("/api/v1/users/{cashier}")))
        .bearer_auth(&admin)
        .json(&json!({"roles": ["manager"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    problem(
        app.get_as("/api/v1/auth/me", &token).await,
        401,
        "auth.session_ended",
    )
    .await;
    let kinds = app.security_event_kinds().await;
    assert!(kinds.contains(&"privilege_changed".to_owned()), "{kinds:?}");

    let me: Value = app
        .get_as("/api/v1/auth/me", &admin)
        .await
        .json()
        .await
        .unwrap();
    let admin_id = me["id"].as_str().unwrap();
    let response = app
        .client
        .post(app.url(&format!("/api/v1/users/{admin_id}/disable")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    problem(response, 409, "rbac.would_lock_out").await;
    let response = app
        .client
        .patch(app.url(&format!("/api/v1/users/{admin_id}")))
        .bearer_auth(&admin)
        .json(&json!({"roles": ["manager"]}))
        .send()
        .await
        .unwrap();
    problem(response, 409, "rbac.would_lock_out").await;
    let roles: Value = app
        .get_as("/api/v1/roles", &admin)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .clone();
    let super_admin = roles
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "super_admin")
        .unwrap();
    let url = format!(
        "/api/v1/roles/{}/permissions",
        super_admin["id"].as_str().unwrap()
    );
    let response = app
        .client
        .put(app.url(&url))
        .bearer_auth(&admin)
        .json(&json!({"permissions": ["administration.users.read"]}))
        .send()
        .await
        .unwrap();
    problem(response, 409, "rbac.would_lock_out").await;
    assert_eq!(
        app.get_as("/api/v1/auth/me", &admin).await.status(),
        200,
        "the admin is untouched"
    );
}

#[tokio::test]
async fn disable_reset_and_unlock() {
    let app = TestApp::spawn_initialized_with(|c| {
        c.auth.throttle_after_failures = 2;
        c.auth.lockout_after_failures = 3;
    })
    .await;
    let admin = admin_token(&app).await;
    let id = app
        .add_user("cashier3", "cashier pass 123", &["cashier"], false)
        .await;
    let token = app.token("cashier3", "cashier pass 123").await;
    let response = app
        .post_as(&format!("/api/v1/users/{id}/disable"), &admin, &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    problem(
        app.get_as("/api/v1/auth/me", &token).await,
        401,
        "auth.session_ended",
    )
    .await;
    problem(
        app.login("cashier3", "cashier pass 123").await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    assert_eq!(
        app.post_as(&format!("/api/v1/users/{id}/enable"), &admin, &json!({}))
            .await
            .status(),
        200
    );

    let reset = json!({"password": "reset by admin 1"});
    assert_eq!(
        app.post_as(
            &format!("/api/v1/users/{id}/reset-password"),
            &admin,
            &reset
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        app.login_ok("cashier3", "reset by admin 1").await["password_change_required"],
        true
    );

    for _ in 0..2 {
        problem(
            app.login("cashier3", "wrong password here").await,
            401,
            "auth.invalid_credentials",
        )
        .await;
    }
    app.clock.advance(chrono::Duration::seconds(3));
    problem(
        app.login("cashier3", "wrong password here").await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    problem(
        app.login("cashier3", "reset by admin 1").await,
        429,
        "auth.locked",
    )
    .await;
    assert_eq!(
        app.post_as(&format!("/api/v1/users/{id}/unlock"), &admin, &json!({}))
            .await
            .status(),
        204
    );
    app.login_ok("cashier3", "reset by admin 1").await;
    let kinds = app.security_event_kinds().await;
    for kind in [
        "user_disabled",
        "user_enabled",
        "password_reset",
        "account_locked",
        "account_unlocked",
    ] {
        assert!(kinds.contains(&kind.to_owned()), "{kind} in {kinds:?}");
    }
}

#[tokio::test]
async fn contact_fields_need_their_own_permissions() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let admin = admin_token(&app).await;
    let body =
        json!({"username": "withmail", "password": "mail user pass 1", "email": "kim@example.org"});
    let response = app.post_as("/api/v1/users", &admin, &body).await;
    assert_eq!(response.status(), 201);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["email"], "kim@example.org");

    let manager = app
        .user_token("boss", "manager pass 123", &["manager"])
        .await;
    let seen: Value = app
        .get_as(
            &format!("/api/v1/users/{}", user["id"].as_str().unwrap()),
            &manager,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["username"], "withmail");
    assert!(
        seen.get("email").is_none() && seen.get("phone").is_none(),
        "{seen}"
    );

    // A role that may manage users but not contact details.
    let role = json!({"name": "hr_lite", "permissions": ["administration.users.read", "administration.users.manage"]});
    assert_eq!(
        app.post_as("/api/v1/roles", &admin, &role).await.status(),
        201
    );
    let hr = app.user_token("hr", "hr person pass 1", &["hr_lite"]).await;
    let response = app
        .client
        .patch(app.url(&format!("/api/v1/users/{}", user["id"].as_str().unwrap())))
        .bearer_auth(&hr)
        .json(&json!({"phone": "+49 30 1234"}))
        .send()
        .await
        .unwrap();
    let body = problem(response, 403, "rbac.field_forbidden").await;
    assert!(body["detail"].as_str().unwrap().contains("phone"));
    let response = app
        .client
        .patch(app.url(&format!("/api/v1/users/{}", user["id"].as_str().unwrap())))
        .bearer_auth(&hr)
        .json(&json!({"display_name": "Kim K."}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn security_events_are_filtered_and_paged() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    for _ in 0..3 {
        app.login("admin", "wrong password here").await;
    }
    let admin = admin_token(&app).await;
    let page: Value = app
        .get_as("/api/v1/security-events?kind=login_failed&limit=2", &admin)
        .await
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|e| e["kind"] == "login_failed"));
    assert_eq!(items[0]["ip"], "127.0.0.1", "admins see IP addresses");
    assert!(items[0]["request_id"].as_str().is_some());
    let next = page["next_cursor"].as_str().unwrap();
    // The cursor has the shape the OpenAPI document promises: `^[0-9]{1,18}_<uuid>$`.
    let (micros, id) = next.split_once('_').unwrap();
    assert!(
        (1..=18).contains(&micros.len()) && micros.chars().all(|c| c.is_ascii_digit()),
        "{next}"
    );
    assert!(id.len() == 36 && id.parse::<uuid::Uuid>().is_ok(), "{next}");
    let rest: Value = app
        .get_as(
            &format!("/api/v1/security-events?kind=login_failed&limit=2&cursor={next}"),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
    problem(
        app.get_as("/api/v1/security-events?cursor=garbage", &admin)
            .await,
        422,
        "validation.failed",
    )
    .await;

    let auditor = app
        .user_token("inspector", "auditor pass 123", &["auditor"])
        .await;
    let page: Value = app
        .get_as("/api/v1/security-events?kind=login_failed", &auditor)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        page["items"][0].get("ip").is_none(),
        "IP addresses need administration.sessions.read"
    );
}

/// Two super admins disabled at the same moment: one disable wins, the other is refused, and an
/// enabled super admin remains (issue 28, finding 14: both used to succeed).
#[tokio::test]
async fn concurrent_disables_never_remove_the_last_super_admin() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let mut outcomes = Vec::new();
    for round in 0..20 {
        // A disabled admin's tokens end with it: log in again each round.
        let admin = app.token("admin", ADMIN_PASSWORD).await;
        let other = app
            .add_user(
                &format!("root{round}"),
                "another long passphrase",
                &["super_admin"],
                false,
            )
            .await;
        let admin_id: String =
            sqlx::query_scalar("SELECT id::text FROM users WHERE username = 'admin'")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        // Only `admin` and `root<round>` are enabled super admins now.
        sqlx::query(
            "UPDATE users SET disabled_at = now() WHERE username LIKE 'root%' AND id <> $1",
        )
        .bind(other)
        .execute(&app.pool)
        .await
        .unwrap();
        let (first, second) = (
            format!("/api/v1/users/{other}/disable"),
            format!("/api/v1/users/{admin_id}/disable"),
        );
        let empty = json!({});
        let (a, b) = tokio::join!(
            app.post_as(&first, &admin, &empty),
            app.post_as(&second, &admin, &empty),
        );
        let statuses = [a.status().as_u16(), b.status().as_u16()];
        let enabled: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT u.id) FROM users u JOIN user_roles ur ON ur.user_id = u.id \
             JOIN roles r ON r.id = ur.role_id WHERE r.name = 'super_admin' AND u.disabled_at IS NULL",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        outcomes.push((statuses, enabled));
        // Put admin back for the next round (and end nothing else).
        sqlx::query("UPDATE users SET disabled_at = NULL WHERE username = 'admin'")
            .execute(&app.pool)
            .await
            .unwrap();
        if enabled == 0 {
            break;
        }
    }
    assert!(
        outcomes.iter().all(|(_, enabled)| *enabled >= 1),
        "an enabled super admin must remain: {outcomes:?}"
    );
}

/// `administration.users.manage` does not reach a user who holds more than the caller: a help
/// desk role cannot reset a super admin's password (and take the account over), disable, unlock
/// or edit them (issue 28, finding 5).
#[tokio::test]
async fn managing_users_stops_at_users_who_hold_more() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let admin = admin_token(&app).await;
    let role = json!({"name": "helpdesk", "description": "Resets passwords",
                      "permissions": ["administration.users.read", "administration.users.manage"]});
    assert_eq!(
        app.post_as("/api/v1/roles", &admin, &role).await.status(),
        201
    );
    let helpdesk = app
        .user_token("hd", "help desk passphrase", &["helpdesk"])
        .await;
    let admin_id: String =
        sqlx::query_scalar("SELECT id::text FROM users WHERE username = 'admin'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let reset = json!({"password": "taken over passphrase"});
    let body = problem(
        app.post_as(
            &format!("/api/v1/users/{admin_id}/reset-password"),
            &helpdesk,
            &reset,
        )
        .await,
        403,
        "rbac.escalation",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("holds `"),
        "{body}"
    );
    for action in ["disable", "unlock"] {
        problem(
            app.post_as(
                &format!("/api/v1/users/{admin_id}/{action}"),
                &helpdesk,
                &json!({}),
            )
            .await,
            403,
            "rbac.escalation",
        )
        .await;
    }
    // The admin's password still works, and the refusals are security events.
    assert_eq!(app.login("admin", ADMIN_PASSWORD).await.status(), 200);
    let denials: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM security_events WHERE kind = 'permission_denied' AND details->>'reason' = 'target_holds_more'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(denials, 3);
    // Nor may anyone reset their own password (skipping the current one) or lift their own lockout.
    let hd_id: String = sqlx::query_scalar("SELECT id::text FROM users WHERE username = 'hd'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    for action in ["reset-password", "unlock"] {
        problem(
            app.post_as(
                &format!("/api/v1/users/{hd_id}/{action}"),
                &helpdesk,
                &reset,
            )
            .await,
            409,
            "user.own_account",
        )
        .await;
    }
    // A user who holds no more than the help desk is still theirs to manage.
    let peer = app
        .add_user("hd2", "another help desk pass", &["helpdesk"], false)
        .await;
    let answer = app
        .post_as(
            &format!("/api/v1/users/{peer}/reset-password"),
            &helpdesk,
            &reset,
        )
        .await;
    assert_eq!(answer.status(), 204);
}
