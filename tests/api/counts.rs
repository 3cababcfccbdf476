//! Stock counts: scans add up, sales made during the count are not lost when it is posted, the
//! variance report shows value at cost only to readers of cost prices.

use serde_json::{Value, json};

use crate::helpers::problem;
use crate::shop::Shop;

async fn level(shop: &Shop, product: &str) -> String {
    let page: Value = shop
        .app
        .get_as(
            &format!(
                "/api/v1/stock?product_id={product}&location_id={}",
                shop.location
            ),
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

async fn open_count(shop: &Shop, key: &str, body: &Value) -> reqwest::Response {
    shop.app
        .client
        .post(shop.app.url("/api/v1/stock/counts"))
        .bearer_auth(&shop.manager)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_count_posts_counted_minus_book_and_keeps_the_sales_made_meanwhile() {
    let shop = Shop::open().await;
    let (pen, bread) = shop.pen_and_bread().await;
    let response = shop
        .app
        .post_as(
            "/api/v1/products",
            &shop.manager,
            &json!({"sku": "INK", "name": "Ink", "price": "4.00", "cost_price": "1.5000", "tax_class_id": shop.standard, "barcodes": ["4006381333931"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let ink = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    shop.receive(&ink, "20").await;
    let glue = shop.product("GLUE", "1.00", &shop.standard, true).await;
    shop.receive(&glue, "3").await;

    problem(
        open_count(
            &shop,
            "c-bad",
            &json!({"location_id": shop.location, "scope": "category"}),
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    let response = open_count(
        &shop,
        "c-1",
        &json!({"location_id": shop.location, "scope": "all", "note": "year end"}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let count: Value = response.json().await.unwrap();
    let id = count["id"].as_str().unwrap().to_owned();
    // Two open counts of one place would post the same differences twice.
    problem(
        open_count(
            &shop,
            "c-2",
            &json!({"location_id": shop.location, "scope": "products", "product_ids": [pen]}),
        )
        .await,
        409,
        "count.already_open",
    )
    .await;
    let lines = |body: Value| {
        let shop = &shop;
        let id = id.clone();
        async move {
            shop.app
                .post_as(
                    &format!("/api/v1/stock/counts/{id}/lines"),
                    &shop.manager,
                    &body,
                )
                .await
        }
    };

    // Scans add up (a barcode three times, the pen in two batches); bread does not track stock.
    let response = lines(json!({"lines": [
        {"barcode": "4006381333931", "quantity": "1"}, {"barcode": "4006381333931", "quantity": "1"},
        {"barcode": "4006381333931", "quantity": "1"}, {"product_id": pen, "quantity": "4"}]}))
    .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    // A scanner retries its batch with the same key: counted once.
    let scan = json!({"lines": [{"product_id": pen, "quantity": "3"}]});
    let keyed = |key: &'static str| {
        let shop = &shop;
        let id = id.clone();
        let scan = scan.clone();
        async move {
            shop.app
                .client
                .post(shop.app.url(&format!("/api/v1/stock/counts/{id}/lines")))
                .bearer_auth(&shop.manager)
                .header("Idempotency-Key", key)
                .json(&scan)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(keyed("scan-7").await.status(), 200);
    let response = keyed("scan-7").await;
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let counted: Value = response.json().await.unwrap();
    assert_eq!(counted["lines"][0]["counted"], "7.000");
    assert_eq!(counted["lines"][0]["book"], "10.000");
    assert_eq!(counted["lines"][0]["scans"], 2);
    let refused = problem(
        lines(json!({"lines": [{"product_id": bread, "quantity": "1"}, {"barcode": "999", "quantity": "1"}]})).await,
        422,
        "validation.failed",
    )
    .await;
    let fields: Vec<&str> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["lines[1].barcode", "lines[0]"], "{refused}");
    // "set" replaces a miscount.
    let response =
        lines(json!({"mode": "set", "lines": [{"barcode": "4006381333931", "quantity": "18"}]}))
            .await;
    assert_eq!(
        response.json::<Value>().await.unwrap()["lines"][0]["counted"],
        "18.000"
    );

    // Two pens are sold while the count is open: the shelf had 7 when counted, so 5 now.
    shop.open_session("50.00").await;
    let sold = shop
        .sell(&shop.cashier, "s-1", &shop.cash_sale(&pen, "2", "5.00"))
        .await;
    assert_eq!(sold.status(), 201);
    assert_eq!(level(&shop, &pen).await, "8.000");

    let current: Value = shop
        .app
        .get_as(&format!("/api/v1/stock/counts/{id}"), &shop.cashier)
        .await
        .json()
        .await
        .unwrap();
    problem(
        shop.app
            .post_as(
                &format!("/api/v1/stock/counts/{id}/post"),
                &shop.manager,
                &json!({"version": 1}),
            )
            .await,
        409,
        "conflict.version_mismatch",
    )
    .await;
    let response = shop
        .app
        .post_as(
            &format!("/api/v1/stock/counts/{id}/post"),
            &shop.manager,
            &json!({"version": current["version"], "uncounted": "zero"}),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "posted");
    assert_eq!(level(&shop, &pen).await, "5.000");
    assert_eq!(level(&shop, &ink).await, "18.000");
    assert_eq!(
        level(&shop, &glue).await,
        "0.000",
        "not counted, and uncounted means zero"
    );
    problem(
        lines(json!({"lines": [{"product_id": pen, "quantity": "1"}]})).await,
        409,
        "count.wrong_state",
    )
    .await;

    // The ledger: one count movement per difference, the level after each.
    let ledger: Value = shop
        .app
        .get_as(
            &format!(
                "/api/v1/stock/movements?reason=count&location_id={}",
                shop.location
            ),
            &shop.manager,
        )
        .await
        .json()
        .await
        .unwrap();
    let mut moves: Vec<(String, String, String)> = ledger["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["product_id"].as_str().unwrap().to_owned(),
                m["quantity_delta"].as_str().unwrap().to_owned(),
                m["quantity_after"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    moves.sort();
    let mut expected = vec![
        (pen.clone(), "-3.000".to_owned(), "5.000".to_owned()),
        (ink.clone(), "-2.000".to_owned(), "18.000".to_owned()),
        (glue.clone(), "-3.000".to_owned(), "0.000".to_owned()),
    ];
    expected.sort();
    assert_eq!(moves, expected);

    // The variance report: value at cost for the manager, not for the cashier, in every format.
    let report: Value = shop
        .app
        .get_as(&format!("/api/v1/stock/counts/{id}/report"), &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    let ink_line = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["sku"] == "INK")
        .unwrap()
        .clone();
    assert_eq!(
        (ink_line["difference"].as_str(), ink_line["value"].as_str()),
        (Some("-2.000"), Some("-3.00"))
    );
    let report: Value = shop
        .app
        .get_as(&format!("/api/v1/stock/counts/{id}/report"), &shop.cashier)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        report.get("total_value").is_none() && report["lines"][0].get("value").is_none(),
        "{report}"
    );
    let csv = shop
        .app
        .get_as(
            &format!("/api/v1/stock/counts/{id}/report?format=csv"),
            &shop.cashier,
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(
        csv.starts_with("product_id,sku,name,book,counted,difference\n") && !csv.contains("1.50"),
        "{csv}"
    );
    let csv = shop
        .app
        .get_as(
            &format!("/api/v1/stock/counts/{id}/report?format=csv"),
            &shop.manager,
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.contains(",-2.000,1.5000,-3.00"), "{csv}");
    let pdf = shop
        .app
        .get_as(
            &format!("/api/v1/stock/counts/{id}/report?format=pdf"),
            &shop.cashier,
        )
        .await;
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF"));
}
