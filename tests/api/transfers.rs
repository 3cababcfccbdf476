//! Transfers between locations and the stock ledger: stock at the source, in transit and at the
//! destination at each state; differences on arrival; every level the sum of its movements.

use serde_json::{Value, json};

use crate::helpers::problem;
use crate::shop::Shop;

/// A second location in the register's branch; returns its id.
async fn back_room(shop: &Shop) -> String {
    let branches: Value = shop
        .app
        .get_as("/api/v1/branches", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    let branch = branches["items"][0]["id"].as_str().unwrap().to_owned();
    let response = shop
        .app
        .post_as(
            "/api/v1/locations",
            &shop.admin,
            &json!({"name": "Back room", "branch_id": branch}),
        )
        .await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn level(shop: &Shop, product: &str, location: &str) -> String {
    let page: Value = shop
        .app
        .get_as(
            &format!("/api/v1/stock?product_id={product}&location_id={location}"),
            &shop.manager,
        )
        .await
        .json()
        .await
        .unwrap();
    page["items"][0]["quantity"]
        .as_str()
        .unwrap_or("0.000")
        .to_owned()
}

async fn in_transit(shop: &Shop, product: &str) -> Value {
    shop.app
        .get_as(
            &format!("/api/v1/stock/in-transit?product_id={product}"),
            &shop.cashier,
        )
        .await
        .json()
        .await
        .unwrap()
}

async fn create(shop: &Shop, key: &str, body: &Value) -> reqwest::Response {
    shop.app
        .client
        .post(shop.app.url("/api/v1/stock/transfers"))
        .bearer_auth(&shop.manager)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn act(shop: &Shop, id: &str, action: &str, body: &Value) -> reqwest::Response {
    shop.app
        .post_as(
            &format!("/api/v1/stock/transfers/{id}/{action}"),
            &shop.manager,
            body,
        )
        .await
}

#[tokio::test]
async fn a_transfer_moves_stock_through_transit_to_its_destination() {
    let shop = Shop::open().await;
    let (pen, bread) = shop.pen_and_bread().await;
    let ink = shop.product("INK", "4.00", &shop.standard, true).await;
    shop.receive(&ink, "5").await;
    let back = back_room(&shop).await;
    let front = shop.location.clone();

    // Refusals: the same place twice, a product that does not track stock, a cashier.
    let same = problem(
        create(
            &shop,
            "t-bad",
            &json!({"from_location_id": front, "to_location_id": front,
            "lines": [{"product_id": pen, "quantity": "1"}]}),
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(same["errors"][0]["field"], "to_location_id");
    problem(
        create(
            &shop,
            "t-bread",
            &json!({"from_location_id": front, "to_location_id": back,
            "lines": [{"product_id": bread, "quantity": "1"}]}),
        )
        .await,
        422,
        "stock.not_tracked",
    )
    .await;
    problem(
        shop.app
            .post_as("/api/v1/stock/transfers", &shop.cashier, &json!({}))
            .await,
        403,
        "rbac.forbidden",
    )
    .await;

    // A draft moves nothing; a retry with its key returns the same transfer.
    let body = json!({"from_location_id": front, "to_location_id": back, "note": "shelf refill",
        "lines": [{"product_id": pen, "quantity": "6"}, {"product_id": ink, "quantity": "2"}]});
    let response = create(&shop, "t-1", &body).await;
    assert_eq!(response.status(), 201);
    let draft: Value = response.json().await.unwrap();
    assert_eq!(
        (draft["status"].as_str(), draft["number"].as_i64()),
        (Some("draft"), Some(1))
    );
    let again = create(&shop, "t-1", &body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], draft["id"]);
    let id = draft["id"].as_str().unwrap();
    assert_eq!(level(&shop, &pen, &front).await, "10.000");
    assert_eq!(in_transit(&shop, &pen).await["items"], json!([]));

    // Sent: the goods left the source and are in transit.
    problem(
        act(&shop, id, "send", &json!({"version": 0})).await,
        409,
        "conflict.version_mismatch",
    )
    .await;
    let response = act(&shop, id, "send", &json!({"version": 1})).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let sent: Value = response.json().await.unwrap();
    assert_eq!(sent["status"], "sent");
    assert_eq!(level(&shop, &pen, &front).await, "4.000");
    assert_eq!(level(&shop, &pen, &back).await, "0.000");
    let transit = in_transit(&shop, &pen).await;
    assert_eq!(
        transit["items"],
        json!([{"product_id": pen, "to_location_id": back, "quantity": "6.000", "transfers": 1}])
    );
    problem(
        act(&shop, id, "cancel", &json!({"version": 2})).await,
        409,
        "transfer.wrong_state",
    )
    .await;

    // Received: one pen broke on the way; a short line needs its reason.
    let short = problem(
        act(
            &shop,
            id,
            "receive",
            &json!({"version": 2, "lines": [{"line_no": 1, "received_quantity": "5"}]}),
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(short["errors"][0]["field"], "lines[0].difference_reason");
    let response = act(
        &shop,
        id,
        "receive",
        &json!({"version": 2, "lines": [{"line_no": 1, "received_quantity": "5", "difference_reason": "damaged"}]}),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let received: Value = response.json().await.unwrap();
    assert_eq!(received["status"], "received");
    assert_eq!(received["lines"][0]["received_quantity"], "5.000");
    assert_eq!(received["lines"][0]["difference_reason"], "damaged");
    assert_eq!(
        received["lines"][1]["received_quantity"], "2.000",
        "an unnamed line arrived whole"
    );
    assert_eq!(level(&shop, &pen, &front).await, "4.000");
    assert_eq!(level(&shop, &pen, &back).await, "5.000");
    assert_eq!(level(&shop, &ink, &back).await, "2.000");
    assert_eq!(in_transit(&shop, &pen).await["items"], json!([]));

    // A draft can be cancelled; it moved nothing. The next transfer of the branch is number 2.
    let response = create(
        &shop,
        "t-2",
        &json!({"from_location_id": back, "to_location_id": front,
        "lines": [{"product_id": ink, "quantity": "1"}]}),
    )
    .await;
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["number"], 2);
    let response = act(
        &shop,
        second["id"].as_str().unwrap(),
        "cancel",
        &json!({"version": 1}),
    )
    .await;
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        "cancelled"
    );
    assert_eq!(level(&shop, &ink, &back).await, "2.000");

    // Lists, and the audit of every step.
    let page: Value = shop
        .app
        .get_as(
            &format!("/api/v1/stock/transfers?location_id={back}"),
            &shop.cashier,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["id"], second["id"], "newest first");
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_records WHERE entity = 'stock_transfer' ORDER BY action",
    )
    .fetch_all(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(
        actions,
        [
            "stock_transfer.cancel",
            "stock_transfer.create",
            "stock_transfer.create",
            "stock_transfer.receive",
            "stock_transfer.send"
        ]
    );
}

#[tokio::test]
async fn every_level_is_the_sum_of_its_movements_in_the_ledger() {
    let shop = Shop::open().await;
    let (pen, bread) = shop.pen_and_bread().await;
    let back = back_room(&shop).await;
    shop.open_session("50.00").await;
    // A minute between the steps: the ledger is in the order things happened.
    let later = || shop.app.clock.advance(chrono::Duration::minutes(1));
    later();
    let sale: Value = shop
        .sell(&shop.cashier, "s-1", &shop.cash_sale(&pen, "3", "7.50"))
        .await
        .json()
        .await
        .unwrap();
    later();
    let response = shop
        .give_back(&shop.manager, "r-1", &json!({"register_id": shop.register, "original_sale_id": sale["id"],
            "lines": [{"line_no": 1, "quantity": "1"}], "refunds": [{"method": "cash", "amount": "2.50"}],
            "reason_code": "defective"}))
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    later();
    let t: Value = create(
        &shop,
        "t-l",
        &json!({"from_location_id": shop.location, "to_location_id": back,
        "lines": [{"product_id": pen, "quantity": "2"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = t["id"].as_str().unwrap();
    act(&shop, id, "send", &json!({"version": 1})).await;
    later();
    act(&shop, id, "receive", &json!({"version": 2})).await;
    let _ = bread;

    let ledger: Value = shop
        .app
        .get_as(
            &format!(
                "/api/v1/stock/movements?product_id={pen}&location_id={}",
                shop.location
            ),
            &shop.cashier,
        )
        .await
        .json()
        .await
        .unwrap();
    let rows = ledger["items"].as_array().unwrap();
    let reasons: Vec<&str> = rows
        .iter()
        .map(|r| r["reason_code"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["received", "sale", "return", "transfer_out"],
        "{ledger}"
    );
    let afters: Vec<&str> = rows
        .iter()
        .map(|r| r["quantity_after"].as_str().unwrap())
        .collect();
    assert_eq!(afters, ["10.000", "7.000", "8.000", "6.000"]);
    assert_eq!(level(&shop, &pen, &shop.location).await, "6.000");
    let only_out: Value = shop
        .app
        .get_as(
            &format!("/api/v1/stock/movements?product_id={pen}&reason=transfer_in"),
            &shop.cashier,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(only_out["items"].as_array().unwrap().len(), 1);
    assert_eq!(only_out["items"][0]["location_id"], back.as_str());
    problem(
        shop.app
            .get_as("/api/v1/stock/movements?reason=DROP%20TABLE", &shop.cashier)
            .await,
        422,
        "validation.failed",
    )
    .await;

    // Every level, recomputed here from the ledger.
    let off: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stock_levels l LEFT JOIN (SELECT product_id, location_id, sum(quantity_delta) AS s \
         FROM stock_ledger GROUP BY 1, 2) m USING (product_id, location_id) WHERE l.quantity <> COALESCE(m.s, 0)",
    )
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(off, 0);
    let levels: i64 = sqlx::query_scalar("SELECT count(*) FROM stock_levels")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    assert_eq!(levels, 2, "the pen at the front and at the back");
}

#[tokio::test]
async fn falling_below_the_reorder_point_publishes_stock_low_once() {
    use crate::live::{connect, next, send};
    let shop = Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await;
    let set = |body: Value| {
        let shop = &shop;
        async move {
            shop.app
                .client
                .put(shop.app.url("/api/v1/stock/reorder-points"))
                .bearer_auth(&shop.manager)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let refused = problem(
        set(json!({"product_id": pen, "location_id": shop.location, "reorder_quantity": "0", "version": 0})).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(refused["errors"].as_array().unwrap().len(), 2, "{refused}");
    let response = set(json!({"product_id": pen, "location_id": shop.location, "min_quantity": "5", "reorder_quantity": "24", "version": 0})).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let point: Value = response.json().await.unwrap();
    assert_eq!(
        (point["min_quantity"].as_str(), point["version"].as_i64()),
        (Some("5.000"), Some(1))
    );
    problem(
        set(json!({"product_id": pen, "location_id": shop.location, "min_quantity": "6", "version": 0})).await,
        409,
        "conflict.version_mismatch",
    )
    .await;

    let mut socket = connect(&shop, &shop.manager).await;
    next(&mut socket).await;
    send(
        &mut socket,
        json!({"type": "subscribe", "topics": ["stock"]}),
    )
    .await;
    assert_eq!(
        next(&mut socket).await,
        json!({"type": "subscribed", "topics": ["stock"]})
    );

    shop.open_session("50.00").await;
    // 10 -> 6: still at or above the minimum, nothing is said.
    assert_eq!(
        shop.sell(&shop.cashier, "s-1", &shop.cash_sale(&pen, "4", "10.00"))
            .await
            .status(),
        201
    );
    // 6 -> 4: below it.
    assert_eq!(
        shop.sell(&shop.cashier, "s-2", &shop.cash_sale(&pen, "2", "5.00"))
            .await
            .status(),
        201
    );
    let event = next(&mut socket).await;
    assert_eq!(
        (event["topic"].as_str(), event["event"].as_str()),
        (Some("stock"), Some("stock.low")),
        "{event}"
    );
    assert_eq!(event["data"]["product_id"], pen.as_str());
    assert_eq!(event["data"]["quantity"], "4.000");
    assert_eq!(event["data"]["reorder_quantity"], "24.000");
    // 4 -> 3: already below, not said again.
    assert_eq!(
        shop.sell(&shop.cashier, "s-3", &shop.cash_sale(&pen, "1", "2.50"))
            .await
            .status(),
        201
    );
    let quiet =
        tokio::time::timeout(std::time::Duration::from_millis(1500), next(&mut socket)).await;
    assert!(quiet.is_err(), "a second stock.low: {quiet:?}");

    let low: Value = shop
        .app
        .get_as("/api/v1/stock/low", &shop.cashier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(low["items"].as_array().unwrap().len(), 1, "{low}");
    assert_eq!(low["items"][0]["quantity"], "3.000");
    assert_eq!(low["next_cursor"], Value::Null);
}
