//! Enrolled tills: an admin creates a device with a one-time code, the till exchanges it for its
//! credential, sessions opened with it are the device's, and revoking it ends them at once.

use chrono::Duration;
use serde_json::{Value, json};

use crate::helpers::problem;
use crate::shop::Shop;

/// A till's requests: the user's access token and the device's credential.
pub struct Till<'a> {
    pub shop: &'a Shop,
    pub device_token: String,
    pub access: String,
}

impl Till<'_> {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.shop
            .app
            .client
            .get(self.shop.app.url(path))
            .bearer_auth(&self.access)
            .header("X-Device-Token", &self.device_token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.shop
            .app
            .client
            .post(self.shop.app.url(path))
            .bearer_auth(&self.access)
            .header("X-Device-Token", &self.device_token)
            .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

/// Creates a device for `register` as the admin; returns its id and enrolment code.
pub async fn create_device(shop: &Shop, name: &str, register: &str, key: &str) -> (String, String) {
    let response = shop
        .app
        .client
        .post(shop.app.url("/api/v1/devices"))
        .bearer_auth(&shop.admin)
        .header("Idempotency-Key", key)
        .json(&json!({"name": name, "register_id": register}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let body: Value = response.json().await.unwrap();
    (
        body["device"]["id"].as_str().unwrap().to_owned(),
        body["enrolment_code"].as_str().unwrap().to_owned(),
    )
}

pub async fn enrol(shop: &Shop, code: &str) -> reqwest::Response {
    shop.app
        .client
        .post(shop.app.url("/api/v1/devices/enrol"))
        .header("X-App-Version", "till-app 1.4.2")
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap()
}

pub async fn login_on(
    shop: &Shop,
    device_token: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    shop.app
        .client
        .post(shop.app.url("/api/v1/auth/login"))
        .header("X-Device-Token", device_token)
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Enrols a till on `register` and logs `user` in on it.
pub async fn till<'a>(shop: &'a Shop, register: &str, user: &str, password: &str) -> Till<'a> {
    let (_, code) = create_device(shop, "Till", register, &uuid::Uuid::now_v7().to_string()).await;
    let enrolled = enrol(shop, &code).await;
    assert_eq!(enrolled.status(), 201, "{}", enrolled.text().await.unwrap());
    let enrolled: Value = enrolled.json().await.unwrap();
    let device_token = enrolled["device_token"].as_str().unwrap().to_owned();
    let login = login_on(shop, &device_token, user, password).await;
    assert_eq!(login.status(), 200, "{}", login.text().await.unwrap());
    let login: Value = login.json().await.unwrap();
    Till {
        shop,
        device_token,
        access: login["access_token"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn a_till_is_enrolled_once_its_sessions_are_its_own_and_revoking_ends_them() {
    let shop = Shop::open().await;
    let app = &shop.app;
    // Only an admin enrols; a retried create gives the same device with a new code.
    let refused = app
        .post_as(
            "/api/v1/devices",
            &shop.cashier,
            &json!({"name": "Front", "register_id": shop.register}),
        )
        .await;
    problem(refused, 403, "rbac.forbidden").await;
    let (device, first_code) = create_device(&shop, "Front till", &shop.register, "d-1").await;
    let (again, code) = create_device(&shop, "Front till", &shop.register, "d-1").await;
    assert_eq!(again, device, "the retry is the same device");
    assert_ne!(code, first_code, "with a new code");
    assert!(code.len() == 11 && &code[5..6] == "-", "{code}");
    let taken = app
        .client
        .post(app.url("/api/v1/devices"))
        .bearer_auth(&shop.admin)
        .header("Idempotency-Key", "d-2")
        .json(&json!({"name": "Second", "register_id": shop.register}))
        .send()
        .await
        .unwrap();
    problem(taken, 409, "device.register_taken").await;
    let nowhere = app
        .post_as(
            "/api/v1/devices",
            &shop.admin,
            &json!({"name": "Lost", "register_id": uuid::Uuid::now_v7()}),
        )
        .await;
    let body = problem(nowhere, 422, "validation.failed").await;
    assert!(body["errors"].to_string().contains("register_id"), "{body}");

    // The replaced code no longer works; the new one works once, typed the way people type.
    problem(enrol(&shop, &first_code).await, 422, "device.code_invalid").await;
    problem(enrol(&shop, "not a code").await, 422, "device.code_invalid").await;
    let typed = code.to_lowercase().replace('-', " ");
    let enrolled = enrol(&shop, &typed).await;
    assert_eq!(enrolled.status(), 201);
    let enrolled: Value = enrolled.json().await.unwrap();
    assert_eq!(enrolled["device_id"], device.as_str());
    assert_eq!(enrolled["register_id"], shop.register.as_str());
    let token = enrolled["device_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pdt_"), "{token}");
    problem(enrol(&shop, &code).await, 409, "device.code_used").await;
    let stored: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM devices WHERE id = $1::uuid")
            .bind(&device)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored.unwrap().len(), 32, "only a hash is kept");
    let whole: String = sqlx::query_scalar("SELECT row_to_json(d)::text FROM devices d")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!whole.contains(&token[4..]), "the credential is not stored");

    // A session opened with the credential is the device's: every request carries it.
    problem(
        login_on(&shop, "pdt_forged", "carla", "cashier pass 123").await,
        401,
        "device.invalid",
    )
    .await;
    let login = login_on(&shop, &token, "carla", "cashier pass 123").await;
    assert_eq!(login.status(), 200);
    let login: Value = login.json().await.unwrap();
    let till = super::devices::Till {
        shop: &shop,
        device_token: token.clone(),
        access: login["access_token"].as_str().unwrap().to_owned(),
    };
    assert_eq!(till.get("/api/v1/auth/me").await.status(), 200);
    problem(
        app.get_as("/api/v1/auth/me", &till.access).await,
        401,
        "device.required",
    )
    .await;
    let wrong = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&till.access)
        .header("X-Device-Token", "pdt_someone_elses")
        .send()
        .await
        .unwrap();
    problem(wrong, 401, "device.invalid").await;
    let stolen_refresh = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": login["refresh_token"]}),
        )
        .await;
    problem(stolen_refresh, 401, "device.invalid").await;

    // What the till does is recorded as the device's.
    let opened = till
        .post(
            "/api/v1/cash-sessions",
            &json!({"register_id": shop.register, "opening_float": "50.00"}),
        )
        .await;
    assert_eq!(opened.status(), 201, "{}", opened.text().await.unwrap());
    let workstation: Option<String> = sqlx::query_scalar(
        "SELECT workstation_id FROM audit_records WHERE module = 'operations.cash' ORDER BY at DESC LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(workstation.as_deref(), Some(device.as_str()));

    // The register is the till's: the same cashier cannot sell on it from another machine, and
    // the till works on no other register.
    let tea = shop.product("TEA", "3.00", &shop.standard, false).await;
    let elsewhere = shop
        .sell(
            &shop.cashier,
            "off-till",
            &shop.cash_sale(&tea, "1", "5.00"),
        )
        .await;
    problem(elsewhere, 403, "device.register_bound").await;
    let on_till = till
        .post("/api/v1/sales", &shop.cash_sale(&tea, "1", "5.00"))
        .await;
    assert_eq!(on_till.status(), 201, "{}", on_till.text().await.unwrap());
    // Its drawer too: a no-sale from another machine is refused.
    let session = opened.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let drawer = app
        .post_as(
            &format!("/api/v1/cash-sessions/{session}/no-sale"),
            &shop.cashier,
            &json!({"reason": "change for the parking meter"}),
        )
        .await;
    problem(drawer, 403, "device.register_bound").await;
    let other_register = second_register(&shop).await;
    let wrong = till
        .post(
            "/api/v1/cash-sessions",
            &json!({"register_id": other_register, "opening_float": "10.00"}),
        )
        .await;
    problem(wrong, 403, "device.register_bound").await;

    let listed: Value = app
        .get_as("/api/v1/devices", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    let shown = &listed["items"][0];
    assert_eq!(shown["id"], device.as_str());
    assert_eq!(shown["status"], "enrolled");
    assert_eq!(shown["app_version"], "till-app 1.4.2");
    assert!(shown["last_seen_at"].is_string(), "{shown}");
    assert!(listed["next_cursor"].is_null());
    assert!(!listed.to_string().contains("token"), "{listed}");

    // A code works for 15 minutes.
    let (late, late_code) =
        create_device(&shop, "Back till", &second_register(&shop).await, "d-3").await;
    app.clock.advance(Duration::minutes(16));
    problem(enrol(&shop, &late_code).await, 410, "device.code_expired").await;
    // (The admin's access token expired with the clock too.)
    let admin = app.token("admin", crate::helpers::ADMIN_PASSWORD).await;
    let fresh = app
        .post_as(
            &format!("/api/v1/devices/{late}/enrolment-code"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(fresh.status(), 200);
    let fresh: Value = fresh.json().await.unwrap();
    assert!(fresh["enrolment_code"].is_string());
    let again = app
        .post_as(
            &format!("/api/v1/devices/{device}/enrolment-code"),
            &admin,
            &json!({}),
        )
        .await;
    problem(again, 409, "device.not_pending").await;

    // Revoking ends the till's sessions at once; its credential logs nobody in any more.
    let revoked = app
        .post_as(
            &format!("/api/v1/devices/{device}/revoke"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(revoked.json::<Value>().await.unwrap()["status"], "revoked");
    assert_eq!(till.get("/api/v1/auth/me").await.status(), 401);
    problem(
        login_on(&shop, &token, "carla", "cashier pass 123").await,
        401,
        "device.invalid",
    )
    .await;
    let twice = app
        .post_as(
            &format!("/api/v1/devices/{device}/revoke"),
            &admin,
            &json!({}),
        )
        .await;
    problem(twice, 409, "device.revoked").await;
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_records WHERE module = 'core.devices' ORDER BY at, id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    for action in [
        "device.create",
        "device.issue_code",
        "device.enrol",
        "device.revoke",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    // The register is free for a new till.
    let replacement = app
        .post_as(
            "/api/v1/devices",
            &admin,
            &json!({"name": "Replacement", "register_id": shop.register}),
        )
        .await;
    assert_eq!(replacement.status(), 201);
}

/// A second register (on the shop's location); returns its id.
pub async fn second_register(shop: &Shop) -> String {
    let created = shop
        .app
        .post_as(
            "/api/v1/registers",
            &shop.admin,
            &json!({"name": format!("Register {}", uuid::Uuid::now_v7()), "location_id": shop.location}),
        )
        .await;
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}
