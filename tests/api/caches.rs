//! core::db::changes: the rows a sale reads (the caller's session, settings, register, products)
//! come from memory, and a change, through the API or behind the server's back, still applies.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::problem;
use crate::shop::Shop;

async fn total(shop: &Shop, key: &str, product: &str) -> String {
    let response = shop
        .sell(&shop.cashier, key, &shop.cash_sale(product, "1", "50.00"))
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let body: Value = response.json().await.unwrap();
    body["totals"]["total"].as_str().unwrap().to_owned()
}

/// Waits until the server listens for changes (it starts to at the first cached read).
async fn until_listening(shop: &Shop) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !shop.app.state.changes().is_listening() {
        assert!(Instant::now() < deadline, "the server never listened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_change_through_the_api_applies_to_the_very_next_sale() {
    let shop = Shop::open().await;
    shop.open_session("100.00").await;
    let tea = shop.product("TEA", "3.00", &shop.standard, false).await;
    assert_eq!(total(&shop, "k1", &tea).await, "3.00");
    until_listening(&shop).await;
    assert_eq!(total(&shop, "k2", &tea).await, "3.00", "now from memory");

    let repriced = shop
        .app
        .client
        .patch(shop.app.url(&format!("/api/v1/products/{tea}")))
        .bearer_auth(&shop.manager)
        .json(&json!({"price": "4.20", "version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(repriced.status(), 200);
    assert_eq!(total(&shop, "k3", &tea).await, "4.20");

    // Archived: no longer for sale.
    let archived = shop
        .app
        .client
        .delete(shop.app.url(&format!("/api/v1/products/{tea}")))
        .bearer_auth(&shop.manager)
        .send()
        .await
        .unwrap();
    let archived: Value = archived.json().await.unwrap();
    assert_eq!(archived["outcome"], "archived");
    let refused = shop
        .sell(&shop.cashier, "k4", &shop.cash_sale(&tea, "1", "50.00"))
        .await;
    let body = problem(refused, 422, "validation.failed").await;
    assert_eq!(body["errors"][0]["field"], "lines[0].product_id");

    // The cashier logs out: the token is refused at once.
    let logout = shop
        .app
        .client
        .post(shop.app.url("/api/v1/auth/logout"))
        .bearer_auth(&shop.cashier)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    problem(
        shop.sell(&shop.cashier, "k5", &shop.cash_sale(&tea, "1", "50.00"))
            .await,
        401,
        "auth.session_ended",
    )
    .await;
}

#[tokio::test]
async fn a_change_made_in_sql_applies_once_its_notification_arrives() {
    let shop = Shop::open().await;
    let session = shop.open_session("100.00").await;
    let tea = shop.product("TEA", "3.00", &shop.standard, false).await;
    assert_eq!(total(&shop, "k1", &tea).await, "3.00");
    until_listening(&shop).await;
    assert_eq!(total(&shop, "k2", &tea).await, "3.00");

    shop.app
        .behind_its_back(async {
            sqlx::query("UPDATE products SET price = 5.55 WHERE id = $1::uuid")
                .bind(&tea)
                .execute(&shop.app.pool)
                .await
                .unwrap();
        })
        .await;
    assert_eq!(total(&shop, "k3", &tea).await, "5.55");

    // A role's permission withdrawn in SQL: the cashier may no longer sell.
    shop.app
        .behind_its_back(async {
            sqlx::query(
                "DELETE FROM role_permissions WHERE permission = 'operations.sales.create' \
                 AND role_id = (SELECT id FROM roles WHERE name = 'cashier')",
            )
            .execute(&shop.app.pool)
            .await
            .unwrap();
        })
        .await;
    problem(
        shop.sell(&shop.cashier, "k4", &shop.cash_sale(&tea, "1", "50.00"))
            .await,
        403,
        "rbac.forbidden",
    )
    .await;

    // The session closed in SQL: the manager's sale is refused.
    shop.app
        .behind_its_back(async {
            sqlx::query("UPDATE cash_sessions SET status = 'closed', closed_at = now(), closed_by = opened_by, \
                 expected_cash = 100, counted_cash = 100, variance = 0 WHERE id = $1::uuid")
                .bind(&session)
                .execute(&shop.app.pool)
                .await
                .unwrap();
        })
        .await;
    problem(
        shop.sell(&shop.manager, "k5", &shop.cash_sale(&tea, "1", "50.00"))
            .await,
        409,
        "cash.no_open_session",
    )
    .await;
}

#[tokio::test]
async fn a_change_while_the_server_was_not_listening_is_not_missed() {
    let shop = Shop::open().await;
    shop.open_session("100.00").await;
    let tea = shop.product("TEA", "3.00", &shop.standard, false).await;
    assert_eq!(total(&shop, "k1", &tea).await, "3.00");
    until_listening(&shop).await;
    assert_eq!(total(&shop, "k2", &tea).await, "3.00");

    // The listening connection is ended (as a restore or a restart of PostgreSQL would) and the
    // price changes in the same breath, before the server can listen again.
    let changes = shop.app.state.changes().clone();
    let before = changes.generation();
    sqlx::raw_sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'; \
         UPDATE products SET price = 6.66",
    )
    .execute(&shop.app.pool)
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(changes.is_listening() && changes.generation() > before) {
        assert!(Instant::now() < deadline, "the server never listened again");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(total(&shop, "k3", &tea).await, "6.66");
}
