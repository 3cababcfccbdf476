//! Suppliers, purchase orders and goods receipts: stock and cost price by the documented method,
//! over-receipt refused, cost fields hidden from those who may not see cost prices.

use serde_json::{Value, json};

use crate::helpers::problem;
use crate::shop::Shop;

async fn post_keyed(shop: &Shop, path: &str, key: &str, body: &Value) -> reqwest::Response {
    shop.app
        .client
        .post(shop.app.url(path))
        .bearer_auth(&shop.manager)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn product(shop: &Shop, id: &str) -> Value {
    shop.app
        .get_as(&format!("/api/v1/products/{id}"), &shop.manager)
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_purchase_order_is_received_in_parts_with_stock_and_moving_average_cost() {
    let shop = Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await; // 10 on hand, cost 0.50
    let ink = shop.product("INK", "4.00", &shop.standard, true).await;

    // Suppliers: validated, idempotent, versioned, soft-deleted.
    problem(
        post_keyed(
            &shop,
            "/api/v1/suppliers",
            "s-bad",
            &json!({"name": " ", "email": "nope"}),
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    let response = post_keyed(
        &shop,
        "/api/v1/suppliers",
        "s-1",
        &json!({"name": "Paper & Co", "email": "orders@paper.example", "payment_terms_days": 30}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let supplier: Value = response.json().await.unwrap();
    let again = post_keyed(
        &shop,
        "/api/v1/suppliers",
        "s-1",
        &json!({"name": "Paper & Co", "email": "orders@paper.example", "payment_terms_days": 30}),
    )
    .await;
    assert_eq!(again.json::<Value>().await.unwrap()["id"], supplier["id"]);
    let sid = supplier["id"].as_str().unwrap();
    let response = shop
        .app
        .client
        .put(shop.app.url(&format!("/api/v1/suppliers/{sid}")))
        .bearer_auth(&shop.manager)
        .json(&json!({"name": "Paper and Co", "version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["version"], 2);

    // An order of 30 pens at 2.00 and 5 inks at 1.2345.
    let body = json!({"supplier_id": sid, "location_id": shop.location, "note": "for the new term",
        "lines": [{"product_id": pen, "quantity": "30", "unit_cost": "2.00"}, {"product_id": ink, "quantity": "5", "unit_cost": "1.2345"}]});
    let response = post_keyed(&shop, "/api/v1/purchase-orders", "po-1", &body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let order: Value = response.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        (order["status"].as_str(), order["number"].as_i64()),
        (Some("draft"), Some(1))
    );
    problem(
        post_keyed(
            &shop,
            &format!("/api/v1/purchase-orders/{id}/receipts"),
            "r-0",
            &json!({"lines": [{"line_no": 1, "quantity": "1"}]}),
        )
        .await,
        409,
        "purchase_order.wrong_state",
    )
    .await;
    let response = shop
        .app
        .post_as(
            &format!("/api/v1/purchase-orders/{id}/order"),
            &shop.manager,
            &json!({"version": 1}),
        )
        .await;
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ordered");

    // Over-receipt is refused (the setting is off): 31 of 30.
    let over = problem(
        post_keyed(
            &shop,
            &format!("/api/v1/purchase-orders/{id}/receipts"),
            "r-over",
            &json!({"lines": [{"line_no": 1, "quantity": "31"}]}),
        )
        .await,
        422,
        "purchase_order.over_receipt",
    )
    .await;
    assert!(
        over["detail"].as_str().unwrap().contains("30 of 30"),
        "{over}"
    );

    // 30 pens arrive: 10 on hand at 0.50 and 30 at 2.00 -> (5 + 60) / 40 = 1.625.
    let receipt = json!({"lines": [{"line_no": 1, "quantity": "30"}], "note": "delivery 1"});
    let response = post_keyed(
        &shop,
        &format!("/api/v1/purchase-orders/{id}/receipts"),
        "r-1",
        &receipt,
    )
    .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let received: Value = response.json().await.unwrap();
    let first_receipt = received["id"].clone();
    assert_eq!(received["order"]["status"], "partially_received");
    assert_eq!(received["lines"][0]["stock_after"], "40.000");
    assert_eq!(received["lines"][0]["cost_after"], "1.6250");
    let replay = post_keyed(
        &shop,
        &format!("/api/v1/purchase-orders/{id}/receipts"),
        "r-1",
        &receipt,
    )
    .await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(
        replay.json::<Value>().await.unwrap()["id"],
        received["id"],
        "a retried receipt is not received twice"
    );
    assert_eq!(product(&shop, &pen).await["cost_price"], "1.6250");

    // The inks arrive at another price (invoice): no stock before, so the unit cost.
    let response = post_keyed(
        &shop,
        &format!("/api/v1/purchase-orders/{id}/receipts"),
        "r-2",
        &json!({"lines": [{"line_no": 2, "quantity": "5", "unit_cost": "1.30"}]}),
    )
    .await;
    let received: Value = response.json().await.unwrap();
    assert_eq!(received["order"]["status"], "received");
    assert_eq!(product(&shop, &ink).await["cost_price"], "1.3000");
    problem(
        shop.app
            .post_as(
                &format!("/api/v1/purchase-orders/{id}/cancel"),
                &shop.manager,
                &json!({"version": received["order"]["version"]}),
            )
            .await,
        409,
        "purchase_order.wrong_state",
    )
    .await;

    // Stock by the ledger; the supplier's last prices.
    let ledger: Value = shop
        .app
        .get_as(
            &format!("/api/v1/stock/movements?product_id={pen}&reason=received"),
            &shop.manager,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        ledger["items"].as_array().unwrap().len(),
        2,
        "the shop's first delivery and this receipt"
    );
    let by_receipt = ledger["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["document_id"] == first_receipt)
        .unwrap();
    assert_eq!(by_receipt["quantity_after"], "40.000");
    let supplied: Value = shop
        .app
        .get_as(&format!("/api/v1/suppliers/{sid}/products"), &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(supplied["items"].as_array().unwrap().len(), 2);

    // An accountant reads purchasing and cost prices; a role without cost prices does not see them.
    let clerk = shop
        .app
        .user_token("clerk", "clerk pass 1234", &["accountant"])
        .await;
    let seen: Value = shop
        .app
        .get_as(&format!("/api/v1/purchase-orders/{id}"), &clerk)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["lines"][0]["unit_cost"], "2.0000");
    let response = shop
        .app
        .post_as(
            "/api/v1/roles",
            &shop.admin,
            &json!({"name": "buyer_no_costs", "permissions": ["management.purchasing.read"]}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let blind = shop
        .app
        .user_token("viewer", "viewer pass 1234", &["buyer_no_costs"])
        .await;
    let seen: Value = shop
        .app
        .get_as(&format!("/api/v1/purchase-orders/{id}"), &blind)
        .await
        .json()
        .await
        .unwrap();
    assert!(seen["lines"][0].get("unit_cost").is_none(), "{seen}");
    let supplied: Value = shop
        .app
        .get_as(&format!("/api/v1/suppliers/{sid}/products"), &blind)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        supplied["items"][0].get("last_price").is_none(),
        "{supplied}"
    );
    let pdf = shop
        .app
        .get_as(&format!("/api/v1/purchase-orders/{id}/pdf"), &blind)
        .await;
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let bytes = pdf.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF"));
    problem(
        shop.app
            .post_as("/api/v1/purchase-orders", &blind, &json!({}))
            .await,
        403,
        "rbac.forbidden",
    )
    .await;
    problem(
        shop.app
            .post_as(
                &format!("/api/v1/purchase-orders/{id}/receipts"),
                &shop.cashier,
                &json!({}),
            )
            .await,
        403,
        "rbac.forbidden",
    )
    .await;

    // The last price method: the setting switches it.
    shop.set("purchasing.cost_method", json!("last")).await;
    let response = post_keyed(
        &shop,
        "/api/v1/purchase-orders",
        "po-2",
        &json!({"supplier_id": sid, "location_id": shop.location,
        "lines": [{"product_id": pen, "quantity": "2", "unit_cost": "3.00"}]}),
    )
    .await;
    let second: Value = response.json().await.unwrap();
    let sid2 = second["id"].as_str().unwrap();
    shop.app
        .post_as(
            &format!("/api/v1/purchase-orders/{sid2}/order"),
            &shop.manager,
            &json!({"version": 1}),
        )
        .await;
    let response = post_keyed(
        &shop,
        &format!("/api/v1/purchase-orders/{sid2}/receipts"),
        "r-3",
        &json!({"lines": [{"line_no": 1, "quantity": "2"}]}),
    )
    .await;
    assert_eq!(response.status(), 201);
    assert_eq!(product(&shop, &pen).await["cost_price"], "3.0000");
    let settings: Value = shop
        .app
        .get_as("/api/v1/settings", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    let refused = problem(
        shop.app
            .patch_as("/api/v1/settings", &shop.admin, &json!({"values": {"purchasing.cost_method": "fifo"}, "version": settings["version"], "reason": "test"}))
            .await,
        422,
        "validation.failed",
    )
    .await;
    assert!(
        refused.to_string().contains("moving_average, last"),
        "{refused}"
    );
}
