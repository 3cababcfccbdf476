//! API keys: made with some of the maker's permissions, shown once, used as a bearer token,
//! audited as the actor, and stopped by revocation, expiry or the maker losing what it granted.

use chrono::Duration;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, problem};
use crate::shop::Shop;

async fn make_key(shop: &Shop, token: &str, body: Value) -> reqwest::Response {
    shop.app.post_as("/api/v1/api-keys", token, &body).await
}

#[tokio::test]
async fn an_api_key_acts_with_the_permissions_it_was_given_and_stops_when_revoked_or_expired() {
    let shop = Shop::open().await;
    let app = &shop.app;
    shop.product("TEA", "3.00", &shop.standard, false).await;

    // Only those who manage integrations make keys, and only with what they hold.
    problem(
        make_key(
            &shop,
            &shop.manager,
            json!({"name": "x", "permissions": ["management.catalog.read"]}),
        )
        .await,
        403,
        "rbac.forbidden",
    )
    .await;
    let body = problem(
        make_key(
            &shop,
            &shop.admin,
            json!({"name": "x", "permissions": ["no.such.permission"]}),
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    assert!(
        body["errors"].to_string().contains("no.such.permission"),
        "{body}"
    );
    problem(
        make_key(&shop, &shop.admin, json!({"name": "x", "permissions": ["management.catalog.read"], "expires_at": "2001-01-01T00:00:00Z"})).await,
        422,
        "validation.failed",
    )
    .await;
    let expires = app.clock.now() + Duration::days(30);
    let created = make_key(
        &shop,
        &shop.admin,
        json!({"name": "Accounting export", "permissions": ["management.catalog.read", "management.catalog.write"], "expires_at": expires}),
    )
    .await;
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let created: Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["api_key"]["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("pk_") && key.len() == 46, "{key}");
    assert_eq!(created["api_key"]["prefix"], &key[..11]);
    let stored: String = sqlx::query_scalar("SELECT row_to_json(k)::text FROM api_keys k")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!stored.contains(&key[11..]), "only a hash is kept");

    // The key is a bearer token with its own permissions.
    let listed = app.get_as("/api/v1/products", &key).await;
    assert_eq!(listed.status(), 200);
    problem(
        app.get_as("/api/v1/users", &key).await,
        403,
        "rbac.forbidden",
    )
    .await;
    let made = app
        .post_as(
            "/api/v1/products",
            &key,
            &json!({"sku": "CAKE", "name": "Cake", "price": "2.00", "tax_class_id": shop.standard}),
        )
        .await;
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    let actor: (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT actor_username, actor_role FROM audit_records WHERE action = 'product.create' AND entity_id = $1",
    )
    .bind(made["id"].as_str().unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        actor.0.as_deref(),
        Some(&key[..11]).map(|p| format!("api-key:{p}")).as_deref()
    );
    assert_eq!(actor.1.as_deref(), Some("api_key"));
    // Not a person's own account, and no keys of its own.
    let me: Value = app
        .get_as("/api/v1/auth/me", &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], format!("api-key:{}", &key[..11]));
    let pin = app
        .client
        .delete(app.url("/api/v1/auth/pin"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    problem(pin, 403, "auth.api_key_not_allowed").await;
    let manager_key: Value = make_key(
        &shop,
        &shop.admin,
        json!({"name": "Keys", "permissions": ["administration.integrations.manage"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let manager_key = manager_key["key"].as_str().unwrap();
    problem(
        make_key(
            &shop,
            manager_key,
            json!({"name": "child", "permissions": ["administration.integrations.manage"]}),
        )
        .await,
        403,
        "auth.api_key_not_allowed",
    )
    .await;
    let shown: Value = app
        .get_as(&format!("/api/v1/api-keys/{id}"), &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["last_used_ip"], "127.0.0.1");
    assert!(shown["last_used_at"].is_string());
    let page: Value = app
        .get_as("/api/v1/api-keys", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(!page.to_string().contains(&key[11..]), "never shown again");

    problem(
        app.get_as(
            "/api/v1/products",
            "pk_not-a-real-key-at-all-000000000000000000000",
        )
        .await,
        401,
        "auth.invalid_api_key",
    )
    .await;

    // Revoked: at once.
    let revoked = app
        .post_as(
            &format!("/api/v1/api-keys/{id}/revoke"),
            &shop.admin,
            &json!({}),
        )
        .await;
    assert_eq!(revoked.status(), 200);
    problem(
        app.get_as("/api/v1/products", &key).await,
        401,
        "auth.invalid_api_key",
    )
    .await;
    problem(
        app.post_as(
            &format!("/api/v1/api-keys/{id}/revoke"),
            &shop.admin,
            &json!({}),
        )
        .await,
        409,
        "api_key.revoked",
    )
    .await;

    // Expired: from its time on.
    let short = make_key(
        &shop,
        &shop.admin,
        json!({"name": "Web shop", "permissions": ["management.catalog.read"], "expires_at": app.clock.now() + Duration::hours(1)}),
    )
    .await;
    let short: Value = short.json().await.unwrap();
    let short = short["key"].as_str().unwrap().to_owned();
    assert_eq!(app.get_as("/api/v1/products", &short).await.status(), 200);
    app.clock.advance(Duration::hours(2));
    problem(
        app.get_as("/api/v1/products", &short).await,
        401,
        "auth.invalid_api_key",
    )
    .await;
}

#[tokio::test]
async fn a_key_loses_what_its_maker_loses_and_stops_with_a_disabled_maker() {
    let shop = Shop::open().await;
    let app = &shop.app;
    // A second admin makes a key, then is demoted, then disabled.
    let maker = app
        .add_user("maker", "maker password 123", &["super_admin"], false)
        .await;
    let token = app.token("maker", "maker password 123").await;
    let created: Value = make_key(
        &shop,
        &token,
        json!({"name": "Sync", "permissions": ["management.catalog.read", "administration.users.read"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(app.get_as("/api/v1/users", &key).await.status(), 200);
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let demoted = app
        .patch_as(
            &format!("/api/v1/users/{maker}"),
            &admin,
            &json!({"roles": ["cashier"]}),
        )
        .await;
    assert!(
        demoted.status().is_success(),
        "{}",
        demoted.text().await.unwrap()
    );
    problem(
        app.get_as("/api/v1/users", &key).await,
        403,
        "rbac.forbidden",
    )
    .await;
    assert_eq!(
        app.get_as("/api/v1/products", &key).await.status(),
        200,
        "what the maker still holds"
    );
    let disabled = app
        .post_as(
            &format!("/api/v1/users/{maker}/disable"),
            &admin,
            &json!({}),
        )
        .await;
    assert!(disabled.status().is_success());
    problem(
        app.get_as("/api/v1/products", &key).await,
        401,
        "auth.invalid_api_key",
    )
    .await;
}
